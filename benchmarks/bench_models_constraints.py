"""At most ``m`` endmembers per pixel (``MaxActive``) and bounds on the model
(``ProductBounds``) on real maps.

Rewrites the "At most m endmembers per pixel" and "Bounds on the product" sections of
``benchmarks/results/models.md`` (the file collects the rows of issue 12's models, one
section each; other sections are kept).

Protocol.  float64 maps (pixels, channels), default start (NNDSVDa), ``random_state=0``,
the default solver (``"auto"``: exact ANLS for ``MaxActive``, AO-ADMM for
``ProductBounds``), default ``tol`` and ``max_iter``; CPU seconds of this process (one
BLAS thread).

- MaxActive(m): "exhaustive" is ``1/2 sum_i min_{|T| = m} min_{a >= 0} ||x_i - a S_T||^2``
  for the fitted ``S``, by SciPy's NNLS over every support of every pixel (independent of
  unmix); "ratio" the fit's objective over it.  Planted: 300 pixels, each mixing exactly
  two of four Gaussian-peak endmembers, Gaussian noise 0.005; "supports" is the share of
  pixels whose fitted support (after Hungarian matching of the endmembers by angle) is the
  planted one, for MaxActive(2) and for plain NMF.
- ProductBounds(0, u), ``u`` = the map's 99th percentile: the model's largest excess over
  ``u``, its objective (and before the last feasibility step: the last iteration's), and
  the best fit with factor bounds that guarantee ``A S <= u`` (``S <= 1`` and ``A_j <=
  c_j`` with ``sum c_j = u``; two splits tried: even, and in proportion to each
  component's largest contribution ``max_i A_ij max_l S_jl`` in the plain fit); "floor"
  is ``1/2 ||X - min(X, u)||^2``, what any model within the bounds leaves at least.

Run: ``.venv/bin/python benchmarks/bench_models_constraints.py``.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import datetime  # noqa: E402
import itertools  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
from scipy.optimize import linear_sum_assignment, nnls  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import unmix  # noqa: E402
from _models_md import write_section  # noqa: E402
from unmix.model import Bounds, MaxActive, NonNegative, ProductBounds  # noqa: E402

OUT = Path(__file__).parent / "results" / "models.md"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SPARSE = "## At most m endmembers per pixel"
PRODUCT = "## Bounds on the product"


# ---------------------------------------------------------------------- data
def eels() -> np.ndarray:
    with h5py.File(DATA / "eels" / "CuZn_EELS_mapping_tutorial.hspy", "r") as f:
        cube = f["Experiments/EELS Spectrum Image/data"][()]
    return cube.astype(np.float64)


def raman() -> np.ndarray:
    return np.load(DATA / "raman" / "raman_renishaw_streamline_49x45.npz")["data"].astype(
        np.float64
    )


def maps() -> list[tuple[str, np.ndarray]]:
    e, r = eels(), raman()
    return [
        ("EELS Cu/ZnO crop 10x10x162", e[20:30, 15:25].reshape(100, -1)),
        ("EELS Cu/ZnO 50x40x162", e.reshape(-1, e.shape[-1])),
        ("Raman 49x45x394", r.reshape(-1, r.shape[-1])),
    ]


def planted(seed: int, n: int = 300, n_channels: int = 40) -> tuple:
    rng = np.random.default_rng(seed)
    grid = np.arange(n_channels)
    S = np.stack([np.exp(-0.5 * ((grid - c) / 3.0) ** 2) for c in (6, 16, 26, 34)]) + 0.05
    A = np.zeros((n, 4))
    for i in range(n):
        A[i, rng.choice(4, size=2, replace=False)] = rng.uniform(0.5, 2.0, size=2)
    X = np.clip(A @ S + 0.005 * rng.standard_normal((n, n_channels)), 0.0, None)
    return X, A, S


# ------------------------------------------------------------------ measures
def objective(X, A, S) -> float:
    return 0.5 * float(np.sum((X - A @ S) ** 2))


def exhaustive(X: np.ndarray, S: np.ndarray, m: int) -> float:
    total = 0.0
    for x in X:
        best = np.inf
        for T in itertools.combinations(range(S.shape[0]), m):
            best = min(best, nnls(S[list(T)].T, x)[1] ** 2)
        total += 0.5 * best
    return total


def timed(X, k, **kw):
    t = time.process_time()
    r = unmix.factorize(X, k, random_state=0, **kw)
    return r, time.process_time() - t


def sparse_row(name: str, X: np.ndarray, k: int, m: int) -> dict:
    r, cpu = timed(X, k, constraints=[NonNegative(), MaxActive(m)])
    best = exhaustive(X, r.S, m)
    plain, _ = timed(X, k)
    return {
        "data": name,
        "k": k,
        "m": m,
        "solver": r.spec["solver"],
        "nnz": int(np.count_nonzero(r.A, axis=1).max()),
        "objective": r.objective,
        "exhaustive": best,
        "ratio": r.objective / best,
        "plain": plain.objective,
        "plain_nnz": int(np.count_nonzero(plain.A, axis=1).max()),
        "iters": r.n_iter,
        "cpu": cpu,
    }


def supports(seed: int) -> dict:
    X, A_true, S_true = planted(seed)
    Tn = S_true / np.linalg.norm(S_true, axis=1, keepdims=True)
    out = {}
    for name, cons in (("max_active", [NonNegative(), MaxActive(2)]), ("plain", None)):
        r, _ = timed(X, 4, constraints=cons)
        Sn = r.S / np.linalg.norm(r.S, axis=1, keepdims=True)
        _, cols = linear_sum_assignment(-(Tn @ Sn.T))
        out[name] = float(np.all((r.A[:, cols] > 0) == (A_true > 0), axis=1).mean())
    return out


def product_row(name: str, X: np.ndarray, k: int) -> dict:
    u = float(np.percentile(X, 99))
    r, cpu = timed(X, k, constraints=[NonNegative(), ProductBounds(lower=0.0, upper=u)])
    Y = r.A @ r.S
    plain, _ = timed(X, k)
    contrib = plain.A.max(0) * plain.S.max(1)
    best = np.inf
    for caps in (np.full(k, u / k), u * contrib / contrib.sum()):
        cons = [NonNegative(), Bounds(upper=1.0, target="S"), Bounds(upper=caps, target="A")]
        rb, _ = timed(X, k, constraints=cons)
        assert (rb.A @ rb.S).max() <= u * (1 + 1e-9)
        best = min(best, rb.objective)
    return {
        "data": name,
        "k": k,
        "u": u,
        "xmax": float(X.max()),
        "excess": float(Y.max() - u),
        "floor": 0.5 * float(np.sum((X - np.minimum(X, u)) ** 2)),
        "ymin": float(Y.min()),
        "objective": r.objective,
        "last_iter": float(r.history["objective"][-1]),
        "factor": best,
        "ratio": r.objective / best,
        "plain": plain.objective,
        "plain_max": float((plain.A @ plain.S).max()),
        "iters": r.n_iter,
        "cpu": cpu,
    }


# ------------------------------------------------------------------- writing
def stamp() -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"Measured {now} on {platform.machine()}, one BLAS thread, CPU seconds, float64."


def sparse_section(rows: list[dict], planted_rows: list[dict]) -> str:
    lines = [
        SPARSE,
        "",
        stamp() + "  `MaxActive(m)`: every pixel holds at most `m` endmembers; exact ANLS "
        "solves each pixel's sparse NNLS over every support (`C(k, m)` <= 200) each "
        "iteration, and the maps are refitted exactly for the final `S`.  Exhaustive: "
        "SciPy NNLS over every support of every pixel for the fitted `S`.",
        "",
        "| data | k | m | solver | max non-zeros / pixel | objective | exhaustive (same S) "
        "| ratio | plain NMF objective (max non-zeros) | iterations | CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['k']} | {r['m']} | {r['solver']} | {r['nnz']} | "
            f"{r['objective']:.6g} | {r['exhaustive']:.6g} | {r['ratio']:.6f} | "
            f"{r['plain']:.6g} ({r['plain_nnz']}) | {r['iters']} | {r['cpu']:.2f} |"
        )
    lines += [
        "",
        "Planted (300 pixels, each exactly two of four endmembers, noise 0.005): share of "
        "pixels whose fitted support is the planted one.",
        "",
        "| seed | MaxActive(2) | plain NMF |",
        "|---|---|---|",
    ]
    for seed, p in planted_rows:
        lines.append(f"| {seed} | {p['max_active']:.3f} | {p['plain']:.3f} |")
    lines += ["", "Run: `.venv/bin/python benchmarks/bench_models_constraints.py`.", ""]
    return "\n".join(lines)


def product_section(rows: list[dict]) -> str:
    lines = [
        PRODUCT,
        "",
        stamp() + "  `ProductBounds(0, u)` with `u` the map's 99th percentile: AO-ADMM "
        "with the model split `Z = A S` on the box, then every pixel's maps rescaled into "
        "the bounds at the least loss.  Factor-bounded: `S <= 1`, `A_j <= c_j`, "
        "`sum c_j = u` (HALS; the better of an even split and one in proportion to the "
        "plain fit's components).  Floor: `1/2 ||X - min(X, u)||^2`, below which no "
        "model within the bounds fits (of any rank).",
        "",
        "| data | k | u (max X) | max(AS) - u | min(AS) | objective | last iteration | "
        "factor-bounded | ratio | floor | plain NMF (max AS) | iterations | CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['k']} | {r['u']:.6g} ({r['xmax']:.6g}) | {r['excess']:.2g} | "
            f"{r['ymin']:.4g} | {r['objective']:.6g} | {r['last_iter']:.6g} | "
            f"{r['factor']:.6g} | {r['ratio']:.3f} | {r['floor']:.6g} | "
            f"{r['plain']:.6g} ({r['plain_max']:.6g}) "
            f"| {r['iters']} | {r['cpu']:.2f} |"
        )
    lines += ["", "Run: `.venv/bin/python benchmarks/bench_models_constraints.py`.", ""]
    return "\n".join(lines)


def main() -> None:
    with threadpool_limits(1):
        data = maps()
        sparse = [sparse_row(data[0][0], data[0][1], 5, 2)]
        sparse += [sparse_row(name, X, 4, 2) for name, X in data[1:]]
        planted_rows = [(seed, supports(seed)) for seed in (1, 2)]
        product = [product_row(name, X, 3) for name, X in data[1:]]
    write_section(SPARSE, sparse_section(sparse, planted_rows))
    write_section(PRODUCT, product_section(product))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
