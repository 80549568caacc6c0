"""KL fits with maps on the simplex, solved exactly as the plain KL fit.

For the generalized Kullback-Leibler divergence, maps on a scaled simplex (each row of
``A`` non-negative with sum ``r``) and pixels ``y_i`` (rows of ``Y``, pixels x channels)
that all sum to the same ``c`` - e.g. counts divided by their sums,
``NormalizePixels("l1", weights=True)``, the CLI's ``--loss kl --sum-to-one`` - the
problem::

    min  sum_i w_i KL(y_i | a_i S)   over  a_i >= 0, sum_r a_ir = r,  S >= 0

is the plain KL-NMF of ``X' = diag(w) Y`` (the counts themselves for that recipe), put on
the simplex afterwards.  ``w_i KL(y_i | v) = KL(w_i y_i | w_i v)``, so the objective is
``KL(X' | A' S)`` with ``A' = diag(w) A`` (the same value at corresponding points).  For
any ``S`` with rows of unit sum, the best scale of a pixel's maps ``t a'_i`` is
``t = sum_j x'_ij / sum_r a'_ir`` (the derivative of ``KL(x | t v)`` in ``t`` is
``sum v - sum x / t``), so at the plain fit's optimum every ``a'_i`` sums to
``w_i c``: ``a_i = r a'_i / (w_i c)`` lies on the simplex and ``S`` scaled by ``c / r``
gives the same model.  The plain optimum is therefore feasible for the constrained
problem, and no feasible point can do better (every feasible point is a plain one).

:func:`fractions_form` says when a problem is one (nothing else on the model, data in
memory on NumPy) and :func:`runs_as_plain_kl` when its fit runs as the plain one
(``solver="auto"`` or ``"klcd"``); :func:`fit_as_plain_kl` runs the plain fit - KL
coordinate descent from the Poisson start, where the constrained iteration needed the
gradient solver (EDS SEM map, k 4: 2.3 s instead of 36 s, divergence 0.08 % lower;
``benchmarks/results/fractions.md``) - and maps it back: each pixel's maps are scaled to
their best scale (which can only lower the divergence) and so land on the simplex exactly.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..blocks import is_sparse
from ._inputs import Input
from ._problem import Problem

__all__ = ["PlainKLForm", "fit_as_plain_kl", "fractions_form", "runs_as_plain_kl"]

logger = logging.getLogger("unmix")

#: how far (relative) the pixels' sums may spread and still count as equal
SPREAD = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-8}

#: ``factorize``'s options that the plain fit takes over unchanged
PASSED = (
    "max_iter",
    "tol",
    "time_limit",
    "n_restarts",
    "spatial_shape",
    "signal_shape",
    "block_size",
    "compress",
    "checkpoint",
    "checkpoint_every",
    "resume",
)

#: the plain fit's diagnostics that are the fit's own (``spec["diagnostics"]``)
DIAGNOSTICS = ("collapsed", "revived", "kept_without_penalties", "other_start")

#: what the spec says about the fit (``spec["solved_as"]``)
SOLVED_AS = (
    "the plain KL fit of the weighted pixels, each pixel's maps then scaled onto the "
    "simplex (exact for KL with pixels of equal sum: unmix.engine._fractions)"
)


@dataclass
class PlainKLForm:
    """The plain problem of the data ``Y`` (pixels, channels): ``X' = diag(w) Y``, the
    pixels' common sum ``c``, the weights ``w`` (pixels,) and the simplex's row sum ``r``.
    ``X'`` is made when first asked for (a copy of ``Y`` when pixels are weighted: a
    solver that fits the constrained problem itself never asks)."""

    Y: Any
    c: float
    w: np.ndarray
    r: float

    @functools.cached_property
    def X(self) -> Any:
        """``diag(w) Y`` in ``Y``'s dtype and format."""
        return _scale_rows(self.Y, self.w)


def runs_as_plain_kl(solver: Any, given: dict) -> bool:
    """Whether a fit of a :func:`fractions_form` problem runs as the plain KL fit:
    ``solver="auto"`` (or ``"klcd"``, which runs it) with no solver options, fitted in this
    process (no executor).  Other solvers fit the constrained problem itself."""
    return (
        solver in (None, "auto", "klcd")
        and not given.get("solver_options")
        and given.get("executor") is None
    )


def fractions_form(inp: Input, p: Problem) -> PlainKLForm | None:
    """The plain KL problem equivalent to ``p`` whatever the solver, or None when ``p`` is
    not one: KL loss, identity link; the maps' constraints a simplex (and non-negativity),
    the endmembers' non-negativity alone, no pinned entries, penalties or filters; no mask,
    per-pixel weights at most; NumPy data in memory (dense or SciPy sparse); every pixel
    with a positive weight sums to the same positive value."""
    r = _simplex_row_sum(p)
    if r is None or not _model_qualifies(p) or not _data_qualifies(inp):
        return None
    w = _pixel_weights(inp)
    sums = _row_sums(inp.X)
    full = sums > 0
    if not np.any(full) or np.any(~full & (w > 0)):  # an empty pixel with a say: not exact
        return None
    c = float(np.median(sums[full]))
    if np.max(np.abs(sums[full] / c - 1.0)) > SPREAD.get(np.dtype(inp.X.dtype), 1e-8):
        return None
    return PlainKLForm(Y=inp.X, c=c, w=w, r=r)


def _simplex_row_sum(p: Problem) -> float | None:
    """The one row sum of the maps' simplex constraints (None: none, or several)."""
    sums = {float(c.row_sum) for c in p.constraints["A"] if c.simplex_rows}
    return sums.pop() if len(sums) == 1 else None


