"""The option files of the registry groups show the values they set, and compose to them.

scripts/docs/option_values.py writes below each file's hand-written part the defaults of the
schema its name is registered with; these tests keep the files current and check that Hydra
composes each option to exactly those defaults, with the hand-written keys over them.
"""

import importlib.util
import shutil
import sys

import pytest
from omegaconf import OmegaConf

from helpers.paths import REPO


def load_script():
    path = REPO / "scripts" / "docs" / "option_values.py"
    spec = importlib.util.spec_from_file_location("option_values", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


script = load_script()
OPTIONS = script.option_files()


def test_every_option_file_shows_its_schemas_defaults():
    stale = [str(path.relative_to(script.CONF)) for path in script.stale_files()]
    assert stale == [], f"{', '.join(stale)} stale: run python scripts/docs/option_values.py"


@pytest.mark.parametrize(
    "path, schema", OPTIONS, ids=[f"{path.parent.name}={path.stem}" for path, _ in OPTIONS]
)
def test_an_option_composes_to_its_schemas_defaults_and_its_hand_set_keys(compose, path, schema):
    group, name = path.parent.name, path.stem
    expected = OmegaConf.to_container(OmegaConf.structured(schema), resolve=False)
    expected |= {"name": name, **script.hand_set_keys(path.read_text())}
    composed = compose([f"{group}={name}"])[group]
    assert OmegaConf.to_container(composed, resolve=False) == expected


def test_the_check_names_a_stale_file_in_one_line_and_writing_restores_it(tmp_path, monkeypatch):
    """An option file whose values part is gone: --check exits 1 naming it, and a run of the
    script writes it back as committed."""
    committed, conf = script.CONF, tmp_path / "conf"
    for registry in script.REGISTRIES:
        shutil.copytree(committed / registry.group, conf / registry.group)
    sgd = conf / "optimizer" / "sgd.yaml"
    sgd.write_text(script.hand_written(sgd.read_text()))
    monkeypatch.setattr(script, "CONF", conf)
    monkeypatch.setattr(sys, "argv", ["option_values.py", "--check"])
    with pytest.raises(SystemExit) as exit_:
        script.main()
    assert exit_.value.code == (
        "optimizer/sgd.yaml: stale values; run python scripts/docs/option_values.py"
    )
    monkeypatch.setattr(sys, "argv", ["option_values.py"])
    script.main()
    assert sgd.read_text() == (committed / "optimizer" / "sgd.yaml").read_text()
