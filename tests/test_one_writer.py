"""One writer per run folder (lock.py): a second process on a folder in use is refused before it
writes, naming the holder; the lock dies with its process. Real processes and real signals
for the command line; the lock itself against a small holder process."""

import logging

import pytest

from cifar_exp.errors import UserError
from cifar_exp.records import lock


def test_a_file_system_without_locks_warns_and_goes_on(tmp_path, monkeypatch, caplog):
    def no_locks(fd, operation):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(lock.fcntl, "flock", no_locks)
    with caplog.at_level(logging.WARNING, logger="cifar_exp"):
        lock.hold(tmp_path, "x")
    lock.release(tmp_path)
    assert "does not support locks" in caplog.text and "Function not implemented" in caplog.text
    assert lock.holder_of(tmp_path) is None


def test_an_unwritable_folder_is_one_user_error(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(UserError, match="cannot write to the output directory"):
        lock.hold(tmp_path / "a_file", "x")
