"""What the benchmark reports say about the machine they ran on, and the small measures
several benchmarks share."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def table_rows(cases: list, row: Any) -> list[str]:
    """``row(*case)`` for every case, each printed as it is measured (long runs show
    progress)."""
    out = []
    for case in cases:
        out.append(row(*case))
        print(out[-1], flush=True)
    return out


def cpu_timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``(fn(*args, **kwargs), CPU seconds of this process)`` (``time.process_time``:
    with one BLAS thread, the work itself, not the machine's other load)."""
    t = time.process_time()
    out = fn(*args, **kwargs)
    return out, time.process_time() - t


def quiet_cpu_timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """:func:`cpu_timed` with the fit's warnings held back (the table reports what they
    would say: stop reasons, iterations)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cpu_timed(fn, *args, **kwargs)


def worst_angle(S: Any, ref: Any) -> float:
    """The largest angle (deg) between the endmembers ``S`` and ``ref`` (k, channels) after
    Hungarian matching on the angles (:func:`unmix.metrics.match_components`)."""
    from unmix.metrics import match_components, spectral_angles

    rows, cols = match_components(S, ref)
    return float(spectral_angles(S, ref)[rows, cols].max())


def measured_line(script: str) -> str:
    """The line under a results file's title: when and on what (CPU, Python, NumPy,
    unmix), one BLAS thread, float64, seed 0, and the script whose docstring is the
    protocol."""
    import datetime

    import numpy as np

    import unmix

    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        f"Measured {when} on {cpu_model()}, Python {platform.python_version()}, NumPy "
        f"{np.__version__}, unmix {unmix.__version__}; one BLAS thread, float64, seed 0.  "
        f"Protocol: `benchmarks/{script}` docstring."
    )
