"""The pruning search the pruning tests run (half its trials hopeless), and its study read back."""

from pathlib import Path

from helpers.overrides import TINY

# Half the trials hopeless: lr 1e-7 learns nothing in 3 epochs, 3e-3 learns the synthetic
# set. With the sampler's seed 0 and 10 random start-up draws the six trials draw
# good, hopeless, good, good, hopeless, hopeless. The median pruner judges from the first
# finished trial on, from epoch 2 on (n_warmup_steps=2), so each hopeless trial stops
# after epoch 2 of 3 and the good ones (all alike, never below the median) train to the end.
SEARCH = [
    "hparams_search=optuna",
    *TINY,
    "dataset.val_size=64",
    "trainer.epochs=3",
    "optimizer.lr=choice(1e-7,3e-3)",
    "optimizer.weight_decay=0",
    "trainer.batch_size=32",
    "hydra.sweeper.n_trials=6",
    "hydra.sweeper.sampler.seed=0",
    "hydra.sweeper.sampler.n_startup_trials=10",
    "hydra.sweeper.pruner.name=median",
    "hydra.sweeper.pruner.n_startup_trials=1",
    "hydra.sweeper.pruner.n_warmup_steps=2",
]

HOPELESS = 1e-7


def study(sweep_dir: Path):
    import optuna

    return optuna.load_study(study_name="cifar_exp", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
