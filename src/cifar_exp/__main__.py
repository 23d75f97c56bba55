"""`python -m cifar_exp`: the commands the package offers, one line each."""

from __future__ import annotations

import sys

COMMANDS = {
    "run": "train a model, a sweep (-m) or a search (hparams_search=optuna); also `cifar-exp`",
    "eval": "score a trained run's checkpoint on its test split",
    "predict": "classify image files with a trained run's checkpoint",
    "export": "a trained network as ONNX, TorchScript or torch.export, checked against it",
    "report": "one plot and one table over the jobs of sweeps and runs",
    "model_summary": "a model's layers, parameters, FLOPs and activation memory",
    "lr_find": "Smith's learning-rate range test: an lr to start from",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m cifar_exp.<command> [overrides] (--help for each)", ""]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    lines += ["", "e.g. python -m cifar_exp.run debug=tiny"]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv and argv[0] not in ("-h", "--help"):
        name = argv[0]
        hint = f"python -m cifar_exp.{name}" if name in COMMANDS else "one of these"
        print(f"python -m cifar_exp takes no arguments; use {hint}:\n\n{usage()}", file=sys.stderr)
        return 2
    print(usage())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
