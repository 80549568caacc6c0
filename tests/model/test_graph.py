"""The data graph (``knn_graph``) and its Laplacian penalty (``GraphSmoothness``).

Orientation: ``X`` (pixels, channels), ``A`` (pixels, k), ``S`` (k, channels).
"""

from __future__ import annotations

import importlib.util
import types

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial.distance import cdist

import unmix
from unmix._backend import backend_of
from unmix.blocks import PixelData, SparsePixelData
from unmix.engine.solvers import REGISTRY
from unmix.model import BindContext, GraphSmoothness, knn_graph
from unmix.model._graph import grid_graph

GRID = (40, 40)


def _clusters(n_per=60, m=50, noise=0.02, seed=0):
    """Three clusters of pixels (distinct spectra plus noise) and their labels."""
    rng = np.random.default_rng(seed)
    S = rng.random((3, m)) + 0.1
    labels = np.repeat(np.arange(3), n_per)
    X = S[labels] * rng.uniform(0.5, 2.0, (labels.size, 1))  # intensities vary
    return X + noise * rng.standard_normal(X.shape), labels


def _two_corners(seed=0):
    """A 40 x 40 map: component 1 in two squares at opposite corners (equal spectra),
    component 2 in a band across the middle, component 0 elsewhere; noise."""
    rng = np.random.default_rng(seed)
    x = np.arange(60)
    S = np.stack([np.exp(-0.5 * ((x - c) / 4) ** 2) + 0.05 for c in (10, 30, 50)])
    A = np.zeros((*GRID, 3))
    A[..., 0] = 1.0
    A[:10, :10] = A[-10:, -10:] = [0.0, 1.0, 0.0]
    A[15:25, :] = [0.3, 0.0, 0.7]
    X = A.reshape(-1, 3) @ S
    X = np.clip(X + 0.02 * rng.standard_normal(X.shape), 0, None)
    rows, cols = np.divmod(np.arange(X.shape[0]), GRID[1])
    first = np.flatnonzero((rows < 10) & (cols < 10))
    second = np.flatnonzero((rows >= 30) & (cols >= 30))
    return X, S, first, second


def _lists(W):
    return [set(W.indices[W.indptr[i] : W.indptr[i + 1]]) for i in range(W.shape[0])]


def _bound(term, n, k=3):
    ctx = BindContext(n_pixels=n, n_channels=5, k=k, backend=backend_of(np.zeros((2, 2))))
    return term.bind(ctx)


# ---------------------------------------------------------------- knn_graph
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("weights", ["binary", "heat"])
@pytest.mark.parametrize("approximate", [False, True])
def test_knn_graph_is_a_symmetric_nonnegative_graph_without_loops(metric, weights, approximate):
    X, _ = _clusters()
    W = knn_graph(X, 7, metric=metric, weights=weights, approximate=approximate, random_state=0)
    assert isinstance(W, sp.csr_array) and W.shape == (X.shape[0],) * 2
    assert abs(W - W.T).max() == 0
    assert np.all(W.diagonal() == 0)
    assert W.data.min() > 0 and W.data.max() <= 1.0
    if weights == "binary":
        np.testing.assert_array_equal(W.data, 1.0)
    assert np.diff(W.indptr).min() >= 7  # the union of the lists: never fewer


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_exact_neighbours_are_the_nearest_pixels(metric):
    X = np.random.default_rng(1).random((90, 12))
    W = knn_graph(X, 5, metric=metric, approximate=False)
    D = cdist(X, X, metric="sqeuclidean" if metric == "euclidean" else "cosine")
    np.fill_diagonal(D, np.inf)
    rows = _lists(W)
    for i, row in enumerate(rows):
        assert set(np.argsort(D[i])[:5]) <= row
        for j in row:  # an edge: j among i's nearest, or i among j's
            assert i in set(np.argsort(D[j])[:5]) or j in set(np.argsort(D[i])[:5])


