"""The scikit-learn estimators NMF and PCA: API contract, agreement with factorize, HyperSpy."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.decomposition
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

import unmix
from unmix.datasets import make_mixture
from unmix.estimators import NMF, PCA

SHAPE = (20, 25)
N_CHANNELS = 40


@pytest.fixture(scope="module")
def _X_base() -> np.ndarray:
    mix = make_mixture(3, spatial_shape=SHAPE, n_channels=N_CHANNELS, snr_db=40, random_state=0)
    return np.clip(mix.X, 0.0, None)


@pytest.fixture
def X(_X_base: np.ndarray) -> np.ndarray:
    """(500, 40) non-negative data; a fresh copy per test."""
    return _X_base.copy()


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@parametrize_with_checks([NMF(max_iter=200), PCA()])
def test_sklearn_compatible(estimator, check):
    check(estimator)


# ----------------------------------------------------- estimator == function
@pytest.mark.parametrize("solver", ["hals", "mu", "bpp"])
def test_fit_equals_factorize(X, solver):
    est = NMF(3, random_state=0, solver=solver).fit(X)
    res = unmix.factorize(X, 3, random_state=0, solver=solver)
    np.testing.assert_allclose(est.components_, res.S, rtol=0, atol=1e-12)
    np.testing.assert_allclose(est.result_.A, res.A, rtol=0, atol=1e-12)
    assert est.n_components_ == 3
    assert est.n_iter_ == res.n_iter
    assert est.n_features_in_ == N_CHANNELS
    assert est.reconstruction_err_ == pytest.approx(np.sqrt(2 * res.history["fit"][-1]))


def test_fit_transform_returns_the_maps(X):
    est = NMF(3, random_state=0)
    A = est.fit_transform(X)
    np.testing.assert_array_equal(A, est.result_.A)
    assert A.shape == (X.shape[0], 3)


@pytest.mark.parametrize("solver", ["hals", "bpp"])
def test_transform_of_training_data_matches_the_fit(X, solver):
    est = NMF(3, random_state=0, solver=solver, tol=1e-7, max_iter=2000).fit(X)
    assert est.result_.converged
    A = est.result_.A
    T = est.transform(X)
    assert T.shape == A.shape
    assert T.min() >= 0
    np.testing.assert_allclose(T, A, rtol=0, atol=1e-3 * np.abs(A).max())


def test_transform_rejects_wrong_number_of_channels(X):
    est = NMF(3, random_state=0, max_iter=20).fit(X)
    with pytest.raises(ValueError, match=r"X has 39 features, but NMF is expecting 40"):
        est.transform(X[:, :-1])


def test_inverse_transform_approximates_X(X):
    est = NMF(3, random_state=0).fit(X)
    Xh = est.inverse_transform(est.transform(X))
    assert Xh.shape == X.shape
    assert np.linalg.norm(Xh - X) / np.linalg.norm(X) < 0.03


def test_get_set_params_round_trip():
    est = NMF(
        4,
        solver="mu",
        loss="kl",
        max_iter=50,
        tol=1e-6,
        regularizers=[unmix.L1(1e-3)],
        random_state=3,
        spatial_shape=SHAPE,
    )
    params = est.get_params()
    assert params["n_components"] == 4
    assert params["loss"] == "kl"
    assert params["regularizers"] == [unmix.L1(1e-3)]
    assert NMF().set_params(**params).get_params() == params
    assert clone(est).get_params() == params
    pca = PCA(2, random_state=1)
    assert PCA().set_params(**pca.get_params()).get_params() == pca.get_params()


def test_set_params_takes_effect(X):
    est = NMF(3, random_state=0, max_iter=20)
    est.set_params(n_components=2, solver="mu")
    est.fit(X)
    assert est.components_.shape == (2, N_CHANNELS)
    assert est.result_.spec["solver"] == "mu"


def test_n_components_none_means_min_shape(X):
    est = NMF(max_iter=5, random_state=0).fit(X[:, :6])
    assert est.n_components_ == 6


# ------------------------------------------------------------------- PCA
def test_pca_matches_scikit_learn(X):
    ours = PCA(3).fit(X)
    ref = sklearn.decomposition.PCA(3, svd_solver="full").fit(X)
    C = np.asarray(ours.components_)
    np.testing.assert_allclose(C @ C.T, np.eye(3), atol=1e-10)  # orthonormal
    signs = np.sign(np.sum(C * ref.components_, axis=1))
    np.testing.assert_allclose(C * signs[:, None], ref.components_, atol=1e-8)
    np.testing.assert_allclose(ours.mean_, ref.mean_, atol=1e-12)
    np.testing.assert_allclose(ours.transform(X) * signs, ref.transform(X), atol=1e-8)
    np.testing.assert_allclose(
        ours.inverse_transform(ours.transform(X)),
        ref.inverse_transform(ref.transform(X)),
        atol=1e-8,
    )


# ----------------------------------------------------------- dtypes / torch
def test_float32_stays_float32(X):
    X32 = X.astype(np.float32)
    est = NMF(3, random_state=0, max_iter=50).fit(X32)
    assert est.components_.dtype == np.float32
    assert est.transform(X32).dtype == np.float32
    assert PCA(3).fit(X32).components_.dtype == np.float32


def test_torch_input_gives_torch_components(X):
    torch = pytest.importorskip("torch")
    Xt = torch.from_numpy(X)
    est = NMF(3, random_state=0, solver="hals", max_iter=100).fit(Xt)
    assert isinstance(est.components_, torch.Tensor)
    assert est.components_.dtype == torch.float64
    assert tuple(est.components_.shape) == (3, N_CHANNELS)
    A = est.transform(Xt)
    assert isinstance(A, torch.Tensor)
    ref = NMF(3, random_state=0, solver="hals", max_iter=100).fit(X)
    np.testing.assert_allclose(est.components_.numpy(), ref.components_, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------- HyperSpy
def test_hyperspy_decomposition(X):
    hs = pytest.importorskip("hyperspy.api")
    s = hs.signals.Signal1D(X.reshape(*SHAPE, N_CHANNELS))
    est = NMF(3, random_state=0)
    s.decomposition(algorithm=est, output_dimension=3, print_info=False)
    factors = np.asarray(s.learning_results.factors)
    loadings = np.asarray(s.learning_results.loadings)
    # HyperSpy: factors (n_channels, k), loadings (n_navigation_pixels, k)
    assert factors.shape == (N_CHANNELS, 3)
    assert loadings.shape == (X.shape[0], 3)
    for j in range(3):
        assert _corr(factors[:, j], est.components_[j]) > 0.99
        assert _corr(loadings[:, j], est.result_.A[:, j]) > 0.99
    # its model of the data is ours
    np.testing.assert_allclose(
        loadings @ factors.T, est.inverse_transform(est.result_.A), rtol=1e-6, atol=1e-9
    )


def test_inverse_transform_names_the_models_rank():
    X = np.random.default_rng(0).random((40, 12))
    est = NMF(n_components=3, random_state=0, max_iter=20).fit(X)
    with pytest.raises(ValueError, match=r"maps \(pixels, 3\) of this 3-component model"):
        est.inverse_transform(np.ones((4, 2)))
