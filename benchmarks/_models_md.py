"""``benchmarks/results/models.md``: one section a model of issue 12, each rewritten by
its own benchmark script (the other sections are kept)."""

from __future__ import annotations

import datetime
import platform
from pathlib import Path

OUT = Path(__file__).parent / "results" / "models.md"
HEADER = """# Models of issue 12

This file collects the rows of issue 12's models: one section a model, each written by
its benchmark script (which rewrites its own section and keeps the others).
"""


def write_section(section: str, text: str, out: Path = OUT) -> None:
    """Replace the section titled ``section`` (a ``## `` heading) by ``text``, or append
    it; the file starts with :data:`HEADER` when new."""
    old = out.read_text() if out.exists() else HEADER
    if section in old:
        before, rest = old.split(section, 1)
        after = rest.split("\n## ", 1)
        tail = "\n## " + after[1] if len(after) > 1 else ""
        new = before + text.rstrip() + "\n" + tail
    else:
        new = old.rstrip() + "\n\n" + text.rstrip() + "\n"
    out.write_text(new)


def measured(script: str, dtype: str = "float64") -> str:
    """The line under a section's heading: when, where, and the protocol's script."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Measured {stamp} on {platform.machine()}, one BLAS thread, {dtype}.  Protocol: "
        f"`benchmarks/{script}` docstring."
    )