def test_approximate_and_exact_neighbours_agree_on_clustered_data():
    X, labels = _clusters(n_per=150, m=200, noise=0.05)
    exact = _lists(knn_graph(X, 10, approximate=False))
    approx = _lists(knn_graph(X, 10, approximate=True, n_components=8, random_state=0))
    for lists in (exact, approx):  # every neighbour in the pixel's own cluster
        same = [all(labels[j] == labels[i] for j in row) for i, row in enumerate(lists)]
        assert np.mean(same) >= 0.95
    # without noise (rank 3) the reduction keeps every distance: the same lists
    rng = np.random.default_rng(2)
    Xc = rng.dirichlet(np.ones(3), 400) @ (rng.random((3, 80)) + 0.1)
    exact = _lists(knn_graph(Xc, 10, approximate=False))
    approx = _lists(knn_graph(Xc, 10, approximate=True, n_components=8, random_state=0))
    recall = np.mean([len(a & e) / len(e) for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.98


@pytest.mark.parametrize("approximate", [False, True])
def test_sparse_x_gives_the_graph_of_dense_x(approximate):
    X = sp.random_array((300, 60), density=0.2, random_state=np.random.default_rng(3))
    dense = knn_graph(X.toarray(), 6, approximate=approximate, n_components=10, random_state=0)
    for fmt in (sp.csr_array, sp.csr_matrix, sp.coo_array):
        W = knn_graph(fmt(X), 6, approximate=approximate, n_components=10, random_state=0)
        assert W.nnz == dense.nnz and abs(W - dense).max() == 0


def test_auto_approximates_only_large_maps(monkeypatch):
    import unmix.model._graph as graph

    X, _ = _clusters()
    monkeypatch.setattr(graph, "AUTO_APPROXIMATE", 100)
    calls = []
    reduce = graph._reduce
    monkeypatch.setattr(graph, "_reduce", lambda *a: calls.append(1) or reduce(*a))
    knn_graph(X[:90], 5)
    assert calls == []
    W = knn_graph(X, 5, random_state=0)
    assert calls == [1]
    monkeypatch.setattr(graph, "BRUTE_MAX_PIXELS", 50)  # a ball tree: the same neighbours
    assert abs(knn_graph(X, 5, random_state=0) - W).max() == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_neighbors": 0}, "n_neighbors must be an int >= 1"),
        ({"n_neighbors": 180}, r"< the number of pixels \(180\)"),
        ({"n_neighbors": 2.5}, "n_neighbors must be an int"),
        ({"n_neighbors": True}, "n_neighbors must be an int"),
        ({"metric": "manhattan"}, "metric must be one of"),
        ({"weights": "gaussian"}, "weights must be one of"),
        ({"approximate": "yes"}, "approximate must be 'auto', True or False"),
        ({"n_components": 0}, "n_components must be an int >= 1"),
    ],
)
def test_knn_graph_refuses_bad_arguments(kwargs, match):
    X, _ = _clusters()
    with pytest.raises(ValueError, match=match):
        knn_graph(X, **{"n_neighbors": 5, **kwargs})


