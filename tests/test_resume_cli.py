"""Resume, interruption and failures as users meet them: real processes for signals and exit
messages, the same entrypoint in-process for runs that are only looked at."""

import json

import pytest
from omegaconf import OmegaConf

from cifar_exp.errors import UserError
from cifar_exp.training.resume import resume_config, saved_config
from helpers.cli import output_in_process, run_in_process
from helpers.events import hparams_session, tensorboard_points
from helpers.outputs import manifest
from helpers.overrides import TINY
from helpers.runs import copy_of, trained


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished two-epoch run; tests work on copies of it."""
    return trained(tmp_path_factory.mktemp("finished"), *TINY, "trainer.epochs=2")


def test_resume_with_more_epochs_extends_metrics_and_tensorboard(finished, tmp_path):
    run_dir = copy_of(finished, tmp_path)
    assert run_in_process(f"resume={run_dir}", "trainer.epochs=3", cwd=tmp_path) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]
    assert metrics["final"]["epochs"] == 3
    points = tensorboard_points(run_dir)
    assert [step for step, _ in points["test/acc"]] == [1, 2, 3]
    assert [step for step, _ in points["train_step/loss"]] == list(range(2, 25, 2))
    assert not [tag for tag in points if tag.startswith("final/")]
    # One HParams session, the resumed attempt's: its hyperparameters, ended as a success.
    hparams, status = hparams_session(run_dir)
    assert (hparams["trainer.epochs"], status) == (3, "STATUS_SUCCESS")
    assert not (run_dir / ".hydra" / "overrides.yaml").read_text().count("resume")
    assert len(list(tmp_path.glob("outputs"))) == 0  # no stray new run folder


def test_resume_moves_event_files_out_of_the_tensorboard_folder_earlier_versions_used(
    finished, tmp_path
):
    run_dir = copy_of(finished, tmp_path)
    (run_dir / "tensorboard").mkdir()
    for path in run_dir.glob("events.out.tfevents.*"):
        path.rename(run_dir / "tensorboard" / path.name)
    assert run_in_process(f"resume={run_dir}", "trainer.epochs=3", cwd=tmp_path) == 0
    assert not (run_dir / "tensorboard").exists()
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert [step for step, _ in tensorboard_points(run_dir)["test/acc"]] == [1, 2, 3]


def test_resume_config_allows_harmless_changes_only(compose):
    run_cfg = compose(["dataset=synthetic", "scheduler=cosine"])
    saved = saved_config(OmegaConf.to_yaml(run_cfg, resolve=True), "x")

    def resume(*overrides, completed=1):
        requested = compose(["dataset=synthetic", "scheduler=cosine", *overrides])
        return resume_config(saved, requested, list(overrides), completed)

    assert resume("trainer.log_every_n_steps=7").trainer.log_every_n_steps == 7
    assert resume("dataset=synthetic").dataset == saved.dataset  # restating is no change
    assert resume("device=cpu").device.type == "cpu"
    with pytest.raises(UserError, match="trainer.epochs cannot change with scheduler=cosine"):
        resume("trainer.epochs=20")
    with pytest.raises(UserError, match="resume: model.name would change the experiment"):
        resume("model=resnet20")
    with pytest.raises(UserError, match="resume: trainer.batch_size would change"):
        resume("trainer.batch_size=64")
    with pytest.raises(UserError, match="trainer.epochs=1 but the run has already completed 3"):
        plain = saved_config(OmegaConf.to_yaml(compose(), resolve=True), "x")
        resume_config(plain, compose(["trainer.epochs=1"]), ["trainer.epochs=1"], 3)
    more = compose(["trainer.epochs=30"])
    assert resume_config(plain, more, ["trainer.epochs=30"], 3).trainer.epochs == 30
    ramped = ["trainer.ema_decay=0.5", "trainer.ema_ramp_pow=3"]
    saved = saved_config(OmegaConf.to_yaml(compose(ramped), resolve=True), "x")
    with pytest.raises(UserError, match="cannot change with trainer.ema_ramp_pow=3"):
        resume_config(saved, compose([*ramped, "trainer.epochs=30"]), ["trainer.epochs=30"], 3)


def test_what_counts_as_a_run_worth_keeping(tmp_path):
    from cifar_exp.records.run_folder import previous_run

    assert previous_run(tmp_path) is None
    (tmp_path / "manifest.json").write_text('{"status": "failed"}')
    assert previous_run(tmp_path) is None  # failed before its first epoch: nothing to keep
    (tmp_path / "manifest.json").write_text('{"status": "interrupted"}')
    (tmp_path / "checkpoints").mkdir()
    assert previous_run(tmp_path) is None  # stopped by a signal before its first checkpoint
    (tmp_path / "manifest.json").write_text('{"status": "failed"}')
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"")
    assert previous_run(tmp_path) == "checkpoints"
    for status in ("ok", "running", "interrupted"):
        (tmp_path / "manifest.json").write_text(json.dumps({"status": status}))
        assert previous_run(tmp_path) == f"manifest.json (status: {status})"
    # Killed (still "running") or interrupted before its first checkpoint: the epochs its
    # metrics.json lists cannot be continued, so a new run may start there.
    (tmp_path / "checkpoints" / "last.pt").unlink()
    (tmp_path / "metrics.json").write_text('{"epochs": [{"epoch": 1}], "final": null}')
    for status in ("running", "interrupted"):
        (tmp_path / "manifest.json").write_text(json.dumps({"status": status}))
        assert previous_run(tmp_path) is None
    (tmp_path / "manifest.json").unlink()
    assert previous_run(tmp_path) == "metrics.json"  # a run from before manifests: kept
    for torn in ('{"status": "ok"', "[1, 2]"):  # a torn write, a file edited by hand
        (tmp_path / "manifest.json").write_text(torn)
        assert previous_run(tmp_path) == "manifest.json (status: unreadable)"


def test_refused_resumes_change_nothing(finished, tmp_path):
    run_dir = copy_of(finished, tmp_path)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    for overrides, message in [
        (
            ["optimizer.lr=0.1"],
            "resume: optimizer.lr would change the experiment (the run has "
            "optimizer.lr=0.001, the override gives 0.1)",
        ),
        ([], "already finished its 2 epochs; to train longer add trainer.epochs=<more>"),
    ]:
        code, output = output_in_process(f"resume={run_dir}", *overrides, cwd=tmp_path)
        assert code == 1 and message in output, output[-2000:]
        assert "Traceback" not in output
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert after.keys() - before.keys() == set()
    # run.log has the refusals' lines; .lock names the last process that held the folder.
    assert all(after[p] == before[p] for p in before if p.name not in ("run.log", ".lock"))


def test_a_finished_run_directory_is_never_overwritten(finished, tmp_path):
    run_dir = copy_of(finished, tmp_path)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    code, output = output_in_process(
        *TINY, "model=resnet20", f"hydra.run.dir={run_dir}", cwd=tmp_path
    )
    assert code == 1
    assert f"{run_dir} already holds a run (manifest.json (status: ok))" in output
    assert f"resume={run_dir}" in output
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_output_directory_that_cannot_be_written_is_refused_at_start(tmp_path):
    (tmp_path / "a_file").write_text("")
    code, output = output_in_process(
        *TINY, f"hydra.run.dir={tmp_path / 'a_file' / 'run'}", cwd=tmp_path
    )
    assert code == 1
    assert f"cannot write to the output directory {tmp_path / 'a_file' / 'run'}" in output
    assert "hydra.run.dir=..." in output and "Traceback" not in output


def test_nonfinite_loss_from_the_command_line(tmp_path):
    run_dir = tmp_path / "run"
    code, output = output_in_process(
        *TINY, "optimizer=sgd", "optimizer.lr=1e30", f"hydra.run.dir={run_dir}", cwd=tmp_path
    )
    assert code == 1
    assert "the training loss became non-finite (NaN or inf) at step 2 (epoch 1)" in output
    assert "no checkpoint was written yet" in output
    assert "Traceback" not in output
    info = manifest(run_dir)
    assert info["status"] == "failed" and "non-finite" in info["reason"]
    assert info["device"] == "cpu" and info["end_time"] and info["host"]
