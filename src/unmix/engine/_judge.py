"""Judging each iteration of a fit: the stop rule's state for one phase and its verdict.

:func:`stop_reason` applies the rules of :mod:`unmix.engine._stop` to the iteration the
loop (:mod:`unmix.engine._loop`) just made; :class:`Phase` holds what they need between
iterations, and :func:`stop_state` / :func:`resume_stop_state` carry it through a
checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._extrapolate import Extrapolation
from ._problem import Problem
from ._record import exact_descent
from ._stop import (
    FALL_WINDOW,
    NO_NOISE,
    PATIENCE,
    RoundingNoise,
    converged,
    factor_settled,
    remaining_fall,
)

__all__ = ["STOP_KEYS", "Phase", "resume_stop_state", "stop_reason", "stop_state"]


@dataclass
class Phase:
    """One phase of a restart: the problem it iterates on, where its clock started, and
    what the stop rule keeps between iterations (carried by checkpoints: :func:`stop_state`)."""

    p: Problem
    number: int  # 1 compressed, 2 exact
    offset: float  # energy of X outside the compressed subspace (0 for phase 2)
    t_loop: float
    state: dict
    ext: Extrapolation | None = None  # extrapolation between the steps, when on
    calm: int = 0  # iterations in a row with a small change of the objective
    calm_from: float = 0.0  # the objective before the first of them
    exact: tuple[int, float] | None = None  # the last exact objective (float32 Frobenius)
    noise: RoundingNoise = NO_NOISE  # the objective's rounding noise (float32 work)
    recent: list[float] = field(default_factory=list)  # the last objectives judged
    trend: list[float] = field(default_factory=list)  # ... of a fit with filters
    S_prev: Any = None  # the endmembers before this iteration
    A_prev: Any = None  # ... and the maps
    gauge: bool = False  # the loop holds the endmembers' norms (Problem.gauge_floats)


#: checkpoint keys of the stop rule's state (beside the solver's)
STOP_KEYS = ("stop_calm", "stop_calm_from", "stop_recent", "stop_trend")

#: a fit with filters stops when its objective's mean over the last this many iterations
#: is no more than ``tol`` an iteration below the mean over the ones before
TREND_WINDOW = 5


def stop_state(ph: Phase) -> dict:
    """The stop rule's state, for a checkpoint: a resumed fit stops where the
    uninterrupted one does."""
    lists = (np.asarray(ph.recent, dtype=float), np.asarray(ph.trend, dtype=float))
    values = (float(ph.calm), ph.calm_from, *lists)
    return dict(zip(STOP_KEYS, values, strict=True))


def resume_stop_state(ph: Phase, saved: dict | None) -> None:
    """Put a checkpoint's stop-rule state back (none in a checkpoint that has none), and
    the strengths its tightening penalties had reached (they decide when it stops too)."""
    ph.p.resume_schedules(saved)
    if saved and STOP_KEYS[0] in saved:
        ph.calm, ph.calm_from = int(saved["stop_calm"]), float(saved["stop_calm_from"])
        ph.recent = [float(v) for v in np.asarray(saved["stop_recent"]).ravel()]
        ph.trend = [float(v) for v in np.asarray(saved.get("stop_trend", [])).ravel()]


def stop_reason(cfg: Any, slv: Any, info: Any, prev: float, ph: Phase, lagged: bool) -> str | None:
    """Why to stop after this iteration (None: go on).  ``lagged``: the first iteration of
    a solver whose fit is one step behind, which cannot be judged yet.

    A fit with filters has no minimum to reach: filters never let the factors settle,
    and its objective wanders from step to step, so a single small change came by chance
    (XRD, HALS, float32: stopped at 108 on PyTorch, ran to 300 on NumPy), and iterating
    on may drift away from the data (HALS with 1-pixel map smoothing on the EELS map from
    NMF's factors: its third endmember 7.8 deg from NMF's at iteration 21, 26 deg at 100
    and 57 at 400, the objective 1.7 % higher).  It stops once it no longer improves: when
    the mean objective over the last :data:`TREND_WINDOW` iterations is no more than
    ``tol`` an iteration below the mean over the window before (:func:`_stopped_falling`;
    on EELS, Raman and XRD, HALS and KL-CD with map smoothing, 10-38 iterations, the
    objective at the returned factors 0.02 % above to 4 % below the first-small-change
    rule's on EELS and Raman, 5-6 % above it on XRD, where that rule ran to 500).
    Otherwise a monotone solver stops at the first small change; any other (ADMM,
    gradient), whose objective may stall for a step and move again, when the change
    stayed small for :data:`PATIENCE` iterations in a row, and so does an extrapolated
    fit: the gain of an
    extrapolated step that overshot to about the same objective, or of the plain step
    after a discarded one, says nothing about convergence (float32 KL + sum-to-one on
    Moffett stopped 67 % above float64 on one such step).  Where the objective's rounding
    noise (float32) exceeds ``tol`` times it, a change below ``tol`` or below that noise
    counts as small only if the endmembers settled too (unless filters act between
    iterations: they never let the factors settle, and iterating on only drifts further
    from the unfiltered model), and changes within that noise count only while their
    sum since the first small one stays within it: a steady descent of a little less
    than the noise an iteration is progress (float32 XRD, k 3, smoothness on the data
    graph: stopped at iteration 58, 33 % above the fit's minimum, falling 180 an
    iteration against a noise bound of 207).

    For the solvers that crawl (those that extrapolate a long fit by default,
    ``Solver.extrapolates_after``: KL coordinate descent, MU, the gradient solver) a
    change counts as small only when the fall still to come, estimated from the last two
    falls (:func:`~unmix.engine._stop.remaining_fall`), is within ``tol`` too, and it
    stops after :data:`PATIENCE` such iterations in a row: a fall that shrinks slowly is
    a slope, not a minimum, and one that shrank fast may grow again (the gradient solver
    on the EELS map: falls 30.1, 8.1, 2.2, then 3.2, 5.0, 6.9).  The callback is asked
    after the iteration is judged, so a checkpoint taken when it raises
    ``KeyboardInterrupt`` holds the rule's state at this iteration (:func:`stop_state`).
    """
    if slv.one_shot:
        return "callback" if _callback_stops(cfg, info) else "tol"
    small = not lagged and converged(prev, info.objective, cfg.tol, abs(prev) + ph.offset)
    crawls = slv.extrapolates_after is not None
    filtered = ph.p.filters["A"] or ph.p.filters["S"]  # filters keep the factors moving
    noise = ph.noise.at(prev)
    left = 0.0  # the fall still to come, for a solver that crawls
    if filtered:  # no minimum to reach: stop once the fit no longer improves
        small = _stopped_falling(ph, info.objective, lagged, cfg.tol * (abs(prev) + ph.offset))
    elif crawls:
        left = _left_to_fall(ph, info.objective, lagged)  # every iteration: the windows
        small = small and left <= cfg.tol * (abs(prev) + ph.offset)
    if ph.calm == 0:
        ph.calm_from = prev
    need = 1 if filtered or (slv.monotone and ph.ext is None and not crawls) else PATIENCE
    noisy = noise > cfg.tol * abs(prev) and not filtered
    if noisy:  # a change below rounding noise
        # says nothing, unless the changes add up beyond it since the first small one
        within = not lagged and abs(ph.calm_from - info.objective) <= noise and left <= noise
        small = (small or within) and factor_settled(ph.S_prev, info.S, cfg.tol, ph.p.be)
    ph.calm = ph.calm + 1 if small else 0
    reason = None
    if ph.calm >= need and not (noisy and _descends_exactly(cfg, ph, info)):
        reason = "tol"
    elif cfg.time_limit is not None and info.elapsed >= cfg.time_limit:
        reason = "time_limit"
    return "callback" if _callback_stops(cfg, info) else reason


def _callback_stops(cfg: Any, info: Any) -> bool:
    return cfg.callback is not None and bool(cfg.callback(info))


def _left_to_fall(ph: Phase, objective: float, lagged: bool) -> float:
    """The fall still to come (:func:`remaining_fall`) from the falls over the last two
    windows of iterations: one iteration each in float64; :data:`FALL_WINDOW` in float32
    work, whose objective's rounding makes single falls too noisy to compare (float32
    MU on the Raman map: falls 0.94 then 0.58 where float64 fell 0.62 then 0.59 - the
    estimate stopped it at 45 iterations, 0.13 % above float64's 207).  ``inf`` until
    two windows have passed since the phase began or since the last step that cannot be
    judged (``lagged``: a discarded extrapolated step, after which the falls start
    afresh)."""
    m = 1 if ph.noise is NO_NOISE else FALL_WINDOW
    if lagged:
        ph.recent = [objective]
        return math.inf
    h = ph.recent
    h.append(objective)
    del h[: max(len(h) - 2 * m - 1, 0)]
    if len(h) < 2 * m + 1:
        return math.inf
    return remaining_fall(h[0] - h[m], h[m] - h[2 * m])


def _stopped_falling(ph: Phase, objective: float, lagged: bool, bound: float) -> bool:
    """For a fit with filters: whether the mean objective over the last
    :data:`TREND_WINDOW` iterations is no more than ``bound`` (``tol`` times the
    objective) an iteration below the mean over the window before; False until two
    windows have passed since the phase began.  A solver one step behind
    (``fit_at_old_A``, ``lagged`` at its first step) first reports the start's
    objective, before any filter acted (XRD, KL: 1,929 against 5,581 after one filtered
    step), which would make every later window look higher: it is left out.  Filters
    refuse extrapolation, so no step is discarded, and a resumed fit goes on with the
    windows its checkpoint holds (KL-CD on XRD stopped at 25 resumed, at 11
    uninterrupted, when its first step emptied them)."""
    h = ph.trend
    if lagged and not h:  # the start's objective
        return False
    h.append(objective)
    del h[: max(len(h) - 2 * TREND_WINDOW, 0)]
    if len(h) < 2 * TREND_WINDOW or bound <= 0:  # tol=0: to max_iter, as without filters
        return False
    older, newer = np.mean(h[:TREND_WINDOW]), np.mean(h[TREND_WINDOW:])
    return bool(older - newer <= TREND_WINDOW * bound)


def _descends_exactly(cfg: Any, ph: Phase, info: Any) -> bool:
    """Whether a fit about to stop on changes within its objective's rounding noise still
    descends (:func:`exact_descent`; Frobenius on ``X`` itself only); if so the calm count
    starts again."""
    p = ph.p
    if not (p.loss.is_frobenius and ph.number == 2 and ph.offset == 0):
        return False
    before = (ph.A_prev, ph.S_prev)
    falls, ph.exact = exact_descent(p, cfg.tol, ph.exact, info.iteration, (info.A, info.S), before)
    ph.calm = 0 if falls else ph.calm
    return falls
