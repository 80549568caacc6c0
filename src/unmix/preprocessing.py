"""Invertible preprocessing steps recorded in the result.

``X`` is (pixels, channels).  A step maps the data to the space where the factorization
runs and maps the factors (and the model) back:

- :class:`Center` - subtract the mean spectrum (PCA); the model adds it back.
- :class:`NormalizePixels` - divide each pixel's spectrum by its sum (``"l1"``) or
  Euclidean norm (``"l2"``): scale-invariant unmixing (illumination, thickness).  The
  maps stay the per-pixel fractions; the model multiplies the scale back.
- :class:`PoissonScaling` - Keenan & Kotula (2004) weighting for counts:
  ``X / sqrt(g h^T)`` with ``g`` the pixel means and ``h`` the channel means; the factors
  are un-scaled (``A * sqrt(g)``, ``S * sqrt(h)``).

Steps never modify the input array: each returns a new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import array_api_compat as aac

__all__ = ["Center", "NormalizePixels", "PoissonScaling", "Step"]


@dataclass
class Step:
    """Base class of preprocessing steps (stateful once fitted)."""

    state: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return type(self).__name__

    def describe(self) -> dict:
        d = {"type": self.name}
        d.update({k: v for k, v in vars(self).items() if k != "state"})
        return d

    def fit_transform(self, X: Any) -> Any:
        raise NotImplementedError

    def transform(self, X: Any) -> Any:
        """Apply to new pixels with the fitted channel-side state."""
        return self.fit_transform_pixels(X)

    def fit_transform_pixels(self, X: Any) -> Any:
        raise NotImplementedError

    def undo_factors(self, A: Any, S: Any) -> tuple[Any, Any]:
        return A, S

    def to_model_S(self, S: Any) -> Any:
        """Endmembers in the preprocessed space (inverse of ``undo_factors`` on S)."""
        return S

    def undo_model(self, Y: Any, rows: slice | None = None) -> Any:
        return Y

    @property
    def nonneg_safe(self) -> bool:
        """True when non-negative data stays non-negative."""
        return True


@dataclass
class Center(Step):
    """Subtract the mean spectrum (the ``mean_`` of PCA)."""

    @property
    def nonneg_safe(self) -> bool:
        return False

    def fit_transform(self, X: Any) -> Any:
        xp = aac.array_namespace(X)
        self.state["mean"] = xp.mean(X, axis=0)
        return X - self.state["mean"]

    def transform(self, X: Any) -> Any:
        return X - self.state["mean"]

    def undo_model(self, Y: Any, rows: slice | None = None) -> Any:
        return Y + self.state["mean"]


def _row_scale(X: Any, norm: str) -> Any:
    xp = aac.array_namespace(X)
    if norm == "l1":
        s = xp.sum(xp.abs(X), axis=1)
    else:
        s = xp.sqrt(xp.sum(X * X, axis=1))
    return xp.where(s > 0, s, 1.0)[:, None]


@dataclass
class NormalizePixels(Step):
    """Divide each pixel by its sum (``norm="l1"``) or Euclidean norm (``"l2"``)."""

    norm: str = "l1"

    def __post_init__(self) -> None:
        if self.norm not in ("l1", "l2"):
            raise ValueError(f"NormalizePixels: norm must be 'l1' or 'l2'; got {self.norm!r}.")

    def fit_transform(self, X: Any) -> Any:
        return self.fit_transform_pixels(X)

    def fit_transform_pixels(self, X: Any) -> Any:
        scale = _row_scale(X, self.norm)
        self.state["scale"] = scale
        return X / scale

    def undo_model(self, Y: Any, rows: slice | None = None) -> Any:
        scale = self.state["scale"]
        return Y * (scale if rows is None else scale[rows, :])


@dataclass
class PoissonScaling(Step):
    """Keenan-Kotula scaling ``X / sqrt(g h^T)`` for Poisson counts (undone in the factors)."""

    def fit_transform(self, X: Any) -> Any:
        xp = aac.array_namespace(X)
        h = xp.mean(X, axis=0)
        h = xp.where(h > 0, h, 1.0)
        self.state["h"] = xp.sqrt(h)[None, :]
        return self.fit_transform_pixels(X)

    def fit_transform_pixels(self, X: Any) -> Any:
        xp = aac.array_namespace(X)
        g = xp.mean(X, axis=1)
        g = xp.where(g > 0, g, 1.0)
        self.state["g"] = xp.sqrt(g)[:, None]
        return X / (self.state["g"] * self.state["h"])

    def undo_factors(self, A: Any, S: Any) -> tuple[Any, Any]:
        return A * self.state["g"], S * self.state["h"]

    def to_model_S(self, S: Any) -> Any:
        return S / self.state["h"]
