"""`hydra/launcher=ray`: a sweep's jobs as Ray tasks, on an existing cluster or a local one.

Each job is one Ray task (`cpus_per_task` CPUs, `gpus_per_task` GPUs) that composes the job's
config and runs it as the basic launcher would, in the worker process Ray gives it. The
sweep waits for the tasks of one launch; the asynchronous search launches one job at a time
from each of its workers, so Ray always has `n_jobs` trials in flight.

Written on Ray itself (no hydra-ray-launcher: its latest release pins cloudpickle<3, which the
joblib launcher's joblib no longer accepts). Ray is imported only when a sweep launches.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)
_connect = threading.Lock()  # the async search's workers launch from several threads


def run_one(
    number: int,
    overrides: Sequence[str],
    context: HydraContext,
    config: DictConfig,
    task: TaskFunction,
    state: dict[Any, Any],
    environment: dict[str, str],
) -> JobReturn:
    """One job, in a Ray worker: this sweep's Hydra state and environment (the swept keys
    that name job folders: a cluster's workers do not inherit the sweep's), the job's
    config, then the job."""
    os.environ.update(environment)
    setup_globals()
    Singleton.set_state(state)
    job_config = context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(job_config):
        job_config.hydra.job.id = f"{job_config.hydra.job.name}_{number}"
        job_config.hydra.job.num = number
    HydraConfig.instance().set_config(job_config)
    return run_job(
        hydra_context=context,
        config=job_config,
        task_function=task,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


class RayLauncher(Launcher):
    def __init__(
        self,
        address: str | None = None,
        cpus_per_task: float = 1,
        gpus_per_task: float = 0,
        runtime_env: dict | None = None,
    ) -> None:
        self.address = address
        self.resources = {"num_cpus": cpus_per_task, "num_gpus": gpus_per_task}
        self.runtime_env = runtime_env
        self.config: DictConfig | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.context, self.task = config, hydra_context, task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import ray

        assert self.config is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        self.connect(ray)
        for k, overrides in enumerate(job_overrides):
            log.info("\t#%d : %s", initial_job_idx + k, " ".join(filter_overrides(overrides)))
        remote = ray.remote(max_retries=0, **self.resources)(run_one)
        shared = (self.context, self.config, self.task, Singleton.get_state(), sweep_environment())
        pending = [
            remote.remote(initial_job_idx + k, list(o), *shared)
            for k, o in enumerate(job_overrides)
        ]
        return ray.get(pending)

    def connect(self, ray: Any) -> None:
        """Join the cluster at `address` once (a local one of this machine when null); an
        address where nothing listens ends the sweep with one line, before any job."""
        with _connect:
            if ray.is_initialized():
                return
            if self.address not in (None, "auto", "local") and not listening(self.address):
                log.error(
                    "nothing listens at hydra.launcher.address=%s: start the cluster's head "
                    "(ray start --head --port=<port>) or give its address (host:port, or "
                    "ray://host:10001 for Ray's client)",
                    self.address,
                )
                sys.exit(1)
            options: dict[str, Any] = {"log_to_driver": False}
            if self.runtime_env:
                options["runtime_env"] = OmegaConf.to_container(OmegaConf.create(self.runtime_env))
            if self.address in (None, "local"):
                # A new Ray of this machine (never one an earlier session left, which
                # address=None would look for), on the loopback address, which every machine
                # reaches (its own outward address may be closed), without a dashboard.
                options.update(_node_ip_address="127.0.0.1", include_dashboard=False)
            ray.init(address=self.address or "local", **options)
            log.info("Ray: %s", ray.cluster_resources())


def sweep_environment() -> dict[str, str]:
    from cifar_exp.records.naming import SWEPT_KEYS_ENV

    return {k: v for k, v in os.environ.items() if k == SWEPT_KEYS_ENV}


def listening(address: str) -> bool:
    """Whether a TCP connection to host:port (ray://host:port) opens within 5 seconds."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=5):
            return True
    except (OSError, ValueError):
        return False
