"""Rank selection on sparse X: the dense answer from the stored entries, never densified."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

from unmix.blocks import SparsePixelData
from unmix.cli import entry
from unmix.selection import select_lambdas, select_rank
from unmix.selection._batched import fit_batch
from unmix.selection._runner import plan_fits

KS = range(2, 6)
SAME = ("rel_error", "sse", "aic", "bic", "laplace_pca", "cophenetic", "dispersion")
SAME += ("silhouette_min", "new_component_angle")


def _counts(n=600, m=80, k=3, dose=0.5, seed=0, dtype=np.float64):
    """Poisson counts of a planted rank-``k`` model, about 85 % zeros."""
    rng = np.random.default_rng(seed)
    A = rng.gamma(0.5, 1.0, (n, k))
    S = rng.gamma(1.0, 1.0, (k, m)) * (rng.random((k, m)) < 0.3)
    return rng.poisson(A @ S * dose).astype(dtype)


@pytest.fixture(scope="module")
def X():
    return _counts()


@pytest.fixture(scope="module")
def dense_sel(X):
    return {h: select_rank(X, KS, n_restarts=4, holdout=h) for h in ("entries", "blocks")}


def _col(sel, key):
    return np.array([r[key] for r in sel.table], dtype=float)


@pytest.mark.parametrize("holdout", ["entries", "blocks"])
def test_csr_recommends_the_dense_rank_with_the_same_curves(X, dense_sel, holdout):
    d = dense_sel[holdout]
    s = select_rank(sp.csr_array(X), KS, n_restarts=4, holdout=holdout)
    assert d.recommended == s.recommended == 3
    assert s.picks == d.picks
    for key in SAME:  # the same fits (starts, bootstrap draws) on the same entries
        np.testing.assert_allclose(_col(s, key), _col(d, key), rtol=1e-6, err_msg=key)
    cv_s, cv_d = _col(s, "cv_error"), _col(d, "cv_error")
    if holdout == "blocks":  # the dense pattern itself
        np.testing.assert_allclose(cv_s, cv_d, rtol=1e-6)
    else:  # a Latin pattern of blocks instead of scattered entries: other entries held
        # out, close up to the planted rank; beyond it both rise (overfit models), by
        # amounts that depend on which entries are held out
        np.testing.assert_allclose(cv_s[:2], cv_d[:2], rtol=0.03)
        assert np.all(cv_s[2:] > cv_s[1]) and np.all(cv_d[2:] > cv_d[1])
    assert s.settings["holdout_pattern"] == ("latin" if holdout == "entries" else "blocks")
    assert s.settings["sparse"] and s.settings["nnz"] == np.count_nonzero(X)


@pytest.mark.parametrize("kind", ["latin", "blocks"])
def test_block_holdout_closed_forms_match_the_listed_entries(X, kind):
    """The held-out fits on CSR (closed forms over blocks) are the masked dense fits of
    the same pattern (every entry listed): same iterations, objectives, held-out sums."""
    specs = plan_fits([2, 3, 4], 3, 2, kind, 0.2, seed=7)
    Xs = X[:300, :50]
    dense = fit_batch(Xs, specs, max_iter=60, tol=1e-6, init="random")
    sparse = fit_batch(sp.csr_array(Xs), specs, max_iter=60, tol=1e-6, init="random")
    for a, b in zip(dense, sparse, strict=True):
        assert a.n_iter == b.n_iter, a.key
        assert b.objective == pytest.approx(a.objective, rel=1e-9), a.key
        if a.heldout_n:
            assert b.heldout_n == a.heldout_n
            assert b.heldout_sse == pytest.approx(a.heldout_sse, rel=1e-9), a.key
            assert b.heldout_ss == pytest.approx(a.heldout_ss, rel=1e-12), a.key
        else:
            assert b.sse == pytest.approx(a.sse, rel=1e-9), a.key


@pytest.mark.parametrize("fmt", ["csc_matrix", "coo_array", "csr_matrix", "pydata"])
def test_other_sparse_formats_are_taken(X, dense_sel, fmt):
    if fmt == "pydata":
        sparse = pytest.importorskip("sparse")
        Xs = sparse.COO.from_numpy(X)
    else:
        Xs = getattr(sp, fmt)(X)
    s = select_rank(Xs, KS, n_restarts=4)
    assert s.recommended == dense_sel["entries"].recommended
    np.testing.assert_allclose(_col(s, "bic"), _col(dense_sel["entries"], "bic"), rtol=1e-6)


def test_float32_stays_float32():
    X32 = _counts(n=300, m=60, seed=2, dtype=np.float32)
    s = select_rank(sp.csr_array(X32), KS, n_restarts=3)
    d = select_rank(X32, KS, n_restarts=3)
    assert s.settings["dtype"] == "float32"
    assert s.runs[3][0].S.dtype == np.float32 and s.runs[3][0].A.dtype == np.float32
    assert s.recommended == d.recommended
    np.testing.assert_allclose(_col(s, "rel_error"), _col(d, "rel_error"), rtol=1e-4)


def test_the_sparse_input_is_never_made_dense(X, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AssertionError(f"densified a sparse {self.shape} matrix")

    for cls in (sp.csr_array, sp.csr_matrix, sp.csc_array, sp.csc_matrix, sp.coo_array):
        monkeypatch.setattr(cls, "toarray", refuse)
        monkeypatch.setattr(cls, "todense", refuse)
    monkeypatch.setattr(SparsePixelData, "x", refuse)
    s = select_rank(sp.csr_array(X), KS, n_restarts=3, cv_repeats=1)
    assert s.recommended == 3
    engine = select_rank(
        sp.csr_array(X),
        KS,
        n_restarts=3,
        criteria=["bic", "silhouette"],
        fit_options={"loss": "kl", "solver": "mu"},
        max_iter=50,
    )
    assert set(engine.picks) == {"bic", "silhouette"}


def test_peak_memory_is_far_below_the_dense_array():
    """A 40000 x 1000 map at 0.1 % density (dense float64: 320 MB) is selected in a few
    tens of MB: the factors of the batched fits (O(pixels k) each) and the criteria."""
    rng = np.random.default_rng(3)
    n, m, nnz = 40_000, 1000, 40_000
    rows, cols = rng.integers(0, n, nnz), rng.integers(0, m, nnz)
    Xs = sp.csr_array((rng.poisson(3.0, nnz) + 1.0, (rows, cols)), shape=(n, m))
    tracemalloc.start()
    try:
        sel = select_rank(
            Xs, range(2, 5), n_restarts=3, cv_repeats=1, max_iter=20, consensus_pixels=300
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.2 * n * m * 8, f"peak {peak / 1e6:.1f} MB"
    assert np.isfinite(_col(sel, "cv_error")).all()


def test_options_that_need_dense_x_say_so(X):
    Xs = sp.csr_array(X)
    with pytest.raises(
        ValueError, match=r"fit_options with sparse X.*\(criteria=\[\.\.\.\] without"
    ):
        select_rank(Xs, KS, n_restarts=3, fit_options={"loss": "kl"})
    with pytest.raises(TypeError, match=r"select_lambdas needs dense X.*select_rank takes sparse"):
        select_lambdas(Xs, 3)
    bad = Xs.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="stored NaN or Inf entries"):
        select_rank(bad, KS, n_restarts=3)
    neg = Xs.copy()
    neg.data[:] = -neg.data
    with pytest.raises(ValueError, match="Negative values"):
        select_rank(neg, KS, n_restarts=3)


def test_a_checkpoint_resumes_and_belongs_to_sparse_x(X, tmp_path):
    Xs = sp.csr_array(X)
    first = select_rank(Xs, KS, n_restarts=3, checkpoint=tmp_path / "ck")
    again = select_rank(Xs, KS, n_restarts=3, checkpoint=tmp_path / "ck")
    assert again.timings["n_fits_resumed"] == again.timings["n_fits"]
    assert again.picks == first.picks
    np.testing.assert_array_equal(_col(again, "cv_error"), _col(first, "cv_error"))
    with pytest.raises(ValueError, match="checkpoint"):  # the dense data are other data
        select_rank(X, KS, n_restarts=3, checkpoint=tmp_path / "ck")


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    Xc = sp.csr_array(_counts(n=120, m=64, seed=4).astype(np.float32))
    path = tmp_path_factory.mktemp("sparse_select") / "counts.npz"
    sp.save_npz(path, Xc)
    return Xc, path


def test_cli_selects_a_sparse_npz(npz, tmp_path, capsys):
    Xc, path = npz
    out = tmp_path / "sel"
    args = ["select", str(path), "--ks", "2:5", "--restarts", "3", "--shape", "10x12"]
    assert entry([*args, "-o", str(out), "-q"]) == 0
    saved = json.loads((out / "selection.json").read_text())
    ref = select_rank(Xc, range(2, 6), n_restarts=3, spatial_shape=(10, 12))
    assert saved["recommended"] == ref.recommended
    assert f"recommended k = {ref.recommended}" in capsys.readouterr().out
    assert (out / "selected.toml").exists() and (out / "uncertainty.h5").exists()


def test_cli_refuses_lambdas_on_a_sparse_file(npz, tmp_path, capsys):
    _, path = npz
    code = entry(["select", str(path), "--lambdas", "sparsity", "-o", str(tmp_path / "x")])
    assert code == 2
    assert "--lambdas needs dense data" in capsys.readouterr().err
