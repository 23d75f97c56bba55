"""docs/models.md's model table is what scripts/docs/model_table.py renders from the registry."""

import importlib.util
import sys

from helpers.paths import REPO


def load_script():
    path = REPO / "scripts" / "docs" / "model_table.py"
    spec = importlib.util.spec_from_file_location("model_table", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_committed_model_table_is_what_the_registry_renders():
    script = load_script()
    committed = script.PAGE.read_text()
    assert script.render(committed) == committed, (
        "docs/models.md's model table is stale: run python scripts/docs/model_table.py"
    )


def test_committed_help_lists_every_model_as_the_registry_renders_it():
    script = load_script()
    committed = script.CONFIG.read_text()
    assert script.render_help(committed) == committed, (
        "the model list of --help (conf/config.yaml) is stale: "
        "run python scripts/docs/model_table.py"
    )


def test_the_table_has_a_row_for_every_registered_model():
    script = load_script()
    page = script.PAGE.read_text()
    for name in script.MODELS.names():
        assert f"| `model={name}` |" in page
