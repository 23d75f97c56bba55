"""Training in several processes under torchrun (DistributedDataParallel).

torchrun starts one process per device and tells each its place through the environment
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT); a scheduler's job of several tasks (srun,
submitit's tasks_per_node, also a sweep's job) tells it through its own (SLURM_PROCID, ...),
which `setup` exports as torchrun's before it joins. `setup` joins the process group before
Hydra composes the config, so that every process resolves the same run directory: the
`${launch_time:}` and `${pid:}` resolvers in `hydra.run.dir` give rank 0's start time and
process id on all ranks. Without torchrun everything here is a no-op for one process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
import traceback
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cifar_exp.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Place:
    """This process's place in the launch: rank among world_size, local_rank on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


_launch: tuple[float, int] | None = None  # (start time, process id) shared by every rank


def place() -> Place:
    """Where this process stands: from torchrun's environment variables, else from the tasks
    of its job when Slurm (srun, submitit) or submitit's local executor started several."""
    if "RANK" in os.environ or "WORLD_SIZE" in os.environ:
        return Place(
            rank=int(os.environ.get("RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        )
    tasks = job_tasks()
    return Place() if tasks is None else tasks.place


@dataclass(frozen=True)
class JobTasks:
    """A job's processes as the scheduler started them, with what torch's env:// rendezvous
    needs: the first node's address and a port of the job's own."""

    place: Place
    address: str
    port: int


def job_tasks() -> JobTasks | None:
    """The tasks of a Slurm job step (srun; submitit's jobs on Slurm) from SLURM_PROCID,
    SLURM_LOCALID, SLURM_STEP_NUM_TASKS (SLURM_NTASKS must agree) and the first node of the
    step's node list; or those of submitit's local executor (SUBMITIT_LOCAL_*). None for a
    single task, or outside a job step (a batch script's own shell is no task of a step)."""
    env = os.environ
    if "SUBMITIT_LOCAL_GLOBALID" in env:
        names = ("SUBMITIT_LOCAL_GLOBALID", "SUBMITIT_LOCAL_LOCALID", "SUBMITIT_LOCAL_NTASKS")
        address, job = "127.0.0.1", env.get("SUBMITIT_LOCAL_JOB_ID", "0")
    elif "SLURM_STEP_NUM_TASKS" in env and "SLURM_PROCID" in env:
        names = ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_STEP_NUM_TASKS")
        nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", "127.0.0.1")
        address, job = (
            first_node(nodes),
            f"{env.get('SLURM_JOB_ID', 0)}.{env.get('SLURM_STEP_ID', 0)}",
        )
    else:
        return None
    try:
        rank, local_rank, tasks = (int(env.get(name, 0)) for name in names)
    except ValueError:
        raise UserError(
            f"{', '.join(f'{n}={env.get(n)}' for n in names)}: not whole numbers"
        ) from None
    problem = None
    if not 0 <= local_rank <= rank < tasks:
        problem = f"{names[0]}={rank} and {names[1]}={local_rank} do not fit {names[2]}={tasks}"
    elif names[0] == "SLURM_PROCID" and int(env.get("SLURM_NTASKS", tasks)) != tasks:
        problem = f"SLURM_NTASKS={env['SLURM_NTASKS']} but SLURM_STEP_NUM_TASKS={tasks}"
    if problem:
        raise UserError(f"the job's task variables disagree: {problem}; start the tasks with srun")
    if tasks == 1:
        return None
    port = int(env.get("MASTER_PORT") or 20000 + zlib.crc32(job.encode()) % 40000)
    return JobTasks(Place(rank, tasks, local_rank), address, port)


def first_node(nodes: str) -> str:
    """The first host of a Slurm node list: 'gpu[03-05,9],cpu1' -> 'gpu03'."""
    head = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodes.strip())
    if head is None:
        raise UserError(f"cannot read the first node of the node list {nodes!r}")
    prefix, ranges = head.groups()
    return prefix + (ranges.split(",")[0].split("-")[0] if ranges else "")


def setup() -> Place:
    """Join the process group of a launch of several processes (torchrun's, or the tasks of a
    Slurm or submitit job, whose variables are exported as torchrun's first) and agree on the
    launch stamp.

    Gloo carries CPU tensors and NCCL CUDA tensors, so the `device` the model runs on
    decides which one the gradients travel through.
    """
    global _launch
    torchrun = "RANK" in os.environ or "WORLD_SIZE" in os.environ
    tasks = None if torchrun else job_tasks()
    here = place() if tasks is None else tasks.place
    stamp = torch.tensor([time.time(), os.getpid()], dtype=torch.float64)
    if here.distributed and not dist.is_initialized():
        if tasks is not None:
            os.environ.update(
                MASTER_ADDR=tasks.address,
                MASTER_PORT=str(tasks.port),
                RANK=str(here.rank),
                WORLD_SIZE=str(here.world_size),
                LOCAL_RANK=str(here.local_rank),
            )
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        dist.broadcast(stamp, src=0)
    _launch = (float(stamp[0]), int(stamp[1]))
    return here


@contextlib.contextmanager
def joined() -> Iterator[None]:
    """A sweep job run by several tasks of a scheduler's job (submitit's tasks_per_node, srun):
    its process group, joined for the job and left after it. Nothing for a job of one
    process, or one whose process group exists (torchrun's, joined by run.py)."""
    if dist.is_initialized() or not place().distributed:
        yield
        return
    setup()
    finished = False
    try:
        yield
        finished = True
    finally:
        teardown(finished)


def teardown(finished: bool) -> None:
    """Leave the process group. After a run that `finished`, first wait for every rank, so
    that no process tears down its connections while another still reduces over them."""
    if not dist.is_initialized():
        return
    if finished:
        dist.barrier()
    dist.destroy_process_group()


# What a collective raises when another process of the launch is gone (Gloo's TCP pairs,
# NCCL's connections): killed, crashed, or out of memory.
PEER_GONE = ("connection reset by peer", "connection closed by peer", "broken pipe")


def peer_gone(err: BaseException) -> str | None:
    """Why a torchrun worker's collective failed, when it is that another process of the
    launch ended (e.g. 'connection reset by peer'); None for any other error."""
    if not place().distributed or not isinstance(err, RuntimeError):
        return None
    text = str(err).lower()
    return next((words for words in PEER_GONE if words in text), None)


def run_to_exit(task: Callable[[], object]) -> NoReturn:
    """Run a torchrun worker's `task`, leave the process group, and end the process with the
    status the task would have ended it with."""
    code = exit_code(task)
    try:
        teardown(finished=code == 0)
    except Exception as err:  # a peer that died mid-teardown: the launch has failed anyway
        if peer_gone(err) is None:
            traceback.print_exc()
        code = code or 1
    end_process(code)


def exit_code(task: Callable[[], object]) -> int:
    """Run `task`; the exit status the process would have ended with (0 when it returns)."""
    try:
        task()
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        print(exit_.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def end_process(code: int) -> NoReturn:
    """End a torchrun worker with `code`, skipping the interpreter's finalization.

    DistributedDataParallel keeps references to the Gloo process group in C++ objects that
    outlive it, so destroy_process_group does not stop Gloo's worker threads. When one of them
    drops the last reference to a finished collective's tensor while Python is finalizing, it
    needs the interpreter lock, which the thread cannot take any more, and the process aborts
    ("terminate called without an active exception", exit -6) although the run had finished.
    Everything the run writes is flushed or closed before this; then `os._exit` ends the
    process without finalization, so the exit code is the run's own.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _launch_stamp() -> tuple[float, int]:
    global _launch
    if _launch is None:  # composed without `setup` (tests, the compose API): this process
        _launch = (time.time(), os.getpid())
    return _launch


def launch_time(pattern: str) -> str:
    """Resolver: the launch's start time (rank 0's under torchrun) formatted by strftime."""
    return datetime.fromtimestamp(_launch_stamp()[0]).strftime(pattern)


def launch_pid() -> int:
    """Resolver: the launch's process id (rank 0's under torchrun)."""
    return _launch_stamp()[1]


def quiet_other_ranks(here: Place) -> None:
    """Only rank 0 writes the log file; the other ranks print warnings and errors only."""
    if here.is_main:
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.WARNING)


def local_gpu(here: Place) -> torch.device:
    """This process's own GPU, chosen by its rank on the node."""
    count = torch.cuda.device_count()
    if here.local_rank >= count:
        raise UserError(
            f"torchrun started process {here.local_rank} on this node but it has only {count} "
            f"CUDA GPU(s); start at most {count} processes per node (--nproc_per_node={count})"
        )
    torch.cuda.set_device(here.local_rank)
    return torch.device("cuda", here.local_rank)


def wrap(
    model: nn.Module, device: torch.device, here: Place, freezes_parameters: bool = False
) -> nn.Module:
    """DistributedDataParallel around the model when there are several processes.
    `freezes_parameters`: some parameter stops getting gradients during training (airbench's
    whitening bias), which DDP only allows when it looks for unused parameters each step."""
    if not here.distributed:
        return model
    return DistributedDataParallel(
        model,
        device_ids=[device] if device.type == "cuda" else None,
        find_unused_parameters=freezes_parameters,
    )


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Sum (or max) a tensor over all processes, in place; returns it. No-op for one process."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return tensor


def all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every process's tensor (the same shape on each), concatenated along dim 0, in rank
    order. Alone: the tensor itself."""
    if not dist.is_initialized():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)
