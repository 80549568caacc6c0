"""KL with maps on the simplex, solved as the plain KL fit (``unmix.engine._fractions``).

The model ``sum_i w_i KL(x_i / n_i | a_i S)``, ``a_i`` on the simplex (the CLI's ``--loss
kl --sum-to-one``), equals ``KL(X' | A' S)`` for ``X' = diag(w / n) X`` and is minimized
exactly by the plain KL fit with each pixel's maps scaled to their best scale.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import unmix
from conftest import shared_path
from unmix.engine._fractions import SOLVED_AS
from unmix.model import L1, NonNegative, SumToOne
from unmix.preprocessing import NormalizePixels

FRACTIONS = {
    "loss": "kl",
    "constraints": [NonNegative(), SumToOne()],
    "preprocessing": [NormalizePixels("l1", weights=True)],
}


def planted(n: int = 400, m: int = 60, k: int = 3, seed: int = 0, dtype=np.float64):
    """Poisson counts of pixels 10x apart in brightness, maps on the simplex."""
    rng = np.random.default_rng(seed)
    grid = np.arange(m)
    S = np.stack([np.exp(-0.5 * ((grid - c) / 4.0) ** 2) for c in np.linspace(10, m - 10, k)])
    S = S + 0.05
    S /= S.sum(axis=1, keepdims=True)
    F = rng.dirichlet(np.full(k, 0.6), size=n)
    counts = rng.uniform(40, 400, size=(n, 1))
    X = rng.poisson(counts * F @ S).astype(dtype)
    return X, F, S


def weighted_kl(X: np.ndarray, A: np.ndarray, S: np.ndarray) -> float:
    """The fractions model's objective by hand: ``sum_i w_i KL(x_i / n_i | a_i S)``."""
    n = X.sum(axis=1)
    w = n / n.mean()
    Y = X / np.where(n > 0, n, 1.0)[:, None]
    M = A @ S
    nz = Y > 0
    terms = np.where(nz, Y * np.log(np.where(nz, Y, 1.0) / np.maximum(M, 1e-300)), 0.0) - Y + M
    return float((w[:, None] * terms).sum())


def test_fractions_are_the_plain_kl_fit_put_on_the_simplex():
    X, _, _ = planted()
    r = unmix.factorize(X, 3, random_state=0, **FRACTIONS)
    A, S = np.asarray(r.A), np.asarray(r.S)
    assert r.spec["solved_as"] == SOLVED_AS and r.spec["solver"] == "klcd"
    assert {c["type"] for c in r.spec["constraints"]} == {"NonNegative", "SumToOne"}
    np.testing.assert_allclose(A.sum(axis=1), 1.0, atol=1e-12)
    assert A.min() >= 0 and S.min() >= 0
    assert r.objective == pytest.approx(weighted_kl(X, A, S), rel=1e-9)
    # the best scale of each pixel's maps can only lower the divergence
    assert r.objective <= r.history["objective"][-1] * (1 + 1e-12)
    # the constrained iteration (the gradient solver) ends no lower
    g = unmix.factorize(X, 3, random_state=0, solver="gradient", **FRACTIONS)
    assert "solved_as" not in g.spec
    assert r.objective <= g.objective * (1 + 1e-4)


def test_the_planted_fractions_are_recovered():
    X, F, S = planted(n=1500, seed=1)
    r = unmix.factorize(X, 3, random_state=0, **FRACTIONS)
    S_hat = np.asarray(r.S)
    cos = (S_hat / np.linalg.norm(S_hat, axis=1, keepdims=True)) @ (
        S / np.linalg.norm(S, axis=1, keepdims=True)
    ).T
    match = cos.argmax(axis=0)
    assert sorted(match.tolist()) == [0, 1, 2] and cos.max(axis=0).min() > 0.995
    assert np.abs(np.asarray(r.A)[:, match] - F).mean() < 0.05


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_csr_and_float32_follow_x(dtype):
    X, _, _ = planted(dtype=dtype)
    dense = unmix.factorize(X, 3, random_state=0, **FRACTIONS)
    csr = unmix.factorize(sp.csr_matrix(X), 3, random_state=0, **FRACTIONS)
    for r in (dense, csr):
        assert r.spec["solved_as"] == SOLVED_AS
        assert np.asarray(r.A).dtype == dtype and np.asarray(r.S).dtype == dtype
        np.testing.assert_allclose(np.asarray(r.A).sum(axis=1), 1.0, atol=1e-5)
    assert csr.objective == pytest.approx(dense.objective, rel=1e-4)


def test_an_empty_pixel_has_no_say_and_even_shares():
    X, _, _ = planted()
    X[:4] = 0
    r = unmix.factorize(X, 3, random_state=0, **FRACTIONS)
    assert r.spec["solved_as"] == SOLVED_AS
    np.testing.assert_allclose(np.asarray(r.A)[:4], 1 / 3)
    steps = [NormalizePixels("l1", weights=True)]
    steps[0].fit_transform(X)
    w = steps[0].pixel_weights()
    assert np.all(w[:4] == 0) and np.all(w[4:] > 0)


