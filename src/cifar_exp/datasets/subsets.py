"""Parts of a split that stand for the whole: a fixed, seeded, stratified subset.

A split read from an image folder is sorted by class, so "its first N images" is one or two
classes: a limited evaluation would score airplanes and automobiles only, a whitening
estimate would see only airplanes. Every part of a split the tool takes (a limited
evaluation, the images a data-dependent initialization sees, the validation split held out
of training) is instead drawn class by class, each class's share as in the whole split
(largest remainders, at least one image of every class while the size allows), chosen by a
seed, so the same call gives the same images every time.
"""

from __future__ import annotations

import torch

from cifar_exp.datasets.base import Split, Whole


def stratified_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """Positions of `size` items of `labels` (int64 [N]), each class's share as in the whole,
    chosen at random with `seed`, in a shuffled order (not grouped by class)."""
    labels = labels.cpu()
    if size >= len(labels):
        return torch.arange(len(labels))
    classes, counts = labels.unique(return_counts=True)
    quota = per_class_quota(counts, size)
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for cls, take in zip(classes.tolist(), quota.tolist(), strict=True):
        members = (labels == cls).nonzero().flatten()
        chosen.append(members[torch.randperm(len(members), generator=gen)[:take]])
    picked = torch.cat(chosen)
    return picked[torch.randperm(len(picked), generator=gen)]


def per_class_quota(counts: torch.Tensor, size: int) -> torch.Tensor:
    """How many of each class a subset of `size` takes: proportional to `counts`, rounded by
    largest remainders; every class gets at least one while `size` allows."""
    share = counts.to(torch.float64) / counts.sum() * size
    quota = share.floor().to(torch.int64)
    if size >= len(counts):
        quota = quota.clamp(min=1)
    # Largest remainders first for what is missing; for what is too much, the classes most
    # over their share first (the largest class among equals), never below one.
    while (left := size - int(quota.sum())) != 0:
        over = share - quota
        if left > 0:
            room = quota < counts
            k = int(torch.where(room, over, -torch.inf).argmax())
            quota[k] += 1
        else:
            room = quota > 1
            k = int(torch.where(room, over - counts * 1e-12, torch.inf).argmin())
            quota[k] -= 1
    return quota


def classes_in(labels: torch.Tensor) -> int:
    """How many classes `labels` holds."""
    return int(labels.unique().numel())


def part_of(split: Split, size: int, seed: int) -> Split:
    """A stratified part of `split` of `size` images that remembers the whole it stands for
    (`split` itself when `size` covers it)."""
    if size >= len(split):
        return split
    part = split.subset(stratified_subset(split.labels, size, seed).to(split.labels.device))
    part.whole = Whole(images=len(split), classes=classes_in(split.labels))
    return part