def test_knn_graph_refuses_bad_data():
    X, _ = _clusters()
    X[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        knn_graph(X, 5)
    with pytest.raises(ValueError, match="non-finite"):
        knn_graph(sp.csr_array(X), 5)
    with pytest.raises(ValueError, match="must be 2-D"):
        knn_graph(np.ones(10), 2)


# -------------------------------------------------------------- the penalty
def _random_graph(n, seed=0):
    rng = np.random.default_rng(seed)
    W = sp.random_array((n, n), density=0.1, random_state=rng, format="csr")
    return W + W.T


def test_value_is_half_lam_trace_of_the_laplacian_quadratic():
    n, lam = 30, 0.7
    Wd = _random_graph(n).toarray()
    L = np.diag(Wd.sum(axis=1)) - Wd
    A = np.random.default_rng(1).random((n, 3))
    term = _bound(GraphSmoothness(lam, sp.csr_array(Wd)), n)
    expected = 0.5 * lam * np.trace(A.T @ L @ A)
    pairs = sum(Wd[i, j] * np.sum((A[i] - A[j]) ** 2) for i in range(n) for j in range(i + 1, n))
    assert term.value(A) == pytest.approx(expected, rel=1e-12)
    assert term.value(A) == pytest.approx(0.5 * lam * pairs, rel=1e-12)


def _scaled(term, X):
    """``term`` bound to ``X`` (pixels, channels) with its data seen (``on_data``)."""
    term = _bound(term, X.shape[0])
    term.on_data(types.SimpleNamespace(data=PixelData(X, backend_of(X), block_size=7)))
    return term


def test_brightness_scales_compare_maps_relative_to_each_pixels_norm():
    n, lam = 30, 0.7
    Wd = _random_graph(n).toarray()
    rng = np.random.default_rng(4)
    X = rng.random((n, 6)) * rng.uniform(0.01, 5.0, (n, 1))  # brightness varies 500x
    A = rng.random((n, 3))
    term = _scaled(GraphSmoothness(lam, sp.csr_array(Wd), normalize="l2"), X)
    norms = np.linalg.norm(X, axis=1)
    rms = np.sqrt(np.mean(norms**2))
    c = rms / np.maximum(norms, 0.1 * rms)
    B = c[:, None] * A
    pairs = sum(Wd[i, j] * np.sum((B[i] - B[j]) ** 2) for i in range(n) for j in range(i + 1, n))
    assert term.by_brightness and term.value(A) == pytest.approx(0.5 * lam * pairs, rel=1e-12)
    # brightness itself costs nothing: maps proportional to the pixels' norms are smooth
    flat = _scaled(GraphSmoothness(lam, sp.csr_array(Wd), normalize="l2"), np.ones((n, 6)))
    assert flat.value(A) == pytest.approx(
        _bound(GraphSmoothness(lam, sp.csr_array(Wd)), n).value(A)
    )
    bright = np.outer(np.maximum(norms, 0.1 * rms), [1.0, 2.0, 0.5])
    as_is = _bound(GraphSmoothness(lam, sp.csr_array(Wd)), n).value(bright)
    assert term.value(bright) < 1e-12 * as_is
    np.testing.assert_allclose(term.pixel_scales, c, rtol=1e-12)
    assert _bound(GraphSmoothness(1.0, sp.csr_array(Wd)), n).pixel_scales is None


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [({}, True), ({"metric": "euclidean"}, False), ({"normalize": "none"}, False),
     ({"metric": "euclidean", "normalize": "l2"}, True)],
)  # fmt: skip
def test_auto_compares_by_brightness_on_the_cosine_data_graph_only(kwargs, expected):
    assert GraphSmoothness(1.0, **kwargs).by_brightness is expected
    user = GraphSmoothness(1.0, _random_graph(5), **kwargs)
    assert user.by_brightness is (kwargs.get("normalize") == "l2")


@pytest.mark.parametrize("normalize", ["none", "l2"])
def test_gradient_matches_finite_differences_and_the_model_majorizes(normalize):
    n, lam, h = 25, 1.3, 1e-6
    X = np.random.default_rng(5).random((n, 4)) * np.linspace(0.01, 3.0, n)[:, None]
    term = _scaled(GraphSmoothness(lam, _random_graph(n, 2), normalize=normalize), X)
    rng = np.random.default_rng(3)
    A = rng.random((n, 3))
    m = term.model(A)
    fd = np.zeros_like(A)
    for idx in np.ndindex(*A.shape):
        E = np.zeros_like(A)
        E[idx] = h
        fd[idx] = (term.value(A + E) - term.value(A - E)) / (2 * h)
    np.testing.assert_allclose(m.grad, fd, rtol=1e-6, atol=1e-9 * np.abs(m.grad).max())
    np.testing.assert_allclose(m.mu_pos - m.mu_neg, m.grad, atol=1e-12)
    assert m.mu_pos.min() >= 0 and m.mu_neg.min() >= 0
    for scale in (1e-3, 0.1, 1.0):
        A2 = np.maximum(A + scale * rng.normal(size=A.shape), 0)
        d = A2 - A
        model = np.sum(m.grad * d) + 0.5 * np.sum(m.curv * d * d)
        assert model >= term.value(A2) - term.value(A) - 1e-9
    scales = term.pixel_scales
    c = (np.ones(n) if scales is None else scales)[:, None]
    hessian = lam * c * _laplacian(term.adjacency) * c.T  # diag(c) L diag(c)
    assert m.lipschitz >= np.linalg.eigvalsh(hessian).max()


