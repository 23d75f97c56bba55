"""Where the repository, its configs and the real CIFAR-10 copy lie."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONF_DIR = REPO / "src" / "cifar_exp" / "conf"
# The JPEG copy of CIFAR-10 (shared/datasets/README.md); $CIFAR10_JPEG points elsewhere.
CIFAR10_JPEG = Path(
    os.environ.get("CIFAR10_JPEG", REPO.parent / "shared" / "datasets" / "cifar10-jpeg")
)


def group_options(group: str) -> list[str]:
    """The option names of a config group: its YAML files, e.g. ["lenet5", "resnet", ...]."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
