"""Spatial terms across processes: the MPI executor's halo exchange gives the serial answer.

``SpatialSmoothness`` and ``GaussianMapFilter`` couple neighbouring pixels; with the
pixels split over ranks each rank fetches the scan lines around its own rows
(:meth:`unmix.mpi.MPIExecutor.halo`).  The exchange plan and the windowed operators are
checked in-process; the fits run a helper under ``mpiexec`` (stdin from /dev/null, one
BLAS thread) that compares with a serial fit on rank 0.
"""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest

import unmix
from mpi_launch import HELPERS, mpiexec, needs_mpiexec
from unmix import UnsupportedError
from unmix._backend import backend_of
from unmix._ops import line_window
from unmix.executors.base import SerialExecutor, rows_of_rank
from unmix.executors.mpi import _halo_plan
from unmix.model import BindContext

pytestmark = pytest.mark.slow  # MPI / Dask processes

HELPER = str(HELPERS / "mpi_spatial.py")
needs_mpi = needs_mpiexec


def _mpiexec(n: int, *args: str, timeout: float = 120) -> list[dict]:
    run = mpiexec(n, HELPER, *args, timeout=timeout)
    assert run.returncode == 0, run.stderr[-3000:]
    return [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]


# ------------------------------------------------------------------ in-process
def _simulate(layout: tuple, width: int, line: int, full: np.ndarray) -> list[tuple]:
    """Every rank's (above, below) from running all ranks' plans against each other."""
    size = len(layout)
    plans = [_halo_plan(layout, r, width, line) for r in range(size)]
    assert len({len(p) for p in plans}) == 1  # every rank runs the same rounds
    out = []
    for r in range(size):
        above, below = [], []
        for d, (_, n_above, _, n_below) in enumerate(plans[r], start=1):
            if r - d >= 0:  # what rank r - d sends down in round d
                s, (a, b) = layout[r - d][0], plans[r - d][d - 1][0]
                assert b - a == n_above
                above.insert(0, full[s + a : s + b])
            if r + d < size:  # what rank r + d sends up in round d
                s, (a, b) = layout[r + d][0], plans[r + d][d - 1][2]
                assert b - a == n_below
                below.append(full[s + a : s + b])
        empty = np.zeros((0, full.shape[1]))
        out.append((np.concatenate([empty, *above]), np.concatenate([empty, *below])))
    return out


@pytest.mark.parametrize("size", [1, 2, 3, 5])
@pytest.mark.parametrize(
    ("lines", "cols", "block", "width"),
    [(6, 7, 7, 1), (2, 7, 7, 1), (5, 4, 4, 3), (7, 3, 3, 2), (4, 6, 5, 1), (3, 5, 20, 2)],
)
def test_halo_plan_delivers_the_rows_around_each_rank(size, lines, cols, block, width):
    n = lines * cols
    full = np.arange(n, dtype=float)[:, None]
    layout = tuple(rows_of_rank(n, block, r, size) for r in range(size))
    got = _simulate(layout, width, cols, full)
    for (start, stop), (above, below) in zip(layout, got, strict=True):
        lo, hi = line_window(start, stop, n, width, cols)
        np.testing.assert_array_equal(above, full[lo:start])
        np.testing.assert_array_equal(below, full[stop:hi])


class _SlicedHalo:
    """A stand-in for one MPI rank: its rows of a known global ``A``, halo by slicing."""

    distributed = True

    def __init__(self, full: np.ndarray, rows: tuple[int, int]) -> None:
        self.full, self.rows = full, rows

    def halo(self, A, width, row_len):
        lo, hi = line_window(*self.rows, self.full.shape[0], width, row_len)
        return self.full[lo : self.rows[0]], self.full[self.rows[1] : hi]


def _bind(term, shape, A, rows=None, executor=None):
    n = int(np.prod(shape))
    local = n if rows is None else rows[1] - rows[0]
    be = backend_of(A)
    ctx = BindContext(local, 5, A.shape[1], be, spatial_shape=shape, executor=executor)
    ctx = dataclasses.replace(ctx, rows=rows, n_total=n)
    return term.bind(ctx)


