"""Transformation functions ``f`` of the model ``X ~= f(A @ S)`` (the "link" knob)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["LINK_NAMES", "Identity", "Link", "Logistic", "make_link"]


@dataclass(frozen=True)
class Link:
    """Base class: ``f`` and its derivative ``f'`` applied element-wise."""

    @property
    def is_identity(self) -> bool:
        return False

    @property
    def name(self) -> str:
        return type(self).__name__.lower()

    def forward(self, Z: Any, xp: Any) -> Any:
        raise NotImplementedError

    def for_data(self, low: float, high: float) -> Link:
        """This link for data whose observed entries span ``[low, high]``: its data-driven
        parameters set, the range checked (a ValueError naming the fix). Called by
        :func:`unmix.factorize` before the fit."""
        return self

    def derivative(self, Z: Any, Y: Any, xp: Any) -> Any:
        """``f'(Z)`` given ``Z`` and ``Y = f(Z)``."""
        raise NotImplementedError


@dataclass(frozen=True)
class Identity(Link):
    """``f(Z) = Z`` - the linear mixing model."""

    @property
    def is_identity(self) -> bool:
        return True

    def forward(self, Z: Any, xp: Any) -> Any:
        return Z

    def derivative(self, Z: Any, Y: Any, xp: Any) -> Any:
        return 1.0


@dataclass(frozen=True)
class Logistic(Link):
    """``f(Z) = 1 / (1 + exp(-scale * (Z - shift)))`` for data in ``[0, 1]`` (fractions,
    probabilities, Boolean maps).

    With non-negative factors ``Z = A S >= 0``, so ``f(0)`` is the smallest value the model
    can take. ``shift=None`` (the default, and ``link="logistic"``) sets it from the data
    when the fit starts: ``f(0) = clip(min(X), min(0.02, max(X) / 2), 0.45)``, so that
    zeros (or the data's floor) can be fitted; ``shift=0`` would put every zero at 0.5.
    Data whose largest value is below 0.1 are fitted with a warning (scale them).
    """

    shift: float | None = None
    scale: float = 1.0

    #: the lowest and highest value ``f(0)`` takes when set from the data
    FLOOR = (0.02, 0.45)

    def forward(self, Z: Any, xp: Any) -> Any:
        if self.shift is None:
            raise ValueError(
                "Logistic(shift=None) is set from the data by unmix.factorize; "
                "call link.for_data(min(X), max(X)) or pass a shift."
            )
        return 1.0 / (1.0 + xp.exp(-self.scale * (Z - self.shift)))

    def derivative(self, Z: Any, Y: Any, xp: Any) -> Any:
        return self.scale * Y * (1.0 - Y)

    def for_data(self, low: float, high: float) -> Logistic:
        if not (low >= 0.0 and high <= 1.0):
            raise ValueError(
                f"link='logistic' models data in [0, 1]; X spans [{low:.4g}, {high:.4g}]. "
                "Divide X by its full scale (e.g. its maximum), or use link='identity'."
            )
        if high < 0.1:
            warnings.warn(
                f"link='logistic' on data whose largest value is {high:.3g}: the link models "
                "fractions spread over [0, 1]; divide X by its full scale (e.g. its maximum) "
                "or use link='identity'.",
                RuntimeWarning,
                stacklevel=2,
            )
        if self.shift is not None:
            return self
        lo, hi = self.FLOOR
        lo = min(lo, high / 2) if high > 0 else lo  # f(0) below every value of X
        floor = min(max(low, lo), hi)  # f(0): the data's floor, kept off 0 and 0.5
        return replace(self, shift=math.log((1.0 - floor) / floor) / self.scale)


#: names ``make_link`` accepts, and their class
LINK_NAMES = {
    "identity": Identity,
    "linear": Identity,
    "none": Identity,
    "logistic": Logistic,
    "sigmoid": Logistic,
}


def make_link(link: Any) -> Link:
    """``None``/``'identity'`` -> Identity, ``'logistic'`` -> Logistic(), or a Link."""
    if link is None:
        return Identity()
    if isinstance(link, Link):
        return link
    if isinstance(link, str):
        key = link.lower()
        if key in LINK_NAMES:
            return LINK_NAMES[key]()
    raise ValueError(f"link={link!r} is unknown; use 'identity', 'logistic' or a unmix Link.")
