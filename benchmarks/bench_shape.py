"""Spectral shape constraints (NoDips, Unimodal) against plain NMF on the Raman map.

Rewrites the "Spectral shape" section of ``benchmarks/results/models.md`` (other sections
are kept).

Protocol.  Raman map (49 x 45 x 394, float), k = 3, Frobenius loss, ``random_state=0``,
default stop rule (``max_iter=500``), solver "auto" (HALS for every row).  Plain NMF
(``NonNegative()``) against ``[NonNegative(target="A"), NoDips(depth)]`` for several
depths and ``[NonNegative(target="A"), Unimodal()]``.  "deepest dip / noise": per
component, ``max_c (s[c-1] + s[c+1]) / 2 - s[c]`` divided by the noise level
``sqrt(1.5) sigma / max_i a_ij`` (sigma: the median over pixels of the robust MAD of the
pixel's second differences over sqrt(6); a dip below that level is below the noise of
every pixel's spectrum; independent of the constraint's tolerance).  "objective": the
fit's objective over plain NMF's.  CPU: seconds of the call, one BLAS thread.

Run: ``.venv/bin/python benchmarks/bench_shape.py``.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import datetime  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import unmix  # noqa: E402
from _models_md import write_section  # noqa: E402
from unmix.model import NoDips, NonNegative, Unimodal  # noqa: E402
from unmix.model._shape import dip_depths  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SECTION = "## Spectral shape"
DEPTHS = (0.001, 0.005, 0.02, 0.05)


def noise_levels(X: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Per component: the dip below the noise of every pixel's spectrum (see module)."""
    d2 = X[:, :-2] - 2 * X[:, 1:-1] + X[:, 2:]
    mad = 1.4826 * np.median(np.abs(d2 - np.median(d2, axis=1, keepdims=True)), axis=1)
    return np.sqrt(1.5) * float(np.median(mad)) / np.sqrt(6) / A.max(axis=0)


def run(X: np.ndarray, name: str, cons: list | None) -> dict:
    t0 = time.process_time()
    r = unmix.factorize(X, 3, constraints=cons, random_state=0)
    cpu = time.process_time() - t0
    dips = dip_depths(r.S).max(axis=1) / noise_levels(X, r.A)
    return {"name": name, "r": r, "dips": dips, "cpu": cpu}


def main() -> None:
    X = np.asarray(unmix.io.load(str(DATA / "raman" / "raman_renishaw_streamline_49x45.npz")).data)
    X = X.reshape(-1, X.shape[-1]).astype(np.float64)
    rows = [run(X, "plain NMF", None)]
    for depth in DEPTHS:
        rows.append(run(X, f"NoDips({depth})", [NonNegative(target="A"), NoDips(depth)]))
    rows.append(run(X, "Unimodal()", [NonNegative(target="A"), Unimodal()]))
    base = rows[0]["r"].objective
    lines = [
        SECTION,
        "",
        f"{datetime.date.today()}, {platform.processor() or platform.machine()}, one BLAS "
        "thread.  Raman 49 x 45 x 394, k = 3 (protocol: `benchmarks/bench_shape.py`).",
        "",
        "| model | deepest dip / noise (per component) | objective / plain | iterations "
        "| stop | CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        r = row["r"]
        dips = ", ".join(f"{d:.1f}" for d in row["dips"])
        lines.append(
            f"| {row['name']} | {dips} | {r.objective / base:.3f} | {r.n_iter} "
            f"| {r.stop_reason} | {row['cpu']:.1f} |"
        )
    lines += ["", NOTES.strip(), ""]
    write_section(SECTION, "\n".join(lines))
    print("\n".join(lines))


NOTES = """
### Notes

- The acceptance asked (no dip above the noise level in any component at <= 1.1x the
  plain objective) is **not met**: the deepest dips of plain NMF are the feet of sharp
  Raman peaks and the notches carved where another component holds a peak; a curvature
  bound below the noise also bounds the peaks' feet, so the peaks broaden.  Depth 0.001
  costs 1.78x the objective and still leaves 2.4x the noise in one component; at
  <= 1.1x (depth 0.02) the deepest dips are halved in two components, not below noise.
- Unimodal is not a model of a Raman spectrum (several peaks); shown for its cost only.
"""

if __name__ == "__main__":
    with threadpool_limits(1):
        main()
