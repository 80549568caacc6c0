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
        with pytest.raises(ValueError, match="preprocessing= needs X in memory"):
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


# --- compute device != storage device, read-ahead, lazy (Dask) arrays -------------------


def test_each_block_is_read_once_per_pass_with_a_read_ahead(h5):
    from unmix._backend import backend_of
    from unmix.blocks import StreamedData

    be = backend_of(np.zeros((1, 1), np.float32))
    data = StreamedData(h5["X"], be, block_size=100, dtype=np.float32)
    assert data._reader.threaded  # h5py: the next block is read in a thread
    for b in data.blocks:
        first = data.x(b)
        assert data.x(b) is first  # the pass's second product reuses the block
        np.testing.assert_array_equal(first, h5["X"][b.start : b.stop])
    assert data.reads == len(data.blocks) == 5
    np.testing.assert_array_equal(data.x(data.blocks[2]), h5["X"][200:300])  # out of order


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_read_ahead_keeps_order_and_at_most_depth_blocks_in_flight(h5, depth):
    import threading
    import time

    from unmix.blocks import read_ahead

    lock, state = threading.Lock(), {"now": 0, "most": 0}

    def read(a, b):  # runs in the reading threads (h5py is read in threads)
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.01)
        out = np.asarray(h5["X"][a:b]) * 2
        with lock:
            state["now"] -= 1
        return out

    ranges = [(a, min(a + 60, 500)) for a in range(0, 500, 60)]
    got = list(read_ahead(h5["X"], ranges, read, depth=depth))
    assert [(a, b) for a, b, _ in got] == ranges
    np.testing.assert_array_equal(np.concatenate([x for *_, x in got]), 2 * h5["X"][()])
    assert state["most"] <= depth
    if depth > 1:
        assert state["most"] > 1  # the reads overlapped


def test_memory_map_gets_a_read_ahead_hint_not_a_thread(tmp_path, mixture):
    from unmix._backend import backend_of
    from unmix.blocks import StreamedData

    path = tmp_path / "X.npy"
    np.save(path, mixture.X)
    mm = np.load(path, mmap_mode="r")
    data = StreamedData(mm[50:], backend_of(mixture.X), block_size=64, dtype=np.float64)
    assert not data._reader.threaded
    got = np.concatenate([data.x(b) for b in data.blocks])
    np.testing.assert_array_equal(got, mixture.X[50:])
    a = unmix.factorize(mm, 3, random_state=0, max_iter=15, tol=0, block_size=64)
    b = unmix.factorize(mixture.X, 3, random_state=0, max_iter=15, tol=0, block_size=64)
    np.testing.assert_array_equal(a.S, b.S)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("solver", ["hals", "mu"])
def test_file_data_computed_on_a_torch_device(tmp_path, mixture, solver, dtype):
    torch = pytest.importorskip("torch")
    path = tmp_path / "X.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=mixture.X.astype(dtype), chunks=(25, 40))
    kw = {"solver": solver, "random_state": 0, "max_iter": 25, "tol": 0, "block_size": 100}
    with h5py.File(path, "r") as f:
        on_torch = unmix.factorize(f["X"], 3, device="torch", **kw)
        on_host = unmix.factorize(f["X"], 3, **kw)
    assert isinstance(on_torch.S, torch.Tensor) and on_torch.S.device.type == "cpu"
    assert on_torch.S.dtype == (torch.float32 if dtype == np.float32 else torch.float64)
    assert on_torch.spec["block_size"] == on_host.spec["block_size"]
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(on_torch.S.numpy(), on_host.S, rtol=rtol, atol=rtol * 1e-2)
    assert on_torch.objective == pytest.approx(on_host.objective, rel=rtol)


def test_host_array_streamed_to_a_device_gives_the_in_memory_answer(mixture):
    torch = pytest.importorskip("torch")
    kw = {"random_state": 0, "max_iter": 25, "tol": 0, "block_size": 100}
    streamed = unmix.factorize(mixture.X, 3, device="torch:cpu", **kw)
    resident = unmix.factorize(torch.from_numpy(mixture.X), 3, **kw)
    np.testing.assert_allclose(streamed.S.numpy(), resident.S.numpy(), rtol=1e-10)
    np.testing.assert_allclose(streamed.A.numpy(), resident.A.numpy(), rtol=1e-9, atol=1e-12)


