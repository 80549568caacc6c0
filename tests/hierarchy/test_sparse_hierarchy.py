"""Sparse X in the hierarchy: trees and deep NMF of CSR rows, never densified."""

from __future__ import annotations

import json
import tracemalloc

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

import unmix
from unmix.cli import entry
from unmix.hierarchy import deep_nmf, hierarchical_nmf, load_tree
from unmix.metrics import spectral_angles

SPARSE_CLASSES = (
    sp.csr_array,
    sp.csr_matrix,
    sp.csc_array,
    sp.csc_matrix,
    sp.coo_array,
    sp.coo_matrix,
)


def _counts(n: int, m: int, *, dose: float, seed: int, k: int = 4) -> np.ndarray:
    """Low-dose counts (pixels, channels) of ``k`` planted materials (mostly zeros)."""
    rng = np.random.default_rng(seed)
    A = rng.gamma(0.5, 1.0, (n, k))
    S = rng.gamma(1.0, 1.0, (k, m)) * (rng.random((k, m)) < 0.5)
    return rng.poisson(A @ S * dose).astype(np.float64)


@pytest.fixture(scope="module")
def counts():
    X = _counts(500, 80, dose=0.8, seed=0)
    assert (X == 0).mean() > 0.5
    return X


@pytest.fixture
def no_densify(monkeypatch):
    """Every SciPy sparse class refuses toarray / todense while the test runs."""

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"{type(self).__name__} densified")

    for cls in SPARSE_CLASSES:
        monkeypatch.setattr(cls, "toarray", refuse)
        monkeypatch.setattr(cls, "todense", refuse)


def _same_tree(t_dense, t_sparse, *, rtol=1e-6):
    shape = [(nd.parent, nd.children, nd.size) for nd in t_dense.nodes]
    assert [(nd.parent, nd.children, nd.size) for nd in t_sparse.nodes] == shape
    np.testing.assert_array_equal(t_sparse.assignment, t_dense.assignment)
    np.testing.assert_allclose(
        t_sparse.S, t_dense.S, rtol=rtol, atol=rtol * np.abs(t_dense.S).max()
    )
    np.testing.assert_allclose(t_sparse.node_maps, t_dense.node_maps, atol=1e-6)
    assert len(t_sparse.levels) == len(t_dense.levels)
    for a, b in zip(t_dense.levels, t_sparse.levels, strict=True):
        assert b.nodes == a.nodes
        np.testing.assert_allclose(b.A, a.A, atol=1e-6 * float(np.abs(a.A).max()))
        assert b.error == pytest.approx(a.error, rel=1e-6)
    assert [h["score"] for h in t_sparse.history] == pytest.approx(
        [h["score"] for h in t_dense.history], rel=1e-6
    )


# ------------------------------------------------------------------ trees
@pytest.mark.parametrize("loss", [None, "frobenius", "kl"])
def test_tree_of_csr_is_the_tree_of_the_dense_data(counts, loss, no_densify):
    dense = hierarchical_nmf(counts, 4, loss=loss)
    tree = hierarchical_nmf(sp.csr_array(counts), 4, loss=loss)
    assert tree.n_leaves == 4
    _same_tree(dense, tree)


@pytest.mark.parametrize(
    "kw",
    [
        {"endmember": "split", "internal": "split", "strategy": "breadth"},
        {"refit": "joint", "sum_to_one": True},
        {"refit": "none", "score": "ndcg"},
        {"node_rank": "stability", "stability": {"n_runs": 3, "max_iter": 100}},
    ],
    ids=["split-breadth", "joint-simplex", "nested-ndcg", "stability"],
)
def test_options_give_the_dense_tree(counts, kw, no_densify):
    _same_tree(hierarchical_nmf(counts, 4, **kw), hierarchical_nmf(sp.csr_array(counts), 4, **kw))


def test_other_losses_give_the_dense_tree(counts):
    """Beyond Frobenius and KL the engine (and the split's loss) read bounded dense blocks
    of rows (unmix.blocks.SparsePixelData.x), never the node whole."""
    _same_tree(
        hierarchical_nmf(counts, 3, loss=1.5), hierarchical_nmf(sp.csr_array(counts), 3, loss=1.5)
    )


