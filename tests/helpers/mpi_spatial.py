"""Run under ``mpiexec -n N``: spatial terms with the MPI executor's halo exchange.

``mpi_spatial.py halo``
    Exchange the halo of a known array for several grids, widths and splits (whole and
    partial scan lines); print one JSON line per case on rank 0 with ``ok`` true when
    every rank received exactly the rows around its own.
``mpi_spatial.py fit ROWSxCOLS[:TERM] [...]``
    Fit with SpatialSmoothness / GaussianMapFilter (only TERM when given; TotalVariation
    only when named) under the MPI executor and serially;
    print one JSON line per case on rank 0: the relative differences of S, A (gathered)
    and the objective, and the halo bytes rank 0 sent per iteration.
"""

import json
import sys

import numpy as np

import unmix
from unmix._ops import line_window
from unmix.executors.mpi import MPIExecutor

K = 3
CASES = [
    ("hals", {"regularizers": [unmix.SpatialSmoothness(0.5)]}),
    ("hals", {"regularizers": [unmix.SpatialSmoothness(0.5, neighbors=8)]}),
    ("hals", {"regularizers": [unmix.GaussianMapFilter(1.0)]}),
    ("mu", {"regularizers": [unmix.SpatialSmoothness(0.5)]}),
    ("mu", {"regularizers": [unmix.SpatialSmoothness(0.5, neighbors=8)]}),
    ("mu", {"regularizers": [unmix.GaussianMapFilter(0.7)]}),
    # rank boundaries inside scan lines (blocks of 5 pixels on lines of 7)
    ("hals", {"regularizers": [unmix.SpatialSmoothness(0.5)], "block_size": 5}),
    ("mu", {"regularizers": [unmix.GaussianMapFilter(1.0)], "block_size": 5}),
]
#: ``fit ROWSxCOLS:TotalVariation`` (its edge weights and its eps from the maps' global max)
TV_CASES = [
    ("hals", {"regularizers": [unmix.TotalVariation(0.3)]}),
    ("mu", {"regularizers": [unmix.TotalVariation(0.3)]}),
    ("hals", {"regularizers": [unmix.TotalVariation(0.3)], "block_size": 5}),
]


def check_halo(ex: MPIExecutor) -> None:
    """Every rank's halo equals the rows of the full array around its own rows."""
    for n_lines, cols, block, width in [(6, 7, 7, 1), (5, 4, 4, 3), (2, 5, 5, 2), (4, 6, 5, 1)]:
        n = n_lines * cols
        full = np.arange(n * 2, dtype=np.float64).reshape(n, 2)
        start, stop = ex.partition(n, block)
        above, below = ex.halo(full[start:stop], width, cols)
        lo, hi = line_window(start, stop, n, width, cols)
        ok = np.array_equal(above, full[lo:start]) and np.array_equal(below, full[stop:hi])
        oks = ex.allgather(bool(ok))
        if ex.rank == 0:
            case = {"grid": [n_lines, cols], "block": block, "width": width, "ok": all(oks)}
            print(json.dumps(case), flush=True)
    try:  # the wrong number of rows is named
        ex.halo(np.zeros((stop - start + 1, 2)), 1, 6)
    except ValueError as err:
        if ex.rank == 0:
            print(json.dumps({"error": str(err)}), flush=True)


def fit_cases(ex: MPIExecutor, rows: int, cols: int, only: str) -> None:
    mx = unmix.datasets.make_mixture(
        K, spatial_shape=(rows, cols), n_channels=20, snr_db=30, random_state=0
    )
    X = np.clip(mx.X, 0, None)
    for solver, extra in TV_CASES if only == "TotalVariation" else CASES:
        if only and type(extra["regularizers"][0]).__name__ != only:
            continue
        kw = {"solver": solver, "random_state": 0, "max_iter": 15, "tol": 0, "block_size": cols}
        kw.update(extra, spatial_shape=(rows, cols))
        marks = []

        def cb(info, marks=marks):
            marks.append(ex.bytes_halo)

        par = unmix.factorize(X, K, executor=ex, callback=cb, **kw)
        A = ex.gather_rows(par.A)
        if ex.rank == 0:
            ser = unmix.factorize(X, K, **kw)
            per_iter = np.diff(marks)
            case = {
                "solver": solver,
                "term": extra["regularizers"][0].describe(),
                "block": kw["block_size"],
                "grid": [rows, cols],
                "ranks": ex.size,
                "rows": list(par.rows),
                "dS": float(np.abs(par.S - ser.S).max() / np.abs(ser.S).max()),
                "dA": float(np.abs(A - ser.A).max() / np.abs(ser.A).max()),
                "dobj": abs(par.objective - ser.objective) / abs(ser.objective),
                "halo_bytes_per_iter": int(np.median(per_iter)) if per_iter.size else 0,
            }
            print(json.dumps(case), flush=True)


def main() -> None:
    ex = MPIExecutor()
    if sys.argv[1] == "halo":
        check_halo(ex)
        return
    for spec in sys.argv[2:]:
        grid, _, only = spec.partition(":")
        rows, cols = (int(s) for s in grid.split("x"))
        fit_cases(ex, rows, cols, only)


if __name__ == "__main__":
    main()
