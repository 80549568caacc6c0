"""Transformation functions ``f`` of the model ``X ~= f(A @ S)`` (the "link" knob)."""

from __future__ import annotations

from dataclasses import dataclass
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
    """``f(Z) = 1 / (1 + exp(-scale * (Z - shift)))`` for data bounded in (0, 1).

    With non-negative factors ``Z >= 0``; ``shift`` sets which ``Z`` maps to 0.5.
    """

    shift: float = 0.0
    scale: float = 1.0

    def forward(self, Z: Any, xp: Any) -> Any:
        return 1.0 / (1.0 + xp.exp(-self.scale * (Z - self.shift)))

    def derivative(self, Z: Any, Y: Any, xp: Any) -> Any:
        return self.scale * Y * (1.0 - Y)


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
