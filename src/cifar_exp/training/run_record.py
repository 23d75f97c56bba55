"""What a run says about itself in its record before it trains: its entries in TensorBoard's
HParams (the keys typed, then the keys every run compares) and the texts of the Text tab
(the composed config, the overrides, the command, the commit)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from cifar_exp.config import compared_keys, is_plumbing
from cifar_exp.records.manifest import git_commit, typed_command
from cifar_exp.tracking import select_hparams
from cifar_exp.training.resume import override_keys


def run_hparams(
    cfg: DictConfig, overrides: list[str], size: dict[str, int] | None = None
) -> dict[str, Any]:
    """The run's entries in TensorBoard's HParams: the keys typed (in a sweep, those it
    varies) that change what is trained, then the keys every run compares (the model's
    `size`, model_size(), among them once it is built)."""
    config = OmegaConf.to_container(cfg, resolve=True)
    config["model"]["params"] = (size or {}).get("params")
    config["model"]["flops"] = (size or {}).get("flops")
    typed = [k for k in override_keys(overrides) if not is_plumbing(k)]
    return select_hparams(config, [*typed, *compared_keys()])


def describe_run(config_yaml: str, overrides: list[str]) -> dict[str, str]:
    """What produced the run, for TensorBoard's Text tab: the composed config, the overrides
    typed, the command line and the commit of the code when it is a git checkout."""
    texts = {
        "config": config_yaml,
        "overrides": "\n".join(overrides) or "(none: the defaults)",
        "command": typed_command(),
    }
    commit = git_commit()
    if commit:
        texts["git_commit"] = commit
    return texts
