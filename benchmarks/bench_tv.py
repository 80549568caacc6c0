"""Total variation against the Laplacian on piecewise-constant maps, and on a real map.

Rewrites the "Total variation of the maps" section of ``benchmarks/results/models.md``.

Protocol.  Planted: a 30 x 30 scan of three regions (pure pixels; region 2 also holds a
10 x 5 block inside region 0), gamma(2) spectra over 40 channels, Gaussian noise of
sigma 0.5, clipped at 0; seeds 0-2.  Every fit is ``unmix.factorize(X, 3,
constraints=[NonNegative(), UnitNorm()], spatial_shape=(30, 30), random_state=0,
max_iter=1000)`` with one regularizer; error: ``||A S - A_true S_true|| / ||A_true
S_true||`` (the noiseless model); the best strength of each over a grid.  Real: the EELS
map (50 x 40 x 162 counts) through ``unmix run --tv LAM`` (LAM relative to the mean
pixel norm): objective relative to the plain fit's and the maps' total variation
(4-neighbour absolute differences of every contribution map ``a_j ||s_j||``) relative to
the plain fit's.  CPU seconds, one BLAS
thread.

Run: ``.venv/bin/python benchmarks/bench_tv.py``.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import unmix  # noqa: E402
import unmix.io  # noqa: E402
from _models_md import measured, write_section  # noqa: E402
from unmix.blocks import mean_row_norm  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SECTION = "## Total variation of the maps"
TV = (0.05, 0.1, 0.2, 0.3)
LAPLACIAN = (0.003, 0.01, 0.03, 0.1)


def planted(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.zeros((30, 30), int)
    labels[:, 10:20], labels[:, 20:], labels[10:20, :5] = 1, 2, 2
    truth = np.eye(3)[labels].reshape(-1, 3) @ rng.gamma(2.0, size=(3, 40))
    return np.clip(truth + 0.5 * rng.standard_normal(truth.shape), 0, None), truth


def fit(X: np.ndarray, regs: list, shape: tuple) -> tuple[unmix.Result, float]:
    t = time.process_time()
    r = unmix.factorize(
        X,
        3,
        constraints=[unmix.NonNegative(), unmix.UnitNorm()],
        regularizers=regs,
        spatial_shape=shape,
        random_state=0,
        max_iter=1000,
    )
    return r, time.process_time() - t


def error(r: unmix.Result, truth: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(r.A) @ np.asarray(r.S) - truth) / np.linalg.norm(truth))


def best(X, truth, make, lams) -> tuple[float, float, int, float]:
    runs = [(lam, *fit(X, [make(lam)], (30, 30))) for lam in lams]
    lam, r, sec = min(runs, key=lambda t: error(t[1], truth))
    return error(r, truth), lam, r.n_iter, sec


def map_variation(r: unmix.Result, shape: tuple) -> float:
    """Total absolute difference of 4-neighbour pixels over every component's
    contribution map ``a_j ||s_j||`` (in data units, so the spectra's scale cancels)."""
    C = np.asarray(r.A) * np.linalg.norm(np.asarray(r.S), axis=1)
    M = C.reshape(*shape, -1)
    return float(np.abs(np.diff(M, axis=0)).sum() + np.abs(np.diff(M, axis=1)).sum())


def planted_rows() -> list[str]:
    rows = []
    for seed in (0, 1, 2):
        X, truth = planted(seed)
        plain, _ = fit(X, [], (30, 30))
        lap = best(X, truth, unmix.SpatialSmoothness, LAPLACIAN)
        tv = best(X, truth, unmix.TotalVariation, TV)
        rows.append(
            f"| planted seed {seed} | {error(plain, truth):.4f} | {lap[0]:.4f} (lam {lap[1]}) | "
            f"{tv[0]:.4f} (lam {tv[1]}, {tv[2]} it., {tv[3]:.1f} s) |"
        )
        print(rows[-1], flush=True)
    return rows


def real_rows() -> list[str]:
    image = unmix.io.load(str(DATA / "eels" / "CuZn_EELS_mapping_tutorial.hspy"))
    X = np.asarray(image.unfold(), dtype=float)
    shape = tuple(image.spatial_shape)
    plain, _ = fit(X, [], shape)
    tv0 = map_variation(plain, shape)
    rows = [f"| EELS Cu/ZnO | plain | 1.000 | 1.000 | {plain.n_iter} | - |"]
    unit = mean_row_norm(X)
    for rel in (0.003, 0.01, 0.03):
        r, sec = fit(X, [unmix.TotalVariation(rel * unit)], shape)
        fit_ratio = r.history["fit"][-1] / plain.history["fit"][-1]
        rows.append(
            f"| EELS Cu/ZnO | --tv {rel} | {fit_ratio:.3f} | "
            f"{map_variation(r, shape) / tv0:.3f} | {r.n_iter} | {sec:.1f} |"
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    warnings.simplefilter("ignore")
    lines = [
        SECTION,
        "",
        measured("bench_tv.py"),
        "",
        "| data | plain NMF error | best Laplacian (SpatialSmoothness) | best TotalVariation |",
        "|---|---|---|---|",
        *planted_rows(),
        "",
        "| map | fit | data fit / plain | map variation / plain | iterations | CPU s |",
        "|---|---|---|---|---|---|",
        *real_rows(),
        "",
        "Run: `.venv/bin/python benchmarks/bench_tv.py`.",
    ]
    write_section(SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()
