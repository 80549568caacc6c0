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

Statistics use the observed entries only when a ``mask`` (True = observed) is given.
Steps never modify the input array: each returns a new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import array_api_compat as aac
import numpy as np

__all__ = ["Center", "NormalizePixels", "PoissonScaling", "Step", "is_counts"]


def is_counts(X: Any, *, rows: int = 4096) -> bool:
    """True when ``X`` holds counts: every entry a non-negative integer (and not all zero).

    The one rule by which unmix treats data as Poisson counts (``unmix inspect`` reports
    it; rank selection scales counts by :class:`PoissonScaling`).  Read ``rows`` rows at a
    time, so a file-backed ``X`` is never loaded whole.
    """
    n = int(X.shape[0])
    seen = False
    for i in range(0, n, rows):
        part = X[i : i + rows]
        if aac.is_array_api_obj(part) and not isinstance(part, np.ndarray):
            part = aac.to_device(part, "cpu") if aac.is_torch_array(part) else part.get()
        block = np.asarray(part, dtype=float)
        if block.size and (block.min() < 0 or not np.all(np.mod(block, 1) == 0)):
            return False
        seen = seen or bool(np.any(block > 0))
    return seen


def _observed(X: Any, mask: Any) -> tuple[Any, Any]:
    """``(X with missing entries set to 0, 0/1 weights)``; weights None without a mask."""
    if mask is None:
        return X, None
    xp = aac.array_namespace(X)
    return xp.where(mask, X, 0.0), xp.astype(mask, X.dtype)


def _sparse_mean(
    X: Any, mask: Any, axis: int, *, square: bool = False, absolute: bool = False
) -> np.ndarray:
    """The mean of the entries of SciPy sparse ``X`` (squared with ``square``, absolute
    values with ``absolute``) along ``axis`` over the observed entries (all without a
    mask), from its nonzeros (float64, 1-D)."""
    Y = X.multiply(X) if square else abs(X) if absolute else X
    if mask is None:
        return np.asarray(Y.sum(axis=axis), dtype=float).reshape(-1) / X.shape[axis]
    m = np.asarray(mask, dtype=bool)
    count = m.sum(axis=axis)
    total = np.asarray(Y.multiply(m).sum(axis=axis), dtype=float).reshape(-1)
    return total / np.where(count > 0, count, 1)


def _mean(X: Any, mask: Any, axis: int) -> Any:
    xp = aac.array_namespace(X)
    Xo, w = _observed(X, mask)
    if w is None:
        return xp.mean(X, axis=axis)
    count = xp.sum(w, axis=axis)
    return xp.sum(Xo, axis=axis) / xp.where(count > 0, count, 1.0)


@dataclass
class Step:
    """Base class of preprocessing steps (stateful once fitted).

    A step whose ``sparse`` is True also transforms SciPy sparse ``X`` (CSR), keeping it
    sparse (:meth:`fit_transform_sparse`): a scaling of rows and columns.
    """

    state: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    sparse: ClassVar[bool] = False

    @property
    def name(self) -> str:
        return type(self).__name__

    def describe(self) -> dict:
        d = {"type": self.name}
        d.update({k: v for k, v in vars(self).items() if k != "state"})
        return d

    def fit_transform(self, X: Any, mask: Any = None) -> Any:
        """Fit on ``X`` (observed entries of ``mask``) and return the transformed copy."""
        raise NotImplementedError

    def transform(self, X: Any, mask: Any = None) -> Any:
        """Apply to new pixels, keeping the fitted channel-side state."""
        if self.sparse and hasattr(X, "tocsr"):
            return self.transform_sparse(X.tocsr(), mask)
        return self.fit_transform_pixels(X, mask)

    def transform_sparse(self, X: Any, mask: Any = None) -> Any:
        """:meth:`transform` of SciPy sparse ``X`` (CSR), sparse again."""
        raise NotImplementedError(f"{self.name} needs dense X")

    def fit_transform_pixels(self, X: Any, mask: Any = None) -> Any:
        raise NotImplementedError

    def fit_transform_sparse(self, X: Any, mask: Any = None) -> Any:
        """:meth:`fit_transform` of SciPy sparse ``X`` (CSR), sparse again (only where
        ``sparse`` is True); the state is the dense path's."""
        raise NotImplementedError(f"{self.name} needs dense X")

    def undo_factors(self, A: Any, S: Any, rows: slice | None = None) -> tuple[Any, Any]:
        """Factors back in the units of ``X``; ``A`` holds the pixels ``rows`` (all: None)."""
        return A, S

    def pixel_weights(self) -> Any:
        """Loss weights per pixel that this step asks for (None: none)."""
        return self.state.get("pixel_weights")

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

    def fit_transform(self, X: Any, mask: Any = None) -> Any:
        self.state["mean"] = _mean(X, mask, axis=0)
        return X - self.state["mean"]

    def transform(self, X: Any, mask: Any = None) -> Any:
        return X - self.state["mean"]

    def undo_model(self, Y: Any, rows: slice | None = None) -> Any:
        return Y + self.state["mean"]


