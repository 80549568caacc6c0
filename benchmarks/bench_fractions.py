"""KL fractions of each pixel's counts (``--loss kl --sum-to-one``): the constrained
iteration against the exact plain-KL form (``unmix.engine._fractions``), on the real maps.

Model: ``sum_i w_i KL(x_i / n_i | a_i S)``, ``a_i`` on the simplex, ``n_i`` the pixel's sum,
``w_i = n_i / mean(n)`` (``NormalizePixels("l1", weights=True)`` + ``[NonNegative(),
SumToOne()]``, X float64, the default init, ``max_iter`` and ``tol``, seed 0).  Rows: the
gradient solver on the constrained problem (``solver="gradient"``, the only one that
iterates it) and ``solver="auto"`` (the plain KL fit by ``klcd`` from the Poisson start,
each pixel's maps then scaled onto the simplex).  CPU seconds of the call
(``time.process_time``, one BLAS thread), iterations and stop, the objective (the same
function for both rows), max |sum_j A_ij - 1|, and the largest endmember angle between
the two fits after Hungarian matching.

Run: ``.venv/bin/python benchmarks/bench_fractions.py`` (writes
``benchmarks/results/fractions.md``; ``--only eels,xrd`` prints only).  The maps, their
loaders and k are ``bench_constraints.py``'s.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import unmix  # noqa: E402
from _machine import measured_line, quiet_cpu_timed, worst_angle  # noqa: E402
from bench_constraints import ENTRIES, SPECTRAL_MAPS  # noqa: E402
from unmix.model import NonNegative, SumToOne  # noqa: E402
from unmix.preprocessing import NormalizePixels  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "fractions.md"

#: the real maps of ``bench_constraints.py`` (its loaders, files and k) fitted here
KEYS = SPECTRAL_MAPS
FILES = [e for e in ENTRIES if e.key in KEYS]

MODEL = {
    "loss": "kl",
    "constraints": [NonNegative(), SumToOne()],
    "preprocessing": [NormalizePixels("l1", weights=True)],
}


def fit(X: np.ndarray, k: int, solver: str):
    return quiet_cpu_timed(unmix.factorize, X, k, solver=solver, random_state=0, **MODEL)


def rows_for(entry) -> list[str]:
    label, k = entry.label, entry.k
    X = np.maximum(entry.load()[0], 0.0)
    (g, t_g), (a, t_a) = fit(X, k, "gradient"), fit(X, k, "auto")
    out = []
    for name, r, t in (('solver="gradient"', g, t_g), ('solver="auto"', a, t_a)):
        viol = float(np.abs(np.asarray(r.A).sum(axis=1) - 1.0).max())
        solved = "plain KL + scaling" if r.spec.get("solved_as") else "constrained"
        out.append(
            f"| {label} | {k} | {name} -> {r.spec['solver']} ({solved}) | "
            f"{r.n_iter} ({r.stop_reason}) | {t:.2f} | {r.objective:.7g} | "
            f"{r.objective / g.objective - 1:+.3%} | {viol:.1e} | "
            f"{'' if r is g else f'{worst_angle(np.asarray(g.S), np.asarray(r.S)):.1f}'} |"
        )
        print(out[-1], flush=True)
    out.append(f"| | | speed-up | | **{t_g / t_a:.1f}x** | | | | |")
    return out


HEAD = [
    "| map | k | fit | iterations (stop) | CPU s | objective | vs constrained | "
    "max abs(row sum - 1) | worst angle to the constrained fit (deg) |",
    "|---|---|---|---|---|---|---|---|---|",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated keys: " + ", ".join(KEYS))
    args = ap.parse_args()
    keys = args.only.split(",") if args.only else KEYS
    rows = [line for e in FILES if e.key in keys for line in rows_for(e)]
    if args.only:
        return 0
    text = [
        "# KL fractions of the pixels' counts: constrained iteration vs the exact plain-KL form",
        "",
        measured_line("bench_fractions.py"),
        "",
        *HEAD,
        *rows,
        "",
        "Run: `.venv/bin/python benchmarks/bench_fractions.py`.",
        "",
    ]
    OUT.write_text("\n".join(text))
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
