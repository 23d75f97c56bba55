"""The data sources, one module each (options + builder), registered in `DATASETS` by name;
`load_dataset` builds the one a config names and holds out its validation split."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from cifar_exp.datasets import cifar, imagefolder, synthetic  # noqa: F401  (they register)
from cifar_exp.datasets.base import DATASETS, DataBundle, Split
from cifar_exp.datasets.subsets import stratified_subset
from cifar_exp.errors import ConfigError

__all__ = ["DATASETS", "DataBundle", "Split", "load_dataset"]


def load_dataset(node: dict[str, Any] | DictConfig) -> DataBundle:
    """Build the data set `node` names, from its checked options.

    `val_size` > 0 holds that many training images out as the validation split, chosen by
    `split_seed` (so every run of a sweep validates on the same images).
    """
    options = DATASETS.options(node)
    bundle = DATASETS.build(options)
    name, num_classes = options.name, options.num_classes
    if num_classes is not None and num_classes != len(bundle.classes):
        raise ConfigError(
            f"dataset.num_classes is {num_classes} but the {name} data has "
            f"{len(bundle.classes)} classes; set dataset.num_classes={len(bundle.classes)} "
            "(or null to follow the data)"
        )
    if options.val_size:
        if bundle.val is not None:
            raise ConfigError(
                f"dataset.val_size={options.val_size} but the {name} data already has a val "
                "split; leave dataset.val_size=0 to use it"
            )
        bundle.train, bundle.val = hold_out(
            bundle.train, options.val_size, options.split_seed, options.val_stratified
        )
    return bundle


def hold_out(split: Split, size: int, seed: int, stratified: bool = True) -> tuple[Split, Split]:
    """Split `size` samples (chosen by `seed`) off `split`: (the rest, the held out). Drawn
    class by class (datasets/subsets.py) when `stratified`, else at random over the split."""
    if size >= len(split):
        raise ConfigError(
            f"dataset.val_size={size} leaves no training images (the train split has "
            f"{len(split)}); choose a smaller dataset.val_size"
        )
    if not stratified:
        order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
        return split.subset(order[size:]), split.subset(order[:size])
    held = stratified_subset(split.labels, size, seed)
    kept = torch.ones(len(split), dtype=torch.bool)
    kept[held] = False
    return split.subset(kept.nonzero().flatten()), split.subset(held)
