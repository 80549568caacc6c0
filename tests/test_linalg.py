"""Exact kernels: NNLS by block principal pivoting, truncated SVD, simplex projection."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import nnls

from conftest import BACKENDS, host, to_backend
from unmix._backend import backend_of
from unmix._linalg import nnls_bpp, svd_topk
from unmix._ops import project_simplex_rows


@pytest.mark.parametrize("k", [1, 2, 5, 12])
@pytest.mark.parametrize("backend", BACKENDS)
def test_nnls_bpp_matches_scipy(k, backend):
    rng = np.random.default_rng(k)
    S = rng.standard_normal((k, 30))  # signed: many active constraints
    X = rng.standard_normal((200, 30))
    G, B = S @ S.T, X @ S.T
    Xb = to_backend(X, backend)
    be = backend_of(Xb)
    got = host(nnls_bpp(to_backend(G, backend), to_backend(B, backend), be))
    want = np.array([nnls(S.T, x)[0] for x in X])
    np.testing.assert_allclose(got, want, atol=1e-9)


@pytest.mark.parametrize("k", [4, 8])
def test_nnls_bpp_grouped_by_passive_set_equals_the_batched_solve(k, monkeypatch):
    """Many rows with few distinct passive sets are solved one set at a time (all its
    rows at once); the answer is the per-row batched solve's and scipy's."""
    rng = np.random.default_rng(k)
    S = rng.random((k, 40))
    X = rng.random((3000, k)) @ S + 0.3 * rng.standard_normal((3000, 40))
    G, B = S @ S.T, X @ S.T
    be = backend_of(X)
    grouped = nnls_bpp(G, B, be)
    monkeypatch.setattr("unmix._linalg._solve_by_pattern", lambda G, F, B: None)
    batched = nnls_bpp(G, B, be)
    np.testing.assert_allclose(grouped, batched, rtol=1e-10, atol=1e-12)
    for i in range(0, 3000, 250):
        np.testing.assert_allclose(grouped[i], nnls(S.T, X[i])[0], atol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rows", ["equal", "zero"])
def test_nnls_bpp_with_a_singular_gram_matrix(rows, backend):
    """Two equal rows of ``S`` (or a zero row) make ``G`` singular: BPP raised
    ``LinAlgError: Singular matrix``; it now returns an optimal solution (scipy's
    objective; for equal rows, the same total weight on the pair)."""
    rng = np.random.default_rng(3)
    S = rng.random((3, 40))
    S[1] = S[0] if rows == "equal" else 0.0
    X = rng.random((300, 3)) @ S + 0.05 * rng.random((300, 40))
    Xb = to_backend(X, backend)
    got = host(
        nnls_bpp(to_backend(S @ S.T, backend), to_backend(X @ S.T, backend), backend_of(Xb))
    )
    want = np.array([nnls(S.T, x)[0] for x in X])
    assert np.all(got >= 0)
    np.testing.assert_allclose(
        np.sum((X - got @ S) ** 2, axis=1), np.sum((X - want @ S) ** 2, axis=1), rtol=1e-9
    )
    if rows == "equal":
        np.testing.assert_allclose(got[:, 0] + got[:, 1], want[:, 0] + want[:, 1], rtol=1e-6)
    else:
        assert np.all(got[:, 1] == 0)


def test_nnls_bpp_with_diagonal_term():
    rng = np.random.default_rng(0)
    S = rng.random((4, 20))
    X = rng.random((50, 20))
    c = rng.random((50, 1))
    be = backend_of(X)
    got = nnls_bpp(S @ S.T, X @ S.T, be, diag_add=c)
    for i in range(50):
        # min 1/2 ||x_i - a S||^2 + c_i/2 ||a||^2  ==  NNLS on the augmented system
        M = np.vstack([S.T, np.sqrt(c[i, 0]) * np.eye(4)])
        want = nnls(M, np.concatenate([X[i], np.zeros(4)]))[0]
        np.testing.assert_allclose(got[i], want, atol=1e-9)


@pytest.mark.parametrize("shape", [(50, 30), (600, 200)])
def test_svd_topk_matches_lapack(shape):
    rng = np.random.default_rng(1)
    X = rng.random((shape[0], 5)) @ rng.random((5, shape[1])) + 1e-3 * rng.random(shape)
    be = backend_of(X)
    U, s, Vt = svd_topk(X, 4, be, rng=rng)
    s_ref = np.linalg.svd(X, compute_uv=False)[:4]
    np.testing.assert_allclose(s, s_ref, rtol=1e-8)
    np.testing.assert_allclose(Vt @ Vt.T, np.eye(4), atol=1e-10)
    np.testing.assert_allclose(
        (U * s) @ Vt, np.linalg.svd(X)[0][:, :4] * s_ref @ np.linalg.svd(X)[2][:4], atol=1e-8
    )
    assert np.all(Vt[np.arange(4), np.abs(Vt).argmax(axis=1)] > 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_simplex_projection_exact(backend):
    rng = np.random.default_rng(0)
    V = 3 * rng.standard_normal((500, 6))
    P = host(project_simplex_rows(to_backend(V, backend), backend_of(to_backend(V, backend)).xp))
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    assert P.min() >= 0
    # optimality (KKT): P = max(V - theta, 0) with one theta per row
    for v, p in zip(V[:50], P[:50], strict=True):
        theta = (v - p)[p > 0]
        assert np.ptp(theta) < 1e-10
        assert np.all(v[p == 0] <= theta[0] + 1e-12)


def test_simplex_projection_of_a_row_that_dwarfs_the_total_in_float32():
    """float32: 1e9 - (1e9 - 1) rounds to 0, so no entry passed the sort test and the
    projection divided by zero (a gradient trial point on the EDS maps)."""
    import array_api_compat.numpy as xp

    from unmix._ops import project_simplex_rows

    V = np.array([[1e9, 3.0, -2.0], [0.2, 0.5, 0.1]], dtype=np.float32)
    with np.errstate(all="raise"):
        P = project_simplex_rows(V, xp)
    assert P.dtype == np.float32 and np.all(np.isfinite(P))
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-6)
    assert P[0, 0] == pytest.approx(1.0) and P[0, 1] == 0.0
