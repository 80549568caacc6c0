"""init="poisson": KL NMF on dense counts starts from HALS on Poisson-scaled X."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.sparse as sp

import unmix
from unmix.blocks import PixelData, SparsePixelData
from unmix.datasets import make_mixture


@pytest.fixture(scope="module")
def counts():
    """Dense Poisson counts (about 10 a channel, 15 % zeros), 4 planted components, 40 x 40."""
    mx = make_mixture(
        4, spatial_shape=(40, 40), n_channels=80, noise="poisson", scale=60.0, random_state=7
    )
    return mx.X


def _kl(X, A, S):
    Y = A @ S
    pos = X > 0
    return float(np.sum(X[pos] * np.log(X[pos] / Y[pos])) - X.sum() + Y.sum())


def test_default_start_follows_the_model(counts):
    def init_of(X, **kw):
        return unmix.factorize(X, 3, random_state=0, max_iter=2, **kw).spec["init"]

    assert init_of(counts, loss="kl") == "poisson"
    assert init_of(counts) == "nndsvda"  # Frobenius
    # a mask: its holes filled for the start (dense X in memory; CSR X: NNDSVDa)
    assert init_of(counts, loss="kl", mask=np.ones(counts.shape, bool)) == "poisson"
    csr_mask = {"loss": "kl", "mask": np.ones(counts.shape, bool)}
    assert init_of(sp.csr_array(counts), **csr_mask) == "nndsvda"
    sum_to_one = [unmix.NonNegative(), unmix.SumToOne()]
    assert init_of(counts, loss="kl", constraints=sum_to_one) == "spa"
    sparse_counts = np.where(np.arange(counts.size).reshape(counts.shape) % 3 == 0, counts, 0)
    assert init_of(sparse_counts, loss="kl") == "nndsvda"  # two thirds zeros


@pytest.mark.parametrize(
    ("loss", "constraints", "named"),
    [
        ("kl", [unmix.NonNegative(), unmix.SumToOne()], r"SumToOne\(A\)"),
        ("frobenius", [unmix.NonNegative(), unmix.MaxActive(1)], r"MaxActive\(A\)"),
    ],
)
def test_asked_start_that_cannot_hold_the_model_names_it(counts, loss, constraints, named):
    """``unmix run --sum-to-one --init poisson`` ended in "unexpected NotImplementedError:
    SumToOne does not project entries alone" (the start's HALS met the simplex)."""
    with pytest.raises(ValueError, match=rf"init='poisson' starts from plain NMF.*{named}"):
        unmix.factorize(counts, 3, loss=loss, init="poisson", constraints=constraints)
    plain = unmix.factorize(counts, 3, init="poisson", constraints=[unmix.NonNegative()])
    assert plain.spec["init"] == "poisson"


@pytest.mark.parametrize("solver", ["klcd", "mu"])
def test_start_is_closer_to_the_kl_optimum(counts, solver):
    """After the same iterations, the Poisson start's fit has a lower KL than NNDSVDa's."""
    kw = dict(loss="kl", solver=solver, random_state=0, max_iter=3, tol=0)
    poisson = unmix.factorize(counts, 4, init="poisson", **kw)
    nndsvda = unmix.factorize(counts, 4, init="nndsvda", **kw)
    assert poisson.objective < nndsvda.objective
    assert poisson.objective == pytest.approx(_kl(counts, poisson.A, poisson.S), rel=1e-9)
    # plain iterations on both sides (klcd extrapolates from iteration 50 by default: the
    # NNDSVDa fit, 75 iterations, then slides 0.03 % lower along the valley)
    plain = {"solver_options": {"extrapolate": False}} if solver == "klcd" else {}
    kw = dict(loss="kl", solver=solver, random_state=0, **plain)
    converged = unmix.factorize(counts, 4, **kw)
    long = unmix.factorize(counts, 4, init="nndsvda", **kw)
    assert converged.objective <= long.objective * (1 + 1e-4)


def test_holes_are_filled_by_the_independence_model_of_the_observed_entries(counts):
    from unmix._backend import backend_of
    from unmix.engine._poisson_start import hole_filled

    mask = np.random.default_rng(2).random(counts.shape) > 0.1
    mask[3] = False  # a pixel with no observed entry
    X = np.where(mask, counts, np.nan)
    filled = hole_filled(PixelData(X, backend_of(X), block_size=100, mask=mask))
    assert filled.mask is None
    obs = np.where(mask, counts, 0.0)
    xbar = obs.sum(axis=1) / np.maximum(mask.sum(axis=1), 1)
    cbar = obs.sum(axis=0) / mask.sum(axis=0)
    want = np.where(mask, counts, np.outer(xbar, cbar) / (obs.sum() / mask.sum()))
    np.testing.assert_allclose(filled.X, want, rtol=1e-12)
    assert np.all(filled.X[3] == 0)


