"""PoissonScaling and NormalizePixels keep sparse X sparse: the fit equals the dense
fit with the same steps, and Center (which would densify) is refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import unmix


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(5)
    A = rng.gamma(0.8, size=(300, 3))
    S = rng.gamma(1.0, size=(3, 80)) * (rng.random((3, 80)) < 0.5)
    return rng.poisson(A @ S * 0.4).astype(np.float64)


STEPS = [
    [unmix.PoissonScaling()],
    [unmix.NormalizePixels()],
    [unmix.NormalizePixels(norm="l2", weights=True)],
]


@pytest.mark.parametrize("steps", STEPS, ids=lambda s: repr(s[0]))
@pytest.mark.parametrize("solver", ["hals", "mu"])
def test_sparse_steps_give_the_dense_fit(counts, steps, solver):
    kw = {"random_state": 0, "max_iter": 40, "tol": 0, "solver": solver, "init": "nndsvda"}
    dense = unmix.factorize(counts, 3, preprocessing=steps, **kw)
    fresh = [type(s)(**{k: v for k, v in vars(s).items() if k != "state"}) for s in steps]
    sparse = unmix.factorize(sp.csr_array(counts), 3, preprocessing=fresh, **kw)
    np.testing.assert_allclose(sparse.S, dense.S, rtol=1e-6, atol=1e-9 * np.abs(dense.S).max())
    np.testing.assert_allclose(sparse.A, dense.A, rtol=1e-6, atol=1e-9 * np.abs(dense.A).max())
    np.testing.assert_allclose(sparse.reconstruct(), dense.reconstruct(), rtol=1e-6, atol=1e-9)


def test_sparse_steps_respect_the_mask(counts):
    mask = np.random.default_rng(1).random(counts.shape) > 0.1
    kw = {"random_state": 0, "max_iter": 30, "tol": 0, "mask": mask, "solver": "mu"}
    dense = unmix.factorize(counts, 3, preprocessing=[unmix.PoissonScaling()], **kw)
    sparse = unmix.factorize(sp.csr_array(counts), 3, preprocessing=[unmix.PoissonScaling()], **kw)
    np.testing.assert_allclose(sparse.S, dense.S, rtol=1e-6, atol=1e-9 * np.abs(dense.S).max())


def test_float32_sparse_stays_float32(counts):
    X = sp.csr_array(counts.astype(np.float32))
    r = unmix.factorize(X, 3, preprocessing=[unmix.PoissonScaling()], random_state=0, max_iter=10)
    assert r.S.dtype == np.float32 and r.A.dtype == np.float32


def test_centering_sparse_x_is_refused_by_name(counts):
    with pytest.raises(ValueError, match=r"preprocessing= \(Center\) works on dense X only"):
        unmix.factorize(sp.csr_array(counts), 3, preprocessing=[unmix.Center()])


@pytest.mark.parametrize("steps", STEPS[:2], ids=lambda s: repr(s[0]))
def test_maps_of_new_sparse_pixels_equal_the_dense_ones(counts, steps):
    r = unmix.factorize(counts[:200], 3, preprocessing=steps, random_state=0, max_iter=30)
    dense = unmix.fit_maps(counts[200:], r)
    sparse = unmix.fit_maps(sp.csr_array(counts[200:]), r)
    np.testing.assert_allclose(sparse, dense, rtol=1e-6, atol=1e-9 * np.abs(dense).max())
