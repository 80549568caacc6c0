"""One file, one seed, one answer: in memory, streamed and under MPI (issue 15).

The block grid (and with it HALS's per-block inner-repeat rule) is a property of the
problem, never of the file's storage chunks, so a run that loads the file and one that
streams it take the same iterations to the same factors.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import unmix
from mpi_launch import mpiexec, needs_mpiexec
from unmix.cli import entry


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """A float64 (96, 96, 512) count image chunked by 5 scan lines: 38 MB, five blocks of
    2016 rows (whole lines), a chunk (480 rows) that does not divide them."""
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 512)
    S = np.stack([np.exp(-(((x - c) / 0.05) ** 2)) for c in rng.uniform(0.1, 0.9, 4)]) + 0.05
    A = rng.gamma(1.0, 1.0, (96 * 96, 4))
    X = rng.poisson(20 * A @ S).astype(np.float64).reshape(96, 96, 512)
    path = tmp_path_factory.mktemp("scan") / "scan.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=X, chunks=(5, 96, 512))
    return path


def _run(path, out, *extra):
    args = ["run", str(path), "-k", "4", "--seed", "0", "--no-report", "-q", "-o", str(out)]
    assert entry([*args, *extra]) == 0
    return unmix.load_result(out / "result.h5")


def _agree(a, b, rtol=1e-6):
    assert a.n_iter == b.n_iter
    for x, y in ((a.S, b.S), (a.A, b.A)):
        x, y = np.asarray(x, float), np.asarray(y, float)
        assert np.abs(x - y).max() <= rtol * np.abs(y).max()


def test_streamed_run_equals_in_memory_run(scan, tmp_path):
    memory = _run(scan, tmp_path / "mem")
    streamed = _run(scan, tmp_path / "ooc", "--out-of-core")
    _agree(streamed, memory)


def test_factorize_block_grid_ignores_storage_chunks(tmp_path, mixture):
    """Chunks of 30 rows, blocks of 100: the streamed fit is the in-memory one, bit for bit
    (before, the blocks were silently cut to 90 rows and the delta rule decided apart)."""
    path = tmp_path / "X.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=mixture.X, chunks=(30, mixture.X.shape[1]))
    with h5py.File(path, "r") as f:
        for block in (100, None):
            kw = {"random_state": 0, "block_size": block}
            streamed = unmix.factorize(f["X"], 3, **kw)
            memory = unmix.factorize(mixture.X, 3, **kw)
            assert streamed.n_iter == memory.n_iter
            np.testing.assert_array_equal(streamed.S, memory.S)


@needs_mpiexec
def test_mpi_run_equals_in_memory_run(scan, tmp_path):
    memory = _run(scan, tmp_path / "mem")
    args = ["run", str(scan), "-k", "4", "--seed", "0", "--no-report", "-q", "--mpi"]
    for lazy in ([], ["--out-of-core"]):
        out = tmp_path / f"mpi{len(lazy)}"
        par = mpiexec(2, "-m", "unmix", *args, *lazy, "-o", str(out))
        assert par.returncode == 0, par.stderr[-3000:]
        _agree(unmix.load_result(out / "result.h5"), memory)
