"""One-pass compiled kernels (numba) vs the BLAS reference path and scikit-learn, 1 thread.

Writes ``benchmarks/results/onepass.md``.  All times are CPU seconds of this process
(``time.process_time``) with BLAS pinned to one thread (environment + threadpoolctl) and
numba to one thread.  *floor* is one ``X @ v`` (reads X once), measured in the same run;
unmix's ms/iter is the mean over iterations 2..N from callback time stamps (JIT compile
time is excluded: it is measured apart, on a first call, and reported separately);
scikit-learn's is its total CPU time divided by ``n_iter_`` (its start included).

Run: ``.venv/bin/python benchmarks/bench_onepass.py [--quick]``.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.metadata  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

import unmix  # noqa: E402
from unmix.engine.kernels import _onepass  # noqa: E402

OUT = Path(__file__).parent / "results" / "onepass.md"
SIZES = [(16384, 1535, 4), (65536, 4096, 8)]


def make(n: int, m: int, k: int, dtype: type, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    A = rng.gamma(0.5, 1.0, (n, k))
    grid = np.linspace(0, 1, m)
    S = np.stack([np.exp(-((grid - c) ** 2) / 0.005) + 0.1 for c in np.linspace(0.1, 0.9, k)])
    X = np.empty((n, m), dtype)
    for s in range(0, n, 4096):  # in slices: no float64 copy of a large float32 X
        blk = A[s : s + 4096] @ S
        X[s : s + 4096] = np.clip(blk + 0.02 * rng.standard_normal(blk.shape), 0, None)
    return X


def median_cpu(f, r: int = 5) -> float:
    ts = []
    for _ in range(r):
        t = time.process_time()
        f()
        ts.append(time.process_time() - t)
    return float(np.median(ts))


def _numba_version() -> str:
    return importlib.metadata.version("numba") if _onepass.available() else "-"


def unmix_run(X, k, solver, kernel, iters):
    stamps, objs = [], []

    def cb(info):
        stamps.append(time.process_time())
        objs.append(info.objective)
        return False

    t0 = time.process_time()
    r = unmix.factorize(
        X,
        k,
        solver=solver,
        init="nndsvda",
        tol=0,
        max_iter=iters,
        random_state=0,
        callback=cb,
        compress=None,  # every iteration on X (not the compressed first phase)
        solver_options={"kernel": kernel},
    )
    per = np.diff(np.asarray(stamps))
    return 1e3 * float(per.mean()), time.process_time() - t0, r, np.asarray(stamps) - t0, objs


def sklearn_run(X, k, solver, iters):
    from sklearn.decomposition import NMF

    t0 = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = NMF(k, solver=solver, init="nndsvda", max_iter=iters, tol=0, random_state=0)
        W = est.fit_transform(X)
    cpu = time.process_time() - t0
    obj = 0.5 * float(np.sum((X - W @ est.components_) ** 2, dtype=np.float64))
    return 1e3 * cpu / est.n_iter_, cpu, est.n_iter_, obj


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes, few iterations")
    args = ap.parse_args()
    sizes = [(4096, 512, 4), (8192, 1024, 8)] if args.quick else SIZES
    threadpool_limits(1)
    t_start = time.perf_counter()

    # compile time apart (cache=True: a warm cache makes this a load, not a compile)
    t = time.process_time()
    for dt in (np.float64, np.float32):
        Xs = make(64, 32, 2, dt)
        for s in ("mu", "hals"):
            unmix.factorize(Xs, 2, solver=s, max_iter=2, solver_options={"kernel": "onepass"})
    jit_s = time.process_time() - t

    # the core's practical peak: a square BLAS product (1 thread), per dtype
    peak = {}
    for dt in (np.float32, np.float64):
        sq = np.ones((1024, 1024), dt)
        peak[np.dtype(dt).name] = 2 * 1024**3 / median_cpu(lambda sq=sq: sq @ sq, 3) / 1e9

    rows, extra, rates = [], [], []
    for n, m, k in sizes:
        for dt in (np.float32, np.float64):
            X = make(n, m, k, dt)
            v = np.ones(m, dt)
            floor = 1e3 * median_cpu(lambda X=X, v=v: X @ v)
            St = np.ones((m, k), dt)
            Ak = np.ones((n, k), dt)
            prods = 1e3 * median_cpu(lambda X=X, St=St, Ak=Ak: (X @ St, Ak.T @ X), 3)
            big = n * m > 50_000_000
            iters = 4 if args.quick else (6 if big else 15)
            res = {}
            for solver in ("mu", "hals"):
                for kernel in ("blas", "onepass"):
                    ms, _cpu, _r, _, objs = unmix_run(X, k, solver, kernel, iters)
                    res[(solver, kernel)] = (ms, objs[-1])
            sk = {}
            for solver in ("mu", "cd"):
                ms, _cpu, nit, obj = sklearn_run(X, k, solver, 4 if big else 10)
                sk[solver] = (ms, nit, obj)
            label = f"{n} x {m}, k {k}, {np.dtype(dt).name}"
            flops = 4.0 * k * n * m  # X S^T and A^T X, 2 k n m each
            rates.append(
                (
                    label,
                    X.nbytes / floor / 1e6,
                    flops / res[("hals", "onepass")][0] / 1e6,
                    flops / res[("mu", "onepass")][0] / 1e6,
                    peak[np.dtype(dt).name],
                )
            )
            rows.append((label, "floor `X @ v`", floor, ""))
            rows.append((label, "`X @ S.T` + `A.T @ X` (BLAS)", prods, ""))
            for (solver, kernel), (ms, obj) in res.items():
                name = f"unmix {solver} ({'reference BLAS' if kernel == 'blas' else 'one-pass'})"
                rows.append((label, name, ms, f"{obj:.6g} after {iters}"))
            for solver, (ms, nit, obj) in sk.items():
                rows.append((label, f"scikit-learn {solver}", ms, f"{obj:.6g} after {nit}"))
            # time to scikit-learn cd's final objective (small size only: a long fit)
            if not big and not args.quick:
                _ms, cpu_cd, nit_cd, obj_cd = sklearn_run(X, k, "cd", 400)
                for solver in ("hals", "mu"):
                    for kernel in ("blas", "onepass"):
                        _, _, _, at, objs = unmix_run(X, k, solver, kernel, 200)
                        hit = next((i for i, o in enumerate(objs) if o <= obj_cd), None)
                        extra.append(
                            (
                                label,
                                solver,
                                kernel,
                                cpu_cd,
                                nit_cd,
                                obj_cd,
                                None if hit is None else (hit + 1, float(at[hit])),
                            )
                        )
            del X

    blas = "; ".join(
        f"{d.get('internal_api')} {d.get('version')} ({d.get('num_threads')} thread)"
        for d in threadpool_info()
    )
    load = os.getloadavg()[0]
    lines = [
        "# One-pass compiled kernels (numba) vs BLAS, 1 thread",
        "",
        f"Date: {datetime.datetime.now().isoformat(timespec='seconds')}; "
        f"{time.perf_counter() - t_start:.0f} s wall.",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        f"(shared with other jobs: load average {load:.1f} at the end); BLAS: {blas}; "
        f"numba {_numba_version()} (1 thread).",
        "",
        "How to run: `.venv/bin/python benchmarks/bench_onepass.py` (`--quick`: seconds).",
        "",
        "All times are CPU ms of the process (`time.process_time`), medians for the "
        "products, means over iterations 2..N for unmix (callback stamps), total / n_iter_ "
        "for scikit-learn (its start included, tol=0). *x floor* divides by one `X @ v` "
        "measured in the same run. Default block size (8 MB of X). Data: k planted "
        "Gaussian-peak spectra, gamma abundances, clipped Gaussian noise.",
        "",
        f"JIT: the first calls that compile (or load from numba's cache) the kernels for "
        f"both dtypes and both solvers took {jit_s:.2f} CPU s; excluded from every number "
        f"below.",
        "",
        "| problem | method | ms/iter (CPU) | x floor | objective |",
        "|---|---|---|---|---|",
    ]
    floors = {r[0]: r[2] for r in rows if r[1].startswith("floor")}
    for label, name, ms, note in rows:
        lines.append(f"| {label} | {name} | {ms:.1f} | {ms / floors[label]:.2f} | {note} |")
    lines += [
        "",
        "Rates: the floor's read of X in GB/s; the one-pass kernels' GFLOP/s counting the two "
        "products only (4 k n m flops an iteration; the inner repeats and the S update add "
        "little); the core's peak as a square 1024 x 1024 BLAS product, same dtype, 1 thread:",
        "",
        "| problem | floor GB/s | one-pass HALS GFLOP/s | one-pass MU GFLOP/s | "
        "BLAS square GFLOP/s |",
        "|---|---|---|---|---|",
    ]
    for label, gbs, gh, gm, pk in rates:
        lines.append(f"| {label} | {gbs:.1f} | {gh:.1f} | {gm:.1f} | {pk:.1f} |")
    if extra:
        lines += [
            "",
            "CPU time to reach scikit-learn cd's final objective (cd: 400 iterations at "
            "tol=0, nndsvda; unmix: up to 200 iterations, tol=0, nndsvda):",
            "",
            "| problem | unmix solver | kernel | sklearn-cd CPU s (iters) | unmix iters | "
            "unmix CPU s | speedup |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, solver, kernel, cpu_cd, nit_cd, _obj, hit in extra:
            if hit is None:
                lines.append(
                    f"| {label} | {solver} | {kernel} | {cpu_cd:.2f} ({nit_cd}) | not reached "
                    f"| - | - |"
                )
            else:
                lines.append(
                    f"| {label} | {solver} | {kernel} | {cpu_cd:.2f} ({nit_cd}) | {hit[0]} | "
                    f"{hit[1]:.2f} | {cpu_cd / hit[1]:.1f}x |"
                )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    out = OUT if not args.quick else Path("/tmp") / "onepass_quick.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print("wrote", out)


if __name__ == "__main__":
    main()
