"""The shape of the code: imports run one way, importing registers nothing, the training step
is few calls from the entrypoint, and facts about a key live on its schema field."""

import ast
import json
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch

from helpers.cli import run_in_process
from helpers.overrides import TINY
from helpers.paths import REPO

PACKAGE = REPO / "src" / "cifar_exp"
ENTRYPOINTS = {
    "cifar_exp.run",
    "cifar_exp.eval",
    "cifar_exp.predict",
    "cifar_exp.report",
    "cifar_exp.inspect",
    "cifar_exp.lr_find",
}
# Lower modules that must not reach up into what builds on them.
FORBIDDEN = {
    ("cifar_exp.tracking", "cifar_exp.config"),
    ("cifar_exp.rundir", "cifar_exp.summary"),
    ("cifar_exp.rundir", "cifar_exp.sweep"),
    ("cifar_exp.batches", "cifar_exp.datasets"),
    ("cifar_exp.engine", "cifar_exp.build"),
    ("cifar_exp.build", "cifar_exp.lifecycle"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the cifar_exp modules it imports (anywhere in it, functions included)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_import_graph_has_no_cycle():
    assert cycles(import_graph()) == []


def test_nothing_imports_an_entrypoint_or_reaches_up():
    graph = import_graph()
    importers = {m: sorted(e & ENTRYPOINTS) for m, e in graph.items() if e & ENTRYPOINTS}
    assert importers == {}
    assert sorted((m, t) for m, edges in graph.items() for t in edges if (m, t) in FORBIDDEN) == []


def test_a_cycle_is_found():
    """The check itself: a graph with a cycle is reported."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_importing_every_module_registers_nothing():
    """Only the entrypoints' setup_hydra() fills Hydra's ConfigStore and our resolvers."""
    modules = sorted(import_graph())
    code = f"""
import importlib, json
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf
for name in {modules!r}:
    importlib.import_module(name)
stored = sorted(ConfigStore.instance().list(""))
resolvers = [r for r in ("launch_time", "run_name", "job_dirname") if OmegaConf.has_resolver(r)]
print(json.dumps([stored, resolvers]))
from cifar_exp.rundir import setup_hydra
setup_hydra()
print(json.dumps([sorted(ConfigStore.instance().list("")), OmegaConf.has_resolver("run_name")]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    before, after = (json.loads(line) for line in proc.stdout.splitlines()[-2:])
    assert not [name for name in before[0] if name.endswith("_schema.yaml")]
    assert before[1] == []
    assert "config_schema.yaml" in after[0] and "model_resnet20_schema.yaml" in after[0]
    assert after[1] is True


def test_the_training_step_is_four_calls_from_the_entrypoint(tmp_path, monkeypatch):
    """`python -m cifar_exp.run` -> loss.backward(): main, the task, fit, epoch, step."""
    stacks = []
    backward = torch.Tensor.backward

    def recording(self, *args, **kwargs):
        stacks.append(traceback.extract_stack())
        return backward(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "backward", recording)
    assert run_in_process(*TINY, "trainer.limit_train_batches=1", cwd=tmp_path) == 0
    ours = [f for f in stacks[0] if Path(f.filename).is_relative_to(PACKAGE)]
    calls = [(Path(f.filename).name, f.name) for f in ours]
    assert calls == [
        ("run.py", "main"),
        ("run.py", "__call__"),
        ("engine.py", "fit"),
        ("engine.py", "epoch"),
        ("engine.py", "step"),
    ]


@pytest.mark.parametrize(
    "fact, keys",
    [
        ("plumbing", {"device.type", "trainer.num_threads", "dataset.root", "resume"}),
        ("resumable", {"trainer.epochs", "device.type", "dataset.root", "trainer.log_images"}),
        ("startup", {"resume", "rerun_failed"}),
        ("compared", {"model.name", "optimizer.lr", "trainer.seed", "dataset.val_size"}),
    ],
)
def test_facts_about_keys_are_read_from_the_schema_fields(fact, keys):
    from cifar_exp.config import keys_with

    found = set(keys_with(fact))
    assert keys <= found
    assert not {"trainer.batch_size", "model.width"} & (found if fact != "compared" else set())


def test_a_key_is_plumbing_as_a_group_only_when_all_its_keys_are():
    from cifar_exp.config import compared_keys, is_plumbing

    assert is_plumbing("device") and is_plumbing("dataset.cache_dir")
    assert not is_plumbing("trainer") and not is_plumbing("dataset")
    assert not is_plumbing("trainer.batch_size")
    keys = compared_keys()
    # The model's compared options, then its parameter count and FLOPs, in one run of columns.
    model_keys = [k for k in keys if k.startswith("model.")]
    first = keys.index(model_keys[0])
    assert "model.width" in model_keys and model_keys[-2:] == ["model.params", "model.flops"]
    assert list(keys[first : first + len(model_keys)]) == model_keys
