"""The KL coordinate-descent solver (``solver="klcd"``): monotone, accurate, faster per
iteration budget than MU, dtype-preserving, picked by ``solver="auto"`` for KL, and
refusing what it does not support by name."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment

import unmix
from conftest import RecordingExecutor, real_pixels
from unmix.datasets import make_mixture
from unmix.engine import fit_maps
from unmix.estimators import NMF

pytest.importorskip("numba")


@pytest.fixture(scope="module")
def planted():
    """Poisson counts of k=3 planted factors, 30 x 30 pixels, 60 channels."""
    return make_mixture(
        3, spatial_shape=(30, 30), n_channels=60, noise="poisson", scale=20.0, random_state=3
    )


@pytest.fixture(scope="module")
def sparse_counts():
    """About 0.2 counts an entry: most entries are zero (the CSR path)."""
    return make_mixture(
        3, spatial_shape=(24, 24), n_channels=80, noise="poisson", scale=0.01, random_state=4
    )


def _kl(X, A, S):
    Y = np.asarray(A, float) @ np.asarray(S, float)
    pos = X > 0
    return float(np.sum(X[pos] * np.log(X[pos] / Y[pos])) - X.sum() + Y.sum())


def _fit(X, **kw):
    kw = {"loss": "kl", "solver": "klcd", "random_state": 0, **kw}
    return unmix.factorize(X, 3, **kw)


@pytest.mark.parametrize("sparse", [False, True])
def test_objective_never_increases(planted, sparse_counts, sparse):
    X = sparse_counts.X if sparse else planted.X
    r = _fit(X, max_iter=60, tol=0, solver_options={"sparse": sparse})
    h = np.asarray(r.history["objective"])
    assert np.all(np.diff(h) <= 1e-10 * h[0]), np.diff(h).max()
    assert r.objective == pytest.approx(_kl(X, r.A, r.S), rel=1e-9)


@pytest.mark.parametrize("sparse", [False, True])
def test_extrapolated_steps_keep_the_objective_monotone(planted, sparse_counts, sparse):
    X = sparse_counts.X if sparse else planted.X
    on = {"sparse": sparse, "extrapolate": True}
    r = _fit(X, max_iter=60, tol=0, solver_options=on)
    h = np.asarray(r.history["objective"])
    assert np.all(np.diff(h) <= 1e-10 * h[0]), np.diff(h).max()
    assert r.objective == pytest.approx(_kl(X, r.A, r.S), rel=1e-9)
    plain = _fit(X, max_iter=60, tol=0, solver_options={"sparse": sparse, "extrapolate": False})
    assert r.objective <= plain.objective * (1 + 1e-12)


def test_extrapolation_is_the_default_and_reaches_the_minimum_plain_steps_crawl_to():
    """XRD (143 patterns), k 3: plain coordinate descent crawls (500 iterations at
    ``max_iter``, KL 1.5 % above the minimum); extrapolated it stops by ``tol`` (150
    iterations since the stop waits for the fall still to come; 129 before), within
    0.02 % of the lowest KL found (1820.99: the gradient solver at ``tol=1e-7``, 436
    iterations; 3000 plain iterations reach 1821.33)."""
    X = np.clip(real_pixels("xrd"), 0, None)
    r = _fit(X)
    plain = _fit(X, solver_options={"extrapolate": False})
    assert r.stop_reason == "tol" and r.n_iter <= 200
    assert r.objective <= 1.0002 * 1820.99
    assert plain.objective >= 1.01 * r.objective


def test_recovers_planted_endmembers(planted):
    r = _fit(planted.X, max_iter=300)
    est = np.asarray(r.S) / np.linalg.norm(r.S, axis=1, keepdims=True)
    true = planted.S / np.linalg.norm(planted.S, axis=1, keepdims=True)
    cos = np.clip(est @ true.T, -1, 1)
    rows, cols = linear_sum_assignment(-cos)
    angles = np.degrees(np.arccos(cos[rows, cols]))
    assert angles.max() < 3.0, angles


def test_lower_kl_than_mu_at_equal_iterations(planted):
    for n in (5, 20):
        cd = _fit(planted.X, max_iter=n, tol=0)
        mu = _fit(planted.X, max_iter=n, tol=0, solver="mu")
        assert cd.objective < mu.objective, n


def test_sparse_and_dense_blocks_give_the_same_fit(sparse_counts):
    X = sparse_counts.X
    a = _fit(X, max_iter=6, tol=0, solver_options={"sparse": True})
    b = _fit(X, max_iter=6, tol=0, solver_options={"sparse": False})
    np.testing.assert_allclose(a.S, b.S, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(a.history["objective"], b.history["objective"], rtol=1e-10)


def test_block_sums_compose_over_any_block_grid(planted):
    ex = RecordingExecutor()
    one = _fit(planted.X, max_iter=8, tol=0)
    many = _fit(planted.X, max_iter=8, tol=0, block_size=128, executor=ex)
    np.testing.assert_allclose(one.S, many.S, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(one.A, many.A, rtol=1e-9, atol=1e-12)
    assert all(visited == list(range(8)) for visited in ex.passes)  # 900 pixels: 8 blocks


def test_l1_on_both_factors_is_applied_and_monotone(planted):
    plain = _fit(planted.X, max_iter=40, tol=0)
    r = _fit(
        planted.X, max_iter=40, tol=0, regularizers=[unmix.L1(5.0), unmix.L1(5.0, target="S")]
    )
    h = np.asarray(r.history["objective"])
    assert np.all(np.diff(h) <= 1e-10 * h[0])
    assert np.asarray(r.A).sum() < np.asarray(plain.A).sum()


@pytest.mark.parametrize("extrapolate", [False, True])
def test_float32_stays_float32(planted, extrapolate):
    X = planted.X.astype(np.float32)
    on = {"extrapolate": extrapolate}
    r = _fit(X, max_iter=20, tol=0, solver_options=on)
    assert r.A.dtype == np.float32 and r.S.dtype == np.float32
    ref = _fit(planted.X, max_iter=20, tol=0, solver_options=on)
    assert r.objective == pytest.approx(ref.objective, rel=1e-4)


def test_estimator_is_the_function(planted):
    est = NMF(3, loss="kl", solver="klcd", max_iter=25, tol=0, random_state=0)
    A = est.fit_transform(planted.X)
    r = _fit(planted.X, max_iter=25, tol=0)
    np.testing.assert_allclose(est.components_, r.S, rtol=1e-10)
    np.testing.assert_allclose(A, r.A, rtol=1e-10)


def test_auto_picks_klcd_for_kl_and_falls_back_to_the_gradient_solver(planted):
    """KLCD where it runs; else the gradient solver (dense X), MU for sparse X."""
    assert _fit(planted.X, solver="auto", max_iter=2).spec["solver"] == "klcd"
    w = unmix.Weights(full=np.linspace(0.5, 1.5, planted.X.size).reshape(planted.X.shape))
    r = _fit(planted.X, solver="auto", max_iter=2, weights=w)
    assert r.spec["solver"] == "gradient"
    masked = _fit(planted.X, solver="auto", max_iter=2, mask=planted.X >= 0)
    assert masked.spec["solver"] == "klcd"  # a mask: its holes leave the sums
    sparse = _fit(sp.csr_matrix(planted.X), solver="auto", max_iter=2, weights=w)
    assert sparse.spec["solver"] == "mu"
    frob = unmix.factorize(planted.X, 3, solver="auto", max_iter=2, random_state=0)
    assert frob.spec["solver"] == "hals"


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"loss": "frobenius"}, r"solver='klcd' does not support loss='frobenius'"),
        ({"loss": 0.5}, r"does not support loss='beta=0.5'"),
        ({"constraints": [unmix.Bounds(0, 1, target="A")]}, r"Bounds on A"),
        ({"regularizers": [unmix.L2(1.0)]}, r"L2 on A \(only L1 on a non-negative factor\)"),
        ({"weights": "channels"}, r"does not support pixel/channel weights; .*'mu'"),
    ],
)
def test_unsupported_combinations_are_refused(planted, kw, match):
    if kw.get("weights") == "channels":
        kw = {"weights": unmix.Weights(channels=np.linspace(0.5, 1.5, planted.X.shape[1]))}
    with pytest.raises(unmix.UnsupportedError, match=match):
        _fit(planted.X, max_iter=2, **kw)


def test_unknown_option_is_refused(planted):
    with pytest.raises(ValueError, match=r"solver 'klcd' has no option 'inner'"):
        _fit(planted.X, max_iter=2, solver_options={"inner": 2})
    with pytest.raises(ValueError, match=r"sparse='yes'"):
        _fit(planted.X, max_iter=2, solver_options={"sparse": "yes"})


@pytest.mark.slow  # Dask processes
def test_two_dask_workers_give_the_serial_answer():
    distributed = pytest.importorskip("distributed")
    from unmix.executors.dask import DaskExecutor

    mx = make_mixture(3, spatial_shape=(7, 6), n_channels=30, noise="poisson", scale=5.0)
    kw = {"loss": "kl", "solver": "klcd", "max_iter": 40, "tol": 0, "random_state": 0}
    # (a masked NNDSVDa start is an exact SVD in memory, a randomized one over processes:
    # 4e-4 apart on this map; the masked fit starts from a fixed point)
    pixel_w = unmix.Weights(pixels=np.linspace(0.0, 2.0, mx.X.shape[0]))
    mask = np.random.default_rng(1).random(mx.X.shape) > 0.1
    start = (np.full((mx.X.shape[0], 3), 0.5), np.random.default_rng(2).uniform(0.1, 1, (3, 30)))
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    )
    with distributed.Client(cluster) as client:
        # each worker's rows take their own weights and holes
        for extra in ({}, {"weights": pixel_w}, {"mask": mask, "weights": pixel_w, "init": start}):
            ser = unmix.factorize(mx.X, 3, block_size=6, **extra, **kw)
            ex = DaskExecutor(client)
            par = unmix.factorize(mx.X, 3, block_size=6, executor=ex, **extra, **kw)
            atol_S, atol_A = 1e-9 * np.abs(ser.S).max(), 1e-9 * np.abs(ser.A).max()
            np.testing.assert_allclose(par.S, ser.S, rtol=1e-6, atol=atol_S)
            np.testing.assert_allclose(par.A, ser.A, rtol=1e-6, atol=atol_A)
            assert par.objective == pytest.approx(ser.objective, rel=1e-9)
    cluster.close()


def test_pinned_endmembers_stay_and_fit_maps_works(planted):
    known = planted.S[:1]
    r = _fit(
        planted.X, max_iter=30, constraints=[unmix.NonNegative(), unmix.FixedEndmembers(known)]
    )
    assert r.spec["solver"] == "klcd"
    np.testing.assert_allclose(r.S[0], known[0])
    h = np.asarray(r.history["objective"])
    assert np.all(np.diff(h) <= 1e-10 * h[0])
    plain = _fit(planted.X, max_iter=30)
    maps = fit_maps(planted.X, plain)
    assert _kl(planted.X, maps, plain.S) <= plain.objective * (1 + 1e-9)  # converged maps
    part = unmix.FixedEndmembers(known, mask=np.arange(known.shape[1])[None, :] < 10)
    with pytest.raises(unmix.UnsupportedError, match=r"pinned in part of a row"):
        _fit(planted.X, max_iter=2, constraints=[unmix.NonNegative(), part])


def test_streamed_data_is_refused_and_auto_takes_mu(tmp_path, planted):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("X", data=planted.X)
    with h5py.File(tmp_path / "x.h5", "r") as f:
        with pytest.raises(unmix.UnsupportedError, match=r"klcd.*streamed data"):
            _fit(f["X"], max_iter=2)
        assert _fit(f["X"], solver="auto", max_iter=2).spec["solver"] == "mu"


@pytest.mark.parametrize("which", ["pixels", "channels"])
def test_mu_kl_takes_pixel_or_channel_weights(which):
    """MU with KL and pixel-only / channel-only weights (the fallback when klcd refuses
    weights) broadcasts them to X's shape; weights of 2 everywhere double the objective."""
    X = np.random.default_rng(0).poisson(5.0, size=(40, 30)).astype(float)
    n = X.shape[0] if which == "pixels" else X.shape[1]
    fits = [
        unmix.factorize(
            X,
            3,
            loss="kl",
            weights=unmix.Weights(**{which: np.full(n, w)}),
            solver="mu",
            max_iter=20,
            random_state=0,
        )
        for w in (1.0, 2.0)
    ]
    np.testing.assert_allclose(fits[1].objective, 2 * fits[0].objective, rtol=1e-9)


def test_auto_on_masked_counts_reaches_a_lower_kl_than_mu():
    """The EELS map with 5 % of its entries masked: auto picks KL-CD (which takes masks:
    their entries leave its sums), which stops by tol below where MU, auto's choice
    before the gradient solver, ends (both from the Poisson start on the filled holes:
    0.23 % below MU; from NNDSVDa, the masked start before, 0.53 % below MU at
    ``max_iter`` 500)."""
    from conftest import real_pixels

    X = real_pixels("eels")
    mask = np.random.default_rng(0).random(X.shape) > 0.05
    kw = {"loss": "kl", "mask": mask, "random_state": 0}
    auto = unmix.factorize(X, 3, **kw)
    mu = unmix.factorize(X, 3, solver="mu", **kw)
    assert auto.spec["solver"] == "klcd" and auto.stop_reason == "tol"
    assert auto.objective < 0.999 * mu.objective
