"""Inputs that used to end in a traceback, silence or advice that could not be followed: each is
one line naming the key and what to do, a non-zero exit, and nothing written where the config
alone can tell (RunDirGuard's checks)."""

import json
import signal

import pytest
from PIL import Image

from cifar_exp.errors import UserError
from helpers.cli import error_lines, output_in_process, run_in_process
from helpers.compare import snapshot
from helpers.overrides import TINY
from helpers.paths import CONF_DIR


def make_images(root, classes, per_class=4):
    for split in ("train", "test"):
        for i, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for k in range(per_class):
                color = (40 + 90 * i, 200 - 60 * i, 30 * k)
                Image.new("RGB", (32, 32), color).save(root / split / name / f"{k}.png")
    return root


def test_fewer_model_outputs_than_classes_is_refused_before_anything_is_written(tmp_path, capfd):
    run_dir = tmp_path / "run"
    assert (
        run_in_process(*TINY, "model.num_classes=3", f"hydra.run.dir={run_dir}", cwd=tmp_path) == 1
    )
    (line,) = error_lines(capfd)
    assert "model.num_classes=3 but the data set has 10 classes" in line
    assert "drop model.num_classes" in line
    assert not run_dir.exists()


def test_fewer_model_outputs_than_an_image_folders_classes_is_one_line(tmp_path, capfd):
    """The folder's classes are known once it is read: the run fails (manifest) with one line."""
    root = make_images(tmp_path / "images", ["a", "b", "c"])
    data = ["dataset=imagefolder", f"dataset.root={root}", f"dataset.cache_dir={tmp_path}/c"]
    args = ["device=cpu", "trainer.epochs=1", "trainer.batch_size=4", *data]
    run_dir = tmp_path / "run"
    code = run_in_process(*args, "model.num_classes=2", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert code == 1
    (line,) = error_lines(capfd)
    assert "model.num_classes=2 but the data set has 3 classes" in line
    info = json.loads((run_dir / "manifest.json").read_text())
    assert info["status"] == "failed" and "model.num_classes=2" in info["reason"]


def test_eval_on_a_dataset_root_with_other_classes_names_a_key_eval_takes(tmp_path):
    from hydra import compose, initialize_config_dir

    from cifar_exp.eval import evaluate_checkpoint

    two = make_images(tmp_path / "two", ["a", "b"])
    data = ["dataset=imagefolder", f"dataset.root={two}", f"dataset.cache_dir={tmp_path}/c"]
    args = ["device=cpu", "trainer.epochs=1", "trainer.batch_size=4", *data]
    assert run_in_process(*args, "hydra.run.dir=run", cwd=tmp_path) == 0
    three = make_images(tmp_path / "three", ["a", "b", "c"])
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("eval", [f"ckpt={tmp_path / 'run'}", f"dataset_root={three}"])
    with pytest.raises(UserError) as refused:
        evaluate_checkpoint(cfg, tmp_path / "eval")
    message = str(refused.value)
    assert f"dataset_root={three} has the classes ['a', 'b', 'c']" in message
    assert "trained on ['a', 'b']" in message and "dataset.num_classes" not in message


@pytest.mark.parametrize(
    "override, message",
    [
        ("hydra.sweeper.n_trials=-3", "hydra.sweeper.n_trials=-3 must be at least 1"),
        ("hydra.sweeper.n_jobs=0", "hydra.sweeper.n_jobs=0 must be at least 1"),
        ("hydra.sweeper.max_failure_rate=2", "max_failure_rate=2 must be in [0, 1]"),
        ("hydra.sweeper.mode=asap", "hydra.sweeper.mode=asap is not a search mode; choose one"),
        ("hydra.sweeper.pruner.name=often", "hydra.sweeper.pruner.name=often is not a pruner"),
        ("hydra.sweeper.heartbeat_interval=0", "hydra.sweeper.heartbeat_interval=0 must be an"),
        ("hydra.sweeper.grace_period=-5", "hydra.sweeper.grace_period=-5 must be an integer >="),
        ("hydra.sweeper.pruner.n_warmup_steps=-1", "pruner.n_warmup_steps=-1 must be an"),
    ],
)
def test_a_search_asked_for_no_trials_is_refused_before_its_folder_is_made(
    tmp_path, capfd, override, message
):
    sweep_dir = tmp_path / "sweep"
    args = ["hparams_search=optuna", *TINY, override, f"hydra.sweep.dir={sweep_dir}"]
    assert run_in_process(*args, cwd=tmp_path) == 1
    (line,) = error_lines(capfd)
    assert message in line
    assert not sweep_dir.exists()


def test_too_little_space_refuses_a_start_with_nothing_left_behind(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr("cifar_exp.records.checkpoint.free_bytes", lambda folder: 100_000)
    run_dir = tmp_path / "outputs" / "run"
    assert run_in_process(*TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path) == 1
    (line,) = error_lines(capfd)
    assert "only 0.1 MiB free in" in line and "a checkpoint needs about" in line
    assert list(tmp_path.iterdir()) == []


def test_too_little_space_refuses_a_resume_changing_nothing(tmp_path, monkeypatch, capfd):
    assert run_in_process(*TINY, "hydra.run.dir=run", cwd=tmp_path) == 0
    before = snapshot(tmp_path / "run")
    capfd.readouterr()
    monkeypatch.setattr("cifar_exp.records.checkpoint.free_bytes", lambda folder: 100_000)
    assert run_in_process("resume=run", "trainer.epochs=2", cwd=tmp_path) == 1
    (line,) = error_lines(capfd)
    assert "only 0.1 MiB free in" in line
    assert snapshot(tmp_path / "run") == before


def test_a_signal_after_the_run_finished_keeps_it_ok(tmp_path):
    """The stop's record never overwrites an ended run's: a SIGINT as the run ends."""
    from cifar_exp.lifecycle import Job
    from cifar_exp.records.manifest import RunManifest

    manifest = RunManifest(tmp_path)
    manifest.start()
    manifest.finish("ok")
    job = Job(cfg=None, run_dir=tmp_path, in_sweep=False, manifest=manifest)
    with pytest.raises(SystemExit) as stop:
        job.stopped(signal.SIGINT, "stopped at once by SIGINT")
    assert stop.value.code == 130
    assert json.loads((tmp_path / "manifest.json").read_text())["status"] == "ok"


@pytest.mark.parametrize("module", ["cifar_exp.eval", "cifar_exp.predict"])
def test_eval_and_predict_from_a_folder_they_cannot_write_in_say_so(tmp_path, module):
    """Where outputs/ cannot be made (a file is in the way; as root, permissions stop nothing,
    and a read-only mount gives the same OSError)."""
    (tmp_path / "outputs").write_text("")
    extra = ["images=x.png"] if module.endswith("predict") else []
    code, output = output_in_process("ckpt=missing", *extra, cwd=tmp_path, module=module)
    out = output
    assert code == 1 and "Traceback" not in out, out[-3000:]
    (line,) = out.strip().splitlines()
    assert "cannot write to the output directory" in line and "hydra.run.dir=..." in line
