"""The pieces of docs/benchmarks.md that every benchmark's section is made of.

Each benchmark script keeps its own section of the page (a module-level `SECTION`: heading,
what it measures, how one of its results reads), beside the code that measures it;
scripts/docs/render_benchmarks.py loads the results and puts the sections together. This
module holds what they share: the Section itself, the Markdown table, the number formats
and the provenance list that heads every result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

BF16_FLAGS = ("avx512_bf16", "amx_bf16")

Figure = float | int | dict | None


def machine_title(result: dict) -> str:
    """A result's subheading where its kind has several: the CPU it ran on."""
    return result["cpu"]["model"]


@dataclass(frozen=True)
class Section:
    """One section of the page: its heading, what the script measures (prose, then an
    optional ```bash block), how a result reads, and what stands there without one."""

    heading: str
    about: str
    body: Callable[[dict], str]
    title: Callable[[dict], str] = machine_title
    missing: str = "No result yet."


def count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def number(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def figure(value: Figure, digits: int = 0, unit: str = "") -> str:
    """A number, a range {"min", "max"} or an approximate {"approx"}; "—" when absent."""
    if value is None:
        return "—"
    if isinstance(value, dict):
        if "approx" in value:
            return f"~{value['approx']:,g}{unit}"
        return f"{number(value['min'], digits)}-{number(value['max'], digits)}{unit}"
    return f"{number(value, digits)}{unit}"


def percent(value: Figure) -> str:
    """A fraction as a percentage with at most two decimals, as precise as it was stored."""
    if value is None:
        return "—"
    if isinstance(value, dict):
        return "-".join(percent(value[key]) for key in ("min", "max"))
    return f"{value * 100:.2f}".rstrip("0").rstrip(".") + "%"


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.001 else f"{seconds * 1000:.2f} ms"


def table(head: list[str], align: str, rows: list[list[str]]) -> str:
    """A Markdown table; `align` has one letter per column, l or r."""
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    lines = ["| " + " | ".join(head) + " |", rule]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def shown_flags(flags: list[str]) -> list[str]:
    """The flags that decide the speed of these benchmarks: AVX, AMX and bf16."""
    return [f for f in flags if f.startswith(("avx", "amx")) or "bf16" in f]


def provenance(result: dict) -> str:
    """Where the figures come from: command, machine and flags, date, data, source."""
    cpu = result["cpu"]
    flags = shown_flags(cpu["flags"])
    native = any(f in cpu["flags"] for f in BF16_FLAGS)
    machine = f"{cpu['model']}, {cpu['cores']} cores"
    if "threads" in result:
        machine += f", {count(result['threads'], 'thread')}"
    if "device" in result:
        machine = f"{result['device']} (host: {machine})"
    extra = [f"torch {result['torch']}"] if "torch" in result else []
    if "cpu_capability" in result:
        extra.append(f"torch's CPU capability {result['cpu_capability']}")
    lines = []
    if "command" in result:
        lines.append(f"- **Command:** `{result['command']}`")
    lines += [
        f"- **Machine:** {machine}" + (f"; {', '.join(extra)}" if extra else ""),
        f"- **CPU flags** (AVX, AMX, bf16): {' '.join(flags) or 'none'}; "
        + ("native bf16" if native else "no native bf16 (no avx512_bf16 or amx_bf16)"),
        f"- **Date:** {result['date']}"
        + (f" ({result['date_source']})" if "date_source" in result else ""),
    ]
    if result.get("dry_run") or result.get("args", {}).get("dry_run"):
        lines.append("- **Dry run:** tiny sizes that check the script; not a measurement")
    if "data" in result:
        lines.append(f"- **Data:** {result['data']}")
    if "source" in result:
        lines.append(f"- **Recorded from:** {result['source']}")
    return "\n".join(lines)
