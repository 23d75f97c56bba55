"""CIFAR archives: the real download, verify, extract and cache code against a local server."""

import dataclasses
import hashlib
import http.server
import io
import pickle
import socket
import tarfile
import threading

import numpy as np
import pytest
import torch

from cifar_exp.datasets import cifar, load_dataset
from cifar_exp.datasets.cache import CACHE_VERSION
from cifar_exp.errors import UserError

PER_BATCH = 6


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def fake_cifar10_archive() -> tuple[bytes, dict[str, bytes]]:
    """A tar.gz in the official layout: five train batches, a test batch, batches.meta."""
    rng = np.random.default_rng(0)
    files = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {
            "data": rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, PER_BATCH).tolist(),
        }
        files[name] = pickle.dumps(entry)
    files["batches.meta"] = pickle.dumps({"label_names": [f"c{i}" for i in range(10)]})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue(), files


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A real HTTP server on localhost serving tmp_path/www; yields (folder, base url)."""
    www = tmp_path / "www"
    www.mkdir()
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(www), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def spec_for(archive_bytes: bytes, files: dict[str, bytes], url: str) -> cifar.Archive:
    train = tuple((f"data_batch_{i}", md5(files[f"data_batch_{i}"])) for i in range(1, 6))
    return dataclasses.replace(
        cifar.CIFAR10,
        url=url,
        size=len(archive_bytes),
        md5=md5(archive_bytes),
        train_files=train,
        test_files=(("test_batch", md5(files["test_batch"])),),
        meta_file=("batches.meta", md5(files["batches.meta"])),
    )


def test_download_verifies_renames_extracts_and_caches(tmp_path, server, caplog):
    www, base = server
    archive_bytes, files = fake_cifar10_archive()
    (www / "cifar-10-python.tar.gz").write_bytes(archive_bytes)
    spec = spec_for(archive_bytes, files, f"{base}/cifar-10-python.tar.gz")
    root = tmp_path / "data"

    bundle = cifar.load_cifar(spec, str(root), download=True, cache=True)
    assert bundle.train.images.shape == (5 * PER_BATCH, 3, 32, 32)
    assert bundle.train.images.dtype == torch.uint8 and bundle.test.labels.dtype == torch.int64
    assert bundle.classes == [f"c{i}" for i in range(10)]
    first = pickle.loads(files["data_batch_1"])
    assert bundle.train.images[0].flatten().tolist() == first["data"][0].tolist()
    assert bundle.train.labels[:PER_BATCH].tolist() == first["labels"]
    assert (root / "cifar-10-python.tar.gz").read_bytes() == archive_bytes
    assert not list(root.glob("*.part")) and not list(root.glob(".*partial"))
    assert (root / "cifar-10-batches-py" / cifar.CACHE_NAME).is_file()

    (www / "cifar-10-python.tar.gz").unlink()  # a second start needs neither server nor pickles
    caplog.clear()
    again = cifar.load_cifar(spec, str(root), download=True, cache=True)
    assert torch.equal(again.train.images, bundle.train.images)
    assert "rebuilding" not in caplog.text


def test_download_with_a_wrong_checksum_keeps_nothing(tmp_path, server):
    www, base = server
    archive_bytes, files = fake_cifar10_archive()
    spec = spec_for(archive_bytes, files, f"{base}/cifar-10-python.tar.gz")
    tampered = bytearray(archive_bytes)
    tampered[100] ^= 0xFF
    (www / "cifar-10-python.tar.gz").write_bytes(bytes(tampered))
    root = tmp_path / "data"
    with pytest.raises(UserError, match="failed its checksum") as err:
        cifar.load_cifar(spec, str(root), download=True, cache=True)
    assert "nothing was kept" in str(err.value)
    assert list(root.iterdir()) == []


def test_interrupted_download_is_reported_as_truncated(tmp_path, server):
    www, base = server
    archive_bytes, files = fake_cifar10_archive()
    spec = spec_for(archive_bytes, files, f"{base}/cifar-10-python.tar.gz")
    (www / "cifar-10-python.tar.gz").write_bytes(archive_bytes[:1000])
    root = tmp_path / "data"
    with pytest.raises(UserError, match=r"is truncated \(1,000 of"):
        cifar.load_cifar(spec, str(root), download=True, cache=True)
    assert list(root.iterdir()) == []


def test_archive_that_passes_its_checksum_but_cannot_be_extracted(tmp_path):
    archive_bytes, files = fake_cifar10_archive()
    cut = archive_bytes[: len(archive_bytes) // 2]
    spec = spec_for(cut, files, "http://unused")
    root = tmp_path / "data"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(cut)
    with pytest.raises(UserError, match="is truncated or corrupt and cannot be extracted"):
        cifar.load_cifar(spec, str(root), download=False, cache=True)
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-python.tar.gz"]


def test_local_official_archive_truncated_or_corrupt(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"\x1f\x8b" + b"0" * 998)
    with pytest.raises(UserError, match=r"is truncated \(1,000 of 170,498,071 bytes") as err:
        load_dataset({"name": "cifar10", "root": str(tmp_path), "download": False})
    assert "Delete it and run again" in str(err.value)
    with archive.open("r+b") as f:  # right size, wrong bytes (sparse: instant to create)
        f.truncate(cifar.CIFAR10.size)
    with pytest.raises(UserError, match="failed its checksum"):
        load_dataset({"name": "cifar10", "root": str(tmp_path), "download": False})
    assert archive.stat().st_size == cifar.CIFAR10.size  # the user's file is left alone


def test_corrupted_extracted_batch_fails_its_checksum(tmp_path):
    archive_bytes, files = fake_cifar10_archive()
    spec = spec_for(archive_bytes, files, "http://unused")
    root = tmp_path / "data"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(archive_bytes)
    cifar.load_cifar(spec, str(root), download=False, cache=False)
    batch = root / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:-10])
    with pytest.raises(UserError, match="data_batch_3 failed its checksum"):
        cifar.load_cifar(spec, str(root), download=False, cache=False)


def test_stale_or_corrupt_cache_is_rebuilt_not_trusted(tmp_path, caplog):
    caplog.set_level("INFO")
    archive_bytes, files = fake_cifar10_archive()
    spec = spec_for(archive_bytes, files, "http://unused")
    root = tmp_path / "data"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(archive_bytes)
    good = cifar.load_cifar(spec, str(root), download=False, cache=True)
    cache_file = root / "cifar-10-batches-py" / cifar.CACHE_NAME

    cache_file.write_bytes(cache_file.read_bytes()[:500])  # corrupted
    again = cifar.load_cifar(spec, str(root), download=False, cache=True)
    assert torch.equal(again.train.images, good.train.images)
    assert "is unreadable" in caplog.text and "rebuilding" in caplog.text

    # A cache whose fingerprint no longer matches (here: planted with other tensors) is stale.
    torch.save(
        {
            "version": CACHE_VERSION,
            "fingerprint": "0" * 64,
            "classes": good.classes,
            "skipped": [],
            "splits": {
                "train": [good.train.images * 0, good.train.labels],
                "test": [good.test.images, good.test.labels],
            },
        },
        cache_file,
    )
    caplog.clear()
    again = cifar.load_cifar(spec, str(root), download=False, cache=True)
    assert torch.equal(again.train.images, good.train.images)
    assert "is stale" in caplog.text


def test_offline_download_of_cifar100_fails_clearly(tmp_path, monkeypatch):
    # Send the download through a proxy port that refuses connections: a real offline failure.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{port}")
    with pytest.raises(UserError) as err:
        load_dataset({"name": "cifar100", "root": str(tmp_path), "download": True})
    message = str(err.value)
    assert f"CIFAR-100 is not in {tmp_path}" in message and "could not be downloaded" in message
    assert "dataset=imagefolder" in message
    assert list(tmp_path.iterdir()) == []
