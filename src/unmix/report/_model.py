"""The model of a result, pixel block by pixel block: residuals and contributions (private).

Everything here reads ``X`` and evaluates :meth:`Result.reconstruct` in blocks of pixels
(a few tens of MB at a time), on the result's own backend, and returns NumPy arrays.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import to_numpy
from ..blocks import BlockProducts, block_products, block_ranges, compiled_for, read_ahead
from ..result import Result

BLOCK_VALUES = 4_000_000  # values of X (and of the model) handled at once: 32 MB


def _undo(result: Result, Y: Any, start: int, stop: int) -> np.ndarray:
    """Undo the preprocessing on model rows ``start:stop`` (as :meth:`Result.reconstruct`)."""
    for step in reversed(result.preprocessing):
        Y = step.undo_model(Y, rows=slice(start, stop))
    return np.asarray(to_numpy(Y), dtype=float)


def model_rows(result: Result, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of :meth:`Result.reconstruct` (link and preprocessing undone
    included), on the host."""
    return np.asarray(to_numpy(result.reconstruct(slice(start, stop))), dtype=float)


def _linked(result: Result, Z: Any) -> Any:
    """``f(Z)`` for the result's link ``f`` (``Z`` itself for the identity)."""
    link = result.link
    if link is None or link.is_identity:
        return Z
    import array_api_compat as aac

    return link.forward(Z, aac.array_namespace(Z))


