"""Extrapolation with restarts (``solver_options={"extrapolate": True}``) on the real files.

For every real file and k of ``bench_constraints.py`` and the constraint sets HALS or BPP
take (the solver ``"auto"`` picks for them), one fit plain and one extrapolated, both
from the default start (``random_state=0``), default ``max_iter`` and ``tol``:
iterations and stop reason, CPU seconds (``time.process_time``, one BLAS thread), the
extrapolated objective over the plain one, collapsed components of each (the
constraint issue's rule, ``bench_constraints.collapse``) and the largest angle between
the two fits' endmembers after Hungarian matching (does it find the same fit?).

Writes ``benchmarks/results/extrapolate.md`` (its hand-written notes section is kept).
Run: ``.venv/bin/python benchmarks/bench_extrapolate.py [--only eels,raman]``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import platform  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import unmix  # noqa: E402
from _machine import cpu_model, cpu_timed, table_rows, worst_angle  # noqa: E402
from bench_constraints import ENTRIES, collapse, set_kwargs  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "extrapolate.md"
NOTES = "## Notes (written by hand)"  # kept when the table is rewritten
SETS = {  # constraint set -> the solver "auto" picks for it
    "NMF": "hals",
    "NMF + sum-to-one": "bpp",
    "NMF + L1": "hals",
    "NMF + sum-to-one + grid smoothness": "bpp",
    "NMF + sum-to-one + min-volume": "bpp",
}


def fit(X, k, spatial, set_name, solver, extrapolate):
    opts = {"extrapolate": bool(extrapolate)}  # plain: off (the default is on for sum-to-one)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cpu_timed(
            unmix.factorize,
            X,
            k,
            solver=solver,
            spatial_shape=spatial,
            random_state=0,
            solver_options=opts,
            **set_kwargs(set_name, X),
        )


def rows_of(entry) -> list[str]:
    X, spatial = entry.load()

    def row(set_name: str, solver: str) -> str:
        plain, t0 = fit(X, entry.k, spatial, set_name, solver, False)
        fast, t1 = fit(X, entry.k, spatial, set_name, solver, True)
        dead0, dead1 = collapse(plain.A, plain.S)[0], collapse(fast.A, fast.S)[0]
        return (
            f"| {entry.label} | {entry.k} | {set_name} | {solver} | "
            f"{plain.n_iter} ({plain.stop_reason}) | {fast.n_iter} ({fast.stop_reason}) | "
            f"{t0:.2f} | {t1:.2f} | {t0 / max(t1, 1e-9):.1f}x | "
            f"{fast.objective / plain.objective:.5f} | "
            f"{', '.join(map(str, dead0)) or '-'} | {', '.join(map(str, dead1)) or '-'} | "
            f"{worst_angle(fast.S, plain.S):.1f} |"
        )

    return table_rows(list(SETS.items()), row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated keys of bench_constraints")
    args = parser.parse_args()
    keys = {k for k in args.only.split(",") if k}
    rows = []
    with threadpool_limits(1):
        for entry in ENTRIES:
            if not keys or entry.key in keys:
                rows += rows_of(entry)
    text = [
        "# Extrapolation with restarts (HALS, BPP)",
        "",
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; {cpu_model()}, "
        f"Python {platform.python_version()}, NumPy {np.__version__}, one BLAS thread, "
        "float64.  Protocol: `benchmarks/bench_extrapolate.py` docstring.",
        "",
        "| map | k | set | solver | iterations plain | iterations extrapolated | CPU s plain "
        "| CPU s extrapolated | speed-up | objective extrapolated / plain | collapsed plain "
        "| collapsed extrapolated | largest angle between the fits (deg) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    notes = OUT.read_text().partition(NOTES)[2] if OUT.exists() else ""
    OUT.write_text("\n".join(text) + (f"\n{NOTES}{notes}" if notes else ""))


if __name__ == "__main__":
    main()
