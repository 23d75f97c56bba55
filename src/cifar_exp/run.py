"""Entrypoint: `python -m cifar_exp.run [group=option ...] [key=value ...]`.

Hydra composes the config from conf/; the job starts (lifecycle.py), the Trainer is built
(build.py) and fit (engine.py), and the job returns the value sweepers optimize: the final
validation accuracy when `dataset.val_size` holds out a validation split, else the final test
accuracy. `resume=<run dir or checkpoint>` continues a run from its checkpoint, in its own
directory.
"""

from __future__ import annotations

import sys

from cifar_exp.runtime.signals import quiet_start  # standard library only: at once

# Run as a program (python -m cifar_exp.run, the cifar-exp console script), not imported.
with quiet_start(enabled=__name__ == "__main__" or sys.argv[0].endswith("cifar-exp")):
    import hydra
    from omegaconf import DictConfig

    from cifar_exp.errors import UserError
    from cifar_exp.hydra_setup import CONFIG_DIR, setup_hydra
    from cifar_exp.lifecycle import Job, start_job
    from cifar_exp.records import lock
    from cifar_exp.runtime import distributed
    from cifar_exp.runtime.signals import gate
    from cifar_exp.sweeps import dry_run
    from cifar_exp.training.build import ready_trainer


class TrainJob:
    """The task Hydra runs, for a run or each job of a sweep: start the job, build its
    Trainer, fit, return its metric. Launchers send it to their workers (joblib, submitit) by
    pickling; unpickled there, it first registers the schemas and resolvers (__reduce__)."""

    def __call__(self, cfg: DictConfig) -> float | None:
        job = Job.of_hydra(cfg)
        # A sweep job run by several tasks of a Slurm job joins their process group first.
        with distributed.joined(), job.stops_recorded():
            if start_job(job):
                with job.recorded():
                    job.trainer = ready_trainer(
                        job.cfg,
                        job.run_dir,
                        job.manifest,
                        job.checkpoint,
                        job.overrides,
                        job.run_dir.parent if job.in_sweep else None,
                    )
                    with gate.training():
                        job.succeeded(job.trainer.fit(gate))
        return job.metric

    def __reduce__(self) -> tuple:
        return (registered_task, ())


def registered_task() -> TrainJob:
    setup_hydra()
    return TrainJob()


hydra_main = hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")(
    TrainJob()
)


def main() -> None:
    """`python -m cifar_exp.run`, alone or as each of torchrun's processes. From its first
    line to its last, SIGINT and SIGTERM end it as signals.py says; the run folder's lock
    (lock.py) is let go as it returns, or when the process ends."""
    with gate.handled():
        try:
            dry_run.take_flag(sys.argv)  # --dry-run: print what would run, run nothing
            setup_hydra(sys.argv[1:])
            try:
                here = distributed.setup()
            except UserError as err:  # a scheduler's variables that disagree
                print(f"error: {err}", file=sys.stderr)
                sys.exit(1)
            if not here.is_main:
                # Rank 0 alone writes the run directory's .hydra/ record.
                sys.argv.append("hydra.output_subdir=null")
            if not here.distributed:
                hydra_main()
                return
            distributed.run_to_exit(gate.handled()(hydra_main))
        finally:
            lock.release_all()


if __name__ == "__main__":
    # Run the function under its importable name, not __main__'s copy: launchers that send
    # the task to other processes (joblib, submitit) pickle it by reference.
    from cifar_exp.run import main as entrypoint

    entrypoint()
