"""Hierarchical unmixing: exact rank-2 NMF, HierNMF2 trees, levels, bad input, files."""

from __future__ import annotations

import inspect
import itertools
import json
import re
import warnings

import numpy as np
import pytest
from scipy.optimize import nnls

from conftest import BACKENDS, host, to_backend
from unmix.hierarchy import (
    Tree,
    attach_tree,
    clade_recovery,
    group_rank1,
    hierarchical_nmf,
    load_tree,
    match_leaves,
    nnls2,
    rank2_nmf,
    triplet_agreement,
)
from unmix.hierarchy._params import TREE_PARAMETERS
from unmix.synthetic import make_hierarchy


@pytest.fixture(scope="module")
def planted():
    """2 parents x 3 children, 40 x 40 pixels, 120 channels, 30 dB."""
    return make_hierarchy(random_state=0)


@pytest.fixture(scope="module")
def planted_tree(planted):
    return hierarchical_nmf(planted.X, 6, spatial_shape=planted.spatial_shape)


def _brute_nnls2(G: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Enumerate the four active sets of a 2-variable NNLS; keep the best feasible."""
    best, best_val = np.zeros(2), 0.0
    for free in itertools.product([False, True], repeat=2):
        idx = np.flatnonzero(free)
        if idx.size == 0:
            continue
        x = np.zeros(2)
        x[idx] = np.linalg.lstsq(G[np.ix_(idx, idx)], b[idx], rcond=None)[0]
        if np.all(x >= 0):
            val = 0.5 * x @ G @ x - b @ x
            if val < best_val - 1e-14:
                best, best_val = x, val
    return best


# ------------------------------------------------------------------ rank 2
def test_nnls2_matches_scipy_and_brute_force():
    rng = np.random.default_rng(0)
    S = rng.standard_normal((400, 2, 9))  # signed: every active set occurs
    S[:50, 1] = 3.0 * S[:50, 0]  # parallel rows
    S[50:60, 0] = 0.0  # a zero row
    x = rng.standard_normal((400, 9))
    G = S @ S.transpose(0, 2, 1)
    B = np.einsum("bcm,bm->bc", S, x)
    got = nnls2(G, B)
    obj = 0.5 * np.einsum("bi,bij,bj->b", got, G, got) - np.einsum("bi,bi->b", B, got)
    for i in range(400):
        want = nnls(S[i].T, x[i])[0]
        brute = _brute_nnls2(G[i], B[i])
        want_obj = 0.5 * want @ G[i] @ want - B[i] @ want
        assert obj[i] <= want_obj + 1e-12
        assert obj[i] <= 0.5 * brute @ G[i] @ brute - B[i] @ brute + 1e-12
        if i >= 60:  # unique minimizer
            np.testing.assert_allclose(got[i], want, atol=1e-10)
    assert np.all(got >= 0)


def test_rank2_nmf_is_stationary_and_exact(mixture):
    X = mixture.X
    fit = rank2_nmf(X, max_iter=500, tol=1e-12)
    A, S = fit.A, fit.S[0]
    # every half-step is an exact NNLS: A given S, and S given A, equal scipy's solutions
    for i in range(0, X.shape[0], 50):
        np.testing.assert_allclose(A[i], nnls(S.T, X[i])[0], atol=1e-9)
    for j in range(0, X.shape[1], 7):
        np.testing.assert_allclose(S[:, j], nnls(A, X[:, j])[0], rtol=1e-5, atol=1e-6)
    assert fit.error[0] == pytest.approx(np.sum((X - A @ S) ** 2), rel=1e-9)
    # no better than the exact rank-2 optimum seen by an independent solver started there
    import unmix

    ref = unmix.factorize(X, 2, solver="bpp", init=(None, S), max_iter=200, tol=1e-14)
    assert fit.error[0] <= 2 * ref.objective * (1 + 1e-6)
    assert fit.error[0] <= np.sum((X - ref.A @ ref.S) ** 2) * (1 + 1e-6)


def test_rank2_batched_equals_looped(mixture):
    X = mixture.X
    groups = np.random.default_rng(1).integers(0, 5, size=X.shape[0])
    batched = rank2_nmf(X, groups)
    for b in range(5):
        alone = rank2_nmf(X[groups == b])
        np.testing.assert_allclose(batched.S[b], alone.S[0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(batched.A[groups == b], alone.A, rtol=1e-10, atol=1e-12)
        assert batched.error[b] == pytest.approx(alone.error[0], rel=1e-10)


def test_group_rank1_matches_svd(mixture):
    X = mixture.X
    groups = np.arange(X.shape[0]) % 3
    V, err = group_rank1(X, groups)
    for b in range(3):
        s = np.linalg.svd(X[groups == b], compute_uv=False)
        assert err[b] == pytest.approx(np.sum(s[1:] ** 2), rel=1e-8)
        assert np.all(V[b] >= -1e-12)


def test_rank2_groups_must_be_valid(mixture):
    with pytest.raises(ValueError, match="no pixels"):
        rank2_nmf(mixture.X, np.zeros(mixture.X.shape[0], dtype=int), n_groups=2)
    with pytest.raises(ValueError, match="one entry per pixel"):
        rank2_nmf(mixture.X, np.zeros(3, dtype=int))


@pytest.mark.parametrize("backend", BACKENDS)
def test_rank2_backends_and_float32(mixture, backend):
    ref = rank2_nmf(mixture.X)
    got = rank2_nmf(to_backend(mixture.X, backend))
    np.testing.assert_allclose(host(got.S), ref.S, rtol=1e-8, atol=1e-10)
    X32 = to_backend(mixture.X, backend, dtype="float32")
    f32 = rank2_nmf(X32, max_iter=100)
    assert f32.A.dtype == X32.dtype and f32.S.dtype == X32.dtype
    assert type(f32.S) is type(X32)
    rel = np.linalg.norm(host(f32.S)[0] - ref.S[0]) / np.linalg.norm(ref.S[0])
    assert rel < 1e-2


# ------------------------------------------------------------------ the planted tree
def test_planted_hierarchy_recovered(planted, planted_tree):
    """Acceptance: parent/child structure (triplets, clades) and leaf SAD < 2 deg at 30 dB."""
    t = planted_tree
    assert t.n_leaves == 6 and t.stop_reason == "n_leaves reached"
    m = match_leaves(t, planted.S_leaves)
    assert triplet_agreement(t, planted.tree, m["mapping"]) == 1.0
    clades = clade_recovery(t, planted.tree, m["mapping"])
    assert clades["recovered"] == clades["total"] == 2
    assert m["sad"] < 2.0
    # the two clades' endmembers are the groups' spectra (mean of their pixels)
    from unmix.metrics import spectral_angles

    parents = np.array(host(t.S))[clades["nodes"]]
    assert spectral_angles(parents, planted.S_parents).min(axis=0).max() < 5.0


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("options", [{"score": "ndcg"}, {"strategy": "breadth"}])
def test_planted_other_seeds_scores_and_strategies(seed, options):
    h = make_hierarchy(random_state=seed, spatial_shape=(30, 30))
    t = hierarchical_nmf(h.X, 6, **options)
    m = match_leaves(t, h.S_leaves)
    assert triplet_agreement(t, h.tree, m["mapping"]) == 1.0
    assert m["sad"] < 2.0


@pytest.mark.parametrize("options", [{}, {"strategy": "breadth"}])
def test_the_callback_follows_the_leaves_as_they_grow(options):
    """``callback(n_leaves)`` after the root's candidate and after every round of splits
    (the CLI's bar of ``unmix tree``): non-decreasing, ending at the tree's leaves."""
    h = make_hierarchy(random_state=1, spatial_shape=(30, 30))
    seen: list[int] = []
    t = hierarchical_nmf(h.X, 6, callback=seen.append, **options)
    assert seen[0] == 1 and seen[-1] == t.n_leaves == 6
    assert all(b > a for a, b in itertools.pairwise(seen))
    if not options:  # greedy: one split a round
        assert len(seen) == 1 + len(t.history)


def test_stability_rank_gives_the_planted_tree():
    h = make_hierarchy(random_state=0, spatial_shape=(20, 20), n_channels=80)
    t = hierarchical_nmf(
        h.X, 6, node_rank="stability", max_rank=3, stability={"n_runs": 3, "max_iter": 80}
    )
    assert [len(t.nodes[c].children) for c in t.nodes[0].children] == [3, 3]
    m = match_leaves(t, h.S_leaves)
    assert clade_recovery(t, h.tree, m["mapping"])["recovered"] == 2


def test_levels_cover_every_pixel(planted, planted_tree):
    t = planted_tree
    n = planted.X.shape[0]
    assert [lv.depth for lv in t.levels] == list(range(t.depth + 1))
    assert sorted(t.levels[-1].nodes) == sorted(t.leaves)
    for lv in t.levels:
        assert lv.A.shape == (n, len(lv.nodes)) and np.all(lv.A >= 0)
        # nested maps: each level sums to one per pixel
        np.testing.assert_allclose(t.node_maps[:, lv.nodes].sum(axis=1), 1.0, atol=1e-10)
    errors = [lv.error for lv in t.levels]
    assert errors[-1] < 0.01 < errors[0]
    assert np.bincount(t.assignment).sum() == n
    assert set(np.unique(t.assignment)) == set(t.leaves)
    for i in t.leaves:
        assert t.nodes[i].size == t.pixels(i).size
    assert t.node_map(t.leaves[0]).shape == planted.spatial_shape
    assert t.frontier(1) == t.nodes[0].children


@pytest.mark.parametrize("refit", ["none", "maps", "joint"])
def test_refit_modes_and_sum_to_one(refit):
    h = make_hierarchy(random_state=3, spatial_shape=(20, 20), n_channels=80)
    t = hierarchical_nmf(h.X, 4, refit=refit, sum_to_one=True, refit_iter=100)
    for lv in t.levels:
        assert lv.refit == refit
        np.testing.assert_allclose(lv.A.sum(axis=1), 1.0, atol=1e-6)
        assert np.all(lv.A >= -1e-12)
    if refit == "joint":  # the endmembers moved, the tree's did not
        assert not np.allclose(t.levels[-1].S, t.S[t.levels[-1].nodes])
    else:
        np.testing.assert_array_equal(t.levels[-1].S, t.S[t.levels[-1].nodes])


@pytest.mark.parametrize("backend", BACKENDS)
def test_tree_backends_and_float32(planted, backend):
    X = planted.X[:900]
    ref = hierarchical_nmf(X, 4)
    got = hierarchical_nmf(to_backend(X, backend), 4)
    assert got.newick() == ref.newick()
    np.testing.assert_array_equal(got.assignment, ref.assignment)
    np.testing.assert_allclose(host(got.S), ref.S, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(host(got.levels[-1].A), ref.levels[-1].A, rtol=1e-6, atol=1e-8)
    X32 = to_backend(X, backend, dtype="float32")
    t32 = hierarchical_nmf(X32, 4)
    for arr in (t32.S, t32.node_maps, t32.levels[-1].A, t32.levels[-1].S):
        assert type(arr) is type(X32) and arr.dtype == X32.dtype
    assert t32.newick() == ref.newick()


# ------------------------------------------------------------------ bad input
def test_too_few_pixels():
    with pytest.raises(ValueError, match=r"X has 3 pixel\(s\).*min_size"):
        hierarchical_nmf(np.ones((3, 5)), 2)
    with pytest.raises(ValueError, match="exceeds the number of pixels"):
        hierarchical_nmf(np.random.default_rng(0).random((10, 5)), 11)


def test_identical_pixels_keep_a_partial_tree():
    X = np.tile(np.linspace(1, 2, 12), (50, 1))
    with pytest.warns(UserWarning, match=r"stopped at 1 leaves of the 3.*identical"):
        t = hierarchical_nmf(X, 3)
    assert t.n_leaves == 1 and "rank one" in t.nodes[0].reason


def test_a_node_of_identical_pixels_is_not_split():
    rng = np.random.default_rng(0)
    a, b, c = rng.random((3, 20))
    w = rng.random((60, 1))
    X = np.vstack([np.tile(a, (40, 1)), w * b + (1 - w) * c])  # a pure block and a mixing line
    t = hierarchical_nmf(X, 5, min_size=3)
    pure = [i for i in t.leaves if t.nodes[i].reason == "pixels identical (rank one)"]
    assert len(pure) == 1 and t.pixels(pure[0]).tolist() == list(range(40))
    assert t.n_leaves == 5 and t.levels[-1].A.shape == (100, 5)


def test_more_leaves_than_distinguishable_spectra():
    """Two materials, pure pixels plus noise: 2 leaves, then noise splits are refused."""
    rng = np.random.default_rng(1)
    S = rng.random((2, 30)) + 0.5
    X = S[np.repeat([0, 1], 150)] + 0.01 * rng.standard_normal((300, 30))
    with pytest.warns(UserWarning, match=r"stopped at 2 leaves of the 8 requested.*distinguish"):
        t = hierarchical_nmf(X, 8)
    assert t.n_leaves == 2 and t.stop_reason == "no leaf can be split"
    assert all("min_angle" in t.nodes[i].reason for i in t.leaves)
    assert t.levels[-1].A.shape == (300, 2)
    m = match_leaves(t, S)
    assert m["sad"] < 0.2


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"n_leaves": None}, ValueError, "stopping rule"),
        ({"score": "bogus"}, ValueError, r"score='bogus' is unknown.*'gain', 'ndcg'"),
        ({"refit": "bogus"}, ValueError, r"refit='bogus' is unknown.*'maps'.*a bool"),
        ({"node_rank": 3}, ValueError, "node_rank must be"),
        ({"min_size": 0}, ValueError, "min_size must be"),
        ({"n_leaves": 2.5}, TypeError, "n_leaves must be None or an int"),
        ({"endmember": "x"}, ValueError, r"endmember='x' is unknown.*'core', 'split'"),
        ({"min_angle": -1}, ValueError, "min_angle must be"),
    ],
)
def test_bad_options(mixture, kwargs, exc, match):
    kw = {"n_leaves": 3, **kwargs}
    with pytest.raises(exc, match=match):
        hierarchical_nmf(mixture.X, kw.pop("n_leaves"), **kw)


def test_every_parameter_has_a_row():
    """The table documents and checks exactly the keywords of hierarchical_nmf."""
    sig = inspect.signature(hierarchical_nmf).parameters
    assert set(TREE_PARAMETERS) == set(sig) - {"X"}
    for name, row in TREE_PARAMETERS.items():
        assert row.default == sig[name].default, name
        assert f"    {name} : {row.type_doc}\n" in hierarchical_nmf.__doc__
    assert "{parameters}" not in hierarchical_nmf.__doc__


@pytest.mark.parametrize(
    "row", [r for r in TREE_PARAMETERS.values() if r.invalid() is not None], ids=lambda r: r.name
)
def test_a_refused_value_names_its_parameter(mixture, row):
    kw = {"n_leaves": 3, row.name: row.invalid()}
    with pytest.raises((ValueError, TypeError), match=re.escape(f"{row.name}=")):
        hierarchical_nmf(mixture.X, **kw)


def test_negative_data_is_refused():
    X = np.random.default_rng(0).standard_normal((50, 10))
    with pytest.raises(ValueError, match="negative"):
        hierarchical_nmf(X, 3)


# ------------------------------------------------------------------ files
def test_json_round_trip(planted_tree, tmp_path):
    t = planted_tree
    text = t.to_json(tmp_path / "tree.json")
    back = Tree.from_dict(json.loads((tmp_path / "tree.json").read_text()))
    assert text.startswith("{") and back.newick() == t.newick()
    assert [vars(a) for a in back.nodes] == [vars(b) for b in t.nodes]
    np.testing.assert_allclose(back.S, t.S, rtol=1e-15)
    assert back.params == json.loads(json.dumps(t.params))
    with pytest.raises(ValueError, match="not an unmix tree"):
        Tree.from_dict({"format": "something"})


def test_hdf5_round_trip_and_result_file(planted_tree, tmp_path):
    t = planted_tree
    back = load_tree(t.save(tmp_path / "tree.h5"))
    assert back.newick() == t.newick()
    np.testing.assert_array_equal(back.assignment, t.assignment)
    for a, b in zip(back.levels, t.levels, strict=True):
        assert a.nodes == b.nodes
        np.testing.assert_array_equal(a.A, b.A)
    res = t.to_result()
    assert res.A.shape == (t.assignment.size, t.n_leaves)
    path = attach_tree(res.save(tmp_path / "result.h5"), t)
    import unmix

    loaded = unmix.load_result(path)
    np.testing.assert_array_equal(loaded.S, res.S)
    assert load_tree(path).newick() == t.newick()
    with pytest.raises(ValueError, match="holds no unmix tree"):
        res.save(tmp_path / "plain.h5")
        load_tree(tmp_path / "plain.h5")
    with pytest.raises(FileNotFoundError):
        load_tree(tmp_path / "missing.h5")


def test_text_outline(planted_tree):
    lines = planted_tree.text().splitlines()
    assert len(lines) == len(planted_tree.nodes)
    assert lines[0].startswith("- node 0 (1600 px")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert planted_tree.newick().endswith("n0;")


# ------------------------------------------------------------------ real data
@pytest.mark.slow
def test_samson_tree_leaves_match_the_ground_truth():
    """Samson (3 true endmembers): a 3-leaf tree of shape-normalized pixels."""
    import scipy.io as sio

    from conftest import shared_path
    from unmix.metrics import score

    d = sio.loadmat(shared_path("hsi", "samson.mat"))
    X = d["Y"].T.reshape(95, 95, 156, order="F").reshape(-1, 156).astype(float)
    A_true = d["S_GT"].reshape(-1, 3)
    t = hierarchical_nmf(X, 3, normalize=True, sum_to_one=True, spatial_shape=(95, 95))
    assert t.n_leaves == 3 and t.depth == 2
    leaf = t.levels[-1]
    s = score(host(leaf.S), d["GT"], host(leaf.A), A_true)
    assert s["sad"] < 2.0 and s["rmse"] < 0.08  # measured 1.10 deg / 0.041
    # the refitted leaf maps (simplex least squares) fit better than the nested maps of the
    # same endmembers, which are on the simplex too
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    nested = host(t.node_maps)[:, leaf.nodes]
    S = host(leaf.S)
    np.testing.assert_allclose(nested.sum(axis=1), 1.0, atol=1e-9)
    assert np.sum((Xn - host(leaf.A) @ S) ** 2) < np.sum((Xn - nested @ S) ** 2)


def test_spatial_shape_must_hold_the_pixels():
    X = np.random.default_rng(0).random((60, 20))
    with pytest.raises(ValueError, match=r"spatial_shape=\(7, 7\) has 49 entries but X has 60"):
        hierarchical_nmf(X, n_leaves=3, spatial_shape=(7, 7))
