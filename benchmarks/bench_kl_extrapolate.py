"""KL coordinate descent (``solver="klcd"``) and the gradient solver, with and without
extrapolation.

Writes ``benchmarks/results/kl_extrapolate.md``.

Protocol.  Each of the eleven real maps of ``bench_constraints.py`` (its loaders and k,
negative entries clipped at 0) and two planted count images of ``bench_counts.py`` ((b)
16384 x 1024 dense, k 6; (d) 65536 x 2048 CSR, k 8) is fitted by
``unmix.factorize(X, k, loss="kl", solver="klcd", random_state=seed)`` three ways:
*plain* (``solver_options={"extrapolate": False}``), *default* (no option: extrapolation
with restarts, Ang & Gillis 2019, from iteration ``KLCD.extrapolates_after`` = 50 on, if
the fit is still running), and *from the start* (``{"extrapolate": True}``); each at its
defaults otherwise (``tol`` 1e-4, ``max_iter`` 500; the planted sets at ``tol=1e-5``, as
``bench_counts.py``).  Columns: iterations (stop reason), CPU seconds of the whole call
(``time.process_time``, one BLAS/numba thread, after a warm-up call that compiles the
kernels), and the KL divergence relative to the lowest of the three fits of that seed.

Second table: the gradient solver (``solver="gradient"``, seed 0) on the same eleven
maps with the NMF, NMF + L1 and KL sets of ``bench_constraints.py``, plain
(``extrapolate=False``) against its default (extrapolated from iteration
``Gradient.extrapolates_after`` = 50 on); same columns, the KL or objective relative to the
lower of the two.

Run: ``.venv/bin/python benchmarks/bench_kl_extrapolate.py`` (``--seeds N``, default 2;
``--no-planted``; ``--no-gradient``).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import bench_constraints as bc  # noqa: E402
import bench_counts as bcn  # noqa: E402
import unmix  # noqa: E402
from _machine import cpu_model  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "kl_extrapolate.md"


WAYS = (("plain", False), ("default", None), ("from the start", True))


def fit(X, k: int, seed: int, extrapolate, tol: float | None) -> tuple[unmix.Result, float]:
    kw = {} if tol is None else {"tol": tol}
    opts = {} if extrapolate is None else {"extrapolate": extrapolate}
    t = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = unmix.factorize(
            X, k, loss="kl", solver="klcd", random_state=seed, solver_options=opts, **kw
        )
    return r, time.process_time() - t


def table_row(first: list[str], fits: list[tuple[unmix.Result, float]]) -> str:
    """One markdown row: ``first``, then each fit's iterations (stop), CPU seconds and
    objective relative to the lowest of them; printed as it is measured."""
    best = min(r.objective for r, _ in fits)
    cells = list(first)
    cells += [f"{r.n_iter} ({r.stop_reason})" for r, _ in fits]
    cells += [f"{t:.2f}" for _, t in fits]
    cells += [f"{100 * (r.objective / best - 1):.3f} %" for r, _ in fits]
    row = "| " + " | ".join(cells) + " |"
    print(row, flush=True)
    return row


def gradient_rows() -> list[str]:
    """Plain against default for the gradient solver (the second table)."""
    out = []
    for e in bc.ENTRIES:
        X, shape = e.load()
        X = np.clip(X, 0, None)
        for name in ("NMF", "NMF + L1", "KL"):
            fits = []
            for opts in ({"extrapolate": False}, {}):
                t = time.process_time()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    r = unmix.factorize(
                        X,
                        e.k,
                        solver="gradient",
                        random_state=0,
                        spatial_shape=shape,
                        solver_options=opts,
                        **bc.set_kwargs(name, X),
                    )
                fits.append((r, time.process_time() - t))
            out.append(table_row([e.label, str(e.k), name], fits))
    return out


def cases(planted: bool) -> list[tuple[str, int, object, float | None]]:
    out = []
    for e in bc.ENTRIES:
        X, _ = e.load()
        out.append((e.label, e.k, np.clip(X, 0, None), None))
    if planted:
        out.append(("(b) planted 16384 x 1024 dense", 6, bcn.planted()[0], 1e-5))
        out.append(("(d) planted 65536 x 2048 CSR", 8, bcn.planted_sparse()[0], 1e-5))
    return out


def rows_for(label: str, k: int, X, tol, seeds: int) -> list[str]:
    out = []
    for seed in range(seeds):
        fits = [fit(X, k, seed, flag, tol) for _, flag in WAYS]
        out.append(table_row([label, str(k), str(seed)], fits))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--no-planted", action="store_true")
    ap.add_argument("--no-gradient", action="store_true")
    args = ap.parse_args()
    bcn.warm_up()
    t0 = time.process_time()
    lines = [
        "# KL coordinate descent with and without extrapolation",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {cpu_model()}, "
        "one BLAS/numba thread, float64.  Protocol: `benchmarks/bench_kl_extrapolate.py` "
        "docstring.",
        "",
        "| data | k | seed | iterations: plain | default | from the start "
        "| CPU s: plain | default | from the start "
        "| KL vs the lowest: plain | default | from the start |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, k, X, tol in cases(not args.no_planted):
        lines += rows_for(label, k, X, tol, args.seeds)
    if not args.no_gradient:
        lines += [
            "",
            "## The gradient solver: plain against the default (from iteration 50)",
            "",
            "| data | k | set | iterations: plain | default | CPU s: plain | default "
            "| objective vs the lower: plain | default |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        lines += gradient_rows()
    lines += [
        "",
        f"Total CPU of the run: {time.process_time() - t0:.0f} s.  "
        "Run: `.venv/bin/python benchmarks/bench_kl_extrapolate.py`.",
        "",
    ]
    OUT.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
