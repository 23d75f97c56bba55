"""Where a training step's time goes: every layer's forward, input gradient and weight gradient.

    python scripts/bench/layers.py "experiment=speedrun94 model.widths=[32,128,128]" \\
        "experiment=speedrun94_muon model.widths=[32,128,128]" \\
        "model=resnet20 optimizer=sgd trainer.batch_size=128" --json layers.json

Each argument is one configuration, as overrides of `cifar_exp.run`; its model, optimizer,
precision (trainer.precision, auto resolved for this machine), memory layout
(trainer.channels_last) and batch (trainer.batch_size) are built as a run builds them, and fed
one fixed batch of random images: the run's real shapes, with no data path.

For each configuration it times, median of `--repeats` after a warm-up:
- the whole step: forward, loss (with trainer.label_smoothing), backward, optimizer step;
- every leaf layer on the very input it gets in that step: its forward, the gradient of its
  input (only where the step computes it: not for the first layer, whose input is the
  images) and the gradients of its trained parameters; for convolutions and linear layers
  the two apart, for the rest (BatchNorm, GELU, pooling) together;
- the optimizer's step alone.
What is left of the step (the loss, functional ops between layers, autograd's bookkeeping) is
the step minus the parts. One process, one configuration after another; keep threads within
the cores and nothing else running.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import page
import torch
import torch.nn.functional as F
from benchlib import median_seconds, provenance, random_batch, run_config, seconds
from torch import nn

log = logging.getLogger("bench")
WEIGHTED = (nn.Conv2d, nn.Linear)


@dataclass
class Setup:
    """One configuration, built: what its step runs on."""

    label: str
    net: nn.Module
    step_net: nn.Module  # net, or net compiled (trainer.compile)
    optimizer: torch.optim.Optimizer
    autocast: Callable
    precision: str
    channels_last: bool
    smoothing: float
    images: torch.Tensor
    labels: torch.Tensor


def build(overrides: str) -> Setup:
    """The model, optimizer, precision and batch that `cifar_exp.run <overrides>` trains."""
    from cifar_exp.components.optim import OPTIMIZERS
    from cifar_exp.models import MODELS
    from cifar_exp.models.base import initialize_from_data
    from cifar_exp.runtime.device import compile_model, use_channels_last
    from cifar_exp.training.precision import Precision

    cfg = run_config([*overrides.split(), "dataset=synthetic"])
    cfg.model.num_classes = 10
    torch.manual_seed(0)
    t = cfg.trainer
    net = MODELS.build(cfg.model)
    images, labels = random_batch(t.batch_size, torch.device("cpu"))
    initialize_from_data(net, images[:500])
    if t.channels_last:
        net = use_channels_last(net)
        images = images.contiguous(memory_format=torch.channels_last)
    precision = Precision(t.precision, torch.device("cpu"))
    return Setup(
        label=overrides,
        net=net.train(),
        step_net=compile_model(net, t.compile_mode) if t.compile else net,
        optimizer=OPTIMIZERS.build(cfg.optimizer, net),
        autocast=precision.autocast,
        precision=precision.name,
        channels_last=bool(t.channels_last),
        smoothing=t.label_smoothing,
        images=images,
        labels=labels,
    )


def whole_step(s: Setup) -> None:
    with s.autocast():
        loss = F.cross_entropy(s.step_net(s.images), s.labels, label_smoothing=s.smoothing)
    s.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    s.optimizer.step()


def layer_inputs(s: Setup) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """Each leaf layer (in call order) with a copy of the input it gets in the step, marked
    as needing a gradient where the step's own input did."""
    seen: list[tuple[str, nn.Module, torch.Tensor]] = []
    names = {m: n for n, m in s.net.named_modules()}
    leaves = [m for m in s.net.modules() if not list(m.children())]

    def keep(module: nn.Module, args: tuple) -> None:
        x = args[0]
        seen.append((names[module], module, x.detach().clone().requires_grad_(x.requires_grad)))

    hooks = [m.register_forward_pre_hook(keep) for m in leaves]
    try:
        with s.autocast():
            s.net(s.images)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def time_layer(s: Setup, name: str, module: nn.Module, x: torch.Tensor, repeats: int) -> dict:
    """One layer's forward and its gradients, in seconds (None where the step has none)."""
    trained = [p for p in module.parameters() if p.requires_grad]

    inplace = getattr(module, "inplace", False)  # ReLU(inplace=True): on a copy of its input

    def forward() -> torch.Tensor:
        with s.autocast():
            return module(x.clone() if inplace else x)

    out = forward()
    grad_out = torch.randn_like(out)
    row = {"layer": name, "type": type(module).__name__, "shape": list(out.shape)}
    row["weighted"] = isinstance(module, WEIGHTED)
    row["forward_s"] = median_seconds(forward, repeats, warmup=1)

    def grad(of: list[torch.Tensor]) -> Callable[[], object]:
        return lambda: torch.autograd.grad(out, of, grad_out, retain_graph=True)

    wanted = [x] if x.requires_grad else []
    if row["weighted"]:
        row["input_grad_s"] = median_seconds(grad(wanted), repeats, warmup=1) if wanted else None
        row["weight_grad_s"] = median_seconds(grad(trained), repeats, warmup=1) if trained else None
    else:
        both = wanted + trained
        row["backward_s"] = median_seconds(grad(both), repeats, warmup=1) if both else None
    return row


