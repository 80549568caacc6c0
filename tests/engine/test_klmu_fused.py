"""The fused KL MU kernel (numba) gives the reference (NumPy/BLAS) path's iterates."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import unmix

pytest.importorskip("numba")

from unmix.engine.kernels import _klmu, _onepass


@pytest.fixture(scope="module")
def counts():
    """Poisson counts 301 x 47 (k 3): 301 rows leave a ragged block of 45 rows (not a
    multiple of the 4-row tiles), 47 channels an odd, short chunk; some zeros."""
    rng = np.random.default_rng(3)
    A = rng.random((301, 3))
    S = rng.random((3, 47))
    return rng.poisson(4.0 * A @ S).astype(np.float64)


def _fit(X, kernel, k=3, **kw):
    kw.setdefault("max_iter", 20)
    return unmix.factorize(
        X,
        k,
        loss="kl",
        solver="mu",
        tol=0,
        random_state=0,
        block_size=64,
        solver_options={"kernel": kernel},
        **kw,
    )


def _same(r1, r2, tol):
    np.testing.assert_allclose(r1.A, r2.A, rtol=tol, atol=tol * np.abs(r2.A).max())
    np.testing.assert_allclose(r1.S, r2.S, rtol=tol, atol=tol * np.abs(r2.S).max())
    h1, h2 = np.asarray(r1.history["objective"]), np.asarray(r2.history["objective"])
    n = min(h1.size, h2.size)  # tol=0 may stop one at an exact fixed point (k 1)
    assert n >= min(3, h2.size)
    np.testing.assert_allclose(h1[:n], h2[:n], rtol=tol)


def _monotone(r, rel):
    h = np.asarray(r.history["objective"])
    assert np.all(np.diff(h) <= rel * h[0])
    assert h[-1] < h[0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_matches_reference(counts, dtype):
    X = counts.astype(dtype)
    r1 = _fit(X, "onepass")
    r2 = _fit(X, "blas")
    assert r1.A.dtype == dtype and r1.S.dtype == dtype
    _same(r1, r2, 1e-10 if dtype == np.float64 else 2e-4)
    _monotone(r1, 1e-12 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_with_l1_on_a(counts, dtype):
    X = counts.astype(dtype)
    regs = [unmix.L1(0.05, target="A")]
    r1 = _fit(X, "onepass", regularizers=regs)
    r2 = _fit(X, "blas", regularizers=regs)
    _same(r1, r2, 1e-10 if dtype == np.float64 else 2e-4)
    _monotone(r1, 1e-12 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("k", [1, 5, 9])
def test_fused_odd_shapes(k):
    """k not a multiple of the 4-component tiles; 601 channels: 3 chunks of float64 (256)
    with a short last one; 133 rows: blocks of 64, 64, 5."""
    rng = np.random.default_rng(k)
    X = rng.poisson(2.0 * rng.random((133, k)) @ rng.random((k, 601))).astype(np.float64)
    _same(_fit(X, "onepass", k=k, max_iter=8), _fit(X, "blas", k=k, max_iter=8), 1e-10)


def test_streamed_blocks_give_the_in_memory_answer(tmp_path, counts):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "X.h5", "w") as f:
        f.create_dataset("X", data=counts, chunks=(64, counts.shape[1]))
    with h5py.File(tmp_path / "X.h5", "r") as f:
        streamed = _fit(f["X"], "onepass")
    memory = _fit(counts, "onepass")
    np.testing.assert_array_equal(streamed.A, memory.A)
    np.testing.assert_array_equal(streamed.S, memory.S)


def test_kernel_choice_reaches_the_pass(counts, monkeypatch):
    """'onepass' runs the kernel, 'blas' never; 'auto' from AUTO_MIN_ENTRIES entries on."""
    calls = []
    real = _klmu.kl_mu_pass

    def spy(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr("unmix.engine.solvers._mu.kl_mu_pass", spy)
    _fit(counts, "onepass", max_iter=3)
    assert calls
    calls.clear()
    assert counts.size < _klmu.AUTO_MIN_ENTRIES
    for choice in ("auto", "blas"):
        _fit(counts, choice, max_iter=3)
        assert not calls
    monkeypatch.setattr(_klmu, "AUTO_MIN_ENTRIES", 0)
    _fit(counts, "auto", max_iter=3)
    assert calls
    calls.clear()
    w = unmix.Weights(pixels=np.linspace(0.5, 1.5, counts.shape[0]))
    _fit(counts, "auto", max_iter=3, weights=w)  # weights do not qualify
    assert not calls


def test_onepass_refuses_what_it_cannot_run(counts):
    w = unmix.Weights(pixels=np.linspace(0.5, 1.5, counts.shape[0]))
    with pytest.raises(ValueError, match=r"kernel='onepass' cannot run this problem: .*weights"):
        _fit(counts, "onepass", max_iter=2, weights=w)
    with pytest.raises(ValueError, match=r"kernel='onepass' cannot run this problem: .*loss="):
        unmix.factorize(counts + 1, 3, loss="itakura-saito", solver="mu", max_iter=2,
                        solver_options={"kernel": "onepass"})  # fmt: skip
    with pytest.raises(ValueError, match="kernel='fast': expected one of"):
        _fit(counts, "fast", max_iter=2)


def test_reasons_name_the_link_and_the_data(counts, monkeypatch):
    """MU refuses links itself; the kernel's own check names one too (the same problem
    with a logistic link), and sparse X (MU's CSR path)."""
    seen = []
    real = _klmu.resolve

    def spy(option, p):
        seen.append(p)
        return real(option, p)

    monkeypatch.setattr("unmix.engine.solvers._mu.kl_resolve", spy)
    _fit(counts, "onepass", max_iter=1)
    assert _klmu.reasons(seen[-1]) == []
    logistic = dataclasses.replace(seen[-1], link=unmix.Logistic())
    assert any("link='logistic'" in r for r in _klmu.reasons(logistic))
    with pytest.raises(ValueError, match=r"cannot run this problem: .*link='logistic'"):
        _klmu.resolve("onepass", logistic)
    sp = pytest.importorskip("scipy.sparse")
    with pytest.raises(ValueError, match=r"cannot run this problem: sparse X"):
        _fit(sp.csr_array(counts), "onepass", max_iter=2)


def test_without_numba(counts, monkeypatch):
    monkeypatch.setattr(_onepass, "_HAVE", False)  # the check both compiled paths share
    monkeypatch.setattr(_klmu, "AUTO_MIN_ENTRIES", 0)
    r = _fit(counts, "auto", max_iter=3)  # falls back silently
    assert np.all(np.isfinite(r.A))
    with pytest.raises(ValueError, match="numba is not installed"):
        _fit(counts, "onepass", max_iter=2)


def _block_reference(X, A, S, l1, tiny):
    """The reference path's block work in plain NumPy: new maps, ``A'^T (X / Y')``,
    ``A'^T 1`` and ``sum X log(X / Y') - X + Y'``."""
    den = np.maximum(S.sum(axis=1) + l1, tiny)
    A2 = A * (np.maximum((X / np.maximum(A @ S, tiny)) @ S.T, 0) / den)
    Yc = np.maximum(A2 @ S, tiny)
    pos = X > 0
    fit = np.sum(X[pos] * np.log(X[pos] / Yc[pos])) - X.sum() + Yc.sum()
    return A2, A2.T @ (X / Yc), A2.sum(axis=0), fit


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [1, 4, 6, 9])
@pytest.mark.parametrize("n", [1, 3, 8, 37])
def test_block_kernel_any_shape(dtype, k, n):
    from unmix.engine.kernels._klmu_numba import block_kl_mu

    rng = np.random.default_rng(100 * n + k)
    m = 1100  # float32: 3 chunks of 512 channels, float64: 5 of 256, a short last one
    A = rng.random((n, k))
    S = rng.random((k, m))
    X = rng.poisson(A @ S).astype(np.float64)
    tiny = float(np.finfo(dtype).tiny) * 1e6
    l1 = 0.3
    want = _block_reference(X, A, S, l1, tiny)
    A_ = A.astype(dtype)
    S_ = S.astype(dtype)
    den = np.maximum(S_.sum(axis=1) + l1, dtype(tiny)).astype(dtype)
    P = np.full((k, m), np.nan, dtype)
    colsum = np.full(k, np.nan)
    fit = block_kl_mu(X.astype(dtype), A_, S_, den, dtype(tiny), P, colsum)
    tol = 1e-11 if dtype == np.float64 else 2e-5
    assert A_.dtype == dtype and P.dtype == dtype
    np.testing.assert_allclose(A_, want[0], rtol=tol, atol=tol * want[0].max())
    np.testing.assert_allclose(P, want[1], rtol=tol, atol=tol * want[1].max())
    np.testing.assert_allclose(colsum, want[2], rtol=tol)
    assert abs(fit - want[3]) <= tol * X.sum()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vectorized_log_within_one_ulp(dtype):
    import numba

    from unmix.engine.kernels._klmu_numba import _vlog

    @numba.njit
    def logs(x, out):
        for i in range(x.size):
            out[i] = _vlog(x[i])

    rng = np.random.default_rng(0)
    fi = np.finfo(dtype)
    x = np.exp(rng.uniform(np.log(fi.tiny), np.log(fi.max), 200_000)).astype(dtype)
    edges = [fi.tiny, fi.max, 1.0, 0.5, 2.0, np.sqrt(0.5), 1 + fi.eps, 1 - fi.epsneg]
    x = np.concatenate([x, np.asarray(edges, dtype), rng.uniform(0.5, 2, 100_000).astype(dtype)])
    out = np.empty_like(x)
    logs(x, out)
    exact = np.log(x.astype(np.longdouble))
    ulp = np.spacing(np.abs(exact).astype(dtype)).astype(np.longdouble)
    ulp[exact == 0] = np.finfo(dtype).tiny
    assert float(np.max(np.abs(out - exact) / ulp)) <= 1.0
