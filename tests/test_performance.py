"""trainer.precision / channels_last / compile, end to end on the CPU, and what they log."""

import json
import math

import pytest
import torch
from torch import nn

from cifar_exp.config import validate
from cifar_exp.errors import ConfigError, UserError
from cifar_exp.runtime.device import choose_precision, read_cpu_flags, use_channels_last
from cifar_exp.training.precision import AUTOCAST_DTYPES, Precision
from helpers.cli import output_in_process, run_in_process
from helpers.events import load_events
from helpers.overrides import TINY

CPU = torch.device("cpu")


def run_and_read(tmp_path, *overrides):
    """Run in process and read back its curves and metrics.json."""
    run_dir = tmp_path / "run"
    overrides = [*TINY, *overrides, f"hydra.run.dir={run_dir}"]
    assert run_in_process(*overrides, cwd=tmp_path) == 0
    return load_events(run_dir), json.loads((run_dir / "metrics.json").read_text())


def test_bf16_autocasts_the_forward_pass_on_cpu():
    conv = nn.Conv2d(3, 4, 3)
    x = torch.rand(2, 3, 8, 8)
    with Precision("bf16", CPU).autocast():
        assert conv(x).dtype == torch.bfloat16
    with Precision("fp32", CPU).autocast():
        assert conv(x).dtype == torch.float32


def test_channels_last_converts_weights_and_incoming_batches():
    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.layouts = []

        def forward(self, x):
            self.layouts.append(x.is_contiguous(memory_format=torch.channels_last))
            return self.conv(x)

    probe = use_channels_last(Probe())
    assert probe.conv.weight.is_contiguous(memory_format=torch.channels_last)
    probe(torch.rand(2, 3, 8, 8))
    assert probe.layouts == [True]


def test_unknown_compile_mode_is_a_clear_error(compose):
    with pytest.raises(ConfigError, match="trainer.compile_mode must be one of default, "):
        validate(compose(["trainer.compile=true", "trainer.compile_mode=fastest"]))


def test_unknown_tta_mode_is_a_clear_error(compose):
    validate(compose(["trainer.tta=flip_translate"]))
    with pytest.raises(ConfigError, match="trainer.tta must be one of none, flip, flip_translate"):
        validate(compose(["trainer.tta=mirror"]))


@pytest.mark.parametrize(
    "device, flags, cuda_bf16, expected, why",
    [
        ("cpu", {"avx2", "avx512f", "avx512_bf16"}, False, "bf16", "flags avx512_bf16"),
        ("cpu", {"avx2", "amx_bf16", "amx_tile"}, False, "bf16", "flags amx_bf16"),
        ("cpu", {"avx2", "avx512f", "amx_int8"}, False, "fp32", "no native bf16"),
        ("cpu", set(), True, "fp32", "no native bf16"),
        ("cpu", None, False, "fp32", "could not be read"),
        ("cuda", None, True, "bf16", "the GPU supports bf16 natively"),
        ("cuda", {"avx512_bf16"}, False, "fp32", "the GPU has no native bf16"),
    ],
)
def test_auto_precision_follows_the_hardware(device, flags, cuda_bf16, expected, why):
    precision, reason = choose_precision(device, flags, cuda_bf16)
    assert precision == expected
    assert why in reason


def test_cpu_flags_are_read_from_cpuinfo_or_none(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16\nbugs\t\t: spectre\n")
    assert read_cpu_flags(cpuinfo) == {"fpu", "avx2", "amx_bf16"}
    cpuinfo.write_text("processor\t: 0\n")
    assert read_cpu_flags(cpuinfo) is None
    assert read_cpu_flags(tmp_path / "missing") is None


def test_precision_auto_resolves_and_says_why(compose):
    validate(compose(["trainer.precision=auto"]))
    precision = Precision("auto", CPU)
    expected = choose_precision("cpu", read_cpu_flags(), False)
    assert (precision.name, precision.reason) == expected
    assert precision.requested == "auto"
    assert precision.dtype == AUTOCAST_DTYPES[expected[0]]


def test_precision_says_when_it_is_the_default(compose):
    default = compose([]).trainer.precision
    assert Precision(default, CPU).reason == f"trainer.precision={default} (the default)"
    assert Precision("bf16", CPU).reason == "trainer.precision=bf16 was set"


def test_fp16_on_cpu_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="fp16 needs a CUDA GPU"):
        Precision("fp16", CPU)
    code, output = output_in_process(
        *TINY, "trainer.precision=fp16", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert code != 0
    output = output
    assert "trainer.precision=fp16 needs a CUDA GPU but the run is on cpu" in output
    assert "use trainer.precision=bf16" in output
    assert "Traceback" not in output


def test_bf16_channels_last_trains_the_seed_resnet_and_logs_throughput_and_memory(tmp_path):
    acc, metrics = run_and_read(
        tmp_path,
        "model=resnet",
        "trainer.precision=bf16",
        "trainer.channels_last=true",
        "trainer.limit_train_batches=2",
        "dataset.test_size=64",
    )
    for tag in ("train/loss", "test/acc", "train/images_per_s", "train/peak_mem_mb"):
        (event,) = acc.Scalars(tag)
        assert math.isfinite(event.value) and event.value >= 0, tag
    epoch = metrics["epochs"][0]
    assert epoch["images_per_s"] > 0
    assert epoch["peak_mem_mb"] > 50  # the process's peak RSS: torch alone is more
    assert "compile_s" not in epoch
    assert metrics["final"]["test_acc"] == pytest.approx(acc.Scalars("test/acc")[0].value)