@dataclass
class NormalizePixels(Step):
    """Divide each pixel by its sum (``norm="l1"``) or Euclidean norm (``"l2"``).

    With a mask, the scale of a pixel is its mean over the observed channels times the
    number of channels (``"l1"``; root-mean-square for ``"l2"``), so missing entries do
    not shrink it.

    With ``weights=True`` each pixel's loss is weighted by its scale over the mean scale,
    so bright pixels keep the say they had before normalization (dark, noisy pixels do
    not dominate): ``1/2 sum_i w_i ||x_i / s_i - a_i S||^2`` with ``w_i = s_i / mean(s)``.
    """

    norm: str = "l1"
    weights: bool = False
    sparse: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.norm not in ("l1", "l2"):
            raise ValueError(f"NormalizePixels: norm must be 'l1' or 'l2'; got {self.norm!r}.")

    def fit_transform(self, X: Any, mask: Any = None) -> Any:
        return self.fit_transform_pixels(X, mask)

    def fit_transform_pixels(self, X: Any, mask: Any = None) -> Any:
        xp = aac.array_namespace(X)
        m = X.shape[1]
        if self.norm == "l1":
            s = _mean(xp.abs(X), mask, axis=1) * m
        else:
            s = xp.sqrt(_mean(X * X, mask, axis=1) * m)
        return X / self._keep(s, xp.where(s > 0, s, 1.0)[:, None])

    def fit_transform_sparse(self, X: Any, mask: Any = None) -> Any:
        return self.transform_sparse(X, mask)

    def transform_sparse(self, X: Any, mask: Any = None) -> Any:
        m = X.shape[1]
        if self.norm == "l1":
            s = _sparse_mean(X, mask, axis=1, absolute=True) * m
        else:
            s = np.sqrt(_sparse_mean(X, mask, axis=1, square=True) * m)
        scale = self._keep(s, np.where(s > 0, s, 1.0).astype(X.dtype)[:, None])
        return _scaled_rows_cols(X, 1.0 / scale[:, 0], None)

    def _keep(self, s: Any, scale: Any) -> Any:
        """Record the pixels' scales ``scale`` (pixels, 1; 1 where the measured scale ``s``
        is 0) and, with ``weights``, their weights: 0 for an empty pixel, which has no say
        (its zeros are no evidence of any mixture; weighted 1 / mean, it pulled the
        endmembers towards 0 under sum-to-one maps)."""
        self.state["scale"] = scale
        if self.weights:
            xp = aac.array_namespace(scale)
            self.state["pixel_weights"] = xp.where(s > 0, scale[:, 0], 0.0) / xp.mean(scale)
        return scale

    def undo_model(self, Y: Any, rows: slice | None = None) -> Any:
        scale = self.state["scale"]
        return Y * (scale if rows is None else scale[rows, :])


@dataclass
class PoissonScaling(Step):
    """Keenan-Kotula scaling ``X / sqrt(g h^T)`` for Poisson counts (undone in the factors)."""

    sparse: ClassVar[bool] = True

    def fit_transform_sparse(self, X: Any, mask: Any = None) -> Any:
        h = _sparse_mean(X, mask, axis=0)
        self.state["h"] = np.sqrt(np.where(h > 0, h, 1.0)).astype(X.dtype)[None, :]
        return self.transform_sparse(X, mask)

    def transform_sparse(self, X: Any, mask: Any = None) -> Any:
        g = _sparse_mean(X, mask, axis=1)
        self.state["g"] = np.sqrt(np.where(g > 0, g, 1.0)).astype(X.dtype)[:, None]
        h = np.asarray(self.state["h"])[0]
        return _scaled_rows_cols(X, 1.0 / self.state["g"][:, 0], 1.0 / h)

    def fit_transform(self, X: Any, mask: Any = None) -> Any:
        xp = aac.array_namespace(X)
        h = _mean(X, mask, axis=0)
        self.state["h"] = xp.sqrt(xp.where(h > 0, h, 1.0))[None, :]
        return self.fit_transform_pixels(X, mask)

    def fit_transform_pixels(self, X: Any, mask: Any = None) -> Any:
        xp = aac.array_namespace(X)
        g = _mean(X, mask, axis=1)
        self.state["g"] = xp.sqrt(xp.where(g > 0, g, 1.0))[:, None]
        return X / (self.state["g"] * self.state["h"])

    def undo_factors(self, A: Any, S: Any, rows: slice | None = None) -> tuple[Any, Any]:
        g = self.state["g"] if rows is None else self.state["g"][rows]
        return A * g, S * self.state["h"]

    def to_model_S(self, S: Any) -> Any:
        return S / self.state["h"]


def _scaled_rows_cols(X: Any, rows: Any, cols: Any) -> Any:
    """``diag(rows) X diag(cols)`` of CSR ``X`` (either None: 1), CSR in ``X``'s dtype."""
    out = X.copy()
    if rows is not None:
        out.data *= np.repeat(np.asarray(rows, dtype=X.dtype), np.diff(out.indptr))
    if cols is not None:
        out.data *= np.asarray(cols, dtype=X.dtype)[out.indices]
    return out
