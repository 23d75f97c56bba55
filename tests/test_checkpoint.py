"""Checkpoints, exact resume and failure handling, in-process (build.ready_trainer, fit).

Faults are injected by a registered LeNet5 subclass whose n-th training forward sends this
process a real SIGINT, returns NaN logits, or raises torch's CUDA out-of-memory error; the
rest (Hydra composition, training loop, checkpoint files) is the real thing.
"""

import json
import math
import os
import signal
from dataclasses import dataclass
from importlib import metadata

import pytest
import torch
from hydra.core.config_store import ConfigStore

from cifar_exp.components.guards import NonFiniteLoss, OutOfMemory
from cifar_exp.errors import UserError
from cifar_exp.models import MODELS, ModelOptions
from cifar_exp.models.lenet import LeNet5
from cifar_exp.records.checkpoint import (
    Checkpointer,
    find_checkpoint,
    load_checkpoint,
    load_states,
)
from cifar_exp.runtime.signals import Interrupted
from helpers.compare import assert_same_run, assert_same_state, assert_same_tensorboard
from helpers.events import hparams_session, tensorboard_points
from helpers.overrides import TINY


class Faulty(LeNet5):
    """LeNet5 whose `at`-th training forward injects `fault`; `dropout` on the logits makes
    training draw from torch's global random generator."""

    def __init__(
        self, num_classes: int = 10, fault: str = "none", at: int = 0, dropout: float = 0.0
    ) -> None:
        super().__init__(num_classes)
        self.fault, self.at, self.calls, self.dropout = fault, at, 0, dropout

    def forward(self, x):
        out = torch.nn.functional.dropout(super().forward(x), self.dropout, self.training)
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                if self.fault == "sigint":
                    os.kill(os.getpid(), signal.SIGINT)
                elif self.fault == "nan_logits":
                    out = out * float("nan")
                elif self.fault == "oom":
                    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return out


@dataclass
class FaultyOptions(ModelOptions):
    fault: str = "none"
    at: int = 0
    dropout: float = 0.0


@pytest.fixture
def faulty():
    MODELS.register("faulty", FaultyOptions)(
        lambda o: Faulty(o.num_classes, o.fault, o.at, o.dropout)
    )
    ConfigStore.instance().store(group="model", name="faulty", node=FaultyOptions(name="faulty"))
    yield
    MODELS._entries.pop("faulty")


@pytest.fixture
def run(compose, faulty):
    """run(name, fault, at, *overrides, checkpoint=None): train in-process, 3 epochs of 8 steps."""
    from cifar_exp.runtime.signals import gate
    from cifar_exp.training.build import ready_trainer

    def go(run_dir, fault="none", at=0, *overrides, checkpoint=None):
        cfg = compose(
            [
                *TINY,
                "trainer.epochs=3",
                "model=faulty",
                f"model.fault={fault}",
                f"model.at={at}",
                *overrides,
            ]
        )
        trainer = ready_trainer(cfg, run_dir, checkpoint=checkpoint)
        with gate.training() as stop:
            return trainer.fit(stop)

    return go


def test_checkpoint_holds_everything_to_continue(run, tmp_path):
    run(tmp_path / "run")
    state = load_checkpoint(find_checkpoint(str(tmp_path / "run")))
    assert {"model", "optimizer", "scheduler", "progress", "tracker", "rng"} <= state.keys()
    assert state["progress"]["epoch"] == 3 and state["progress"]["step"] == 24
    assert state["progress"]["batch"] == 0
    assert {"python", "numpy", "torch"} <= state["rng"].keys()
    assert "name: faulty" in state["config"] and "batch_size: 32" in state["config"]
    assert state["classes"] == [f"class_{i}" for i in range(10)]
    assert state["input_shape"] == [3, 32, 32]
    assert state["versions"]["torch"] == metadata.version("torch")
    assert len(state["tracker"]["metrics"]["epochs"]) == 3
    # best.pt is the epoch with the best test accuracy (the selection metric without a val split)
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    accs = [e["test_acc"] for e in state["tracker"]["metrics"]["epochs"]]
    assert best["progress"]["epoch"] == accs.index(max(accs)) + 1
    assert not list((tmp_path / "run" / "checkpoints").glob(".tmp-*"))


class Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs."""


def test_a_kill_while_the_first_best_is_written_leaves_a_resume_that_writes_it(
    run, tmp_path, monkeypatch
):
    from cifar_exp.records import checkpoint

    write = checkpoint.write_bytes_atomically

    def dies_writing_best(path, payload, then=""):
        if path.name == "best.pt":
            path.with_name(".tmp-best.pt.1").write_bytes(payload[:100])  # half written
            raise Killed
        write(path, payload, then)

    monkeypatch.setattr(checkpoint, "write_bytes_atomically", dies_writing_best)
    with pytest.raises(Killed):
        run(tmp_path / "run")
    # last.pt records the best accuracy so far: it must not exist without best.pt beside it.
    folder = tmp_path / "run" / "checkpoints"
    assert not (folder / "last.pt").exists() and not (folder / "best.pt").exists()
    monkeypatch.setattr(checkpoint, "write_bytes_atomically", write)
    run(tmp_path / "run")
    assert load_checkpoint(folder / "best.pt")["progress"]["epoch"] >= 1
    assert not list(folder.glob(".tmp-*"))


def test_sigint_mid_epoch_saves_and_resumes_bitwise_exact(run, tmp_path):
    run(tmp_path / "ref")
    handler_before = signal.getsignal(signal.SIGINT)
    # The 11th step is the 3rd of epoch 2: a real SIGINT arrives in the middle of the step.
    with pytest.raises(Interrupted) as stop:
        run(tmp_path / "run", "sigint", 11)
    assert stop.value.signum == signal.SIGINT and stop.value.exit_code == 130
    assert f"resume={tmp_path / 'run'}" in str(stop.value)
    assert signal.getsignal(signal.SIGINT) is handler_before  # handlers restored
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert (state["progress"]["epoch"], state["progress"]["batch"]) == (1, 3)
    assert state["progress"]["step"] == 11

    # TensorBoard has no "interrupted" status: HParams shows it as unknown, not as failed.
    assert hparams_session(tmp_path / "run")[1] == "STATUS_UNKNOWN"

    run(tmp_path / "run", checkpoint=state)
    assert_same_run(tmp_path / "ref", tmp_path / "run")
    assert_same_tensorboard(tmp_path / "ref", tmp_path / "run")
    assert hparams_session(tmp_path / "run")[1] == "STATUS_SUCCESS"  # the same session, ended


def test_resume_restores_the_random_state_training_draws_from(run, tmp_path):
    """Dropout draws from torch's global generator: only a restored RNG resumes exactly."""
    run(tmp_path / "ref", "none", 0, "model.dropout=0.3")
    with pytest.raises(Interrupted):
        run(tmp_path / "run", "sigint", 11, "model.dropout=0.3")
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    run(tmp_path / "run", "none", 0, "model.dropout=0.3", checkpoint=state)
    assert_same_run(tmp_path / "ref", tmp_path / "run")


def test_sigint_mid_epoch_resume_is_exact_with_augmentation_and_a_val_split(run, tmp_path):
    # 64 of the 256 training images become the val split: 6 steps of 32 per epoch. Crops,
    # flips and the normalization statistics must all come out the same after the resume.
    # With this learning rate val accuracy peaks in epoch 1 (measured: 7, 6, 5 of 64 right),
    # before the interrupt: the resumed run must remember that best and leave best.pt alone.
    options = (
        "augment=standard",
        "augment.normalize=true",
        "dataset.val_size=64",
        "optimizer.lr=0.003",
    )
    run(tmp_path / "ref", "none", 0, *options)
    # The 9th step is the 3rd of epoch 2.
    with pytest.raises(Interrupted):
        run(tmp_path / "run", "sigint", 9, *options)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert (state["progress"]["epoch"], state["progress"]["batch"]) == (1, 3)
    assert state["progress"]["step"] == 9
    assert "crop_padding: 4" in state["config"] and "normalize: true" in state["config"]

    final = run(tmp_path / "run", "none", 0, *options, checkpoint=state)
    assert_same_run(tmp_path / "ref", tmp_path / "run")
    assert_same_tensorboard(tmp_path / "ref", tmp_path / "run")

    # Per-epoch evaluation and best.pt use the val split; the test split is scored at the end.
    epochs = json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"]
    assert all("val_acc" in e and "test_acc" not in e for e in epochs)
    val_accs = [e["val_acc"] for e in epochs]
    assert all(round(acc * 64, 6).is_integer() for acc in val_accs)  # counts over 64 images
    assert final["best_val_acc"] == max(val_accs)
    assert {"val_acc", "test_acc"} <= final.keys()
    best = {
        name: load_checkpoint(tmp_path / name / "checkpoints" / "best.pt")
        for name in ("ref", "run")
    }
    assert best["run"]["progress"]["epoch"] == val_accs.index(max(val_accs)) + 1 == 1
    assert best["run"]["progress"]["best_acc"] == max(val_accs)
    assert_same_state(best["ref"]["model"], best["run"]["model"])