def test_a_start_given_as_factors_moves_to_the_plain_problem():
    X, _, _ = planted()
    first = unmix.factorize(X, 3, random_state=0, max_iter=5, **FRACTIONS)
    more = unmix.factorize(X, 3, init=(first.A, first.S), **FRACTIONS)
    assert more.spec["solved_as"] == SOLVED_AS and more.spec["init"] == "custom"
    assert more.history["objective"][0] == pytest.approx(first.objective, rel=1e-6)
    assert more.objective <= first.objective


@pytest.mark.parametrize(
    "change",
    [
        {"solver": "gradient"},
        {"preprocessing": []},  # raw counts: the pixels' sums differ
        {"regularizers": [L1(0.01)]},
        {"mask": "half"},
        {"loss": "frobenius", "preprocessing": [NormalizePixels("l2", weights=True)]},
        {"constraints": [SumToOne()]},  # S free in sign: the plain fit's S >= 0 is a restriction
    ],
    ids=[
        "solver named",
        "pixels of unequal sums",
        "a penalty",
        "a mask",
        "Frobenius",
        "endmembers free in sign",
    ],
)
def test_other_models_keep_their_own_iteration(change):
    X, _, _ = planted()
    opts = {**FRACTIONS, **change}
    if opts.get("mask") == "half":
        opts["mask"] = np.random.default_rng(0).random(X.shape) > 0.1
    r = unmix.factorize(X, 3, random_state=0, max_iter=3, **opts)
    assert "solved_as" not in r.spec
    assert r.spec["solver"] != "klcd"


def test_interrupted_and_resumed_gives_the_same_answer_and_callbacks_see_the_simplex(tmp_path):
    X, _, _ = planted()
    kw = {**FRACTIONS, "random_state": 1, "max_iter": 40, "tol": 0}
    ref = unmix.factorize(X, 3, **kw)
    path, seen = tmp_path / "fit.ckpt.h5", []

    def interrupt(info):
        seen.append(np.asarray(info.A).sum(axis=1))
        if len(seen) == 25:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        unmix.factorize(X, 3, **kw, checkpoint=path, checkpoint_every=0, callback=interrupt)
    np.testing.assert_allclose(np.array(seen), 1.0, atol=1e-12)
    res = unmix.factorize(X, 3, **kw, checkpoint=path, resume=True)
    assert res.spec["solved_as"] == SOLVED_AS
    np.testing.assert_array_equal(res.A, ref.A)
    assert res.objective == ref.objective and res.n_iter == ref.n_iter
    assert not path.exists()


def test_maps_of_new_pixels_from_a_fractions_fit_lie_on_the_simplex():
    X, _, _ = planted()
    r = unmix.factorize(X, 3, random_state=0, **FRACTIONS)
    A = np.asarray(unmix.fit_maps(X[:50], r))
    np.testing.assert_allclose(A.sum(axis=1), 1.0, atol=1e-6)
    assert np.abs(A - np.asarray(r.A)[:50]).max() < 0.02


def test_naming_klcd_runs_the_plain_form_and_the_gradient_solver_the_constrained_one():
    X, _, _ = planted()
    auto = unmix.factorize(X, 3, random_state=0, **FRACTIONS)
    named = unmix.factorize(X, 3, random_state=0, solver="klcd", **FRACTIONS)
    assert named.spec["solved_as"] == SOLVED_AS and named.objective == auto.objective
    with pytest.raises(unmix.UnsupportedError, match="solver='klcd' does not support"):
        unmix.factorize(X, 3, solver="klcd", loss="kl", constraints=[NonNegative(), SumToOne()])


def test_a_solver_fitting_fractions_as_they_are_starts_where_the_plain_fit_does():
    """The gradient solver fits the constrained problem itself; the problem is the plain KL
    fit put on the simplex, so it starts from NNDSVDa as that fit would (SPA: the pure-pixel
    start of a binding simplex, kept for Frobenius)."""
    X, _, _ = planted()
    r = unmix.factorize(X, 3, random_state=0, solver="gradient", max_iter=3, **FRACTIONS)
    assert "solved_as" not in r.spec and r.spec["init"] == "nndsvda"
    fro = unmix.factorize(X, 3, random_state=0, max_iter=3, constraints=[SumToOne()])
    assert fro.spec["init"] == "spa"


@pytest.mark.slow
def test_the_gradient_solver_on_real_fractions_ends_within_2_percent_of_the_plain_fit():
    """XRD map, k 6 (issue 10's constraint matrix, "KL fractions" by the gradient solver):
    from SPA the fit stopped 5.8 % above the plain KL fit put on the simplex."""
    d = np.load(shared_path("xrd", "xrd_aps34ide_143x2000.npz"))
    X = np.asarray(d["data"], dtype=np.float64).reshape(-1, d["data"].shape[-1])
    plain = unmix.factorize(X, 6, random_state=0, **FRACTIONS)
    r = unmix.factorize(X, 6, random_state=0, solver="gradient", **FRACTIONS)
    np.testing.assert_allclose(np.asarray(r.A).sum(axis=1), 1.0, atol=1e-6)
    assert r.objective <= 1.02 * plain.objective
