import socket

import pytest
import torch

from cifar_exp.datasets import Split, load_dataset
from cifar_exp.datasets.batches import BatchLoader
from cifar_exp.errors import UserError


def small_split(n=10):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 2, 2).contiguous()
    return Split(images, torch.arange(n))


def test_synthetic_is_deterministic_uint8_and_balanced():
    a = load_dataset({"name": "synthetic", "train_size": 100, "test_size": 30, "seed": 3})
    b = load_dataset({"name": "synthetic", "train_size": 100, "test_size": 30, "seed": 3})
    c = load_dataset({"name": "synthetic", "train_size": 100, "test_size": 30, "seed": 4})
    assert a.train.images.dtype == torch.uint8 and a.train.images.shape == (100, 3, 32, 32)
    assert a.train.labels.dtype == torch.int64
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.train.images, c.train.images)
    assert torch.bincount(a.train.labels).tolist() == [10] * 10
    assert len(a.classes) == 10


def test_loader_covers_every_sample_once_per_epoch_in_a_seeded_order():
    split = small_split(10)
    loader = BatchLoader(split, batch_size=4, device=torch.device("cpu"), shuffle=True, seed=1)
    assert len(loader) == 3

    def epoch_labels(epoch):
        loader.set_epoch(epoch)
        return torch.cat([labels for _, labels in loader]).tolist()

    first = epoch_labels(1)
    assert sorted(first) == list(range(10))
    assert epoch_labels(1) == first  # same (seed, epoch) -> same order
    assert epoch_labels(2) != first  # a new epoch reshuffles
    other_seed = BatchLoader(split, 4, torch.device("cpu"), shuffle=True, seed=2)
    other_seed.set_epoch(1)
    assert torch.cat([y for _, y in other_seed]).tolist() != first


def test_loader_scales_images_to_unit_floats_and_keeps_pairs_together():
    split = small_split(6)
    loader = BatchLoader(split, batch_size=4, device=torch.device("cpu"), shuffle=True)
    for images, labels in loader:
        assert images.dtype == torch.float32
        # image i holds the value i everywhere, so pairs stay matched after shuffling
        assert torch.allclose(images[:, 0, 0, 0] * 255, labels.float())


def test_limit_batches():
    loader = BatchLoader(small_split(10), 3, torch.device("cpu"), limit_batches=2)
    assert len(loader) == 2
    assert sum(len(y) for _, y in loader) == 6


def test_cifar10_absent_without_download_says_how_to_fix(tmp_path):
    with pytest.raises(UserError) as err:
        load_dataset({"name": "cifar10", "root": str(tmp_path), "download": False})
    message = str(err.value)
    assert f"CIFAR-10 is not in {tmp_path}" in message
    assert "dataset.root=" in message and "dataset=synthetic" in message


def test_cifar10_download_without_network_fails_clearly(tmp_path, monkeypatch):
    # Send the download through a proxy port that refuses connections: a real offline failure.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{port}")
    with pytest.raises(UserError, match="could not be downloaded"):
        load_dataset({"name": "cifar10", "root": str(tmp_path), "download": True})
