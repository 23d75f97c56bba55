"""Training in several processes under torchrun (DistributedDataParallel).

torchrun starts one process per device and tells each its place through the environment
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT). `setup` joins the process group before
Hydra composes the config, so that every process resolves the same run directory: the
`${launch_time:}` and `${pid:}` resolvers in `hydra.run.dir` give rank 0's start time and
process id on all ranks. Without torchrun everything here is a no-op for one process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
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
    """Where this process stands, from torchrun's environment variables."""
    return Place(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def setup() -> Place:
    """Join torchrun's process group (if launched by it) and agree on the launch stamp.

    Gloo carries CPU tensors and NCCL CUDA tensors, so the `device` the model runs on
    decides which one the gradients travel through.
    """
    global _launch
    here = place()
    stamp = torch.tensor([time.time(), os.getpid()], dtype=torch.float64)
    if here.distributed and not dist.is_initialized():
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        dist.broadcast(stamp, src=0)
    _launch = (float(stamp[0]), int(stamp[1]))
    return here


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
