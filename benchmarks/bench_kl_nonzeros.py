"""KL fits by the gradient solver on mostly-zero counts: terms over the nonzeros vs dense.

Writes ``benchmarks/results/kl_nonzeros.md``.

Protocol.  The real count maps in ``../shared/data`` as float64 (pixels, channels),
``unmix.factorize(X, k, loss="kl", constraints=[NonNegative(), SumToOne()],
random_state=0)`` - the model ``solver="auto"`` gives to the gradient solver (KLCD and
MU take no sum-to-one) - once as shipped (blocks at most 10 % nonzero are worked on by
their nonzeros, ``unmix.engine.solvers._gradient_counts``) and once with every block
dense (``MAX_DENSITY = -1``, the solver before that path), in the same process, one
BLAS thread.  CPU seconds of the whole call (``time.process_time``), iterations, stop
reason, objective.  The two paths take the same steps to rounding at first; later a
line search's test may fall the other way on rounding, so the iterates part (both
descend, both stop by ``tol``).

Run: ``.venv/bin/python benchmarks/bench_kl_nonzeros.py``.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import datetime  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import unmix  # noqa: E402
import unmix.engine.solvers._gradient_counts as gc  # noqa: E402
from _machine import cpu_model, table_rows  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parent / "results" / "kl_nonzeros.md"
MAPS = [  # (name, file, k)
    ("EDS TEM Bruker 64x64x2048", "eds/eds_tem_bruker_64x64.npz", 4),
    ("EDS SEM Bruker 75x100x2048", "eds/eds_sem_bruker_P45_75x100.npz", 4),
    ("EDS TEM JEOL 64x64 (ds8)", "eds/eds_tem_jeol_64x64_ds8.npz", 3),
    ("EELS Cu/ZnO 50x40x162", "eels/CuZn_EELS_mapping_tutorial.hspy", 3),
]


def load(rel: str) -> np.ndarray:
    X = np.asarray(unmix.load(str(DATA / rel)).unfold(), dtype=np.float64)
    return X.reshape(X.shape[0], -1)


def fit(X: np.ndarray, k: int, density: float) -> tuple[unmix.Result, float]:
    gc.MAX_DENSITY = density
    cons = [unmix.NonNegative(), unmix.SumToOne()]
    t = time.process_time()
    r = unmix.factorize(X, k, loss="kl", constraints=cons, random_state=0)
    return r, time.process_time() - t


def row(name: str, rel: str, k: int) -> str:
    X = load(rel)
    fast, t_fast = fit(X, k, 0.1)
    dense, t_dense = fit(X, k, -1.0)
    gc.MAX_DENSITY = 0.1
    zeros = float(np.mean(X == 0))
    return (
        f"| {name} | {k} | {100 * zeros:.1f} % | {fast.spec['solver']} | "
        f"{t_dense:.1f} ({dense.n_iter} {dense.stop_reason}) | "
        f"{t_fast:.1f} ({fast.n_iter} {fast.stop_reason}) | {t_dense / t_fast:.1f}x | "
        f"{1e3 * t_dense / dense.n_iter:.0f} / {1e3 * t_fast / fast.n_iter:.0f} | "
        f"{fast.objective / dense.objective - 1:+.2e} |"
    )


def main() -> None:
    warnings.simplefilter("ignore")
    lines = [
        "# KL + sum-to-one on mostly-zero counts: the gradient solver by the nonzeros",
        "",
        f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on "
        f"{cpu_model()}, Python {platform.python_version()}, NumPy {np.__version__}, one "
        "BLAS thread, CPU seconds.  Protocol: `benchmarks/bench_kl_nonzeros.py` docstring.",
        "",
        "| map | k | zeros | solver | dense: CPU s (iterations) | by nonzeros: CPU s "
        "(iterations) | speed-up | ms an iteration (dense / nonzeros) | objective, "
        "nonzeros vs dense |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += table_rows(MAPS, row)
    lines += ["", "Run: `.venv/bin/python benchmarks/bench_kl_nonzeros.py`.", ""]
    OUT.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
