"""cifar-exp's Ray launcher, where Hydra looks for plugins (see ray_launcher.py)."""
