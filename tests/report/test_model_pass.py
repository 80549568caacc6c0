"""The report's residual pass and the streamed tree's mapping pass compute residuals from
products with the endmembers; they must equal the residuals of the model rows."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy.optimize import nnls

import unmix
from unmix.cli._subsample import map_tree
from unmix.hierarchy import hierarchical_nmf
from unmix.report import _model
from unmix.report._model import affine_model, pixel_pass


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(3)
    A = rng.gamma(0.7, size=(20 * 15, 4))
    S = rng.gamma(2.0, size=(4, 60)) * 4
    return rng.poisson(A @ S).astype(float)


@pytest.fixture(params=["numpy", "compiled"])
def kernels(request, monkeypatch):
    """Both ways of taking a block's products: NumPy/BLAS on a float64 copy, and the
    compiled one-read kernel (forced here on small data)."""
    if request.param == "compiled":
        pytest.importorskip("numba")
        monkeypatch.setattr("unmix.blocks._stats.COMPILED_FROM", 0)
    return request.param


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"solver": "svd"},  # centred: the model has a base (the mean)
        {"preprocessing": [unmix.PoissonScaling()]},
    ],
    ids=["nmf", "pca", "poisson-scaled"],
)
def test_residual_pass_equals_the_model_rows(counts, kw, kernels):
    r = unmix.factorize(counts, 3, random_state=0, max_iter=50, **kw)
    assert affine_model(r) is not None  # the products path is taken
    _model._LAST.clear()
    num, den, sums = pixel_pass(r, counts)
    R = counts - np.asarray(r.reconstruct())
    np.testing.assert_allclose(num, np.sum(R * R, axis=1), rtol=1e-8, atol=1e-8 * den.max())
    np.testing.assert_allclose(den, np.sum(counts**2, axis=1))
    np.testing.assert_allclose(sums, counts.sum(axis=1))


def test_residual_pass_leaves_out_the_entries_a_mask_left_out(counts, kernels):
    """NaN entries that ``mask=`` (``--mask-nonfinite``) left out of the fit are left out
    of the report's sums, of the data and of the model alike: every residual was NaN
    (a dead band in every pixel), the residual map empty and ``nanmedian`` warned."""
    X = counts.copy()
    X[:, 10:13] = np.nan  # a dead band
    X[7] = np.nan  # a pixel never read
    ok = np.isfinite(X)
    r = unmix.factorize(X, 3, mask=ok, loss="kl", random_state=0, max_iter=30)
    _model._LAST.clear()
    num, den, sums = pixel_pass(r, X)
    np.testing.assert_allclose(sums, np.nansum(X, axis=1))
    R = np.where(ok, np.nan_to_num(X) - np.asarray(r.reconstruct()), 0.0)
    np.testing.assert_allclose(num, np.sum(R * R, axis=1), rtol=1e-8, atol=1e-8 * den.max())
    np.testing.assert_allclose(den, np.sum(np.nan_to_num(X) ** 2, axis=1))
    rel, total = _model.relative_residuals(r, X)
    assert np.isnan(rel[7]) and np.all(np.isfinite(np.delete(rel, 7))) and np.isfinite(total)


def test_residual_pass_reads_float32_in_its_dtype(counts, kernels):
    X = counts.astype(np.float32)
    r = unmix.factorize(X, 3, random_state=0, max_iter=30)
    _model._LAST.clear()
    num, den, _ = pixel_pass(r, X)
    R = X.astype(float) - np.asarray(r.reconstruct(), dtype=float)
    np.testing.assert_allclose(num, np.sum(R * R, axis=1), rtol=1e-5, atol=1e-6 * den.max())


@pytest.mark.parametrize("normalize", [False, True])
def test_mapping_every_pixel_gives_each_level_its_exact_maps_and_error(counts, kernels, normalize):
    X = counts / np.linalg.norm(counts, axis=1, keepdims=True) if normalize else counts
    tree = hierarchical_nmf(X[::3], 4, random_state=0)
    mapped = copy.deepcopy(tree)
    map_tree(mapped, counts, spatial_shape=(20, 15), normalize=normalize, quiet=True)
    for lev in mapped.levels:
        A, S = np.asarray(lev.A), np.asarray(lev.S)
        assert A.shape == (counts.shape[0], S.shape[0]) and np.all(A >= 0)
        R = X - A @ S
        assert lev.error == pytest.approx(np.sum(R * R) / np.sum(X**2), rel=1e-9)
        # exact NNLS: no pixel is fitted better by scipy's solver
        for i in (0, 77, 299):
            best = nnls(S.T, X[i])[1] ** 2
            assert np.sum(R[i] ** 2) <= best * (1 + 1e-6) + 1e-9


def test_mean_spectra_through_the_link():
    from unmix.report._model import mean_spectra

    rng = np.random.default_rng(0)
    X = (rng.random((200, 12)) < 0.3).astype(float)
    r = unmix.factorize(X, 2, link="logistic", random_state=0, max_iter=30)
    assert affine_model(r) is None  # the model rows path
    _model._LAST.clear()
    data, model = mean_spectra(r, X)
    np.testing.assert_allclose(data, X.mean(axis=0))
    np.testing.assert_allclose(model, np.asarray(r.reconstruct()).mean(axis=0))
