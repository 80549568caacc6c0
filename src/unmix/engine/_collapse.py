"""Collapsed components: found, restarted once from the worst-fitted pixels, reported.

A component ``j`` is **collapsed** when

- its endmember's norm is below ``1e-3`` of the largest endmember's norm, or
- it never matters to a pixel: its abundance share ``a_ij |s_j| / sum_l a_il |s_l|`` has a
  99th percentile over the pixels below 0.05 (``numpy.percentile``'s interpolation, exact
  also with the pixels split over processes; it was "at least 0.05 in fewer than 1 % of
  the pixels", one pixel more lenient than the percentile at every map size), or
- it lies within 3 degrees of another component (of a close pair, the one that explains
  less of the data collapsed).

When a fit converges with a collapsed component the loop restarts it, once, from the
pixels the model explains worst (for the robust l2,1 loss: the worst of the pixels that
are not outliers, :func:`unmix.engine._robust.inlier_bound`), and the iterations go on.
For abundances on a simplex, whose endmembers are pure pixels, the endmember becomes the
worst pixel's spectrum; for maps with one endmember a pixel (a hard segmentation,
``one_per_row``), the mean spectrum of a group of badly fitted pixels (the group below),
which the component must fit alone.  Otherwise it becomes the positive part of the mean
residual of a group of badly fitted pixels: the worst pixel and the ones among the worst
5 % (at most 256) whose residuals point the same way (with several dead components, one group
each, the next started from the worst pixel left).  A group, not one pixel: a component
must matter to at least 1 % of the pixels, and one pixel's residual is mostly its noise;
with an L1 penalty on the maps it died again (EELS and XRD maps, ``--sparsity 0.05``).
A component that collapses again stays dead and is reported, with the advice to fit fewer
components: a ``k`` too large is not hidden.  When the model has penalties, the report
says which of the two killed it (:func:`killed_by_penalties`): the same solver, from the
fit's point with the dead components restarted, runs up to :data:`PROBE_ITER` iterations
on the model without its penalties; a component that lives there was killed by the
penalties (lower their strength), one that dies there too by the data (fewer components).

Everything here is a few reductions over ``A`` (pixels, k) and ``S`` (k, channels) and,
for a restart, one pass over ``X`` (two for l2,1); with the pixels split over processes
the counts and the worst pixel are agreed on by all of them.  The check without the
penalties runs only for a component that stayed collapsed in a model with penalties.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from .._backend import to_numpy
from ._problem import Problem
from ._robust import inlier_bound, residual_norms
from ._stop import PATIENCE, converged

logger = logging.getLogger("unmix")

__all__ = [
    "ANGLE_DEG",
    "NORM_FLOOR",
    "SHARE",
    "collapsed_components",
    "killed_by_penalties",
    "revive",
]

NORM_FLOOR = 1e-3  # of the largest endmember norm
SHARE = 0.05  # abundance share a component must reach ...
PIXEL_FRACTION = 0.01  # ... in at least this fraction of the pixels
ANGLE_DEG = 3.0  # closer than this to another endmember: a near-copy


def _host(a: Any) -> np.ndarray:
    return np.asarray(to_numpy(a), dtype=float)


def collapsed_components(p: Problem, A: Any, S: Any) -> list[int]:
    """The indices of the collapsed components of ``(A, S)`` (see the module)."""
    xp, be = p.be.xp, p.be
    S_h = _host(S)
    norms = np.linalg.norm(S_h, axis=1)
    top = float(norms.max()) if norms.size else 0.0
    dead = set(np.nonzero(norms < NORM_FLOOR * top)[0].tolist()) if top > 0 else set(range(p.k))
    contrib = xp.abs(be.acc(A)) * be.asarray(norms, dtype=be.acc_dtype)[None, :]
    total = xp.sum(contrib, axis=1)[:, None]
    share = contrib / xp.where(total > 0, total, 1.0)
    dead |= set(np.nonzero(percentile_share(p, share) < SHARE)[0].tolist())
    weight = _host(p.data.reduce(xp.sum(contrib, axis=0)))  # how much each explains
    unit = S_h / np.where(norms > 0, norms, 1.0)[:, None]
    cos = np.clip(unit @ unit.T, -1.0, 1.0)
    for i in range(p.k):
        for j in range(i + 1, p.k):
            if np.degrees(np.arccos(cos[i, j])) < ANGLE_DEG:
                dead.add(j if weight[j] <= weight[i] else i)
    return sorted(int(j) for j in dead)


def percentile_share(p: Problem, share: Any) -> np.ndarray:
    """Each component's ``1 - PIXEL_FRACTION`` quantile (the 99th percentile) of ``share``
    (pixels, k) over all pixels, as ``numpy.percentile`` interpolates it, from the largest
    values of each process (about 1 % of the pixels, gathered)."""
    n = max(int(p.data.n_total), 1)
    pos = (1.0 - PIXEL_FRACTION) * (n - 1)
    low = int(np.floor(pos))
    need = n - low  # the sorted values at low and low + 1 are the need-th and next largest
    local = _host(share)
    if local.shape[0] > need:
        local = np.partition(local, local.shape[0] - need, axis=0)[-need:]
    gather = getattr(p.data.executor, "allgather", None)
    if p.data.executor.distributed and callable(gather):
        local = np.concatenate([part for part in gather(local) if part.size], axis=0)
    top = -np.sort(-local, axis=0)[:need]  # largest first
    below, above = top[need - 1], top[max(need - 2, 0)]
    return below + (pos - low) * (above - below)


GROUP_FRACTION, GROUP_MAX = 0.05, 256  # a restart's group: of the worst-fitted pixels


def _worst_pixels(p: Problem, A: Any, S: Any, count: int) -> list[tuple[Any, Any]]:
    """The spectra (and residuals) of the ``count`` pixels the model fits worst, over all
    processes: ``[(spectrum, residual), ...]`` as host arrays, worst first."""
    xp, be = p.be.xp, p.be
    found: list[tuple[float, np.ndarray, np.ndarray]] = []
    inlier = _inliers(p, A, S)
    for b in p.data.blocks:
        Xb = p.data.x(b)
        R = Xb - A[b.slice, :] @ S
        W = p.data.w(b)
        err = _host(xp.sum(be.acc(R * R if W is None else W * R * R), axis=1))
        order = [int(i) for i in np.argsort(err)[::-1] if inlier is None or inlier[b.start + i]]
        for i in order[:count]:
            found.append((float(err[i]), _host(Xb[i, :]), _host(R[i, :])))
        found.sort(key=lambda t: -t[0])
        del found[count:]
    gather = getattr(p.data.executor, "allgather", None)
    if p.data.executor.distributed and callable(gather):
        found = sorted((t for part in gather(found) for t in part), key=lambda t: -t[0])
    return [(x, r) for _, x, r in found[:count]]


def _inliers(p: Problem, A: Any, S: Any) -> np.ndarray | None:
    """For a robust loss (l2,1), which pixels are not outliers (the worst-fitted pixels of
    a robust fit are its outliers: a spike must not restart a component); else None."""
    if not p.loss.reweights_pixels:
        return None
    norms, _ = residual_norms(p, A, S)
    return _host(norms)[:, 0] <= inlier_bound(p.data, norms)


def revive(p: Problem, A: Any, S: Any, dead: list[int]) -> Any:
    """Restart the ``dead`` components from the worst-fitted pixels; returns the new ``S``
    (their maps become a small constant in ``A``, in place, for the next update to set;
    not 0, which a multiplicative update would keep)."""
    xp, be = p.be.xp, p.be
    simplex = p.simplex("A")
    size = 1 if simplex else min(max(int(np.ceil(GROUP_FRACTION * p.data.n_total)), 1), GROUP_MAX)
    worst = _worst_pixels(p, A, S, size * len(dead))
    if len(worst) < len(dead):
        return S
    S = xp.asarray(S, copy=True)
    total = float(p.data.reduce(float(xp.sum(xp.abs(be.acc(A))))))
    small = 0.1 * total / max(p.data.n_total * p.k, 1)
    groups = _groups(np.stack([r for _, r in worst]), len(dead), size)
    # pixels fitted by one endmember alone: the group's mean spectrum, else its residual's
    part = 0 if p.one_per_row("A") else 1  # in worst: (spectrum, residual)
    for j, group in zip(dead, groups, strict=True):
        x = worst[group[0]][0]
        row = x if simplex else np.maximum(np.mean([worst[i][part] for i in group], axis=0), 0.0)
        if not np.any(row > 0):
            row = np.abs(x)
        S[j, :] = be.asarray(row, dtype=be.dtype)
        A[:, j] = small
    return p.project("S", S)


def _groups(R: np.ndarray, n_groups: int, size: int) -> list[list[int]]:
    """``n_groups`` disjoint groups of the rows of ``R`` (residuals, worst first): each
    the worst row left and the ``size - 1`` rows left closest to it in angle."""
    unit = R / np.maximum(np.linalg.norm(R, axis=1), np.finfo(float).tiny)[:, None]
    left = list(range(R.shape[0]))
    out = []
    for _ in range(n_groups):
        seed, rest = left[0], np.asarray(left[1:], dtype=int)
        near = rest[np.argsort(-(unit[rest] @ unit[seed]), kind="stable")[: size - 1]]
        group = [seed, *near.tolist()]
        out.append(group)
        taken = set(group)
        left = [i for i in left if i not in taken]
    return out


#: most iterations of the check without the penalties (:func:`killed_by_penalties`)
PROBE_ITER = 50


def killed_by_penalties(
    p: Problem, slv: Any, A: Any, S: Any, dead: list[int], executor: Any, tol: float
) -> list[int] | None:
    """Which of the ``dead`` components the data keep once the penalties are gone: from
    ``(A, S)`` (copies) with ``dead`` restarted (:func:`revive`), up to :data:`PROBE_ITER`
    iterations of ``slv`` (stopped by ``tol`` on the relative change of the fit) on ``p``
    without its penalties, then the collapse check.  None when the check does not apply:
    no penalty with a strength in use (:meth:`Problem.active_penalties`: at strength 0 the
    fit is the bare model's, nothing to blame), fixed endmembers, a loss that reweights
    the pixels between iterations (l2,1), or a check that failed (it never fails the fit
    it reports on)."""
    if not (dead and p.active_penalties() and p.update_S) or p.loss.reweights_pixels:
        return None
    bare = dataclasses.replace(p, penalties={"A": [], "S": []})
    try:
        A0 = p.be.xp.asarray(A, copy=True)
        S0 = revive(bare, A0, S, dead)
        state, prev, calm, n = slv.setup(bare, A0, S0), None, 0, 0
        patience = 1 if slv.monotone else PATIENCE  # as the fit's own stopping rule
        gauge = bare.gauge_floats()  # filters alone: the loop's held norms (no drift)
        while n < PROBE_ITER and calm < patience:
            out = slv.step(bare, A0, S0, state, executor)
            S0, n = slv.filtered(bare, A0, out.S, S0, state, hold=gauge), n + 1
            if not np.isfinite(out.fit):
                return None
            calm = calm + 1 if prev is not None and converged(prev, out.fit, tol) else 0
            prev = out.fit
        kept = sorted(set(dead) - set(collapsed_components(bare, A0, S0)))
        logger.info("Without the penalties, %d iterations keep components %s", n, kept)
        return kept
    except (ArithmeticError, ValueError, np.linalg.LinAlgError) as exc:
        logger.debug("The check of the collapsed components without penalties failed: %s", exc)
        return None