def _model_qualifies(p: Problem) -> bool:
    """KL, identity link, simplex maps (one row sum: :func:`_simplex_row_sum`) and
    non-negative endmembers, nothing else."""
    cons_A, cons_S = p.constraints["A"], p.constraints["S"]
    return (
        p.loss.beta == 1.0
        and not p.loss.reweights_pixels
        and p.link.is_identity
        and all(c.is_orthant or c.simplex_rows for c in cons_A)
        and bool(cons_S)
        and all(c.is_orthant for c in cons_S)
        and all(c.fixed() is None for c in cons_A + cons_S)
        and not any(p.penalties[t] or p.filters[t] for t in ("A", "S"))
    )


def _data_qualifies(inp: Input) -> bool:
    """In memory on NumPy (dense or SciPy sparse), no mask, per-pixel weights at most."""
    w = inp.weights
    return (
        not inp.streamed
        and inp.be.name == "numpy"
        and inp.mask is None
        and (w is None or (w.channels is None and w.full is None))
        and (is_sparse(inp.X) or isinstance(inp.X, np.ndarray))
    )


def _pixel_weights(inp: Input) -> np.ndarray:
    n = int(inp.X.shape[0])
    if inp.weights is None or inp.weights.pixels is None:
        return np.ones(n)
    return np.asarray(inp.weights.pixels, dtype=np.float64).reshape(n)


def _row_sums(X: Any) -> np.ndarray:
    return np.asarray(X.sum(axis=1, dtype=np.float64)).reshape(-1)


def _scale_rows(X: Any, w: np.ndarray) -> Any:
    """``diag(w) X`` in ``X``'s dtype and format (CSR stays CSR; ``X`` itself, not a copy,
    when no pixel is weighted)."""
    if np.all(w == 1.0):
        return X
    if is_sparse(X):
        return sp.csr_matrix(sp.diags(w.astype(X.dtype)) @ X)
    return X * w.astype(X.dtype)[:, None]


def fit_as_plain_kl(
    form: PlainKLForm, k: int, given: dict, init: Any, seed: int, fit: Callable[..., Any]
) -> tuple[dict, list, dict]:
    """Run ``fit`` (:func:`unmix.factorize`) on the plain problem and map the answer onto the
    simplex.  Returns the best run as the restart loop does (``A``, ``S``, ``objective``,
    history, stop, timings, diagnostics), the restarts' summaries, and the plain fit's spec."""
    t0 = time.perf_counter()
    plain = fit(
        form.X,
        k,
        loss="kl",
        init=_plain_init(init, form.w),
        random_state=seed,
        callback=_on_simplex_callback(form, given["callback"]),
        **{name: given[name] for name in PASSED},
    )
    A, S, change = _on_simplex(form, np.asarray(plain.A), np.asarray(plain.S))
    objective = plain.objective + float(change.sum())
    logger.info(
        "KL with maps on the simplex, pixels of equal sum: fitted as plain KL (%s, %d "
        "iterations), maps scaled onto the simplex: divergence %.6g -> %.6g.",
        plain.spec["solver"],
        plain.n_iter,
        plain.objective,
        objective,
    )
    diag = plain.spec["diagnostics"]
    best = {
        "A": A,
        "S": S,
        "objective": objective,
        "history": plain.history,
        "n_iter": plain.n_iter,
        "stop_reason": plain.stop_reason,
        "t_init": plain.timings["init"],
        "t_iter": plain.timings["iterations"]
        + (time.perf_counter() - t0 - plain.timings["total"]),
        **{key: diag[key] for key in DIAGNOSTICS},
    }
    return best, plain.restarts, plain.spec


def _plain_init(init: Any, w: np.ndarray) -> Any:
    """A start given as factors moves to the plain problem's maps ``diag(w) A``."""
    if not isinstance(init, tuple):
        return init
    A0, S0 = init
    return (None if A0 is None else np.asarray(A0) * w[:, None], S0)


def _on_simplex_callback(form: PlainKLForm, callback: Any) -> Any:
    """The user's callback, shown each iteration's factors as simplex maps and endmembers
    (the objective is the same function in both problems)."""
    if callback is None:
        return None

    def shown(info: Any) -> Any:
        A, S, _ = _on_simplex(form, np.asarray(info.A), np.asarray(info.S))
        return callback(replace(info, A=A, S=S))

    return shown


def _on_simplex(form: PlainKLForm, A: np.ndarray, S: np.ndarray) -> tuple[Any, Any, np.ndarray]:
    """The plain fit's ``(A', S')`` as simplex maps and endmembers (module docstring), and
    each pixel's change of the divergence that its best scale ``t`` makes: with ``h`` the
    pixel's model sum and ``n`` its data sum (``t = n / h``), ``KL(x | t y) - KL(x | y) =
    n - h - n log(n / h)`` (never positive); a pixel with no data (weight 0) drops its
    model, ``-h``."""
    dtype, k = S.dtype, S.shape[0]
    sigma = S.astype(np.float64).sum(axis=1)
    sigma = np.where(sigma > 0, sigma, 1.0)
    B = A.astype(np.float64) * sigma[None, :]
    target = form.w * form.c  # each pixel's sum in X'
    have = B.sum(axis=1)
    ok = (have > 0) & (target > 0)
    change = np.where(target > 0, 0.0, -have)
    change[ok] = target[ok] - have[ok] - target[ok] * np.log(target[ok] / have[ok])
    A_out = np.full(B.shape, form.r / k)  # pixels with no weight or no counts: even shares
    A_out[ok] = form.r * B[ok] / have[ok][:, None]
    S_out = S / sigma[:, None] * (form.c / form.r)
    return A_out.astype(dtype), S_out.astype(dtype), change
