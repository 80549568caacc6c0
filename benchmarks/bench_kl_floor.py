"""Dense KL iteration against the floor: reference MU, fused MU (numba) and ``klcd``.

The floor of one KL iteration on dense ``X`` (n x m) is one read of ``X`` plus one
product ``A @ S`` of the same size and dtype (written into a preallocated array): MU of
both factors needs about four products of that size (the model twice, ``Q S^T`` and
``A^T Q``) and a logarithm an entry for the fit.  Measured here, all in the same run:

* the floor: ``X.sum()`` (one read) and ``np.matmul(A, S, out=Y)``;
* ms per iteration (median of the per-iteration CPU times of a fit from a fixed start,
  ``tol=0``): unmix MU with ``kernel="blas"`` (the NumPy/BLAS reference path), MU with
  ``kernel="onepass"`` (the fused kernel, ``unmix.engine.kernels._klmu``), and ``klcd``;
* CPU s until each reaches scikit-learn's final KL (``NMF(solver="mu",
  beta_loss="kullback-leibler", init="nndsvda")`` at its defaults), each unmix solver
  from its defaults (``factorize(X, k, loss="kl", solver=...)``, the Poisson start).

Data: (b) the planted counts of ``bench_counts.py`` (16384 x 1024, k 6, ~3.5 counts a
channel, float64 as in its section) and (f) the same generator scaled to 65536 x 4096,
k 8, float32 (1 GiB; maps and spectra as ``planted``, Poisson counts drawn in chunks of
rows straight into float32).  CPU seconds of this process (``time.process_time``), BLAS
and numba on one thread; the kernels are compiled (or loaded) before any timing.

Writes the section between ``<!-- kl floor section`` markers of
``benchmarks/results/counts.md`` (other sections untouched).

Run: ``.venv/bin/python benchmarks/bench_kl_floor.py [--quick] [--no-sklearn-large]``
(``--quick``: (b) only; ``--no-sklearn-large``: skip the times to scikit-learn's KL on (f),
about 10 minutes of scikit-learn).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import unmix  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from bench_counts import kl, planted, run_sklearn, smooth_maps  # noqa: E402

OUT = Path(__file__).parent / "results" / "counts.md"
BEGIN = "<!-- kl floor section: bench_kl_floor.py -->"
END = "<!-- end kl floor section -->"


# ---------------------------------------------------------------------- data
def planted_large(n_side=256, m=4096, k=8, mean=3.5, seed=0, dtype=np.float32):
    """:func:`bench_counts.planted`'s law at ``n_side**2 x m``, drawn in chunks of rows
    into ``dtype`` (no float64 array of the whole size); returns ``X, A, S``."""
    _, _, S = planted(n_side=8, m=m, k=k, seed=seed)  # the spectra
    rng = np.random.default_rng(seed + 1)
    A = smooth_maps(n_side, k, rng)
    A *= mean / (A.mean(axis=0) @ S.mean(axis=1))
    X = np.empty((A.shape[0], m), dtype)
    for s in range(0, A.shape[0], 2048):
        X[s : s + 2048] = rng.poisson(A[s : s + 2048] @ S)
    return X, A, S


# ----------------------------------------------------------------- measures
def _median_ms(f, repeat=5) -> float:
    ts = []
    for _ in range(repeat):
        t = time.process_time()
        f()
        ts.append(time.process_time() - t)
    return float(np.median(ts)) * 1e3


def floor_ms(X, k: int, seed: int = 0) -> tuple[float, float]:
    """(read, product) in ms: ``X.sum()`` and ``A @ S`` into a preallocated ``X``-sized
    array of ``X``'s dtype."""
    rng = np.random.default_rng(seed)
    A = rng.random((X.shape[0], k)).astype(X.dtype)
    S = rng.random((k, X.shape[1])).astype(X.dtype)
    Y = np.empty_like(X)
    read = _median_ms(lambda: X.sum())
    product = _median_ms(lambda: np.matmul(A, S, out=Y))
    return read, product


def start(X, k):
    """One fixed start for the per-iteration timings (a few MU iterations)."""
    r = unmix.factorize(X, k, loss="kl", solver="mu", max_iter=2, tol=0, random_state=0)
    return r.A, r.S


def ms_per_iter(X, k, A0, S0, solver, kernel=None, iters=5) -> float:
    """Median CPU ms of an iteration of ``iters`` from ``(A0, S0)``."""
    stamps = []
    t = time.process_time()

    def callback(info) -> bool:
        stamps.append(time.process_time() - t)
        return False

    opts = {"kernel": kernel} if kernel else {}
    unmix.factorize(X, k, loss="kl", solver=solver, init=(A0.copy(), S0.copy()), tol=0,
                    max_iter=iters, callback=callback, solver_options=opts)  # fmt: skip
    return float(np.median(np.diff(stamps))) * 1e3


