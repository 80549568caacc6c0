"""Deep NMF with fine-tuning, dendrograms (spectral angle, rotation-invariant), figures, CLI."""

from __future__ import annotations

import os

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.optimize import nnls

from conftest import BACKENDS, host, to_backend
from unmix._backend import backend_of
from unmix.hierarchy import (
    cluster_components,
    deep_nmf,
    hierarchical_nmf,
    layer_maps,
    polar_transform,
    rotation_distances,
)
from unmix.synthetic import make_diffraction_patterns, make_hierarchy


@pytest.fixture(scope="module")
def small():
    return make_hierarchy(random_state=4, spatial_shape=(20, 20), n_channels=60)


def _purity(labels: np.ndarray, truth: np.ndarray) -> float:
    return sum(np.bincount(truth[labels == c]).max() for c in np.unique(labels)) / len(truth)


# ------------------------------------------------------------------ deep NMF
@pytest.mark.parametrize(
    ("mode", "ranks", "sum_to_one"),
    [
        ("maps", [6, 2], False),
        ("maps", [6, 3, 2], True),
        ("endmembers", [6, 3], False),
        ("endmembers", [6, 3, 2], True),
    ],
)
def test_finetuning_lowers_the_total_error(small, mode, ranks, sum_to_one):
    r = deep_nmf(small.X, ranks, mode=mode, sum_to_one=sum_to_one, finetune_iter=25, max_iter=200)
    assert r.total_error < r.layerwise_total_error
    assert r.errors[-1] < r.layerwise_errors[-1]
    hist = np.array(r.history["total"])
    assert np.all(np.diff(hist) <= 1e-12) and hist[-1] == pytest.approx(r.total_error)
    n, m = small.X.shape
    for k, A, W in zip(ranks, r.A, r.W, strict=True):
        assert A.shape == (n, k) and W.shape == (k, m)
        assert np.all(A >= 0) and np.all(W >= 0)
        if sum_to_one:
            np.testing.assert_allclose(A.sum(axis=1), 1.0, atol=1e-6)
    assert all(np.all(f >= 0) for f in r.factors)
    # finer layers fit better (a layer is not collapsed onto the coarsest one)
    assert np.all(np.diff(r.errors) > 0)
    if mode == "endmembers":  # A_l = A_{l-1} B_l, the factors are [A_1, B_2, ...]
        np.testing.assert_allclose(r.A[0], r.factors[0])
        for layer in range(1, len(ranks)):
            np.testing.assert_allclose(r.A[layer], r.A[layer - 1] @ r.factors[layer], atol=1e-12)


def test_no_finetuning_keeps_the_layerwise_model(small):
    r = deep_nmf(small.X, [4, 2], finetune_iter=0, max_iter=100)
    assert r.errors == r.layerwise_errors and r.history["total"] == []
    np.testing.assert_allclose(r.W[1], r.factors[1] @ r.factors[0])


@pytest.mark.parametrize(
    ("ranks", "match"),
    [
        ([4, 4], "ranks must shrink"),
        ([3, 5], "layer 2 has 5 >= 3"),
        ([], "empty"),
        ([0], ">= 1"),
        ([500], "exceeds min"),
    ],
)
def test_ranks_that_do_not_shrink(small, ranks, match):
    with pytest.raises(ValueError, match=match):
        deep_nmf(small.X, ranks)


def test_deep_bad_mode_and_weights(small):
    with pytest.raises(ValueError, match="mode must be"):
        deep_nmf(small.X, [3, 2], mode="bogus")
    with pytest.raises(ValueError, match="weights must be 2"):
        deep_nmf(small.X, [3, 2], weights=[1.0])


