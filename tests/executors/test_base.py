"""The executor contract: one pass over the pixel blocks per iteration, every solver."""

from __future__ import annotations

import numpy as np
import pytest

import unmix
from conftest import RecordingExecutor

SOLVERS = ["hals", "mu", "bpp", "admm", "gradient"]


@pytest.mark.parametrize("loss", ["frobenius", "kl"])
@pytest.mark.parametrize("solver", SOLVERS)
def test_one_pass_over_x_per_iteration(mixture, solver, loss):
    if loss == "kl" and solver not in ("mu", "gradient"):
        pytest.skip("a Frobenius solver")
    ex = RecordingExecutor()
    marks: list[int] = []
    res = unmix.factorize(
        mixture.X,
        3,
        solver=solver,
        loss=loss,
        max_iter=6,
        tol=0,
        block_size=128,  # 500 pixels: 4 blocks
        executor=ex,
        compress=None,
        callback=lambda info: marks.append(len(ex.passes)),
        random_state=0,
    )
    assert res.n_iter == 6
    per_iteration = np.diff(marks)
    assert per_iteration.tolist() == [1] * 5, "one map_reduce (data pass) per iteration"
    for visited in ex.passes[-5:]:
        assert visited == [0, 1, 2, 3], "each block once per pass"


def test_serial_executor_is_the_contract():
    ex = unmix.SerialExecutor()
    blocks = [unmix.executors.Block(i, 4 * i, min(10, 4 * i + 4)) for i in range(3)]
    sums = ex.map_reduce(lambda b: {"n": b.size, "v": np.full(2, b.index)}, blocks)
    assert sums["n"] == 10
    np.testing.assert_array_equal(sums["v"], [3, 3])
    assert ex.partition(10, 4) == (0, 10)
    assert ex.allreduce(2.5) == 2.5
    assert not ex.distributed


@pytest.mark.parametrize("module", ["unmix.mpi", "unmix.dask"])
def test_distributed_executors_declare_the_contract(module):
    mod = pytest.importorskip(module)
    cls = mod.MPIExecutor if module == "unmix.mpi" else mod.DaskExecutor
    if module == "unmix.mpi":
        for name in ("map_reduce", "allreduce", "partition", "halo", "split"):
            assert callable(getattr(cls, name)), name
    else:
        assert cls.drives_workers and callable(cls.factorize)