def profile(s: Setup, repeats: int) -> dict:
    """The configuration's step, its layers and its optimizer step, timed. A compiled step
    (trainer.compile) is timed whole, its first calls (the compilation) unclocked: its layers
    run fused, so timing them one by one would tell about another step."""
    compiled = s.step_net is not s.net
    first_s = seconds(lambda: whole_step(s))
    step_s = median_seconds(lambda: whole_step(s), repeats, warmup=2 if compiled else 0)
    layers = [] if compiled else [time_layer(s, *seen, repeats) for seen in layer_inputs(s)]
    whole_step(s)  # leaves gradients for the optimizer's step alone
    optimizer_s = median_seconds(s.optimizer.step, repeats, warmup=1)
    return {
        "config": s.label,
        "precision": s.precision,
        "channels_last": s.channels_last,
        "compiled": compiled,
        "first_step_s": first_s,
        "batch_size": len(s.labels),
        "step_s": step_s,
        "images_per_s": len(s.labels) / step_s,
        "optimizer_s": optimizer_s,
        "layers": layers,
        "shares": shares(layers, step_s, optimizer_s, compiled),
    }


def layer_total(row: dict) -> float:
    keys = ("forward_s", "input_grad_s", "weight_grad_s", "backward_s")
    return sum(row.get(key) or 0.0 for key in keys)


