"""The shape of the code: imports run one way, importing registers nothing, the training step
is few calls from the entrypoint, and facts about a key live on its schema field."""

import traceback
from pathlib import Path

import pytest
import torch

from helpers.cli import run_in_process
from helpers.imports import PACKAGE, import_graph
from helpers.overrides import TINY

ENTRYPOINTS = {
    "cifar_exp.run",
    "cifar_exp.eval",
    "cifar_exp.predict",
    "cifar_exp.export",
    "cifar_exp.report",
    "cifar_exp.model_summary",
    "cifar_exp.lr_find",
}
# The package's folders and top-level modules, lowest first: each imports only from the
# layers below it (and from inside itself). The README's layout section names them.
LAYERS = [
    {"errors"},
    {"registry", "runtime"},
    {"records"},
    {"models", "datasets", "components"},
    {"tracking"},
    {"config"},
    {"training", "sweeps"},
    {"hydra_setup", "lifecycle"},
    {name.split(".")[1] for name in ENTRYPOINTS} | {"__main__"},
]
# Inside a folder: a module that must not reach up into what builds on it.
FORBIDDEN = {("cifar_exp.training.engine", "cifar_exp.training.build")}


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


def layer(module: str) -> int:
    """The layer of a module: that of its folder, or its own at the top level."""
    part = module.split(".")[1] if "." in module else module
    (found,) = [i for i, names in enumerate(LAYERS) if part in names]
    return found


def upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """The imports that reach into the same layer's other folders, or up."""
    found = []
    for module, edges in graph.items():
        for target in edges:
            same = module.split(".")[:2] == target.split(".")[:2]
            if not same and layer(target) >= layer(module):
                found.append((module, target))
    return sorted(found)


def test_nothing_imports_an_entrypoint_or_reaches_up():
    graph = import_graph()
    importers = {m: sorted(e & ENTRYPOINTS) for m, e in graph.items() if e & ENTRYPOINTS}
    assert importers == {}
    assert upward(graph) == []
    assert sorted((m, t) for m, edges in graph.items() for t in edges if (m, t) in FORBIDDEN) == []


def test_every_folder_has_a_layer_and_an_upward_import_is_found():
    """The check itself: every folder and top-level module is placed, and a low module that
    imports a higher one is reported."""
    graph = import_graph()
    assert all(layer(module) >= 0 for module in graph if module != "cifar_exp")
    assert upward({"cifar_exp.records.lock": {"cifar_exp.training.build"}}) == [
        ("cifar_exp.records.lock", "cifar_exp.training.build")
    ]
    assert upward({"cifar_exp.training.build": {"cifar_exp.training.engine"}}) == []


def test_the_top_level_holds_few_modules():
    """Entrypoints and the few modules everything shares; the rest lives in folders."""
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert len(top) <= 14, top


def test_a_cycle_is_found():
    """The check itself: a graph with a cycle is reported."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


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