def _laplacian(W):
    Wd = W.toarray()
    return np.diag(Wd.sum(axis=1)) - Wd


@pytest.mark.parametrize("neighbors", [4, 8])
def test_on_the_grid_graph_it_is_spatial_smoothness(neighbors):
    shape, lam = (6, 5), 0.4
    ctx = BindContext(
        n_pixels=30, n_channels=5, k=3, backend=backend_of(np.zeros((2, 2))),
        spatial_shape=shape,
    )  # fmt: skip
    grid = unmix.SpatialSmoothness(lam, neighbors=neighbors).bind(ctx)
    graph = GraphSmoothness(lam, grid_graph(shape, neighbors)).bind(ctx)
    A = np.random.default_rng(4).random((30, 3))
    assert graph.value(A) == pytest.approx(grid.value(A), rel=1e-12)
    mg, mw = grid.model(A), graph.model(A)
    for name in ("grad", "curv", "mu_pos", "mu_neg"):
        np.testing.assert_allclose(getattr(mw, name), getattr(mg, name), atol=1e-12)
    assert mw.lipschitz == pytest.approx(mg.lipschitz)


def _fit(X, solver, regs, **kw):
    return unmix.factorize(
        X, 3, solver=solver, regularizers=regs, spatial_shape=GRID, random_state=0, **kw
    )


@pytest.fixture(scope="module")
def corners():
    return _two_corners()


def _accepting(X, term):
    ok = set()
    for name in sorted(REGISTRY):
        try:
            _fit(X, name, [term], max_iter=1)
        except unmix.UnsupportedError:
            continue
        ok.add(name)
    return ok


def test_every_solver_that_takes_spatial_smoothness_takes_graph_smoothness(corners):
    X = corners[0]
    graph = _accepting(X, GraphSmoothness(0.1))
    assert graph == _accepting(X, unmix.SpatialSmoothness(0.1))
    assert {"hals", "mu", "admm", "gradient"} <= graph
    for name in sorted(graph):
        r = _fit(X, name, [GraphSmoothness(0.5)], max_iter=5, tol=0)
        assert np.all(np.isfinite(r.A)) and np.all(np.isfinite(r.S)), name
        assert "GraphSmooth(A)" in r.history


@pytest.mark.parametrize("solver", ["hals", "mu"])
def test_the_objective_decreases_for_monotone_solvers(corners, solver):
    r = _fit(corners[0], solver, [GraphSmoothness(2.0)], max_iter=40, tol=0)
    obj = np.asarray(r.history["objective"])
    assert np.all(np.diff(obj) <= 1e-9 * obj[:-1])


# ----------------------------------------------------------- the acceptance
def test_the_data_graph_joins_distant_regions_of_one_phase(corners):
    X, S, first, second = corners
    data = knn_graph(X, 10)
    grid = grid_graph(GRID)
    cross = data[first][:, second].nnz
    assert cross >= 0.3 * 10 * first.size  # about half of each pixel's neighbours
    assert grid[first][:, second].nnz == 0
    outside = np.setdiff1d(np.arange(X.shape[0]), np.r_[first, second])
    assert data[np.r_[first, second]][:, outside].nnz == 0  # and nothing else

    # the default compares the maps relative to each pixel's brightness (the graph joins
    # pixels of one spectral shape, whatever their brightness): so are the gaps measured;
    # normalize="none" compares the maps as they are
    brightness = {"auto": np.linalg.norm(X, axis=1), "none": np.ones(X.shape[0])}

    def dissimilarity(regs, normalize):
        r = _fit(X, "hals", regs, max_iter=200)
        j = int(np.argmax([np.corrcoef(r.S[q], S[1])[0, 1] for q in range(3)]))
        a = np.asarray(r.A)[:, j] / brightness[normalize]
        gaps = np.abs(a[first][:, None] - a[second][None, :])
        return float(np.mean(gaps) / np.mean(a[np.r_[first, second]]))  # scale-free

    for normalize in ("auto", "none"):
        by_data = dissimilarity([GraphSmoothness(5.0, normalize=normalize)], normalize)
        by_grid = dissimilarity([unmix.SpatialSmoothness(5.0)], normalize)
        assert by_data < 0.7 * by_grid, normalize  # measured 0.51 and 0.49