def test_normalized_rows_give_the_dense_tree_up_to_rounding(counts, no_densify):
    """Unit-norm pixels tie in the successive projection start: the fits then agree to
    rounding of the norms, the tree exactly, the endmembers within a fraction of a degree."""
    dense = hierarchical_nmf(counts, 4, normalize=True)
    tree = hierarchical_nmf(sp.csr_array(counts), 4, normalize=True)
    assert [nd.size for nd in tree.nodes] == [nd.size for nd in dense.nodes]
    assert np.max(np.diag(spectral_angles(tree.S, dense.S))) < 0.1


def test_csc_coo_pydata_and_integer_input_are_taken_as_csr(counts):
    ref = hierarchical_nmf(sp.csr_array(counts), 3)
    inputs = [sp.csc_matrix(counts), sp.coo_array(counts), sp.csr_matrix(counts.astype(np.int64))]
    sparse = pytest.importorskip("sparse")
    inputs.append(sparse.COO.from_numpy(counts))
    for X in inputs:
        tree = hierarchical_nmf(X, 3)
        assert [nd.size for nd in tree.nodes] == [nd.size for nd in ref.nodes]
        np.testing.assert_allclose(tree.S, ref.S, rtol=1e-5, atol=1e-5 * np.abs(ref.S).max())


def test_float32_csr_stays_float32(counts):
    X32 = counts.astype(np.float32)
    dense = hierarchical_nmf(X32, 4)
    tree = hierarchical_nmf(sp.csr_array(X32), 4)
    assert tree.S.dtype == np.float32 and tree.node_maps.dtype == np.float32
    assert all(lv.A.dtype == np.float32 and lv.S.dtype == np.float32 for lv in tree.levels)
    assert tree.params["dtype"] == dense.params["dtype"] == "float32"
    # float32 products are summed in another order: a boundary pixel may change side
    assert np.mean(tree.assignment == dense.assignment) > 0.99
    assert np.max(np.diag(spectral_angles(tree.S, dense.S))) < 0.1
    deep = deep_nmf(sp.csr_array(X32), [3, 2], finetune_iter=5)
    assert all(a.dtype == np.float32 for a in [*deep.A, *deep.W])


def test_identical_pixels_are_found_rank_one_from_the_stored_entries():
    row = np.zeros(40)
    row[[3, 7, 20]] = [1.0, 2.0, 5.0]
    X = np.outer(np.arange(1.0, 61.0), row)  # 60 pixels, one spectrum: exactly rank one
    for Z in (X, sp.csr_array(X)):
        with pytest.warns(UserWarning, match=r"pixels identical \(rank one\)"):
            tree = hierarchical_nmf(Z, 2)
        assert tree.n_leaves == 1


def test_bad_sparse_values_raise_as_for_dense(counts):
    X = sp.csr_array(counts)
    X.data[4] = -2.0
    for fit in (lambda Z: hierarchical_nmf(Z, 3), lambda Z: deep_nmf(Z, [3, 2])):
        for Z in (X, X.toarray()):
            with pytest.raises(ValueError, match="Negative values in data passed to"):
                fit(Z)
    X.data[4] = np.nan
    with pytest.raises(ValueError, match="stored NaN or Inf entries"):
        hierarchical_nmf(X, 3)
    with pytest.raises(ValueError, match="3-D sparse array"):
        hierarchical_nmf(pytest.importorskip("sparse").zeros((4, 5, 6)), 3)


# ------------------------------------------------------------------ deep NMF
@pytest.mark.parametrize("mode", ["maps", "endmembers"])
def test_deep_nmf_of_csr_is_that_of_the_dense_data(counts, mode, no_densify):
    dense = deep_nmf(counts, [4, 2], mode=mode, finetune_iter=20)
    deep = deep_nmf(sp.csr_array(counts), [4, 2], mode=mode, finetune_iter=20)
    assert deep.errors == pytest.approx(dense.errors, rel=1e-6)
    assert deep.layerwise_errors == pytest.approx(dense.layerwise_errors, rel=1e-6)
    for a, b in zip([*dense.A, *dense.W], [*deep.A, *deep.W], strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6 * np.abs(a).max())


def test_deep_nmf_first_layer_terms_on_csr(counts, no_densify):
    dense = deep_nmf(counts, [3, 2], loss="kl", finetune_iter=0)
    deep = deep_nmf(sp.csr_array(counts), [3, 2], loss="kl", finetune_iter=0)
    assert deep.errors == pytest.approx(dense.errors, rel=1e-6)


