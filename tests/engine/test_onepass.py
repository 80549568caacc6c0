"""The one-pass compiled kernels (numba) give the reference (BLAS) path's iterates."""

from __future__ import annotations

import numpy as np
import pytest

import unmix

pytest.importorskip("numba")

from unmix.engine.kernels import _onepass


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    A = rng.random((301, 3))  # 301 rows: blocks of 64 leave a ragged last block
    S = rng.random((3, 47))
    return A @ S + 0.01 * rng.random((301, 47))


def _fit(X, solver, kernel, **kw):
    kw.setdefault("max_iter", 30)
    return unmix.factorize(
        X,
        3,
        solver=solver,
        tol=0,
        random_state=0,
        block_size=64,
        solver_options={"kernel": kernel, **kw.pop("opts", {})},
        **kw,
    )


@pytest.mark.parametrize("solver", ["mu", "hals"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_onepass_matches_reference(data, solver, dtype):
    X = data.astype(dtype)
    r1 = _fit(X, solver, "onepass")
    r2 = _fit(X, solver, "blas")
    assert r1.A.dtype == dtype and r1.S.dtype == dtype
    tol = 1e-9 if dtype == np.float64 else 2e-3
    np.testing.assert_allclose(r1.A, r2.A, rtol=tol, atol=tol * np.abs(r2.A).max())
    np.testing.assert_allclose(r1.S, r2.S, rtol=tol, atol=tol * np.abs(r2.S).max())
    h1, h2 = np.asarray(r1.history["objective"]), np.asarray(r2.history["objective"])
    np.testing.assert_allclose(h1, h2, rtol=tol)
    rises = np.diff(h1)
    assert np.all(rises <= (1e-9 if dtype == np.float64 else 1e-5) * h1[0])
    assert h1[-1] < h1[0]


@pytest.mark.parametrize("solver", ["mu", "hals"])
def test_onepass_single_inner_and_l1(data, solver):
    """inner_max=1 (no repeats) and a constant L1 on A go through the kernel too."""
    for opts, regs in (({"inner_max": 1}, []), ({}, [unmix.L1(1e-2)])):
        r1 = _fit(data, solver, "onepass", opts=opts, regularizers=regs)
        r2 = _fit(data, solver, "blas", opts=opts, regularizers=regs)
        np.testing.assert_allclose(r1.A, r2.A, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(r1.S, r2.S, rtol=1e-9, atol=1e-12)


def test_kernel_choice_reaches_the_pass(data, monkeypatch):
    """'onepass' runs the kernel, 'blas' never; 'auto' from AUTO_MIN_ENTRIES entries on."""
    calls = []
    real = _onepass._pass

    def spy(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(_onepass, "_pass", spy)
    _fit(data, "hals", "onepass", max_iter=3)
    assert calls
    calls.clear()
    assert data.size < _onepass.AUTO_MIN_ENTRIES
    for choice in ("auto", "blas"):  # small X: the JIT load would cost more than it saves
        _fit(data, "hals", choice, max_iter=3)
        assert not calls
    monkeypatch.setattr(_onepass, "AUTO_MIN_ENTRIES", 0)
    _fit(data, "hals", "auto", max_iter=3)
    assert calls
    calls.clear()
    w = unmix.Weights(pixels=np.linspace(0.5, 1.5, data.shape[0]))
    _fit(data, "hals", "auto", max_iter=3, weights=w)  # weights do not qualify
    assert not calls


def test_onepass_refuses_what_it_cannot_run(data):
    w = unmix.Weights(pixels=np.linspace(0.5, 1.5, data.shape[0]))
    with pytest.raises(ValueError, match=r"kernel=.onepass. cannot run this problem: .*weights"):
        _fit(data, "hals", "onepass", max_iter=2, weights=w)
    with pytest.raises(ValueError, match=r"kernel=.onepass. cannot run this problem: .*loss"):
        _fit(data + 0.01, "mu", "onepass", max_iter=2, loss="itakura-saito")
    with pytest.raises(ValueError, match="kernel='fast': expected one of"):
        _fit(data, "mu", "fast", max_iter=2)


def test_reasons_without_numba(data, monkeypatch):
    monkeypatch.setattr(_onepass, "_HAVE", False)
    r = _fit(data, "mu", "auto", max_iter=3)  # falls back silently
    assert np.all(np.isfinite(r.A))
    with pytest.raises(ValueError, match="numba is not installed"):
        _fit(data, "mu", "onepass", max_iter=2)


@pytest.mark.parametrize("solver", ["hals", "mu"])
def test_streamed_blocks_run_the_kernel_and_give_the_in_memory_answer(tmp_path, data, solver):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "X.h5", "w") as f:
        f.create_dataset("X", data=data, chunks=(64, data.shape[1]))
    with h5py.File(tmp_path / "X.h5", "r") as f:
        streamed = _fit(f["X"], solver, "onepass")
    memory = _fit(data, solver, "onepass")
    np.testing.assert_array_equal(streamed.S, memory.S)
    np.testing.assert_array_equal(streamed.A, memory.A)


def _sweeps_reference(A, T, G, l1, tiny, nonneg, inner_max, delta, hals):
    """The inner repeats of the kernels, row by row in plain NumPy (float64)."""
    A = A.astype(np.float64)
    first = None
    for _ in range(inner_max):
        old = A.copy()
        if hals:
            d = np.maximum(np.diag(G), tiny)
            for j in range(A.shape[1]):
                v = A[:, j] + (T[:, j] - l1) / d[j] - A @ G[j] / d[j]
                A[:, j] = np.maximum(v, 0) if nonneg else v
        else:
            A = A * (np.maximum(T, 0) / np.maximum(A @ G + l1, tiny))
        change = float(np.sum((A - old) ** 2))
        if inner_max == 1:
            break
        first = change if first is None else first
        if change <= delta * delta * first or first == 0.0:
            break
    return A


@pytest.mark.parametrize("k", [1, 2, 5, 16])
@pytest.mark.parametrize("n", [1, 7, 301])
@pytest.mark.parametrize("hals", [True, False])
def test_block_kernel_any_k_and_ragged_tiles(k, n, hals):
    """k not a multiple of the 4- and 2-component tiles, rows not a multiple of the 2- and
    4-row tiles, channels over several chunks with a short last one."""
    from unmix.engine.kernels._numba import block_pass

    rng = np.random.default_rng(k * 1000 + n)
    m = 2 * 1024 + 37  # float64: 3 chunks of channels, the last one short
    X = rng.random((n, m))
    S = rng.random((k, m))
    A = rng.random((n, k))
    G = S @ S.T
    l1 = 0.5 if hals else 0.0
    expected_A = _sweeps_reference(A, X @ S.T, G, l1, 1e-30, True, 4, 0.01, hals)
    AtX = np.full((k, m), np.nan)
    AtA = block_pass(X, A, S, G, l1, 1e-30, True, 4, 0.01, hals, AtX)
    np.testing.assert_allclose(A, expected_A, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(AtX, A.T @ X, rtol=1e-10)
    np.testing.assert_allclose(AtA, A.T @ A, rtol=1e-10)
    assert AtA.dtype == np.float64


def test_block_kernel_float32_and_signed_hals():
    from unmix.engine.kernels._numba import block_pass

    rng = np.random.default_rng(5)
    n, m, k = 37, 4096 + 3, 5  # float32: 3 chunks of channels
    X = rng.random((n, m)).astype(np.float32)
    S = rng.random((k, m)).astype(np.float32)
    A0 = rng.random((n, k)).astype(np.float32)
    G = (S.astype(np.float64) @ S.T).astype(np.float32)
    for nonneg in (True, False):
        A = A0.copy()
        AtX = np.empty((k, m), np.float32)
        T = X.astype(np.float64) @ S.T
        want = _sweeps_reference(A0, T, G.astype(np.float64), 0.0, 1e-30, nonneg, 3, 0.0, True)
        AtA = block_pass(X, A, S, G, 0.0, 1e-30, nonneg, 3, 0.0, True, AtX)
        assert A.dtype == np.float32
        np.testing.assert_allclose(A, want, rtol=2e-3, atol=1e-3 * np.abs(want).max())
        np.testing.assert_allclose(AtX, A.astype(np.float64).T @ X, rtol=1e-4)
        np.testing.assert_allclose(AtA, A.astype(np.float64).T @ A, rtol=1e-4)
