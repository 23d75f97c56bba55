"""tracker=[...,wandb]: the run in Weights & Biases, offline unless configured otherwise.

Mode: tracker.wandb.mode, else $WANDB_MODE, else offline: the run is written under
<run folder>/wandb/offline-run-<time>-<id>/ and uploaded later with
`wandb sync <run folder>/wandb/offline-run-*`. The W&B run id is derived from the run
folder (and kept in the checkpoints and manifest), so a resume reattaches to the same run
(resume="allow"); group = the sweep folder's name, job_type = the model. The per-epoch
values are plotted against `epoch`, the per-step ones against `optimizer_step`.

W&B cannot delete a logged point: the values a killed attempt logged after its checkpoint
stay in the run beside the resumed attempt's (TensorBoard, metrics.csv and MLflow have each
point once). wandb is imported here, only when the tracker is chosen.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from cifar_exp.errors import UserError
from cifar_exp.tracking.tags import STEP_TAGS, HParamValue

DEFAULT_PROJECT = "cifar-exp"
_EXIT = {"ok": 0, "failed": 1, "interrupted": 130}


def wandb_run_id(run_dir: Path) -> str:
    """A W&B run id for the run folder: the same folder, the same id."""
    return hashlib.sha256(str(run_dir.absolute()).encode()).hexdigest()[:16]


class WandbWriter:
    name = "wandb"

    def __init__(
        self, run_dir: Path, options: dict[str, Any], sweep_dir: Path | None, info: dict[str, Any]
    ) -> None:
        try:
            import wandb  # noqa: F401  (its absence is the one line below, before training)
        except ImportError as err:
            raise UserError(
                'tracker.wandb needs the wandb package: pip install -e ".[wandb]", or leave '
                "wandb out of tracker=[...]"
            ) from err
        self.run_dir = run_dir
        self.options = options
        self.sweep_dir = sweep_dir
        self.info = info
        self.mode = options.get("mode") or os.environ.get("WANDB_MODE") or "offline"
        self.run: Any = None
        self.plotted: set[str] = set()  # the per-epoch tags plotted against `epoch` already

    def start(self, hparams: dict[str, HParamValue], texts: dict[str, str], run_id: Any) -> str:
        import wandb

        run_id = run_id or wandb_run_id(self.run_dir)
        try:
            self.run = wandb.init(
                project=self.options.get("project") or DEFAULT_PROJECT,
                entity=self.options.get("entity"),
                id=run_id,
                resume="allow",
                mode=self.mode,
                dir=str(self.run_dir),
                name=self.run_dir.name,
                group=self.sweep_dir.name if self.sweep_dir else None,
                job_type=str(self.info.get("model", "")) or None,
                config={**hparams, "overrides": texts.get("overrides", "")},
                settings=wandb.Settings(console="off", silent=True),
            )
        except Exception as err:
            raise UserError(
                f"tracker.wandb could not start its run ({type(err).__name__}: "
                f"{' '.join(str(err).split())[:300]}); run `wandb login`, set "
                "tracker.wandb.mode=offline, or leave wandb out of tracker=[...]"
            ) from err
        self.run.define_metric("epoch")
        self.run.define_metric("optimizer_step")
        for tag in STEP_TAGS:
            self.run.define_metric(tag, step_metric="optimizer_step")
        return run_id

    def continue_from(self, epoch: int, step: int) -> None:
        """Nothing to cut: W&B keeps what was logged (see the module's docstring)."""

    def log_step(self, step: int, epoch: int, values: dict[str, float]) -> None:
        self.run.log({**values, "optimizer_step": step})

    def log_epoch(self, epoch: int, step: int | None, values: dict[str, float]) -> None:
        for tag in values.keys() - self.plotted:
            self.run.define_metric(tag, step_metric="epoch")
            self.plotted.add(tag)
        self.run.log({**values, "epoch": epoch})

    def log_figure(self, tag: str, figure: Any, step: int) -> None:
        import wandb

        self._picture(tag, wandb.Image(figure), step)

    def log_image(self, tag: str, image: Any, step: int) -> None:
        import wandb

        self._picture(tag, wandb.Image(image.permute(1, 2, 0).cpu().numpy()), step)

    def _picture(self, tag: str, picture: Any, epoch: int) -> None:
        if tag not in self.plotted:
            self.run.define_metric(tag, step_metric="epoch")
            self.plotted.add(tag)
        self.run.log({tag: picture, "epoch": epoch})

    def end(self, status: str, reason: str | None, final: dict[str, Any] | None) -> None:
        if self.run is None:
            return
        if final is not None:
            self.run.summary.update({f"final/{k}": v for k, v in final.items()})
        if reason:
            self.run.summary["failure_reason"] = reason
        self.run.finish(exit_code=_EXIT[status])
