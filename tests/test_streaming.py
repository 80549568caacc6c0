"""Out-of-core X: HDF5 / Zarr datasets read block by block give the in-memory answer."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest

import unmix


@pytest.fixture
def h5(tmp_path, mixture):
    path = tmp_path / "X.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=mixture.X.astype(np.float32), chunks=(25, 40))
        f.create_dataset("counts", data=np.rint(100 * mixture.X).astype(np.uint16))
    with h5py.File(path, "r") as f:
        yield f


CASES = [
    ("hals", {}),
    ("mu", {"loss": "kl"}),
    ("bpp", {}),
    ("admm", {"constraints": [unmix.NonNegative(), unmix.SumToOne()]}),
    ("svd", {"constraints": [unmix.Orthogonal()]}),
    ("hals", {"init": "spa"}),
    ("hals", {"init": "vca"}),
    ("hals", {"compress": 8}),
]


@pytest.mark.parametrize(("solver", "extra"), CASES)
def test_streamed_equals_in_memory(h5, solver, extra):
    kw = {"solver": solver, "random_state": 0, "max_iter": 30, "tol": 0, "block_size": 100}
    streamed = unmix.factorize(h5["X"], 3, **kw, **extra)
    memory = unmix.factorize(h5["X"][()], 3, **kw, **extra)
    assert isinstance(streamed.A, np.ndarray) and streamed.S.dtype == np.float32
    if solver == "svd":  # LAPACK in memory, randomized through the blocks when streamed
        np.testing.assert_allclose(np.abs(streamed.S), np.abs(memory.S), atol=1e-5)
    else:
        np.testing.assert_array_equal(streamed.S, memory.S)
        assert streamed.objective == memory.objective


def test_streamed_integer_counts_become_float32(h5):
    r = unmix.factorize(h5["counts"], 3, loss="kl", max_iter=5, block_size=64)
    assert r.S.dtype == np.float32


def test_zarr_array(tmp_path, mixture):
    zarr = pytest.importorskip("zarr")
    z = zarr.open_array(
        str(tmp_path / "X.zarr"), mode="w", shape=mixture.X.shape, chunks=(50, 40), dtype="f8"
    )
    z[:] = mixture.X
    a = unmix.factorize(z, 3, random_state=0, max_iter=20, tol=0)
    b = unmix.factorize(
        mixture.X, 3, random_state=0, max_iter=20, tol=0, block_size=a.spec["block_size"]
    )
    np.testing.assert_array_equal(a.S, b.S)


def test_streamed_bad_input(tmp_path, mixture):
    with_nan, negative = mixture.X.copy(), mixture.X.copy()
    with_nan[333, 7] = np.nan
    negative[10, 3] = -1.0
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("nan", data=with_nan)
        f.create_dataset("neg", data=negative)
    with h5py.File(path, "r") as f:
        with pytest.raises(ValueError, match=r"1 NaN .* rows 300-399 of the file"):
            unmix.factorize(f["nan"], 3, block_size=100)
        with pytest.raises(ValueError, match=r"Negative values .* rows 0-99"):
            unmix.factorize(f["neg"], 3, block_size=100)
        with pytest.raises(ValueError, match="need X in memory"):
            unmix.factorize(f["neg"], 3, preprocessing=[unmix.NormalizePixels()])


PEAK = """
import resource, sys, h5py, numpy as np, unmix
with h5py.File(sys.argv[1], "r") as f:
    unmix.factorize(f["X"][:100], 3, max_iter=2)  # warm up imports and BLAS buffers
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    unmix.factorize(f["X"], 3, max_iter=3, tol=0, block_size=500)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)
"""


def test_streamed_fit_does_not_load_the_data(tmp_path):
    """A 160 MB dataset: the fit's extra resident memory stays far below its size."""
    path = tmp_path / "big.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        d = f.create_dataset("X", shape=(40000, 1000), dtype="f4", chunks=(500, 1000))
        S = rng.random((3, 1000), dtype=np.float32)
        for i in range(0, 40000, 5000):
            d[i : i + 5000] = rng.random((5000, 3), dtype=np.float32) @ S
    out = subprocess.run(
        [sys.executable, "-c", PEAK, str(path)], capture_output=True, text=True, check=True
    )
    extra = int(out.stdout.strip())
    assert extra < 0.15 * 40000 * 1000 * 4, f"{extra / 2**20:.0f} MiB above the baseline"
