"""Printed commands read back as what they name: through the shell (shlex) and Hydra's
override grammar, for folder names a user may have (spaces, non-ASCII letters, quotes, '=')."""

import shlex

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from cifar_exp.records.commands import hydra_value, override, run_command

TRICKY = [
    "runs/r sp ace",
    "/data/dír with space/run",
    " leading",
    "trailing ",
    "sweep/0_optimizer.lr=0.001,trainer.seed=1",
    "it's",
    'say "hi"',
    "both ' and \"",
    "back\\slash",
    "ends in a backslash\\",
    "a\\'b",
    "/x/${y}",
    "123",
    "1e-3",
    "null",
    "true",
    "[x]",
    "~/x",
    "a#b",
    "tab\there",
]


@pytest.mark.parametrize("value", TRICKY)
def test_an_override_reads_back_as_the_value_through_shell_hydra_and_omegaconf(value):
    (arg,) = shlex.split(run_command([override("resume", value)]))[3:]
    parsed = OverridesParser.create().parse_override(arg)
    assert parsed.key_or_group == "resume"
    assert OmegaConf.create({"resume": parsed.value()}).resume == value  # ${ stays literal


def test_plain_values_stay_as_typed():
    assert hydra_value("/tmp/runs/2026-12-01/08-39-26_defaults_8172") == (
        "/tmp/runs/2026-12-01/08-39-26_defaults_8172"
    )
    assert run_command([override("resume", "runs/r sp ace")]) == (
        "python -m cifar_exp.run 'resume=runs/r sp ace'"
    )
    assert run_command([override("resume", "/data/dír")]) == (
        """python -m cifar_exp.run 'resume="/data/dír"'"""
    )
