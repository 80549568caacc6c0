"""Input checks with messages that name the input and the fix."""

from __future__ import annotations

import logging
import math
from typing import Any

import array_api_compat as aac
import numpy as np

logger = logging.getLogger("unmix")

__all__ = [
    "ConvergenceWarning",
    "UnsupportedError",
    "check_k",
    "check_lam",
    "check_nonnegative",
    "check_positive",
    "check_shapes",
    "ensure_2d_float",
    "finite_report",
]


class UnsupportedError(ValueError):
    """A combination of knobs that the chosen solver cannot handle."""


class ConvergenceWarning(RuntimeWarning):
    """A fit stopped by its iteration budget while its objective was still falling: the
    result is not a converged one (raise ``max_iter``, or continue from it)."""


def _where(mask_np: np.ndarray, limit: int = 3) -> str:
    return _where_at(*np.nonzero(mask_np), limit=limit)


def _where_at(rows: Any, cols: Any, limit: int = 3) -> str:
    """The first ``limit`` of the (pixel, channel) positions ``rows, cols``, for a message."""
    pairs = ", ".join(f"({r}, {c})" for r, c in zip(rows[:limit], cols[:limit], strict=True))
    more = " ..." if len(rows) > limit else ""
    return f"first at (pixel, channel) {pairs}{more}"


def ensure_2d_float(X: Any, *, name: str = "X") -> Any:
    """Return ``X`` as a 2-D floating array of its own library, or raise.

    Lists and other sequences become NumPy arrays.  Integer and boolean arrays are
    converted to float32 (a new array: counts up to 2**24 are exact); float16 becomes
    float32; float32 and float64 pass through untouched (no copy).
    """
    if hasattr(X, "tocsr") or hasattr(X, "to_scipy_sparse"):
        raise TypeError(
            f"{name} is a sparse matrix; this function needs a dense array: convert it with "
            f"{name}.toarray() (unmix.factorize, unmix.NMF and fit_maps take sparse {name})."
        )
    if not aac.is_array_api_obj(X):
        X = np.asarray(X)
    if isinstance(X, np.ndarray) and X.dtype == object:
        raise TypeError(
            f"{name} has dtype object; pass a numeric array "
            f"(e.g. np.asarray({name}, dtype=float))."
        )
    xp = aac.array_namespace(X)
    if X.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (pixels, channels); got {X.ndim}-D with shape {tuple(X.shape)}. "
            f"Unfold a spectrum image with {name}.reshape(-1, n_channels); a single spectrum "
            f"with {name}.reshape(1, -1)."
        )
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(X.shape)} (pixels, channels).")
    if xp.isdtype(X.dtype, "real floating"):
        if X.dtype == getattr(xp, "float16", None):
            logger.info("%s is float16; computing in float32 (a converted copy).", name)
            return xp.astype(X, xp.float32)
        return X
    if xp.isdtype(X.dtype, ("integral", "bool")):
        logger.info(
            "%s has dtype %s; converting to float32 (a new array; inputs stay unchanged).",
            name,
            X.dtype,
        )
        return xp.astype(X, xp.float32)
    raise TypeError(f"{name} has unsupported dtype {X.dtype}; pass a real numeric array.")


def finite_report(X: Any, *, name: str = "X", allowed: Any = None) -> None:
    """Raise if ``X`` has NaN or Inf outside the entries marked missing in ``allowed``.

    ``allowed`` is a boolean mask (True = observed) or None.
    """
    xp = aac.array_namespace(X)
    if allowed is None and bool(xp.all(xp.isfinite(X))):
        return  # the common case: one cheap pass, no counting
    bad = ~xp.isfinite(X)
    if allowed is not None:
        bad = bad & allowed
    if not bool(xp.any(bad)):
        return
    n_bad = int(xp.sum(xp.astype(bad, xp.int64)))
    bad_np = np.asarray(_host(bad))
    X_np = np.asarray(_host(X))
    n_nan = int(np.sum(np.isnan(X_np) & bad_np))
    hint = (
        "mark them missing with mask= (False there; CLI: --mask-nonfinite)"
        if allowed is None
        else "they are not covered by mask= (mask must be False at every NaN/Inf)"
    )
    raise ValueError(
        f"{name} has {n_nan} NaN and {n_bad - n_nan} Inf entries ({_where(bad_np)}); "
        f"{hint}, or clean the data (e.g. np.nan_to_num)."
    )


def _host(a: Any) -> Any:
    from ._backend import to_numpy

    return to_numpy(a)


def check_nonnegative(X: Any, *, name: str = "X", observed: Any = None, why: str = "") -> None:
    """Raise if ``X`` has negative (observed) entries; the message suggests fixes."""
    if hasattr(X, "negative_entries"):  # sparse X on a device: its stored entries
        n_neg, low, rows, cols = X.negative_entries(observed)
        if n_neg:
            _negative(name, why, n_neg, low, rows, cols)
        return
    if hasattr(X, "tocoo"):  # sparse X (CSR): the stored entries are all that can be < 0
        coo = X.tocoo()
        keep = coo.data < 0
        if observed is not None:
            keep &= np.asarray(observed)[coo.row, coo.col]
        if keep.any():
            order = np.lexsort((coo.col[keep], coo.row[keep]))  # (pixel, channel) order
            rows, cols = coo.row[keep][order], coo.col[keep][order]
            _negative(name, why, int(keep.sum()), float(coo.data[keep].min()), rows, cols)
        return
    xp = aac.array_namespace(X)
    if observed is None:
        if bool(xp.min(X) >= 0):
            return  # the common case: one cheap pass, no counting
        neg = X < 0
    else:
        neg = (X < 0) & observed
        if not bool(xp.any(neg)):
            return
    n_neg = int(xp.sum(xp.astype(neg, xp.int64)))
    neg_np = np.asarray(_host(neg))
    min_val = float(np.min(np.asarray(_host(X))[neg_np]))
    _negative(name, why, n_neg, min_val, *np.nonzero(neg_np))