@pytest.mark.parametrize("solver", ["klcd", "mu"])
def test_masked_counts_start_closer_to_the_kl_optimum(counts, solver):
    """10 % of the entries masked: the Poisson start on the filled holes (the default now)
    against NNDSVDa (the masked default before), after the same iterations."""
    mask = np.random.default_rng(5).random(counts.shape) > 0.1
    kw = dict(loss="kl", solver=solver, mask=mask, random_state=0, max_iter=3, tol=0)
    poisson = unmix.factorize(counts, 4, **kw)
    nndsvda = unmix.factorize(counts, 4, init="nndsvda", **kw)
    assert poisson.spec["init"] == "poisson"
    assert poisson.objective < nndsvda.objective


def test_start_is_non_negative_and_keeps_empty_pixels_empty(counts):
    X = counts.copy()
    X[5] = 0.0  # a pixel without counts
    r = unmix.factorize(X, 4, loss="kl", solver="mu", random_state=0, max_iter=1, tol=0)
    assert np.all(r.A >= 0) and np.all(r.S >= 0) and np.all(np.isfinite(r.A))
    assert np.all(r.A[5] == 0)


def test_same_start_on_any_block_grid_and_dtype(counts):
    kw = dict(loss="kl", solver="mu", random_state=0, max_iter=1, tol=0)
    whole = unmix.factorize(counts, 4, **kw)
    blocks = unmix.factorize(counts, 4, block_size=37, **kw)
    np.testing.assert_allclose(blocks.S, whole.S, rtol=1e-9, atol=1e-12)
    single = unmix.factorize(counts.astype(np.float32), 4, **kw)
    assert single.S.dtype == np.float32
    rel = np.linalg.norm(single.S - whole.S) / np.linalg.norm(whole.S)
    assert rel < 1e-4


def test_sparse_counts_start_without_densifying(counts, monkeypatch):
    calls = []
    monkeypatch.setattr(SparsePixelData, "x", lambda self, b: calls.append(b) or None)
    r = unmix.factorize(sp.csr_array(counts), 4, loss="kl", random_state=0, max_iter=5)
    assert calls == [] and r.spec["init"] == "poisson"
    dense = unmix.factorize(counts, 4, loss="kl", random_state=0, max_iter=5)
    assert r.objective == pytest.approx(dense.objective, rel=1e-9)


def test_explicit_start_on_mostly_zero_data_says_it_falls_back(counts, caplog):
    X = np.where(np.arange(counts.size).reshape(counts.shape) % 3 == 0, counts, 0)
    with caplog.at_level(logging.INFO, logger="unmix"):
        r = unmix.factorize(X, 3, loss="kl", init="poisson", random_state=0, max_iter=2)
    assert "NNDSVDa instead" in caplog.text
    assert np.isfinite(r.objective)


def test_zero_share_is_one_pass_and_cached(counts, monkeypatch):
    from unmix._backend import backend_of

    data = PixelData(counts, backend_of(counts), block_size=100)
    share = data.zero_share()
    assert share == pytest.approx(np.mean(counts == 0))
    monkeypatch.setattr(PixelData, "x", lambda self, b: 1 / 0)
    assert data.zero_share() == share


def test_compressed_start_on_large_data_matches_the_exact_one(counts, monkeypatch):
    """From COMPRESS_ENTRIES on, the start's HALS runs on a truncated SVD of the scaled
    data (no pass over X an iteration); the fit that follows ends where the exact one does."""
    import unmix.engine._poisson_start as ps

    kw = dict(loss="kl", solver="klcd", random_state=0, block_size=400)  # 4 blocks
    passes = []
    real = PixelData.x_times
    monkeypatch.setattr(PixelData, "x_times", lambda *a: passes.append(1) or real(*a))
    exact = unmix.factorize(counts, 4, **kw)
    n_exact, passes[:] = len(passes), []
    monkeypatch.setattr(ps, "COMPRESS_ENTRIES", 1000)
    compressed = unmix.factorize(counts, 4, **kw)
    assert len(passes) <= 4 * 4  # the randomized SVD's passes, 4 blocks each
    assert n_exact > 4 * len(passes)  # exact HALS: a pass every iteration
    assert compressed.objective == pytest.approx(exact.objective, rel=1e-4)