@pytest.mark.parametrize("shape", [(6, 7), (3, 4, 5), (9,)])
@pytest.mark.parametrize(
    "term",
    [
        unmix.SpatialSmoothness(0.7),
        unmix.SpatialSmoothness(0.7, neighbors=8),
        unmix.GaussianMapFilter(1.0),
        unmix.GaussianMapFilter(2.5),
    ],
    ids=["smooth4", "smooth8", "gauss1", "gauss2.5"],
)
def test_windowed_terms_equal_the_serial_rows(shape, term):
    if getattr(term, "neighbors", 4) == 8 and len(shape) != 2:
        pytest.skip("8 neighbours are defined on 2-D grids only")
    n = int(np.prod(shape))
    A = np.random.default_rng(0).random((n, 3))
    serial = _bind(term, shape, A)
    cuts = sorted({0, n // 3, n // 3 + 1, n // 2, n})  # whole and partial scan lines
    total = 0.0
    for start, stop in itertools.pairwise(cuts):
        part = _bind(term, shape, A, (start, stop), _SlicedHalo(A, (start, stop)))
        mine = A[start:stop]
        if isinstance(term, unmix.GaussianMapFilter):
            np.testing.assert_array_equal(part.apply(mine), serial.apply(A)[start:stop])
            continue
        total += part.value(mine)
        m, ms = part.model(mine), serial.model(A)
        np.testing.assert_array_equal(m.grad, ms.grad[start:stop])
        np.testing.assert_array_equal(m.curv, ms.curv[start:stop])
        assert m.lipschitz == ms.lipschitz
    if isinstance(term, unmix.SpatialSmoothness):
        assert total == pytest.approx(serial.value(A), rel=1e-12)


def test_halo_needs_an_executor_that_exchanges():
    A = np.ones((12, 2))
    part = _bind(unmix.SpatialSmoothness(1.0), (4, 3), A[:6], (0, 6), _NoHalo())
    with pytest.raises(TypeError, match="cannot exchange neighbouring scan lines"):
        part.value(A[:6])


class _NoHalo(SerialExecutor):
    distributed = True


def test_distributed_without_halo_rejects_the_map_filter():
    mx = unmix.datasets.make_mixture(3, spatial_shape=(6, 6), n_channels=20, random_state=0)
    with pytest.raises(UnsupportedError, match="halo exchange of boundary scan lines"):
        unmix.factorize(
            mx.X,
            3,
            executor=_NoHalo(),
            spatial_shape=(6, 6),
            max_iter=2,
            regularizers=[unmix.GaussianMapFilter(1.0)],
        )


# ------------------------------------------------------------------ under mpiexec
@needs_mpi
def test_halo_exchange_under_mpiexec():
    cases = _mpiexec(3, "halo")  # 3 ranks: uneven splits, a rank without rows, 2 hops
    assert [c["ok"] for c in cases if "ok" in c] == [True] * 4, cases
    assert any("pass this rank's rows of the maps" in c.get("error", "") for c in cases)


@needs_mpi
@pytest.mark.parametrize(
    ("ranks", "grids"),
    # 2x7: rank 2 owns no rows; 5x7: the filter's 3 lines come from 2 ranks
    [(2, ["6x7"]), (3, ["2x7", "5x7:GaussianMapFilter"])],
    ids=["n2", "n3-empty-rank"],
)
def test_spatial_terms_give_the_serial_answer(ranks, grids):
    cases = _mpiexec(ranks, "fit", *grids)
    assert len(cases) == 8 + 3 * (len(grids) - 1), cases
    k, itemsize = 3, 8
    for case in cases:
        what = f"{case['solver']} {case['term']} block={case['block']} grid={case['grid']}"
        assert case["dS"] < 1e-6 and case["dA"] < 1e-6 and case["dobj"] < 1e-6, what
        cols = case["grid"][1]
        if case["term"]["type"] == "SpatialSmoothness":
            lines, exchanges = 1, 2  # one line each way; for the model and for the value
        else:
            lines, exchanges = min(3, case["grid"][0] - 1), 1  # ceil(3 sigma) lines
        expected = exchanges * lines * cols * k * itemsize  # rank 0 sends downwards only
        if case["block"] == cols and case["rows"][1] - case["rows"][0] >= lines * cols:
            assert case["halo_bytes_per_iter"] == expected, what
        else:
            assert case["halo_bytes_per_iter"] > 0, what
    if ranks == 3:
        assert {tuple(c["rows"]) for c in cases if c["grid"] == [2, 7]} == {(0, 7), (0, 5)}


@needs_mpi
def test_total_variation_gives_the_serial_answer():
    cases = _mpiexec(3, "fit", "5x7:TotalVariation")
    assert len(cases) == 3, cases
    for case in cases:
        what = f"{case['solver']} block={case['block']}"
        assert case["dS"] < 1e-6 and case["dA"] < 1e-6 and case["dobj"] < 1e-6, what
        assert case["halo_bytes_per_iter"] > 0, what
