"""cifar-exp's Optuna sweeper, where Hydra looks for plugins (see cifar_exp.sweeps.search)."""
