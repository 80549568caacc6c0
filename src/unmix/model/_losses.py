"""Similarity measures (the "loss" knob): Frobenius, generalized KL, beta-divergence.

Every loss is a beta-divergence ``d_beta(X | Y)`` summed over the observed entries,
with optional weights ``W`` (pixels x channels, or separable per pixel / per channel):

- ``beta = 2``  (Frobenius):  ``1/2 * sum W (X - Y)^2``
- ``beta = 1``  (generalized Kullback-Leibler, Poisson counts):
  ``sum W (X log(X / Y) - X + Y)``
- ``beta = 0``  (Itakura-Saito): ``sum W (X / Y - log(X / Y) - 1)``
- otherwise:   ``sum W (X^b + (b - 1) Y^b - b X Y^(b-1)) / (b (b - 1))``

where ``Y = f(A @ S)`` is the model of ``X`` (pixels, channels).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

__all__ = ["BETA_RANGE", "KL", "LOSS_NAMES", "Beta", "Frobenius", "Loss", "make_loss"]

#: the betas a loss may have: ``0`` (Itakura-Saito) to ``3``.  Below 0 the divergence is
#: infinite wherever ``X`` has a zero (``X ** beta``); above 3 it is ruled by the largest
#: entries alone and ``Y ** beta`` overflows float32 for data of large magnitude.
BETA_RANGE = (0.0, 3.0)


@dataclass(frozen=True)
class Loss:
    """A beta-divergence.  Use :func:`make_loss` or the named subclasses.

    ``beta`` must be a finite number in :data:`BETA_RANGE` (``0 <= beta <= 3``).
    """

    beta: float = 2.0

    def __post_init__(self) -> None:
        lo, hi = BETA_RANGE
        beta = self.beta
        ok = isinstance(beta, numbers.Real) and not isinstance(beta, bool)
        if not (ok and math.isfinite(beta) and lo <= beta <= hi):
            raise ValueError(
                f"loss: beta={beta!r} is not allowed; the beta of a beta-divergence must be "
                f"a finite number in [{lo:g}, {hi:g}] (0 Itakura-Saito, 1 KL, 2 Frobenius)."
            )

    @property
    def name(self) -> str:
        if self.beta == 2:
            return "frobenius"
        if self.beta == 1:
            return "kl"
        if self.beta == 0:
            return "itakura-saito"
        return f"beta={self.beta:g}"

    @property
    def is_frobenius(self) -> bool:
        return self.beta == 2

    @property
    def needs_nonnegative_data(self) -> bool:
        """Divergences other than Frobenius are defined only for X >= 0."""
        return self.beta != 2

    @property
    def mu_exponent(self) -> float:
        """Exponent gamma(beta) that makes multiplicative updates monotone (Fevotte & Idier)."""
        if self.beta < 1:
            return 1.0 / (2.0 - self.beta)
        if self.beta > 2:
            return 1.0 / (self.beta - 1.0)
        return 1.0

    def value(self, X: Any, Y: Any, W: Any = None, *, xp: Any, tiny: float) -> Any:
        """Sum of the divergence over a block (0-d array in X's dtype)."""
        b = self.beta
        if b == 2:
            D = 0.5 * (X - Y) ** 2
        else:
            Yc = xp.clip(Y, min=tiny)
            if b == 1:
                Xc = xp.clip(X, min=tiny)
                D = xp.where(X > 0, X * xp.log(Xc / Yc), 0.0) - X + Yc
            elif b == 0:
                Xc = xp.clip(X, min=tiny)
                D = Xc / Yc - xp.log(Xc / Yc) - 1.0
            else:
                D = (X**b + (b - 1.0) * Yc**b - b * X * Yc ** (b - 1.0)) / (b * (b - 1.0))
        if W is not None:
            D = D * W
        return xp.sum(D)

    def mu_factors(self, X: Any, Y: Any, W: Any = None, *, xp: Any, tiny: float) -> tuple:
        """``(P, Q)`` with gradient wrt Y equal to ``Q - P``; both >= 0.

        The multiplicative update of A is ``A * ((P @ S.T) / (Q @ S.T)) ** gamma``;
        ``Q`` is None when it is all ones (unweighted KL), which solvers special-case.
        """
        b = self.beta
        Yc = xp.clip(Y, min=tiny)
        if b == 2:
            P, Q = X, Y
        elif b == 1:
            P, Q = X / Yc, None
        else:
            P, Q = X * Yc ** (b - 2.0), Yc ** (b - 1.0)
        if W is not None:
            P = P * W
            # pixel- or channel-only weights broadcast: Q must be X's shape for Q @ S.T
            Q = W * xp.ones_like(P) if Q is None else Q * W
        return P, Q

    def grad_Y(self, X: Any, Y: Any, W: Any = None, *, xp: Any, tiny: float) -> Any:
        """Gradient of the summed divergence with respect to the model ``Y``."""
        b = self.beta
        if b == 2:
            G = Y - X
        else:
            Yc = xp.clip(Y, min=tiny)
            G = Yc ** (b - 2.0) * (Yc - X)
        return G if W is None else G * W


class Frobenius(Loss):
    """``1/2 * ||W * (X - Y)||_F^2`` (Gaussian noise)."""

    def __init__(self) -> None:
        super().__init__(beta=2.0)


class KL(Loss):
    """Generalized Kullback-Leibler divergence (Poisson counts)."""

    def __init__(self) -> None:
        super().__init__(beta=1.0)


class Beta(Loss):
    """Beta-divergence with a given ``beta`` (0: Itakura-Saito, 1: KL, 2: Frobenius)."""


#: names ``make_loss`` accepts, and their beta
LOSS_NAMES = {
    "frobenius": 2.0,
    "fro": 2.0,
    "l2": 2.0,
    "kl": 1.0,
    "kullback-leibler": 1.0,
    "poisson": 1.0,
    "itakura-saito": 0.0,
    "is": 0.0,
}


def make_loss(loss: Any) -> Loss:
    """A Loss from ``'frobenius'``, ``'kl'``, ``'itakura-saito'``, a number (beta) or a Loss."""
    if loss is None:
        return Loss(beta=2.0)
    if isinstance(loss, Loss):
        return Loss(beta=float(loss.beta))
    if isinstance(loss, str):
        key = loss.lower().strip()
        if key.startswith("beta="):
            return Loss(beta=float(key[5:]))
        if key not in LOSS_NAMES:
            raise ValueError(
                f"loss={loss!r} is unknown; use 'frobenius', 'kl', 'itakura-saito', "
                "a number (the beta of a beta-divergence) or unmix.Beta(beta)."
            )
        return Loss(beta=LOSS_NAMES[key])
    if isinstance(loss, numbers.Real) and not isinstance(loss, bool):
        return Loss(beta=float(loss))
    raise TypeError(f"loss must be a name, a number (beta) or a Loss; got {loss!r}.")