# ---------------------------------------------------------- user's graphs
def test_a_users_adjacency_is_used_as_given(corners):
    X = corners[0]
    user = sp.coo_matrix(grid_graph(GRID))  # any SciPy format
    a = _fit(X, "hals", [GraphSmoothness(1.0, user)], max_iter=20, tol=0)
    b = _fit(X, "hals", [unmix.SpatialSmoothness(1.0)], max_iter=20, tol=0)
    np.testing.assert_allclose(a.A, b.A, atol=1e-10)
    assert a.objective == pytest.approx(b.objective, rel=1e-10)


def test_the_data_graph_is_the_knn_graph_of_x(corners):
    X = corners[0]
    be, n = backend_of(X), X.shape[0]
    full = np.ones(X.shape, dtype=bool)
    expected = knn_graph(X, 6, metric="euclidean", random_state=0)
    for data in (
        PixelData(X, be, block_size=300),
        PixelData(X, be, block_size=300, mask=full),  # gathered block by block
        SparsePixelData(sp.csr_array(X), be, block_size=300),
        SparsePixelData(sp.csr_array(X), be, block_size=300, mask=full),
    ):
        term = _bound(GraphSmoothness(1.0, n_neighbors=6, metric="euclidean"), n)
        term.on_data(types.SimpleNamespace(data=data))
        assert abs(term.adjacency - expected).max() == 0
    term = GraphSmoothness(1.0, n_neighbors=6)
    dense = _fit(X, "hals", [term], max_iter=3, tol=0)
    sparse = _fit(sp.csr_array(X), "hals", [term], max_iter=3, tol=0)
    np.testing.assert_allclose(sparse.A, dense.A, atol=1e-10)


@pytest.mark.parametrize(
    ("graph", "match"),
    [
        (sp.csr_array(np.ones((3, 4))), r"must be square"),
        (sp.csr_array(np.triu(np.ones((4, 4)), 1)), "not symmetric"),
        (sp.csr_array(-np.ones((4, 4))), "negative weights"),
        (sp.csr_array(np.full((4, 4), np.nan)), "non-finite"),
    ],
)
def test_bad_graphs_are_refused(graph, match):
    with pytest.raises(ValueError, match=match):
        GraphSmoothness(1.0, graph)


def test_graph_of_the_wrong_size_or_type_is_refused(corners):
    with pytest.raises(TypeError, match=r"scipy\.sparse adjacency"):
        GraphSmoothness(1.0, [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="X has 1600 pixels"):
        _fit(corners[0], "hals", [GraphSmoothness(1.0, grid_graph((5, 5)))], max_iter=1)


def test_data_graph_of_a_small_map_joins_every_other_pixel(corners, caplog):
    """n_neighbors at or above the pixels: each pixel is joined to all others (logged)."""
    X = corners[0][:6]
    with caplog.at_level("INFO", logger="unmix"):
        reg = [GraphSmoothness(1.0, n_neighbors=10)]
        r = unmix.factorize(X, 2, regularizers=reg, max_iter=2, random_state=0)
    assert "6 pixels, 5 neighbours each" in caplog.text
    assert np.isfinite(r.objective)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_neighbors": 0}, "n_neighbors must be an int >= 1"),
        ({"metric": "l1"}, "metric must be one of"),
        ({"weights": None}, "weights must be one of"),
        ({"approximate": "sometimes"}, "approximate must be"),
        ({"target": "S"}, "target must be one of"),
    ],
)
def test_bad_knobs_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GraphSmoothness(1.0, **kwargs)


