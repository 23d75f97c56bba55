"""DDP under a real torchrun: two Gloo processes on the CPU against one process."""

import pytest
import torch

from cifar_exp.datasets import Split
from cifar_exp.datasets.batches import BatchLoader
from cifar_exp.errors import ConfigError
from cifar_exp.runtime.distributed import exit_code


def split_of(n):
    return Split(torch.zeros(n, 3, 1, 1, dtype=torch.uint8), torch.arange(n))


@pytest.mark.parametrize("n, batch, world", [(250, 32, 2), (10, 4, 3), (9, 4, 2), (7, 7, 4)])
def test_shards_are_disjoint_cover_the_epoch_and_agree_on_its_order(n, batch, world):
    cpu = torch.device("cpu")
    single = BatchLoader(split_of(n), batch, cpu, shuffle=True, seed=5)
    shards = [
        BatchLoader(split_of(n), batch, cpu, shuffle=True, seed=5, rank=r, world_size=world)
        for r in range(world)
    ]
    for loader in (single, *shards):
        loader.set_epoch(3)
    per_rank = [[labels.tolist() for _, labels in loader] for loader in shards]
    assert len({len(batches) for batches in per_rank}) == 1  # same step count on every rank
    seen = []
    for b in range(len(shards[0])):
        sizes = [len(batches[b]) for batches in per_rank]
        assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
        seen += [label for batches in per_rank for label in batches[b]]
    assert sorted(seen) == list(range(n))  # each image once per epoch
    # The ranks' shares, put side by side, are the one-process run's order.
    assert seen == torch.cat([labels for _, labels in single]).tolist()


def test_a_last_batch_smaller_than_the_processes_joins_the_one_before():
    cpu = torch.device("cpu")
    shards = [BatchLoader(split_of(9), 4, cpu, rank=r, world_size=2) for r in range(2)]
    assert [len(s) for s in shards] == [2, 2]
    assert [[y.tolist() for _, y in s] for s in shards] == [[[0, 1], [4, 5, 6]], [[2, 3], [7, 8]]]


def test_a_split_smaller_than_the_processes_is_an_error():
    with pytest.raises(ConfigError, match=r"a split has 1 image\(s\), fewer than the 2 processes"):
        BatchLoader(split_of(1), 4, torch.device("cpu"), rank=0, world_size=2)


def exits(code):
    raise SystemExit(code)


def interrupted():
    raise KeyboardInterrupt


def crashes():
    raise RuntimeError("a bug")


@pytest.mark.parametrize(
    "task, expected",
    [
        (lambda: 0.5, 0),
        (lambda: exits(None), 0),
        (lambda: exits(143), 143),
        (lambda: exits("a message"), 1),
        (interrupted, 130),
        (crashes, 1),
    ],
)
def test_a_torchrun_worker_ends_with_the_status_its_run_would_have_exited_with(task, expected):
    assert exit_code(task) == expected


SLURM_TASK = {
    "SLURM_JOB_ID": "4242",
    "SLURM_STEP_ID": "0",
    "SLURM_PROCID": "1",
    "SLURM_LOCALID": "1",
    "SLURM_NTASKS": "2",
    "SLURM_STEP_NUM_TASKS": "2",
    "SLURM_JOB_NODELIST": "gpu[07-09,12],cpu3",
}
SCHEDULER_VARS = [
    *SLURM_TASK,
    "SUBMITIT_LOCAL_GLOBALID",
    "SUBMITIT_LOCAL_LOCALID",
    "SUBMITIT_LOCAL_NTASKS",
    "SUBMITIT_LOCAL_JOB_ID",
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "MASTER_PORT",
    "SLURM_STEP_NODELIST",
]


@pytest.fixture
def clean_env(monkeypatch):
    for name in SCHEDULER_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_slurm_task_finds_its_place_and_the_first_node(clean_env):
    from cifar_exp.runtime.distributed import Place, first_node, job_tasks, place

    assert first_node("gpu[07-09,12],cpu3") == "gpu07" and first_node("node5,node6") == "node5"
    assert place() == Place() and job_tasks() is None
    for name, value in SLURM_TASK.items():
        clean_env.setenv(name, value)
    tasks = job_tasks()
    assert place() == tasks.place == Place(rank=1, world_size=2, local_rank=1)
    assert tasks.address == "gpu07" and 20000 <= tasks.port < 60000
    clean_env.setenv("RANK", "0")  # torchrun inside a Slurm job (srun torchrun): torchrun's
    clean_env.setenv("WORLD_SIZE", "4")
    assert place() == Place(rank=0, world_size=4, local_rank=0)


def test_submitit_local_tasks_and_a_single_task(clean_env):
    from cifar_exp.runtime.distributed import Place, job_tasks

    clean_env.setenv("SUBMITIT_LOCAL_GLOBALID", "0")
    clean_env.setenv("SUBMITIT_LOCAL_LOCALID", "0")
    clean_env.setenv("SUBMITIT_LOCAL_NTASKS", "2")
    clean_env.setenv("SUBMITIT_LOCAL_JOB_ID", "31337")
    tasks = job_tasks()
    assert tasks.place == Place(0, 2, 0) and tasks.address == "127.0.0.1"
    clean_env.setenv("SUBMITIT_LOCAL_NTASKS", "1")
    assert job_tasks() is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"SLURM_PROCID": "2"},
            "SLURM_PROCID=2 and SLURM_LOCALID=1 do not fit SLURM_STEP_NUM_TASKS=2",
        ),
        ({"SLURM_NTASKS": "4"}, "SLURM_NTASKS=4 but SLURM_STEP_NUM_TASKS=2"),
        ({"SLURM_LOCALID": "x"}, "not whole numbers"),
    ],
)
def test_slurm_variables_that_disagree_are_one_line(clean_env, changes, message):
    from cifar_exp.errors import UserError
    from cifar_exp.runtime.distributed import job_tasks

    for name, value in {**SLURM_TASK, **changes}.items():
        clean_env.setenv(name, value)
    with pytest.raises(UserError, match="the job's task variables disagree|not whole") as err:
        job_tasks()
    assert message in str(err.value) and "\n" not in str(err.value)