def test_device_argument_errors(mixture):
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="drop device="):
        unmix.factorize(torch.from_numpy(mixture.X), 3, device="torch")
    with pytest.raises(ValueError, match="not a known device"):
        unmix.factorize(mixture.X, 3, device="gpu0")
    with pytest.raises(TypeError, match="not understood"):
        unmix.factorize(mixture.X, 3, device=3.5)
    with pytest.raises(ValueError, match="mask= and weights= with X streamed to device="):
        unmix.factorize(mixture.X, 3, device="torch", mask=np.isfinite(mixture.X))
    if not torch.cuda.is_available():
        with pytest.raises(unmix.DeviceUnavailableError, match=r"no CUDA device.*run on the CPU"):
            unmix.factorize(mixture.X, 3, device="cuda")


def test_device_index_beyond_the_machines_gpus(mixture, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(
        unmix.DeviceUnavailableError, match=r"has 2 CUDA device\(s\), numbered 0 to 1"
    ):
        unmix.factorize(mixture.X, 3, device="cuda:5")


def test_dask_array_is_streamed(mixture):
    da = pytest.importorskip("dask.array")
    lazy = da.from_array(mixture.X, chunks=(64, 40))
    assert unmix.blocks.is_streamable(lazy)
    # chunks of 64 rows, blocks of 100: the blocks are the problem's, not the storage's
    a = unmix.factorize(lazy, 3, random_state=0, max_iter=20, tol=0, block_size=100)
    b = unmix.factorize(mixture.X, 3, random_state=0, max_iter=20, tol=0, block_size=100)
    np.testing.assert_array_equal(a.S, b.S)


def test_lazy_spectral_image_streams(tmp_path, mixture):
    pytest.importorskip("dask.array")
    img = unmix.SpectralImage(mixture.X.reshape(20, 25, 40), metadata={"title": "planted"})
    path = tmp_path / "planted.h5"
    unmix.io.save(img, path)
    lazy = unmix.io.load(path, lazy=True)
    assert lazy.is_lazy
    X = lazy.unfold(load=False)
    r = unmix.factorize(X, 3, random_state=0, max_iter=20, tol=0, block_size=100)
    ref = unmix.factorize(mixture.X, 3, random_state=0, max_iter=20, tol=0, block_size=100)
    np.testing.assert_allclose(r.S, ref.S, rtol=1e-12)
    lazy.close()


@pytest.mark.parametrize(
    ("solver", "masked"), [("mu", True), ("gradient", True), ("hals", False), ("mu", False)]
)
def test_streamed_mask_and_weights_give_the_in_memory_answer(tmp_path, mixture, solver, masked):
    rng = np.random.default_rng(5)
    mask = rng.random(mixture.X.shape) > 0.1 if masked else None
    X = mixture.X if mask is None else np.where(mask, mixture.X, np.nan)  # NaN: missing
    w = unmix.Weights(pixels=rng.uniform(0.5, 2.0, X.shape[0]), channels=np.linspace(1, 2, 40))
    path = tmp_path / "masked.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=X, chunks=(50, 40))
    kw = {"solver": solver, "random_state": 0, "max_iter": 25, "tol": 0, "block_size": 100}
    memory = unmix.factorize(X, 3, mask=mask, weights=w, init="random", **kw)
    with h5py.File(path, "r") as f:
        streamed = unmix.factorize(f["X"], 3, mask=mask, weights=w, init="random", **kw)
        default_init = unmix.factorize(f["X"], 3, mask=mask, weights=w, **kw)
    np.testing.assert_allclose(streamed.S, memory.S, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(streamed.A, memory.A, rtol=1e-9, atol=1e-12)
    assert streamed.objective == pytest.approx(memory.objective, rel=1e-10)
    exact = unmix.factorize(X, 3, mask=mask, weights=w, **kw)  # in memory: LAPACK SVD start
    assert default_init.objective == pytest.approx(exact.objective, rel=2e-2)