def test_split_pixels_and_unbuilt_graphs_are_refused():
    split = types.SimpleNamespace(distributed=True, halo=lambda *a: None)
    ctx = BindContext(
        n_pixels=10, n_channels=5, k=3, backend=backend_of(np.zeros((2, 2))),
        executor=split, rows=(0, 10), n_total=20,
    )  # fmt: skip
    with pytest.raises(ValueError, match="split over processes - fit serially"):
        GraphSmoothness(1.0).bind(ctx)
    term = _bound(GraphSmoothness(1.0, n_neighbors=3), 10)
    with pytest.raises(RuntimeError, match="no graph yet"):
        term.value(np.ones((10, 3)))


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="no torch")
def test_torch_backend_matches_numpy(corners):
    import torch

    X = corners[0]
    r = _fit(torch.from_numpy(X), "hals", [GraphSmoothness(1.0)], max_iter=10, tol=0)
    ref = _fit(X, "hals", [GraphSmoothness(1.0)], max_iter=10, tol=0)
    assert isinstance(r.A, torch.Tensor)
    np.testing.assert_allclose(r.A.numpy(), ref.A, atol=1e-10)


def test_a_saved_result_rebuilds_a_data_graph_term_but_not_a_users_graph(corners, tmp_path):
    X = corners[0]
    r = _fit(X, "hals", [GraphSmoothness(1.0, n_neighbors=7)], max_iter=2)
    back = unmix.load_result(r.save(tmp_path / "data.h5"))
    (term,) = [t for t in back.terms if isinstance(t, GraphSmoothness)]
    assert term == GraphSmoothness(1.0, n_neighbors=7) and term.graph is None
    r = _fit(X, "hals", [GraphSmoothness(1.0, grid_graph(GRID))], max_iter=2)
    back = unmix.load_result(r.save(tmp_path / "user.h5"))
    assert not [t for t in back.terms if isinstance(t, GraphSmoothness)]


def test_executors_that_split_pixels_are_told_to_fit_serially():
    """Dask (no halo) and MPI (a halo of scan lines) alike: a data graph needs all pixels."""
    from unmix.engine._assemble import check_distributed, split_terms

    terms = split_terms([], [GraphSmoothness(1.0)])
    for executor in (object(), types.SimpleNamespace(halo=lambda *a: None)):
        with pytest.raises(unmix.UnsupportedError, match=r"anywhere on the map.*fit serially"):
            check_distributed(terms, "nndsvda", executor)


# ------------------------------------------------------------- real maps
@pytest.mark.slow
@pytest.mark.parametrize("name", ["eels", "raman"])
def test_cli_graph_smoothness_keeps_distinct_components_on_maps_of_varying_brightness(
    name, tmp_path
):
    """``unmix run FILE -k 3 --graph-smooth 0.01``: the data graph joins pixels of one
    spectral shape whatever their brightness; with the maps compared as they are, the
    penalty was 2.0x (EELS) and 9.2x (Raman) the data fit and the fits split the bright
    component into near-copies 7.6 and 5.4 deg apart.  Compared relative to brightness
    (the default), every pair is > 50 deg apart and the penalty is a few % of the fit."""
    from conftest import REAL_FILES, shared_path
    from unmix.cli import entry

    path = shared_path(*REAL_FILES[name])
    out = tmp_path / "out"
    args = ["run", path, "-k", "3", "--graph-smooth", "0.01", "--seed", "0", "-q"]
    assert entry([*args, "--no-report", "-o", str(out)]) == 0
    r = unmix.load_result(out)
    S = np.asarray(r.S) / np.linalg.norm(r.S, axis=1, keepdims=True)
    angles = np.degrees(np.arccos(np.clip(S @ S.T, -1.0, 1.0)))[np.triu_indices(3, 1)]
    assert angles.min() > 30.0, angles  # measured 66.9 (EELS), 56.7 (Raman)
    assert r.history["GraphSmooth(A)"][-1] < 0.1 * r.history["fit"][-1]
    assert r.spec["diagnostics"]["collapsed"] == []
