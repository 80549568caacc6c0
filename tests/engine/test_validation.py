"""Bad input gets a clear error; odd but valid input is handled without NaN."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest
import scipy.sparse

import unmix
from unmix.datasets import make_mixture

NMF_SOLVERS = ("mu", "hals", "bpp", "admm")
ITERATIVE_SOLVERS = (*NMF_SOLVERS, "gradient")


@pytest.fixture(scope="module")
def _X_base() -> np.ndarray:
    mix = make_mixture(3, spatial_shape=(20, 25), n_channels=40, snr_db=40, random_state=0)
    return np.clip(mix.X, 0.0, None)


@pytest.fixture
def X(_X_base: np.ndarray) -> np.ndarray:
    """(500, 40) non-negative data; a fresh copy per test (tests may edit it)."""
    return _X_base.copy()


def _fit(X, k=3, **kw):
    kw.setdefault("random_state", 0)
    kw.setdefault("max_iter", 30)
    return unmix.factorize(X, k, **kw)


def _finite(r) -> bool:
    return bool(np.all(np.isfinite(r.A)) and np.all(np.isfinite(r.S)))


# ------------------------------------------------------------------ NaN / Inf
def test_nan_and_inf_are_counted_and_located(X):
    X[3, 4] = np.nan
    X[5, 6] = np.inf
    X[7, 8] = np.nan
    X[9, 1] = -np.inf
    with pytest.raises(ValueError, match=r"X has 2 NaN and 2 Inf entries") as exc:
        unmix.factorize(X, 3)
    msg = str(exc.value)
    assert "(3, 4), (5, 6), (7, 8)" in msg  # where: the first offending (pixel, channel)
    assert "mask=" in msg  # and the fix


def test_single_nan_is_located(X):
    X[12, 30] = np.nan
    with pytest.raises(ValueError, match=r"1 NaN and 0 Inf entries .*\(12, 30\)"):
        unmix.factorize(X, 3)


@pytest.mark.parametrize("solver", ITERATIVE_SOLVERS)
def test_nan_allowed_where_masked(X, solver):
    mask = np.ones(X.shape, dtype=bool)
    mask[3, 4] = mask[10, :5] = False
    X_other = X.copy()
    X[3, 4] = np.nan
    X[10, :5] = np.inf
    X_other[3, 4] = X_other[10, :5] = 123.0
    r = _fit(X, mask=mask, solver=solver)
    assert _finite(r)
    assert np.all(np.isfinite(r.history["objective"]))
    # what a masked entry holds does not matter
    r_other = _fit(X_other, mask=mask, solver=solver)
    np.testing.assert_array_equal(r.A, r_other.A)
    np.testing.assert_array_equal(r.S, r_other.S)


@pytest.mark.parametrize("step", [unmix.NormalizePixels, unmix.PoissonScaling])
def test_masked_entries_do_not_affect_preprocessing(X, step):
    mask = np.ones(X.shape, dtype=bool)
    mask[3, 4] = False
    X_nan, X_zero = X.copy(), X.copy()
    X_nan[3, 4] = np.nan
    X_zero[3, 4] = 0.0
    r_nan = _fit(X_nan, mask=mask, preprocessing=[step()], solver="hals")
    r_zero = _fit(X_zero, mask=mask, preprocessing=[step()], solver="hals")
    np.testing.assert_allclose(r_nan.A, r_zero.A, rtol=1e-9, atol=1e-12)


def test_nan_where_mask_is_true_is_an_error(X):
    mask = np.ones(X.shape, dtype=bool)
    mask[3, 4] = False
    X[3, 4] = np.nan
    X[8, 9] = np.nan  # observed
    with pytest.raises(
        ValueError, match=r"1 NaN and 0 Inf entries .*\(8, 9\).*not covered by mask"
    ):
        unmix.factorize(X, 3, mask=mask)


def test_mask_of_wrong_shape(X):
    with pytest.raises(ValueError, match=r"mask has shape \(3, 3\); it must match X \(500, 40\)"):
        unmix.factorize(X, 3, mask=np.ones((3, 3), dtype=bool))


def test_mask_without_observed_entries(X):
    with pytest.raises(ValueError, match="mask marks every entry of X missing"):
        unmix.factorize(X, 3, mask=np.zeros(X.shape, dtype=bool))


# ------------------------------------------------------------- negative data
@pytest.mark.parametrize("solver", ["auto", *ITERATIVE_SOLVERS])
def test_negative_data_rejected_for_nmf(X, solver):
    X[0, :5] = -1.0
    X[2, 7] = -3.0
    with pytest.raises(ValueError, match=r"^Negative values in data passed to") as exc:
        unmix.factorize(X, 3, solver=solver)
    msg = str(exc.value)
    assert "6 negative entries" in msg
    assert "min -3" in msg
    assert "(0, 0)" in msg
    assert "offset" in msg  # the fixes: an offset, PCA, semi-NMF
    assert "PCA" in msg
    assert "solver='svd'" in msg


@pytest.mark.parametrize(
    ("kwargs", "max_rel_err"),
    [
        ({"solver": "svd"}, 0.05),
        ({"solver": "admm", "constraints": []}, 0.05),
        ({"solver": "gradient", "constraints": []}, 0.9),
        ({"solver": "admm", "constraints": [unmix.NonNegative(target="S")]}, 0.05),
    ],
    ids=["svd", "admm-unconstrained", "gradient-unconstrained", "admm-semi-nmf"],
)
def test_negative_data_fine_without_nonnegativity(X, kwargs, max_rel_err):
    Xc = X - X.mean(axis=0)
    r = _fit(Xc, max_iter=50, **kwargs)
    assert _finite(r)
    rel = np.linalg.norm(r.A @ r.S - Xc) / np.linalg.norm(Xc)
    assert rel < max_rel_err
    assert r.A.min() < 0  # signed maps are used


def test_semi_nmf_keeps_endmembers_nonnegative(X):
    r = _fit(X - X.mean(axis=0), solver="admm", constraints=[unmix.NonNegative(target="S")])
    assert r.S.min() >= 0
    assert r.A.min() < 0


@pytest.mark.parametrize(
    "constraints",
    [[], [unmix.NonNegative(target="S")], [unmix.NonNegative(target="A")]],
    ids=["unconstrained", "semi-nmf", "nonneg-A"],
)
def test_negative_data_rejected_for_kl(X, constraints):
    # even without an NMF model: the KL divergence is defined for X >= 0 only
    X[1, 1] = -0.5
    with pytest.raises(
        ValueError, match=r"^Negative values in data passed to loss='kl'.*1 negative entries"
    ):
        unmix.factorize(X, 3, loss="kl", solver="gradient", constraints=constraints)


def test_negative_data_rejected_for_kl_nmf(X):
    X[1, 1] = -0.5
    with pytest.raises(ValueError, match=r"^Negative values in data passed to an NMF model"):
        unmix.factorize(X, 3, loss="kl", solver="mu")


# ----------------------------------------------------------------------- k
@pytest.mark.parametrize("k", [0, -1, 41])
def test_k_out_of_range(X, k):
    with pytest.raises(ValueError, match=rf"k={k} is out of range.*min\(500, 40\) = 40"):
        unmix.factorize(X, k)


def test_k_larger_than_one_sample(X):
    with pytest.raises(ValueError, match=r"k=2 is out of range.*X has 1 sample"):
        unmix.factorize(X[:1], 2)


@pytest.mark.parametrize("k", [3.0, "3", True, None])
def test_k_must_be_an_int(X, k):
    with pytest.raises(TypeError, match="k must be an integer number of components"):
        unmix.factorize(X, k)


def test_numpy_integer_k_accepted(X):
    assert _fit(X, np.int64(2), max_iter=5).k == 2


# ------------------------------------------------------------- shape / dtype
@pytest.mark.parametrize("shape", [(0, 5), (5, 0)])
def test_empty_X(shape):
    with pytest.raises(ValueError, match=r"X is empty: shape \(\d+, \d+\)"):
        unmix.factorize(np.zeros(shape), 1)


@pytest.mark.parametrize(("shape", "ndim"), [((10,), 1), ((2, 3, 4), 3)], ids=["1-D", "3-D"])
def test_X_must_be_2d(shape, ndim):
    with pytest.raises(ValueError, match=rf"X must be 2-D \(pixels, channels\); got {ndim}-D"):
        unmix.factorize(np.ones(shape), 1)


def test_object_dtype():
    X = np.array([[1.0, "a"], [2.0, 3.0]], dtype=object)
    with pytest.raises(TypeError, match="X has dtype object"):
        unmix.factorize(X, 1)


@pytest.mark.parametrize(
    "make", [scipy.sparse.csr_matrix, scipy.sparse.csr_array, scipy.sparse.coo_matrix]
)
def test_sparse_input_rejected_where_dense_is_needed(X, make):
    """Functions that need dense X name the conversion and the ones that take sparse X."""
    with pytest.raises(TypeError, match=r"sparse.*toarray\(\).*unmix.factorize"):
        unmix.thresholded_nmf(make(X), 2)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64, np.uint8, bool])
def test_integer_and_bool_become_float32(X, dtype):
    Xi = (X > np.median(X)) if dtype is bool else np.round(X * 50).astype(dtype)
    before = Xi.copy()
    r = _fit(Xi, max_iter=5)
    assert r.A.dtype == np.float32
    assert r.S.dtype == np.float32
    assert Xi.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(Xi, before)  # the input is not modified
    assert _finite(r)


def test_float16_becomes_float32(X):
    r = _fit(X.astype(np.float16), max_iter=5)
    assert r.A.dtype == np.float32
    assert r.S.dtype == np.float32


def test_list_input_accepted():
    r = unmix.factorize([[1.0, 2.0], [3.0, 4.0], [1.0, 0.5]], 1, max_iter=5, random_state=0)
    assert r.A.shape == (3, 1)
    assert r.S.shape == (1, 2)


# ------------------------------------------------------ zero rows / columns
@pytest.mark.parametrize("loss", ["frobenius", "kl"])
@pytest.mark.parametrize("solver", NMF_SOLVERS)
def test_zero_rows_and_columns(X, solver, loss):
    X[7, :] = 0.0
    X[:, 11] = 0.0
    if loss == "kl" and solver != "mu":
        with pytest.raises(unmix.UnsupportedError, match="'mu'"):
            unmix.factorize(X, 3, solver=solver, loss=loss)
        return
    r = _fit(X, solver=solver, loss=loss, max_iter=100)
    assert _finite(r)
    assert np.all(np.isfinite(r.history["objective"]))
    assert np.abs(r.A[7]).max() <= 1e-6 * np.abs(r.A).max()  # an empty pixel has empty maps
    assert np.abs(r.S[:, 11]).max() <= 1e-6 * np.abs(r.S).max()
    assert np.abs(r.A).max() > 0


@pytest.mark.parametrize("solver", NMF_SOLVERS)
def test_all_zero_data(solver):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # collapsed components, expected
        r = unmix.factorize(np.zeros((30, 10)), 2, solver=solver, max_iter=20, random_state=0)
    assert _finite(r)
    assert np.isfinite(r.objective)


# ----------------------------------------------------------------- lambdas
@pytest.mark.parametrize("solver", ITERATIVE_SOLVERS)
def test_huge_lambda_never_gives_nan(X, solver):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = _fit(X, solver=solver, regularizers=[unmix.L1(1e12)])
    assert _finite(r)
    assert np.isfinite(r.objective)
    assert np.all(np.isfinite(r.history["objective"]))


@pytest.mark.parametrize(
    "solver",
    [
        "hals",
        "bpp",
        "admm",
        "mu",
    ],
)
def test_huge_lambda_warns_collapsed(X, solver):
    # exact solvers zero the maps; MU shrinks them while S grows (scale drift)
    with pytest.warns(RuntimeWarning, match="collapsed|scale drifted"):
        r = _fit(X, solver=solver, regularizers=[unmix.L1(1e12)])
    assert _finite(r)


@pytest.mark.filterwarnings("ignore:Components:RuntimeWarning")
def test_collapse_warning_lists_plain_indices(X):
    with pytest.warns(RuntimeWarning, match=r"Components \[0, 1, 2\] collapsed"):
        _fit(X, solver="hals", regularizers=[unmix.L1(1e12)])


@pytest.mark.parametrize("term", [unmix.L1, unmix.L2, unmix.SpatialSmoothness, unmix.MinVolume])
@pytest.mark.parametrize("lam", [-1.0, -1e-9, float("nan"), float("inf")])
def test_bad_lambda_rejected(term, lam):
    with pytest.raises(ValueError, match=rf"{term.__name__}: lam must be finite and >= 0"):
        term(lam)


def test_non_numeric_lambda_rejected():
    with pytest.raises(TypeError, match="L1: lam must be a number"):
        unmix.L1("strong")


# --------------------------------------------------- unsupported / unknown
@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"solver": "hals", "constraints": [unmix.SumToOne()]}, "'admm'"),
        ({"solver": "hals", "constraints": [unmix.NonNegative(), unmix.SumToOne()]}, "'admm'"),
        ({"solver": "bpp", "loss": "kl"}, "'mu'"),
        ({"solver": "admm", "loss": "kl"}, "'mu'"),
        ({"solver": "mu", "constraints": []}, "'admm'"),
        ({"solver": "svd", "loss": "kl"}, "'gradient'"),
    ],
    ids=["hals-sum-to-one", "hals-nn-sum-to-one", "bpp-kl", "admm-kl", "mu-signed", "svd-kl"],
)
def test_unsupported_combination_names_a_solver_that_can(X, kwargs, names):
    with pytest.raises(unmix.UnsupportedError, match=rf"does not support .*{names}"):
        unmix.factorize(X, 3, **kwargs)


def test_unsupported_error_is_a_value_error():
    assert issubclass(unmix.UnsupportedError, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"solver": "nope"}, r"solver='nope' is unknown; choose one of \[.*'hals'"),
        ({"loss": "nope"}, r"loss='nope' is unknown"),
        ({"init": "nope"}, r"init='nope' is unknown"),
        ({"preset": "nope"}, r"preset='nope' is unknown; choose one of \[.*'pca'"),
        ({"link": "nope"}, r"link='nope' is unknown"),
    ],
)
def test_unknown_names(X, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        unmix.factorize(X, 3, **kwargs)


def test_constraint_and_regularizer_lists_are_checked(X):
    with pytest.raises(TypeError, match="constraints must hold Constraint objects"):
        unmix.factorize(X, 3, constraints=[unmix.L1(1.0)])
    with pytest.raises(TypeError, match="NonNegative is a hard constraint"):
        unmix.factorize(X, 3, regularizers=[unmix.NonNegative()])


# ------------------------------------------------------------------ weights
def test_one_dimensional_weights(X):
    with pytest.raises(ValueError, match=r"weights is 1-D .*unmix\.Weights\(pixels=w\)"):
        unmix.factorize(X, 3, weights=np.ones(X.shape[0]))


@pytest.mark.parametrize(
    ("weights", "pattern"),
    [
        (np.ones((500, 39)), r"Weights\.full has shape \(500, 39\); expected \(500, 40\)"),
        (unmix.Weights(pixels=np.ones(499)), r"Weights\.pixels has shape \(499,\)"),
        (unmix.Weights(channels=np.ones(41)), r"Weights\.channels has shape \(41,\)"),
        (unmix.Weights(channels=-np.ones(40)), r"Weights\.channels must be finite and >= 0"),
    ],
    ids=["full", "pixels", "channels", "negative"],
)
def test_bad_weights(X, weights, pattern):
    with pytest.raises(ValueError, match=pattern):
        unmix.factorize(X, 3, weights=weights)


# ------------------------------------------------------- iteration control
def test_max_iter_zero_rejected(X):
    with pytest.raises(
        ValueError, match=r"max_iter=0 is not allowed; max_iter must be None or an int >= 1"
    ):
        unmix.factorize(X, 3, max_iter=0)


def test_n_restarts_zero_rejected(X):
    with pytest.raises(
        ValueError, match=r"n_restarts=0 is not allowed; n_restarts must be an int >= 1"
    ):
        unmix.factorize(X, 3, n_restarts=0)


@dataclass(frozen=True)
class _Blowup(unmix.L2):
    """An L2 penalty whose value is non-finite on exactly one evaluation."""

    bad_call: int = 5
    bad_value: float = float("inf")
    calls: list = field(default_factory=list, compare=False, repr=False)

    def value(self, M):
        self.calls.append(None)
        if len(self.calls) == self.bad_call:
            return self.bad_value
        return super().value(M)


_Blowup.__name__ = "L2"  # solvers accept penalties by class name


@pytest.mark.parametrize("bad_value", [float("inf"), float("nan")])
@pytest.mark.parametrize("solver", ["hals", "mu", "admm"])
def test_non_finite_iteration_returns_last_finite_iterate(X, solver, bad_value):
    # evaluation 1 is the start, evaluation i + 1 iteration i: iteration 4 goes bad
    pen = _Blowup(1e-3, bad_call=5, bad_value=bad_value)
    with pytest.warns(RuntimeWarning, match="non-finite at iteration 4"):
        r = _fit(X, solver=solver, regularizers=[pen], max_iter=50)
    assert r.stop_reason == "non-finite"
    assert not r.converged
    assert r.n_iter == 3
    assert _finite(r)
    assert np.isfinite(r.objective)
    assert len(r.history["objective"]) == r.n_iter + 1
    assert np.all(np.isfinite(r.history["objective"]))
    ref = _fit(X, solver=solver, regularizers=[unmix.L2(1e-3)], max_iter=3)
    np.testing.assert_array_equal(r.A, ref.A)
    np.testing.assert_array_equal(r.S, ref.S)


def test_negative_entries_of_huge_sparse_x_are_reported_without_a_dense_copy():
    import tracemalloc

    n, m = 400_000, 20_000  # dense: 64 GB
    X = scipy.sparse.csr_matrix(
        (np.array([-1.0, 2.0, -3.0]), (np.array([5, 9, n - 1]), np.array([7, 1, m - 1]))),
        shape=(n, m),
    )
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"2 negative entries \(min -3, first at .*\(5, 7\)"):
        unmix.factorize(X, 2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200e6


# ------------------------------------------------- Itakura-Saito needs X > 0
@pytest.mark.parametrize("form", ["dense", "csr", "masked"])
@pytest.mark.parametrize("loss", ["is", 0.0])
def test_itakura_saito_refuses_zeros_and_names_the_fix(X, form, loss):
    """At x = 0 the IS divergence is infinite: the fit used to run into NaN at iteration
    1 and return its start with exit 0 (EDS counts, float32)."""
    X = X + 0.1
    X[:7, 0] = 0.0
    data, kw = X, {}
    if form == "csr":
        data = scipy.sparse.csr_matrix(X)
    elif form == "masked":
        mask = np.ones_like(X, dtype=bool)
        mask[:3, 0] = False  # 4 of the zeros stay observed
        kw["mask"] = mask
    n = 4 if form == "masked" else 7
    with pytest.raises(
        ValueError, match=rf"needs X > 0 everywhere.*X has {n} zero entries.*offset"
    ):
        unmix.factorize(data, 3, loss=loss, max_iter=2, **kw)


def test_itakura_saito_fits_positive_data_and_masked_zeros(X):
    X = X + 0.1
    r = unmix.factorize(X, 3, loss="is", max_iter=20, random_state=0)
    assert np.isfinite(r.objective) and r.stop_reason != "non-finite"
    X[:3, 0] = 0.0
    mask = X > 0
    r = unmix.factorize(X, 3, loss="is", max_iter=20, random_state=0, mask=mask)
    assert np.isfinite(r.objective)


# ------------------------------------------- shapes and paths that do not fit X
@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"spatial_shape": (7, 7)}, r"spatial_shape=\(7, 7\) has 49 entries but X has 500 rows"),
        ({"spatial_shape": (25, 25)}, r"has 625 entries but X has 500 rows \(pixels\)"),
        ({"signal_shape": (3, 3)}, r"signal_shape=\(3, 3\) has 9 entries but X has 40 columns"),
    ],
)
def test_shapes_that_do_not_hold_x_are_refused(X, kw, message):
    """They were stored in the result unchecked (its maps() then ignored them)."""
    with pytest.raises(ValueError, match=message):
        unmix.factorize(X, 3, max_iter=2, **kw)


def test_shapes_that_hold_x_are_kept(X):
    r = unmix.factorize(X, 3, max_iter=2, spatial_shape=(20, 25), signal_shape=(5, 8))
    assert r.spatial_shape == (20, 25) and r.signal_shape == (5, 8)


def test_checkpoint_in_a_missing_folder_names_it(X, tmp_path):
    path = tmp_path / "nope" / "fit.h5"
    with pytest.raises(FileNotFoundError, match=r"checkpoint=.*its folder .*nope does not exist"):
        unmix.factorize(X, 3, max_iter=2, checkpoint=path)


# ------------------------------------------------------ an image from unmix.load
def test_factorize_and_fit_maps_take_a_loaded_image(tmp_path):
    """``factorize(unmix.load(path), k)`` said 'X has dtype object'."""
    rng = np.random.default_rng(0)
    cube = rng.poisson(20 * rng.random((6, 7, 3)) @ rng.random((3, 24))).astype("f8")
    path = tmp_path / "x.npy"
    np.save(path, cube)
    image = unmix.load(path)
    r = unmix.factorize(image, 3, random_state=0, max_iter=20)
    ref = unmix.factorize(cube.reshape(42, 24), 3, random_state=0, max_iter=20)
    np.testing.assert_allclose(r.S, ref.S)
    assert r.spatial_shape == (6, 7) and r.signal_shape == (24,)
    assert r.context["source"] == str(path)
    assert unmix.factorize(image, 3, max_iter=2, spatial_shape=(42,)).spatial_shape == (42,)
    np.testing.assert_allclose(unmix.fit_maps(image, r), unmix.fit_maps(cube.reshape(42, 24), r))


def test_itakura_saito_refuses_zeros_in_a_streamed_file(X, tmp_path):
    h5py = pytest.importorskip("h5py")
    X = X + 0.1
    X[130, 5] = 0.0
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["X"] = X
    with h5py.File(tmp_path / "x.h5", "r") as f:
        with pytest.raises(ValueError, match=r"needs X > 0.*1 zero entries.*rows 1\d\d-"):
            unmix.factorize(f["X"], 3, loss="is", max_iter=2, block_size=100)
        r = unmix.factorize(f["X"], 3, loss="kl", max_iter=2, block_size=100)
        assert np.isfinite(r.objective)
