"""Loss values, gradients and multiplicative-update factors."""

from __future__ import annotations

import array_api_compat.numpy as xp
import numpy as np
import pytest
from scipy.special import rel_entr

from unmix.model import make_loss

TINY = 1e-300


@pytest.fixture
def xy():
    rng = np.random.default_rng(0)
    return rng.random((7, 5)) + 0.1, rng.random((7, 5)) + 0.1


def test_frobenius_value(xy):
    X, Y = xy
    assert float(make_loss("frobenius").value(X, Y, xp=xp, tiny=TINY)) == pytest.approx(
        0.5 * np.sum((X - Y) ** 2)
    )


def test_kl_value_and_zeros(xy):
    X, Y = xy
    X = X.copy()
    X[0, 0] = 0.0
    want = np.sum(rel_entr(X, Y) - X + Y)
    assert float(make_loss("kl").value(X, Y, xp=xp, tiny=TINY)) == pytest.approx(want)


def test_itakura_saito_and_beta_limits(xy):
    X, Y = xy
    is_ = float(make_loss("itakura-saito").value(X, Y, xp=xp, tiny=TINY))
    assert is_ == pytest.approx(np.sum(X / Y - np.log(X / Y) - 1))
    # beta -> 1 and beta -> 2 approach KL and Frobenius
    for b, name in ((1.0 + 1e-6, "kl"), (2.0 + 1e-6, "frobenius")):
        near = float(make_loss(b).value(X, Y, xp=xp, tiny=TINY))
        exact = float(make_loss(name).value(X, Y, xp=xp, tiny=TINY))
        assert near == pytest.approx(exact, rel=1e-4)


@pytest.mark.parametrize("loss", ["frobenius", "kl", "itakura-saito", 0.5, 1.5, 3.0])
def test_gradient_matches_finite_differences(xy, loss):
    X, Y = xy
    L = make_loss(loss)
    W = np.random.default_rng(1).random(X.shape)
    G = L.grad_Y(X, Y, W, xp=xp, tiny=TINY)
    h = 1e-6
    E = np.zeros_like(Y)
    E[2, 3] = h
    fd = (
        float(L.value(X, Y + E, W, xp=xp, tiny=TINY))
        - float(L.value(X, Y - E, W, xp=xp, tiny=TINY))
    ) / (2 * h)
    assert G[2, 3] == pytest.approx(fd, rel=1e-5)
    P, Q = L.mu_factors(X, Y, W, xp=xp, tiny=TINY)
    Q = W if Q is None else Q
    np.testing.assert_allclose(Q - P, G, rtol=1e-10)
    assert P.min() >= 0 and Q.min() >= 0


def test_mu_exponent():
    assert make_loss(0.0).mu_exponent == 0.5
    assert make_loss("kl").mu_exponent == 1.0
    assert make_loss(3.0).mu_exponent == 0.5


def test_make_loss_errors():
    with pytest.raises(ValueError, match="unknown"):
        make_loss("hinge")
    with pytest.raises(TypeError, match="loss must be"):
        make_loss([1])