def affine_model(result: Result) -> tuple[np.ndarray, np.ndarray | None] | None:
    """``(S_eff, base)`` with model row ``i`` = ``A[i] @ S_eff + base`` for every pixel,
    or None when the preprocessing undone on the model is not affine and pixel-independent
    (``base`` is None when it is zero). Probed in float64 at three pixels."""
    if result.link is not None and not result.link.is_identity:
        return None  # f(A S): not affine in A
    S = np.asarray(to_numpy(result.S), dtype=np.float64)
    if not result.preprocessing:
        return S, None
    n = int(result.A.shape[0])
    found = []
    try:
        for i in sorted({0, n // 2, n - 1}):
            base = _undo(result, S[:1] * 0, i, i + 1)[0]
            found.append(
                (_undo(result, S, i, i + 1) - base, base, _undo(result, 2 * S, i, i + 1) - base)
            )
    except (ValueError, TypeError, IndexError, RuntimeError):  # undoes whole blocks only
        return None
    eff, base, _ = found[0]
    tol = 1e-9 * max(float(np.abs(base).max()), float(np.abs(eff).max()), 1e-300)
    for e, b, twice in found:
        if e.shape != S.shape or not (
            np.allclose(twice, 2 * e, rtol=1e-7, atol=tol)
            and np.allclose(e, eff, rtol=1e-7, atol=tol)
            and np.allclose(b, base, rtol=1e-7, atol=tol)
        ):
            return None
    return eff, (base if np.any(base != 0) else None)


def check_X(result: Result, X: Any) -> Any:
    """``X`` when its shape is the result's (pixels, channels); a ValueError otherwise."""
    if tuple(X.shape) != (result.A.shape[0], result.S.shape[1]):
        raise ValueError(
            f"X has shape {tuple(X.shape)}; the result models "
            f"({result.A.shape[0]}, {result.S.shape[1]}) (pixels, channels)"
        )
    return X


def relative_residuals(result: Result, X: Any) -> tuple[np.ndarray, float]:
    """Per-pixel relative residual ``||x_i - y_i|| / ||x_i||`` and the overall one.

    The model ``Y`` is :meth:`Result.reconstruct` computed in blocks of pixels, so that
    no more than a few tens of MB are held at once. Pixels with ``x_i = 0`` give NaN.

    Returns
    -------
    rel : ndarray (pixels,)
    total : float
        ``||X - Y||_F / ||X||_F``.
    """
    num, den, _ = pixel_pass(result, X)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.sqrt(num / np.where(den > 0, den, np.nan))
    total = math.sqrt(num.sum() / den.sum()) if den.sum() > 0 else math.nan
    return rel, total


#: passes over X kept for the next calls: a report's columns (``unmix compare``: three)
#: and the summary printed after it read each result's sums once
KEEP = 4
_LAST: list[tuple[tuple, Any]] = []  # the last passes, newest first: (key, sums)


@dataclass
class PassSums:
    """What the report needs of ``X`` (pixels, channels), from one pass: per pixel the
    squared residual ``num``, squared norm ``den`` and sum ``sums``; per channel the sums
    of the data and of the model over all pixels."""

    num: np.ndarray
    den: np.ndarray
    sums: np.ndarray
    data_channels: np.ndarray
    model_channels: np.ndarray


def pixel_pass(result: Result, X: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel: squared residual, squared norm and sum of ``X`` (pixels, channels).

    One pass over ``X`` in blocks (:func:`report_pass`, kept for the next call).
    """
    p = report_pass(result, X)
    return p.num, p.den, p.sums


def mean_spectra(result: Result, X: Any) -> tuple[np.ndarray, np.ndarray]:
    """The mean spectrum (or pattern, flattened) of ``X`` (pixels, channels) and of the
    model :meth:`Result.reconstruct`, over all pixels (the same pass as the residuals)."""
    p = report_pass(result, X)
    n = max(int(X.shape[0]), 1)
    return p.data_channels / n, p.model_channels / n


def report_pass(result: Result, X: Any) -> PassSums:
    """The sums of :class:`PassSums` in one pass over ``X`` in blocks; the last
    :data:`KEEP` passes are kept (keyed by weak references to ``result`` and ``X``), so
    the report's figures of one result read a file-backed ``X`` once, not once a figure,
    and a caller after the report (``unmix compare``'s summary) reads it no more.

    When the model is affine in the maps (:func:`affine_model`) each block is multiplied
    once by the endmembers and the residuals come from those products; otherwise, and in
    a block holding NaN or Inf (entries a masked fit left out, ``--mask-nonfinite``; only
    a fit with a mask is looked at for them), from the model rows, the non-finite entries
    left out of every sum (of the data and the model).
    """
    for key, kept in _LAST:
        if key[0]() is result and key[1]() is X and key[2:] == (id(result.A), id(result.S)):
            return kept
    X = check_X(result, X)
    n, m = X.shape
    num, den, sums = np.empty(n), np.empty(n), np.empty(n)
    data_ch, model_ch = np.zeros(m), np.zeros(m)

    affine = affine_model(result)
    compiled = affine is not None and compiled_for(X)

    W = None if affine is None else _stacked(*affine)
    masked = (result.spec or {}).get("mask") is not None  # X may hold NaN or Inf

    def read(a: int, b: int) -> Any:  # in the reading threads
        xb = np.asarray(to_numpy(X[a:b]))
        if affine is None or (masked and not np.isfinite(xb).all()):
            return np.asarray(xb, dtype=float)
        return block_products(xb, W, compiled=compiled)

    ranges = block_ranges(X, block_bytes=4 * BLOCK_VALUES)  # whole scan lines, as stored
    for a, b, xb in read_ahead(X, ranges, read, depth=2):  # blocks read ahead meanwhile
        if isinstance(xb, np.ndarray):
            model = model_rows(result, a, b)
            if masked:  # the entries the fit left out count in neither
                ok = np.isfinite(xb)
                xb, model = np.where(ok, xb, 0.0), np.where(ok, model, 0.0)
            den[a:b] = np.einsum("ij,ij->i", xb, xb)
            sums[a:b] = xb.sum(axis=1)
            data_ch += xb.sum(axis=0)
            model_ch += model.sum(axis=0)
            r = xb - model
            num[a:b] = np.einsum("ij,ij->i", r, r)
        else:
            S_eff, base = affine
            den[a:b], sums[a:b] = xb.x2, xb.rows
            data_ch += xb.cols
            num[a:b] = _affine_residuals(xb, result.A[a:b], S_eff, base)
            model_ch += _affine_channel_sums(result.A[a:b], S_eff, base)
    found = PassSums(num, den, sums, data_ch, model_ch)
    try:
        key = (weakref.ref(result), weakref.ref(X), id(result.A), id(result.S))
    except TypeError:  # X without weak references: nothing kept
        return found
    _LAST.insert(0, (key, found))
    del _LAST[KEEP:]
    return found


def _stacked(S: np.ndarray, base: np.ndarray | None) -> np.ndarray:
    """The rows a block is multiplied by: the endmembers, then ``base`` when there is one."""
    return S if base is None else np.vstack([S, base])


def _affine_residuals(
    prod: BlockProducts, A: Any, S: np.ndarray, base: np.ndarray | None
) -> np.ndarray:
    """``||x_i - (a_i S + base)||^2`` of a block from its products with ``S`` and
    ``base`` (one read of the block, no model rows)."""
    a = np.asarray(to_numpy(A), dtype=float)
    k = S.shape[0]
    XS = prod.XW[:, :k]
    num = prod.x2 - 2.0 * np.einsum("ij,ij->i", a, XS)
    num += np.einsum("ij,ij->i", a @ (S @ S.T), a)
    if base is not None:
        num += float(base @ base) - 2.0 * prod.XW[:, k] + 2.0 * (a @ (S @ base))
    return np.maximum(num, 0.0)


def _affine_channel_sums(A: Any, S: np.ndarray, base: np.ndarray | None) -> np.ndarray:
    """``sum_i (a_i S + base)`` over a block's pixels."""
    a = np.asarray(to_numpy(A), dtype=float)
    out = a.sum(axis=0) @ S
    return out if base is None else out + a.shape[0] * base


def default_pixels(result: Result, X: Any) -> list[tuple[str, int]]:
    """The brightest pixel (largest sum), the worst-fitted one and a median-fit one."""
    rel, _ = relative_residuals(result, X)
    sums = pixel_pass(result, X)[2]
    out = [("brightest", int(np.argmax(sums)))]
    if np.any(np.isfinite(rel)):
        med = np.nanmedian(rel)
        out.append(("worst fitted", int(np.nanargmax(rel))))
        out.append(("median fit", int(np.nanargmin(np.abs(rel - med)))))
    return out


def contributions(result: Result, i: int) -> tuple[np.ndarray, np.ndarray]:
    """What each component adds to the model at pixel ``i``, and what preprocessing adds.

    Under a link ``f`` component ``j`` adds ``f(a_ij s_j) - f(0)``: the parts then do not
    sum to the model (``f`` is not linear), ``base`` is ``f(0)`` with preprocessing undone.
    """
    zero = result.S[:1] * 0
    base = _undo(result, _linked(result, zero), i, i + 1)[0]
    parts = [
        _undo(
            result, _linked(result, result.A[i : i + 1, j : j + 1] * result.S[j : j + 1]), i, i + 1
        )[0]
        - base
        for j in range(result.k)
    ]
    return np.asarray(parts), base
