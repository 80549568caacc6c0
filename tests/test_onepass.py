"""The one-pass compiled kernels (numba) give the reference (BLAS) path's iterates."""

from __future__ import annotations

import numpy as np
import pytest

import unmix

pytest.importorskip("numba")

from unmix import _onepass


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
        _fit(data + 0.01, "mu", "onepass", max_iter=2, loss="kl")
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