# ------------------------------------------------------------------ memory
def _large_sparse(n: int, m: int, per_pixel: int, seed: int) -> sp.csr_array:
    """``n`` pixels of about ``per_pixel`` counts each from one of 3 planted spectra."""
    rng = np.random.default_rng(seed)
    S = rng.gamma(1.0, 1.0, (3, m)) * (rng.random((3, m)) < 0.3)
    cdf = np.cumsum(S / S.sum(axis=1, keepdims=True), axis=1)
    comp = rng.integers(3, size=n)
    k = rng.poisson(per_pixel, n) + 1
    rows = np.repeat(np.arange(n), k)
    u = rng.random(rows.size)
    cols = np.empty(rows.size, dtype=np.int64)
    for c in range(3):
        on = comp[rows] == c
        cols[on] = np.minimum(np.searchsorted(cdf[c], u[on]), m - 1)
    X = sp.csr_array((np.ones(rows.size), (rows, cols)), shape=(n, m))
    X.sum_duplicates()
    return X


def test_large_sparse_tree_stays_far_below_the_dense_size(no_densify):
    X = _large_sparse(20000, 2000, 8, seed=1)
    dense_bytes = 8 * 20000 * 2000  # 320 MB
    assert X.nnz < 0.006 * 20000 * 2000
    tracemalloc.start()
    try:
        tree = hierarchical_nmf(X, 3)
        deep = deep_nmf(X, [3, 2], finetune_iter=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tree.n_leaves == 3 and tree.levels[-1].A.shape == (20000, 3)
    assert deep.W[0].shape == (3, 2000)
    assert peak < 0.1 * dense_bytes, f"peak {peak / 2**20:.1f} MiB"


# ------------------------------------------------------------------ command line
@pytest.fixture(scope="module")
def sparse_file(tmp_path_factory):
    """A 10 x 12 scan of low-dose counts as a SciPy .npz and an HDF5 CSR group (the sparse
    files unmix run reads)."""
    rng = np.random.default_rng(4)
    A = rng.gamma(1.0, 1.0, (120, 3))
    S = rng.gamma(1.0, 1.0, (3, 64)) * (rng.random((3, 64)) < 0.4)
    X = sp.csr_array(rng.poisson(A @ S * 0.3).astype(np.float32))
    folder = tmp_path_factory.mktemp("sparse_tree")
    npz = folder / "counts.npz"
    sp.save_npz(npz, X)
    with h5py.File(folder / "counts.h5", "w") as f:  # the HDF5 CSR layout
        g = f.create_group("counts")
        g.attrs["shape"], g.attrs["spatial_shape"] = X.shape, (10, 12)
        for key in ("data", "indices", "indptr"):
            g[key] = getattr(X, key)
    return X, str(npz), folder


def test_cli_tree_grows_on_a_sparse_file_without_densifying(sparse_file, no_densify):
    X, npz, folder = sparse_file
    out = folder / "tree"
    assert entry(["tree", npz, "--leaves", "3", "-o", str(out), "--no-report", "-q"]) == 0
    tree = load_tree(str(out / "result.h5"))
    ref = hierarchical_nmf(X, 3)
    assert [nd.size for nd in tree.nodes] == [nd.size for nd in ref.nodes]
    np.testing.assert_allclose(tree.S, ref.S, rtol=1e-6)
    assert unmix.load_result(str(out / "result.h5")).A.shape == (120, 3)


def test_cli_tree_of_a_sparse_hdf5_file_with_kl_and_report(sparse_file):
    X, _, folder = sparse_file
    out = folder / "tree_kl"
    args = ["tree", str(folder / "counts.h5"), "--leaves", "3", "--loss", "kl", "-o", str(out)]
    assert entry([*args, "-q"]) == 0
    ref = hierarchical_nmf(X, 3, loss="kl")
    tree = load_tree(str(out / "result.h5"))
    assert [nd.size for nd in tree.nodes] == [nd.size for nd in ref.nodes]
    assert tree.spatial_shape == (10, 12)
    assert (out / "tree.html").stat().st_size > 0
    assert json_leaves(out / "tree.json") == 3


def json_leaves(path) -> int:
    with open(path, encoding="utf-8") as f:
        nodes = json.load(f)["nodes"]
    return sum(1 for nd in nodes if not nd["children"])