def _negative(name: str, why: str, n: int, low: float, rows: Any, cols: Any) -> None:
    """Raise the negative-data error: how many, the minimum, the first (pixel, channel)."""
    raise ValueError(
        f"Negative values in data passed to {why or 'a non-negative model'}: {name} has "
        f"{n} negative entries (min {low:.4g}, {_where_at(rows, cols)}). "
        "NMF needs X >= 0 - clip them, add an offset, or drop non-negativity "
        "(solver='svd' for PCA, or constraints=[NonNegative('S')] for semi-NMF)."
    )


def check_positive(X: Any, *, why: str, name: str = "X", observed: Any = None) -> None:
    """Raise if an observed entry of ``X`` is <= 0 (after :func:`check_nonnegative`: the
    zeros); the message counts them and names the fixes."""
    if hasattr(X, "negative_entries"):  # sparse X on a device: not checked entry by entry
        return
    size = X.shape[0] * X.shape[1]
    if hasattr(X, "tocoo"):  # sparse: the implicit zeros and the stored ones
        coo = X.tocoo()
        positive = coo.data > 0
        if observed is not None:
            positive &= np.asarray(observed)[coo.row, coo.col]
            size = int(np.count_nonzero(observed))
        zeros = size - int(np.count_nonzero(positive))
    else:
        xp = aac.array_namespace(X)
        if observed is None and bool(xp.min(X) > 0):
            return  # the common case: one pass
        bad = X <= 0 if observed is None else (X <= 0) & observed
        zeros = int(xp.sum(xp.astype(bad, xp.int64)))
        if observed is not None:
            size = int(xp.sum(xp.astype(observed, xp.int64)))
    if zeros:
        raise ValueError(
            f"{why} needs {name} > 0 everywhere (its divergence x/y - log(x/y) - 1 is "
            f"infinite at x = 0): {name} has {zeros} zero entries ({zeros / max(size, 1):.1%}"
            " of those fitted). Add an offset to it (the preprocessing step {op='offset', "
            "value=...}), or use loss='kl', which takes zeros (counts)."
        )


def check_shapes(shape: tuple[int, int], spatial_shape: Any, signal_shape: Any) -> None:
    """A ``spatial_shape`` / ``signal_shape`` (None, or integers >= 1) must hold the
    pixels / channels of ``X`` of ``shape`` (pixels, channels)."""
    for name, given, size, what, hint in (
        ("spatial_shape", spatial_shape, shape[0], "rows (pixels)", "(rows, columns) of the scan"),
        ("signal_shape", signal_shape, shape[1], "columns (channels)", "the detector's shape"),
    ):
        if given is None:
            continue
        dims = tuple(int(d) for d in given)
        total = math.prod(dims)
        if total != size:
            raise ValueError(
                f"{name}={dims} has {total} entries but X has {size} {what}; give {hint} "
                f"whose product is {size}, or leave {name} out."
            )


def observed_range(X: Any, *, observed: Any = None) -> tuple[float, float]:
    """``(min, max)`` of the observed entries of ``X`` (dense on any backend, or CSR, whose
    implicit zeros count when it has any); ``observed`` is a bool mask (False: missing)."""
    if hasattr(X, "tocoo"):
        coo = X.tocoo()
        keep = (
            np.ones(coo.data.shape, bool)
            if observed is None
            else np.asarray(observed)[coo.row, coo.col]
        )
        vals = coo.data[keep]
        full = coo.nnz == X.shape[0] * X.shape[1]
        if observed is not None:  # an implicit zero counts where it is observed
            full = int(np.count_nonzero(observed)) == int(np.count_nonzero(keep))
        low = min(float(vals.min()) if vals.size else 0.0, 0.0 if not full else np.inf)
        high = max(float(vals.max()) if vals.size else 0.0, 0.0 if not full else -np.inf)
        return float(low), float(high)
    xp = aac.array_namespace(X)
    if observed is None:
        return float(xp.min(X)), float(xp.max(X))
    return (
        float(xp.min(xp.where(observed, X, xp.asarray(np.inf, dtype=X.dtype)))),
        float(xp.max(xp.where(observed, X, xp.asarray(-np.inf, dtype=X.dtype)))),
    )


def check_k(k: Any, n_pixels: int, n_channels: int) -> int:
    """Validate the number of components."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an integer number of components; got {k!r}.")
    k = int(k)
    limit = min(n_pixels, n_channels)
    if k < 1 or k > limit:
        extra = " (X has 1 sample)" if n_pixels == 1 else ""
        raise ValueError(
            f"k={k} is out of range: it must be between 1 and min(n_pixels, n_channels) = "
            f"min({n_pixels}, {n_channels}) = {limit}{extra}."
        )
    return k


def check_lam(lam: Any, name: str) -> float:
    """A regularization strength must be a finite number >= 0."""
    try:
        value = float(lam)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: lam must be a number; got {lam!r}.") from None
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name}: lam must be finite and >= 0; got {lam!r}.")
    return value