def shares(
    layers: list[dict], step_s: float, optimizer_s: float, compiled: bool
) -> dict[str, float]:
    """The step's seconds by kind of work; `rest` is the step minus the parts."""
    if compiled:
        return {
            "forward + backward (compiled)": step_s - optimizer_s,
            "optimizer step": optimizer_s,
        }
    convs = [r for r in layers if r["weighted"]]
    parts = {
        "conv/linear forward": sum(r["forward_s"] for r in convs),
        "conv/linear input grads": sum(r.get("input_grad_s") or 0.0 for r in convs),
        "conv/linear weight grads": sum(r.get("weight_grad_s") or 0.0 for r in convs),
        "other layers (forward + backward)": sum(
            layer_total(r) for r in layers if not r["weighted"]
        ),
        "optimizer step": optimizer_s,
    }
    parts["rest (loss, functional ops, autograd)"] = step_s - sum(parts.values())
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("configs", nargs="+", help='overrides of one run, e.g. "model=resnet20"')
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each part")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (<= cores)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--subject", default="by layer", help="the docs' subheading for these")
    args = parser.parse_args()
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be >= 1")
    if args.json and not args.json.absolute().parent.is_dir():
        parser.error(f"--json {args.json}: its folder does not exist")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from hydra.errors import HydraException

    from cifar_exp.errors import ConfigError

    torch.set_num_threads(args.threads)
    result = {**provenance(args.threads), "subject": args.subject, "profiles": []}
    for config in args.configs:
        log.info("profiling %s", config)
        try:
            setup = build(config)
        except (ConfigError, HydraException) as err:  # a bad override: Hydra's or ours
            parser.error(f"{config!r}: {str(err).splitlines()[0]}")
        result["profiles"].append(profile(setup, args.repeats))
        print(page_profile(result["profiles"][-1]), flush=True)
    print(page_steps(result["profiles"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


def ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:,.1f}"


def page_profile(p: dict) -> str:
    """One configuration: its split of the step, then its layers."""
    compiled = p.get("compiled", False)
    head = (
        f"`{p['config']}`: batch {p['batch_size']}, {p['precision']}"
        f"{', channels_last' if p['channels_last'] else ''}"
        f"{', compiled' if compiled else ''}; one step "
        f"{ms(p['step_s'])} ms ({p['images_per_s']:,.0f} images/s)"
        + (f"; the first, compiling, {p['first_step_s']:.1f} s" if compiled else "")
    )
    split = [[k, ms(v), f"{v / p['step_s']:.0%}"] for k, v in p["shares"].items()]
    rows = []
    for r in p["layers"]:
        backward = r.get("backward_s")
        rows.append(
            [
                f"`{r['layer']}`",
                r["type"],
                "x".join(map(str, r["shape"][1:])),
                ms(r["forward_s"]),
                ms(r.get("input_grad_s", backward)),
                ms(r.get("weight_grad_s")),
                f"{layer_total(r) / p['step_s']:.0%}",
            ]
        )
    columns = ["layer", "type", "output", "forward ms", "input grad ms", "weight grad ms", "share"]
    every = page.table(columns, "lllrrrr", rows).replace("\n", "\n    ")
    parts = [head, page.table(["work", "ms", "share of the step"], "lrr", split)]
    if rows:
        parts.append(f'??? note "Every layer"\n    {every}')  # folded (pymdownx.details)
    return "\n\n".join(parts)


def page_steps(profiles: list[dict]) -> str:
    """The configurations' whole steps side by side, as a ratio to the first one's."""
    first = profiles[0]["step_s"]
    rows = [
        [
            f"`{p['config']}`",
            ms(p["step_s"]),
            f"{p['images_per_s']:,.0f}",
            f"{p['step_s'] / first:.2f}x",
        ]
        for p in profiles
    ]
    return page.table(["configuration", "step ms", "images/s", "step vs the first"], "lrrr", rows)


def page_body(result: dict) -> str:
    return "\n\n".join(
        [page_steps(result["profiles"]), *(page_profile(p) for p in result["profiles"])]
    )


SECTION = page.Section(
    heading="Where a step's time goes",
    title=lambda result: f"{page.machine_title(result)}: {result.get('subject', 'by layer')}",
    about="""\
`scripts/bench/layers.py` builds a run's model, optimizer, precision and layout from its
overrides and times, on one fixed batch of the run's size: the whole training step, every
layer's forward, the gradient of its input and of its weights (for the other layers, forward
and backward), and the optimizer's step; the rest of the step (the loss, functional ops,
autograd's own work) is the step minus those parts. Medians of 5 calls. For the other layers
(BatchNorm, GELU, pooling) the input-gradient column holds their whole backward. A compiled
configuration (trainer.compile=true) is timed whole, after its compilation. A table first
gives every configuration's step against the first one's: before and after, in one run.

```bash
python scripts/bench/layers.py "experiment=speedrun94 model.widths=[32,128,128]" \\
    "experiment=speedrun94 model.widths=[32,128,128] trainer.compile=true" \\
    "experiment=speedrun94_muon model.widths=[32,128,128]" \\
    "model=resnet20 optimizer=sgd trainer.batch_size=128"
```""",
    body=page_body,
)


if __name__ == "__main__":
    main()