def test_layer_maps_exact_and_simplex(mixture):
    X, S = mixture.X, mixture.S
    be = backend_of(X)
    A = layer_maps(X, S, be)
    for i in range(0, X.shape[0], 40):
        np.testing.assert_allclose(A[i], nnls(S.T, X[i])[0], atol=1e-7)
    A1 = layer_maps(X, S, be, sum_to_one=True)
    np.testing.assert_allclose(A1.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(A1, mixture.A, atol=0.05)


@pytest.mark.parametrize("backend", BACKENDS)
def test_deep_backends_and_float32(small, backend):
    ref = deep_nmf(small.X, [4, 2], finetune_iter=5, max_iter=60)
    got = deep_nmf(to_backend(small.X, backend), [4, 2], finetune_iter=5, max_iter=60)
    np.testing.assert_allclose(got.errors, ref.errors, rtol=1e-6)
    np.testing.assert_allclose(host(got.W[1]), ref.W[1], rtol=1e-6, atol=1e-9)
    X32 = to_backend(small.X, backend, dtype="float32")
    r32 = deep_nmf(X32, [4, 2], finetune_iter=5, max_iter=60)
    assert all(type(a) is type(X32) and a.dtype == X32.dtype for a in r32.A + r32.W)
    assert r32.total_error <= r32.layerwise_total_error * (1 + 1e-5)
    e32 = deep_nmf(X32, [4, 2], mode="endmembers", sum_to_one=True, finetune_iter=5, max_iter=60)
    assert all(type(a) is type(X32) and a.dtype == X32.dtype for a in e32.A + e32.W)
    assert e32.total_error < e32.layerwise_total_error


# ------------------------------------------------------------------ clustering
def test_diffraction_patterns_cluster_by_lattice_not_rotation():
    d = make_diffraction_patterns()
    den = cluster_components(d.patterns, metric="rotation")
    assert _purity(den.labels(2), d.lattice) == 1.0
    within = den.distances[np.equal.outer(d.lattice, d.lattice)].max()
    between = den.distances[~np.equal.outer(d.lattice, d.lattice)].min()
    assert within < 10 < 60 < between
    # the plain spectral angle sees the rotations, not the lattices
    plain = cluster_components(d.patterns.reshape(len(d.lattice), -1), metric="angle")
    assert _purity(plain.labels(2), d.lattice) < 1.0


def test_rotation_distance_of_a_rotated_copy():
    d = make_diffraction_patterns(rotations=((10.0,), (0.0,)), noise=0.0)
    hexa, square = d.patterns[1], d.patterns[0]
    P = np.stack([hexa, np.rot90(hexa), square])
    D, rot = rotation_distances(P, center=d.center, n_angles=360)
    assert D[0, 1] < 2.0 and D[0, 2] > 45
    assert abs(rot[0, 1] % 60 - 30) <= 1.0  # 90 degrees, modulo the 60-degree symmetry
    unfolded = P.reshape(3, -1)
    D2, _ = rotation_distances(unfolded, signal_shape=P.shape[1:], center=d.center)
    np.testing.assert_allclose(D2, D)
    with pytest.raises(ValueError, match="signal_shape"):
        rotation_distances(unfolded)
    Q, info = polar_transform(P, center=d.center, n_angles=90)
    assert Q.shape[0] == 3 and Q.shape[2] == 90 and info["center"] == d.center


def test_spectral_angle_dendrogram_finds_the_parents(small):
    den = cluster_components(small.S_leaves, names=[f"leaf{i}" for i in range(6)])
    assert _purity(den.labels(2), small.parent_of) == 1.0
    d = den.to_dict()
    assert d["newick"].count("leaf") == 6 and 0 < d["cophenetic"] <= 1
    assert len(den.labels(threshold=1e-9)) == 6
    with pytest.raises(ValueError, match="exactly one"):
        den.labels()
    with pytest.raises(ValueError, match="metric must be"):
        cluster_components(small.S_leaves, metric="euclid")
    with pytest.raises(ValueError, match="at least 2"):
        cluster_components(small.S_leaves[:1])


# ------------------------------------------------------------------ figures, report, CLI
def test_figures_and_report(small, tmp_path):
    from unmix.hierarchy import tree_section, write_tree_report

    h = make_hierarchy(random_state=4, spatial_shape=(10, 10), n_channels=60)
    t = hierarchical_nmf(h.X, 3, spatial_shape=h.spatial_shape)
    page = write_tree_report(tmp_path, t, title="<b>x</b>", extra={"sample": "a&b"})
    text = page.read_text()
    assert text.count("data:image/png;base64,") == 3
    assert "&lt;b&gt;x&lt;/b&gt;" in text and "a&amp;b" in text and "<script" not in text
    for name in ("tree.png", "levels.png", "dendrogram.png"):
        assert (tmp_path / name).stat().st_size > 5000
    # the same content as a section for another report, under its own heading
    sec = tree_section(t, tmp_path / "sec", heading="Hierarchy")
    assert sec.startswith("<h2 id=hierarchy>Hierarchy</h2>") and "<h1" not in sec
    assert sec.count("data:image/png;base64,") == 3 and t.newick() in sec


def test_tree_figure_for_patterns(tmp_path):
    from unmix.hierarchy import plot_tree

    d = make_diffraction_patterns(rotations=((0.0, 30.0), (0.0, 20.0)), size=24)
    X = np.repeat(d.patterns.reshape(4, -1), 25, axis=0)
    X = X + 0.01 * np.random.default_rng(0).random(X.shape)
    t = hierarchical_nmf(X, 2, spatial_shape=(10, 10), signal_shape=(24, 24))
    assert os.path.getsize(plot_tree(t, tmp_path / "t.png")) > 5000


def test_cli_tree(tmp_path, small):
    from unmix.cli._tree import tree
    from unmix.hierarchy import load_tree

    path = tmp_path / "cube.npz"
    np.savez(
        path,
        data=small.X.reshape(20, 20, -1),
        axis=np.linspace(400, 900, 60),
        axis_name="wavelength",
        axis_units="nm",
    )
    out = tmp_path / "out"
    runner = CliRunner()
    from unmix.cli import main

    # registered in the main group: ``unmix tree FILE ...``
    res = runner.invoke(main, ["tree", str(path), "--leaves", "4", "--sum-to-one", "-o", str(out)])
    assert res.exit_code == 0, res.output
    for name in ("tree.json", "tree.png", "tree.html", "result.h5", "levels.png"):
        assert (out / name).exists()
    t = load_tree(out / "result.h5")
    assert t.n_leaves == 4 and t.params["sum_to_one"] is True
    assert "4 leaves" in res.output
    again = runner.invoke(tree, [str(path), "-o", str(out)])
    assert again.exit_code == 4 and "not empty" in again.output
    bad = runner.invoke(tree, [str(path), "--leaves", "0", "-o", str(tmp_path / "o2")])
    assert bad.exit_code == 2 and "n_leaves must be None or an int >= 1" in bad.output
    few = runner.invoke(
        tree,
        [
            str(path),
            "--leaves",
            "40",
            "--min-size",
            "15",
            "-q",
            "--no-report",
            "-o",
            str(tmp_path / "o3"),
        ],
    )
    assert few.exit_code == 0 and "partial tree" in few.output


def test_make_hierarchy_generator():
    h = make_hierarchy(3, 2, spatial_shape=(10, 12), n_channels=60, snr_db=None, random_state=1)
    assert h.X.shape == (120, 60) and h.A.shape == (120, 6)
    np.testing.assert_allclose(h.A.sum(axis=1), 1.0)
    np.testing.assert_allclose(h.X, h.A @ h.S_leaves)
    assert h.parent_of.tolist() == [0, 0, 1, 1, 2, 2]
    # children share their parent's peaks: closer to siblings than to cousins
    from unmix.metrics import spectral_angles

    D = spectral_angles(h.S_leaves, h.S_leaves)
    assert D[0, 1] < D[0, 2] and D[2, 3] < D[2, 4]
    with pytest.raises(ValueError, match="too few"):
        make_hierarchy(n_channels=20)