def test_nonfinite_loss_stops_naming_the_step_and_keeps_the_good_checkpoint(run, tmp_path):
    with pytest.raises(NonFiniteLoss) as err:
        run(tmp_path / "run", "nan_logits", 11)
    message = str(err.value)
    assert "non-finite (NaN or inf) at step 11 (epoch 2)" in message
    assert "the last finite loss was" in message and "at step 10" in message
    assert "(end of epoch 1, step 8) is intact" in message
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["progress"]["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    # HParams lists the run as failed, with the metrics it reached (epoch 1's test accuracy).
    assert hparams_session(tmp_path / "run")[1] == "STATUS_FAILURE"
    assert [step for step, _ in tensorboard_points(tmp_path / "run")["test/acc"]] == [1]


def test_nonfinite_loss_can_be_trained_through(run, tmp_path):
    final = run(tmp_path / "run", "nan_logits", 11, "trainer.stop_on_nonfinite=false")
    assert math.isnan(final["train_loss"])


def test_out_of_memory_suggests_a_smaller_batch_and_keeps_the_checkpoint(run, tmp_path):
    with pytest.raises(OutOfMemory) as err:
        run(tmp_path / "run", "oom", 11)
    message = str(err.value)
    assert "out of memory on cpu during training with trainer.batch_size=32" in message
    assert "trainer.batch_size=16" in message and "(end of epoch 1, step 8) is intact" in message
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["progress"]["epoch"] == 1


def test_too_little_disk_space_is_refused_before_training(run, tmp_path, monkeypatch):
    # A full disk cannot be made in a test; the check reads the real free space through this.
    monkeypatch.setattr("cifar_exp.records.checkpoint.free_bytes", lambda folder: 100_000)
    with pytest.raises(UserError, match=r"only 0.1 MiB free in .*a checkpoint needs about"):
        run(tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    model = LeNet5()
    Checkpointer(folder, {"model": model}, {"config": "model:\n  name: lenet5\n"}).save("test")
    return folder / "last.pt"


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[: len(b) // 2], "is truncated or corrupted"),
        (lambda b: b"not a checkpoint at all" * 10, "is truncated or corrupted"),
        (lambda b: b[:100] + bytes(200) + b[300:], "is truncated or corrupted"),
    ],
)
def test_damaged_checkpoints_give_one_clear_error(good_checkpoint, tmp_path, damage, message):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(damage(good_checkpoint.read_bytes()))
    with pytest.raises(UserError, match=message):
        load_checkpoint(bad)


def test_checkpoints_that_could_run_code_or_are_foreign_are_refused(tmp_path):
    import fractions

    torch.save({"format": "cifar-exp-checkpoint", "x": fractions.Fraction(1, 2)}, tmp_path / "a")
    with pytest.raises(UserError, match="not loaded \\(it could run code\\)"):
        load_checkpoint(tmp_path / "a")
    torch.save({"weights": torch.ones(2)}, tmp_path / "b")
    with pytest.raises(UserError, match="is not a cifar-exp checkpoint"):
        load_checkpoint(tmp_path / "b")
    with pytest.raises(UserError, match="no such checkpoint or run directory"):
        find_checkpoint(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="holds no checkpoint"):
        find_checkpoint(str(tmp_path))


def test_checkpoint_of_another_model_or_class_count_does_not_fit(good_checkpoint):
    state = load_checkpoint(good_checkpoint)
    with pytest.raises(UserError, match="does not fit this run's model: .*size mismatch"):
        load_states(state, {"model": LeNet5(num_classes=5)}, good_checkpoint)
    with pytest.raises(UserError, match="does not fit this run's model: .*Missing key"):
        load_states(state, {"model": MODELS.build({"name": "resnet20"})}, good_checkpoint)
    with pytest.raises(UserError, match="has no 'optimizer' state"):
        load_states(state, {"optimizer": torch.optim.SGD(LeNet5().parameters())}, good_checkpoint)