def to_target(X, k, solver, target, kernel=None) -> dict:
    """CPU s until the objective first reaches ``target`` (from the defaults)."""
    trace = []
    t = time.process_time()

    def callback(info) -> bool:
        trace.append((time.process_time() - t, info.objective))
        return False

    opts = {"kernel": kernel} if kernel else {}
    r = unmix.factorize(X, k, loss="kl", solver=solver, random_state=0, callback=callback,
                        solver_options=opts)  # fmt: skip
    cpu = time.process_time() - t
    hit = next((s for s, obj in trace if obj <= target), None)
    return {"kl": kl(X, r.A, r.S), "iters": r.n_iter, "cpu": cpu, "hit": hit}


def warm_up() -> float:
    """Compile (or load from cache) the kernels; CPU s."""
    rng = np.random.default_rng(0)
    X = rng.poisson(3.0, (64, 40)).astype(np.float64)
    t = time.process_time()
    for dt in (np.float64, np.float32):
        for solver, opts in (("mu", {"kernel": "onepass"}), ("klcd", {})):
            unmix.factorize(X.astype(dt), 2, loss="kl", solver=solver, max_iter=2,
                            solver_options=opts)  # fmt: skip
    return time.process_time() - t


def case(name, X, k, sklearn: bool) -> dict:
    print(f"{name}: {X.shape} {X.dtype}", flush=True)
    read, product = floor_ms(X, k)
    A0, S0 = start(X, k)
    rows = {
        "MU, reference (kernel='blas')": ms_per_iter(X, k, A0, S0, "mu", "blas"),
        "MU, fused (kernel='onepass')": ms_per_iter(X, k, A0, S0, "mu", "onepass"),
        "klcd": ms_per_iter(X, k, A0, S0, "klcd"),
    }
    out = {"name": name, "shape": X.shape, "dtype": X.dtype.name, "k": k, "read": read}
    out |= {"product": product, "iters": rows, "sk": None, "runs": {}}
    print(f"  floor {read:.1f} + {product:.1f} ms; {rows}", flush=True)
    if sklearn:
        out["sk"] = run_sklearn(X, k)
        target = out["sk"]["kl"]
        out["runs"]["MU, fused"] = to_target(X, k, "mu", target, "onepass")
        out["runs"]["klcd"] = to_target(X, k, "klcd", target)
        print(f"  sklearn {out['sk']}; {out['runs']}", flush=True)
    return out


# ------------------------------------------------------------------- report
def _fmt(v, spec=".2f") -> str:
    return "-" if v is None else format(v, spec)


def render(results: list[dict], warm: float) -> str:
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        BEGIN,
        "## Dense KL iteration against the floor",
        "",
        f"Measured {when} on {platform.machine()}, one BLAS/numba thread, CPU time of the "
        "process.  Floor = one read of `X` (`X.sum()`) + one `A @ S` of `X`'s size and "
        "dtype into a preallocated array.  ms / iteration: median of 5 iterations from "
        "one start (`tol=0`); CPU s to sklearn's KL: each unmix solver from its defaults "
        f"(Poisson start).  First calls of the kernels (compile / cache load): {warm:.2f} s.",
        "",
        "| data | k | dtype | floor ms (read + A S) | method | ms / iteration | / floor |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        floor = r["read"] + r["product"]
        shape = f"{r['name']} {r['shape'][0]} x {r['shape'][1]}"
        head = f"| {shape} | {r['k']} | {r['dtype']} "
        head += f"| {floor:.1f} ({r['read']:.1f} + {r['product']:.1f}) "
        for method, ms in r["iters"].items():
            lines.append(f"{head}| {method} | {ms:.1f} | {ms / floor:.2f}x |")
    lines += [
        "",
        "| data | method | final KL | iterations | CPU s (call) | CPU s to sklearn's KL |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["sk"] is None:
            continue
        sk = r["sk"]
        lines.append(
            f"| {r['name']} | scikit-learn MU | {sk['kl']:,.1f} | {sk['iters']} "
            f"| {sk['cpu']:.2f} | {sk['cpu']:.2f} |"
        )
        for method, v in r["runs"].items():
            lines.append(
                f"| {r['name']} | unmix {method} | {v['kl']:,.1f} | {v['iters']} "
                f"| {v['cpu']:.2f} | {_fmt(v['hit'])} |"
            )
    lines += ["", "Run: `.venv/bin/python benchmarks/bench_kl_floor.py`.", ""]
    return "\n".join(lines)


def write(section: str) -> None:
    """Replace the section between the markers (or append it), keeping hand notes that
    follow the generated part (from ``Notes`` up to the end marker)."""
    text = OUT.read_text() if OUT.exists() else ""
    notes = ""
    if BEGIN in text:
        pre, rest = text.split(BEGIN, 1)
        old, post = rest.split(END, 1) if END in rest else (rest, "")
        m = re.search(r"\n(Notes on the KL floor run.*)", old, re.S)
        notes = m.group(1).rstrip() + "\n" if m else ""
    else:
        pre, post = text.rstrip() + "\n\n", "\n"
    OUT.write_text(pre + section + ("\n" + notes if notes else "") + END + post)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-sklearn-large", action="store_true")
    args = ap.parse_args()
    with threadpool_limits(1):
        warm = warm_up()
        results = [case("(b) planted", planted()[0], 6, sklearn=True)]
        if not args.quick:
            X = planted_large()[0]
            results.append(case("(f) planted", X, 8, sklearn=not args.no_sklearn_large))
    write(render(results, warm))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
