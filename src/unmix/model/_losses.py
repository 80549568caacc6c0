"""Similarity measures (the "loss" knob): Frobenius, generalized KL, beta-divergence, l2,1.

Every loss but :class:`L21` is a beta-divergence ``d_beta(X | Y)`` summed over the
observed entries, with optional weights ``W`` (pixels x channels, or separable per pixel
/ per channel):

- ``beta = 2``  (Frobenius):  ``1/2 * sum W (X - Y)^2``
- ``beta = 1``  (generalized Kullback-Leibler, Poisson counts):
  ``sum W (X log(X / Y) - X + Y)``
- ``beta = 0``  (Itakura-Saito): ``sum W (X / Y - log(X / Y) - 1)``
- otherwise:   ``sum W (X^b + (b - 1) Y^b - b X Y^(b-1)) / (b (b - 1))``

where ``Y = f(A @ S)`` is the model of ``X`` (pixels, channels).

The robust :class:`L21` loss (``"l21"``) is the l2,1 norm of the residual, one Euclidean
norm a pixel, ``sum_i w_i ||x_i - y_i||_2`` (channel weights and a mask inside each
norm): an outlier pixel (a spike, a cosmic ray, a hot pixel) pulls the endmembers with
its residual's norm rather than its square.  It is minimized by iteratively reweighted
least squares (:mod:`unmix.engine._robust`): each iteration is one step of a weighted
Frobenius solver with pixel weights ``w_i / max(||r_i||, eps)``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BETA_RANGE",
    "KL",
    "L21",
    "LOSS_NAMES",
    "ROBUST_NAMES",
    "Beta",
    "Frobenius",
    "Loss",
    "make_loss",
]

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
    def needs_positive_data(self) -> bool:
        """Beta <= 0 (Itakura-Saito) is infinite at ``x = 0``: it needs ``X > 0``."""
        return self.beta <= 0

    @property
    def reweights_pixels(self) -> bool:
        """True for a loss minimized by reweighting the pixels of a weighted Frobenius
        fit at every iteration (:class:`L21`); False for the beta-divergences."""
        return False

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


@dataclass(frozen=True)
class L21(Loss):
    """The l2,1 norm of the residual: ``sum_i w_i ||x_i - y_i||_2`` (robust to outlier pixels).

    One Euclidean norm a pixel ``i`` (a row of ``X``), with the channel weights and the
    mask inside the norm, ``||r_i||^2 = sum_j c_j M_ij r_ij^2``, and the pixel weights
    ``w_i`` outside it.  A pixel pulls the fit with the norm of its residual, not its
    square, so a few spiked pixels (cosmic rays, hot pixels) move the endmembers far less
    than under Frobenius.

    Minimized by iteratively reweighted least squares, a majorize-minimize scheme: at the
    current residuals ``r0_i``, ``||r|| <= ||r||^2 / (2 ||r0||) + ||r0|| / 2``, so one
    iteration is one step of a weighted Frobenius solver (``hals``, ``mu``, ``bpp``,
    ``admm``) with the pixel weights ``w_i / max(||r0_i||, eps)``, and the l2,1 objective
    never increases where that step does not increase its weighted Frobenius objective.
    ``eps = floor * sum_i w_i ||x_i|| / sum_i w_i`` (scale-free); a pixel fitted closer
    than ``eps`` is held to the Huber smoothing of the norm there (exact monotonicity of
    that smoothed objective, at most ``eps / 2`` a pixel from the l2,1 value).

    Parameters
    ----------
    floor : float
        ``eps`` relative to the data's mean pixel norm (default ``1e-6``), ``0 < floor < 1``.
    """

    beta: float = 2.0
    floor: float = 1e-6

    def __post_init__(self) -> None:
        if self.beta != 2.0:
            raise ValueError(
                f"L21: beta={self.beta!r}; the l2,1 loss reweights a least-squares fit "
                "(beta = 2): leave beta out."
            )
        f = self.floor
        ok = isinstance(f, numbers.Real) and not isinstance(f, bool) and math.isfinite(f)
        if not (ok and 0.0 < f < 1.0):
            raise ValueError(f"L21: floor={f!r} must be a number with 0 < floor < 1.")

    @property
    def name(self) -> str:
        return "l21"

    @property
    def is_frobenius(self) -> bool:
        return False

    @property
    def needs_nonnegative_data(self) -> bool:
        return False

    @property
    def reweights_pixels(self) -> bool:
        return True

    def row_norms(
        self, X: Any, Y: Any, W: Any = None, *, xp: Any, acc: Any = None, overwrite: bool = False
    ) -> Any:
        """``||x_i - y_i||`` of every row, a column (n_b, 1).

        ``W`` are the weights inside the norms (channel weights, mask); ``acc`` casts to
        the accumulation dtype the squares are summed in (e.g. ``Backend.acc``; default:
        the data's); ``overwrite=True`` forms the residual in ``Y``'s place (no temporary
        of the block's size: the model is not needed afterwards).
        """
        if overwrite:
            Y -= X
            R = Y
        else:
            R = Y - X
        if acc is not None:
            R = acc(R)
        sq = xp.vecdot(R, R if W is None else W * R, axis=-1)
        return xp.reshape(xp.sqrt(sq), (-1, 1))

    def value(self, X: Any, Y: Any, W: Any = None, *, xp: Any, tiny: float) -> Any:
        """``sum_i ||x_i - y_i||_W`` over a block; ``W`` are the weights inside the norms
        (the engine multiplies each norm by its pixel weight itself)."""
        return xp.sum(self.row_norms(X, Y, W, xp=xp))

    def pixel_weights(self, norms: Any, eps: float, *, be: Any) -> Any:
        """The majorizer's pixel weights ``1 / max(||r0_i||, eps)`` (working dtype)."""
        return be.work(1.0 / be.xp.clip(norms, min=eps))

    def mu_factors(self, X: Any, Y: Any, W: Any = None, *, xp: Any, tiny: float) -> tuple:
        """``(P, Q)`` of the gradient ``W (Y - X) / ||r_i||`` (the reweighted Frobenius one)."""
        inv = 1.0 / xp.clip(self.row_norms(X, Y, W, xp=xp), min=tiny)
        Wr = inv if W is None else W * inv
        return X * Wr, Y * Wr

    def grad_Y(self, X: Any, Y: Any, W: Any = None, *, xp: Any, tiny: float) -> Any:
        """Gradient of the l2,1 norm with respect to ``Y``: ``W (Y - X) / ||r_i||``."""
        P, Q = self.mu_factors(X, Y, W, xp=xp, tiny=tiny)
        return Q - P


#: the names of the l2,1 loss (:class:`L21`)
ROBUST_NAMES = ("l21", "l2,1")

#: names ``make_loss`` accepts, and their beta (the l2,1 loss: the beta of the
#: least-squares fit that each of its iterations reweights)
LOSS_NAMES = {
    "frobenius": 2.0,
    "fro": 2.0,
    "l2": 2.0,
    "kl": 1.0,
    "kullback-leibler": 1.0,
    "poisson": 1.0,
    "itakura-saito": 0.0,
    "is": 0.0,
    **dict.fromkeys(ROBUST_NAMES, 2.0),
}


def make_loss(loss: Any) -> Loss:
    """A Loss from ``'frobenius'``, ``'kl'``, ``'itakura-saito'``, ``'l21'``, a number (beta)
    or a Loss."""
    if loss is None:
        return Loss(beta=2.0)
    if isinstance(loss, Loss):
        return loss if loss.reweights_pixels else Loss(beta=float(loss.beta))
    if isinstance(loss, str):
        key = loss.lower().strip()
        if key.startswith("beta="):
            return Loss(beta=float(key[5:]))
        if key in ROBUST_NAMES:
            return L21()
        if key not in LOSS_NAMES:
            raise ValueError(
                f"loss={loss!r} is unknown; use 'frobenius', 'kl', 'itakura-saito', 'l21', "
                "a number (the beta of a beta-divergence) or unmix.Beta(beta)."
            )
        return Loss(beta=LOSS_NAMES[key])
    if isinstance(loss, numbers.Real) and not isinstance(loss, bool):
        return Loss(beta=float(loss))
    raise TypeError(f"loss must be a name, a number (beta) or a Loss; got {loss!r}.")


def beta_of(loss: Any) -> float:
    """The beta of ``loss``'s divergence (2, Frobenius, for a value :func:`make_loss`
    refuses: that is reported where the loss is checked)."""
    try:
        return float(make_loss(loss).beta)
    except (TypeError, ValueError):
        return 2.0
