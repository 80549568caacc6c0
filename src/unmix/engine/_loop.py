"""The iteration loop: restarts, one restart (start, iterate, stop, evaluate).

With ``compress=r`` a restart first iterates on a rank-``r`` truncated SVD of ``X``
(low-rank-approximation NMF, Zhou, Cichocki & Xie 2012: each pass costs
``O((pixels + channels) r k)`` instead of ``O(pixels channels k)``), then refines on ``X``
itself until ``tol``.  ``history["phase"]`` is 1 for compressed and 2 for exact
iterations; objective values of phase 1 refer to the compressed data.  Every iteration is
one solver step (one pass over the pixel blocks), then the filters, then the stopping
rule of :mod:`unmix.engine._stop`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..blocks import LowRankData
from ._collapse import collapsed_components, killed_by_penalties
from ._diagnostics import balance, warn_collapsed, warn_scale_drift
from ._extrapolate import extrapolation_for, extrapolation_start
from ._init import initialize
from ._judge import Phase, resume_stop_state, stop_reason, stop_state
from ._problem import Problem
from ._record import (
    History,
    RestartRecord,
    evaluate_fit,
    objective_at,
    restore_state,
)
from ._restart_collapsed import restart_collapsed
from ._stop import objective_noise
from .solvers import Solver, StepOut

logger = logging.getLogger("unmix")

__all__ = ["IterationInfo", "Settings", "evaluate_fit", "run_once", "run_restarts"]


@dataclass(frozen=True)
class IterationInfo:
    """Passed to ``callback`` after every iteration; return True to stop."""

    iteration: int
    objective: float
    fit: float
    penalties: dict[str, float]
    elapsed: float
    A: Any
    S: Any
    phase: int = 2


@dataclass(frozen=True)
class Settings:
    """Stopping rules and plumbing shared by all restarts."""

    max_iter: int
    tol: float
    time_limit: float | None
    callback: Any
    executor: Any
    compress: int | None = None
    checkpoint: Any = None


# ------------------------------------------------------------------- restarts
def run_restarts(
    p: Problem, slv: Solver, init: Any, seeds: list[int], cfg: Settings, resume: bool
) -> tuple[dict, list[dict]]:
    """Run every restart (resuming from the checkpoint when asked); keep the best."""
    ckpt = cfg.checkpoint
    if resume and ckpt is None:
        raise ValueError("resume=True needs checkpoint= (the checkpoint file to resume from).")
    snap = ckpt.load() if (ckpt is not None and resume) else None
    if resume and snap is None:
        logger.info("No checkpoint at %s: starting afresh.", ckpt.path)
    first = 0 if snap is None else int(snap["restart"])
    runs = [] if snap is None else list(ckpt.bookkeeping["finished"])
    best = None if snap is None else ckpt.bookkeeping["best"]
    if best is not None:
        best = dict(best, A=p.be.asarray(best["A"]), S=p.be.asarray(best["S"]))
    for r in range(first, len(seeds)):
        run = run_once(p, slv, init, seeds[r], cfg, restart=r, snap=snap if r == first else None)
        keys = ("objective", "n_iter", "stop_reason")
        runs.append({"seed": seeds[r], **{key: run[key] for key in keys}})
        if best is None or run["objective"] < best["objective"]:
            best = run
        if ckpt is not None:
            ckpt.bookkeeping = {"finished": runs, "best": best}
    if ckpt is not None:
        ckpt.remove()  # the fit completed: the result replaces the checkpoint
    assert best is not None
    return best, runs


# ---------------------------------------------------------------- one restart
def run_once(
    p: Problem,
    slv: Solver,
    init: Any,
    seed: int,
    cfg: Settings,
    restart: int = 0,
    snap: dict | None = None,
) -> dict:
    """One restart: start (or resume ``snap``), iterate (compressed, then exact), evaluate."""
    rng = np.random.default_rng(seed)
    p_lr = _compressed(p, cfg.compress, rng) if cfg.compress else None
    A, S, rec = _begin(p, p_lr, slv, init, seed, restart, cfg, rng, snap)
    start_phase, n_iter, prev = (0, 0, None) if snap is None else _position(snap)
    balance0 = balance(p, rec.A0 if rec.A0 is not None else A, rec.S0)
    t_loop = time.perf_counter()
    stop = "max_iter"
    if p_lr is not None and start_phase <= 1:
        outside = 0.5 * max(p.data.norm2() - p_lr.data.norm2(), 0.0)
        phase = Phase(p_lr, 1, outside, t_loop, {})
        S, stop, done = _iterate(phase, slv, A, S, rec, n_iter, cfg.max_iter - n_iter, cfg, prev)
        n_iter, prev = n_iter + done, None
    remaining = cfg.max_iter - n_iter
    if p_lr is None or start_phase == 2 or (stop in ("tol", "max_iter") and remaining > 0):
        if p_lr is not None and prev is None:  # exact objective where phase 1 ended
            prev = objective_at(p, A, S)
        phase = Phase(p, 2, 0.0, t_loop, {})
        S, stop, done = _iterate(phase, slv, A, S, rec, n_iter, max(remaining, 1), cfg, prev)
        n_iter += done
        while stop == "tol" and n_iter < cfg.max_iter and not slv.one_shot:
            # converged: collapsed components restart (once each), else a penalty that
            # holds a bound may tighten; either way the fit goes on from here
            S, kept = restart_collapsed(p, A, S, rec, n_iter)
            if kept is None and not p.tighten(A, S):
                break
            S, stop, done = _iterate(
                phase, slv, A, S, rec, n_iter, cfg.max_iter - n_iter, cfg, None
            )
            n_iter += done
            if kept is not None and kept.lost(p, A, S, rec):
                S, n_iter, stop = kept.restore(A, rec), kept.n_iter, "tol"
    p.finish_maps(A, S)  # e.g. an exact polish of sparse maps, a last feasibility step
    t_iter = rec.elapsed0 + time.perf_counter() - t_loop
    return _finish(p, slv, A, S, rec, n_iter, stop, t_iter, balance0, cfg)


def _position(snap: dict) -> tuple[int, int, float]:
    """``(phase, iterations done, previous objective)`` of a checkpoint."""
    return snap["phase"], snap["iteration"], snap["prev"]


def _begin(
    p: Problem,
    p_lr: Problem | None,
    slv: Solver,
    init: Any,
    seed: int,
    restart: int,
    cfg: Settings,
    rng: np.random.Generator,
    snap: dict | None,
) -> tuple[Any, Any, RestartRecord]:
    """The starting factors and record: a fresh start, or the checkpoint's iterate."""
    be, xp = p.be, p.be.xp
    t0 = time.perf_counter()
    if snap is None:
        A, S = _start(p, p_lr, slv, init, rng)
        fit0 = evaluate_fit(p, A, S) if not slv.one_shot else float("nan")
        keep = cfg.checkpoint is not None
        rec = RestartRecord(
            restart, seed, xp.asarray(A, copy=True) if keep else None, S, fit0, 0.0
        )
        rec.history = History()
    else:
        A, S = xp.asarray(be.asarray(snap["A"]), copy=True), be.asarray(snap["S"])
        rec = RestartRecord.from_snapshot(snap, restart, seed, be)
    for t in p.penalties["A"] + p.penalties["S"]:
        t.on_init(rec.A0 if rec.A0 is not None else A, rec.S0, rec.fit0)
    if snap is None:
        pens = p.penalty_values(A, S) if not slv.one_shot else {}
        rec.history.add(rec.fit0 + sum(pens.values()), rec.fit0, pens, 0.0, 0)
        rec.t_init = time.perf_counter() - t0
    return A, S, rec


def _start(
    p: Problem, p_lr: Problem | None, slv: Solver, init: Any, rng: np.random.Generator
) -> tuple[Any, Any]:
    be, xp = p.be, p.be.xp
    if slv.one_shot:
        slv.options.setdefault("seed", int(rng.integers(2**31 - 1)))
        return be.zeros((p.data.n_pixels, p.k)), be.zeros((p.k, p.data.n_channels))
    fast = p_lr is not None and isinstance(init, str) and init.startswith(("nndsvd", "rand"))
    A, S = initialize(p_lr if fast else p, init, rng)
    if isinstance(init, str) and init.startswith(("nndsvd", "rand")):
        # factors from an SVD or at random share the scale arbitrarily: put it where the
        # constraints want it (A @ S unchanged); pixel starts and given factors are kept.
        # The endmembers' first: a row scaling of S moves scale into the columns of A,
        # which the maps' own (a simplex's one scale for all pixels) then takes as it is
        for c in p.constraints["S"] + p.constraints["A"]:
            A, S = c.rescale(A, S)
        if p.one_per_column("S") and p.simplex("A") and init.startswith("nndsvd"):
            return _bands_on_simplex(p, p.project("S", S))
    return xp.asarray(p.project("A", A), copy=True), p.project("S", S)


def _bands_on_simplex(p: Problem, S: Any) -> tuple[Any, Any]:
    """Orthogonal endmembers under sum-to-one maps, from the channel bands of the
    balanced NNDSVDa start ``S`` (each channel in one endmember): equal maps ``total / k`` and
    each endmember ``k / total`` times the mean spectrum over its band, so ``A S`` is the
    mean spectrum.  The balanced rows themselves are unit norm: the maps that sum to one
    fitted to them (the first step) gave one band no pixel (EELS, k 3: two bands, 41 %
    above the three-band fit this start finds)."""
    be, xp = p.be, p.be.xp
    total = next(c.row_sum for c in p.constraints["A"] if c.simplex_rows)
    mean = p.data.count_sums()[1] / max(p.data.n_total, 1)
    S = xp.where(S > 0, be.asarray(mean * (p.k / total), dtype=be.dtype)[None, :], 0.0)
    A = xp.full((p.data.n_pixels, p.k), total / p.k, dtype=be.dtype)
    return A, p.project("S", S)


def _compressed(p: Problem, rank: int, rng: np.random.Generator) -> Problem:
    r = int(min(rank, p.data.n_total, p.data.n_channels))
    U, s, Vt = p.data.svd(r, rng, n_iter=2)
    data = LowRankData(
        U,
        s,
        Vt,
        p.be,
        block_size=p.data.block_size,  # the same block grid
        executor=p.data.executor,
        n_total=p.data.n_total,
    )
    return dataclasses.replace(p, data=data)


def _finish(
    p: Problem,
    slv: Solver,
    A: Any,
    S: Any,
    rec: RestartRecord,
    n_iter: int,
    stop: str,
    t_iter: float,
    balance0: float,
    cfg: Settings,
) -> dict:
    """The restart's outcome: final objective on ``X``, history, warnings."""
    if not _finite(p, A, S, maps=True):  # even the start was not finite: nothing to return
        raise FloatingPointError(
            f"{slv.name}: the fit has no finite iterate (the start itself holds NaN or "
            "Inf); check X and the weights for NaN/Inf (mark missing entries with mask=), "
            "lower the regularization or try another init."
        )
    if not slv.one_shot:
        A, S = p.place_dead_endmembers(A, S)
    final = objective_at(p, A, S)
    history = rec.history.arrays()
    kept_without = None
    if slv.one_shot:
        history["objective"][0] = history["objective"][-1]
        history["fit"][0] = history["fit"][-1]
    else:
        dead = collapsed_components(p, A, S)
        kept_without = killed_by_penalties(p, slv, A, S, dead, cfg.executor, cfg.tol)
        warn_collapsed(
            dead,
            p.k,
            rec.revived,
            penalties=[_strength(t) for t in p.active_penalties()],
            filters=bool(p.filters["A"] or p.filters["S"]),
            kept_without=kept_without,
        )
        warn_scale_drift(balance0, balance(p, A, S))
        for said in p.unmet_bounds(A, S):
            warnings.warn(said, RuntimeWarning, stacklevel=4)
    logger.info("%s: %d iterations, objective %.6g (%s)", slv.name, n_iter, final, stop)
    return {
        "A": A,
        "S": S,
        "objective": final,
        "n_iter": n_iter,
        "stop_reason": stop,
        "history": history,
        "t_init": rec.t_init,
        "t_iter": t_iter,
        "collapsed": [] if slv.one_shot else dead,
        "revived": list(rec.revived),
        "kept_without_penalties": kept_without,
    }


def _strength(term: Any) -> str:
    """A penalty's label and strength in use, e.g. ``'MinVol(S) 0.405'``."""
    lam = term.effective().get("lam")
    return term.label if lam is None else f"{term.label} {lam:.3g}"


# ------------------------------------------------------------------ iterating
def _iterate(
    ph: Phase,
    slv: Solver,
    A: Any,
    S: Any,
    rec: RestartRecord,
    it0: int,
    n_max: int,
    cfg: Settings,
    prev: float | None,
) -> tuple[Any, str, int]:
    """Run up to ``n_max`` iterations of phase ``ph``; returns ``(S, stop_reason, done)``.

    The relative change is measured against ``|objective| + offset`` (for the compressed
    phase, ``offset`` is the energy of ``X`` outside the kept subspace, so that ``tol``
    means the same as on ``X``).  With a checkpointer in ``cfg``, the iterate is saved
    periodically and on Ctrl-C (then ``KeyboardInterrupt`` propagates).
    """
    p, xp = ph.p, ph.p.be.xp
    ph.state = slv.setup(p, A, S)
    ph.calm, ph.noise, ph.gauge = 0, objective_noise(p), p.gauge_floats()
    restore_state(ph.state, rec.resume_state, p)
    resumed, rec.resume_state = rec.resume_state, None
    ext = ph.ext = None
    start = extrapolation_start(slv, p)
    prev = rec.history.last if prev is None else prev
    ph.recent, ph.trend = [prev], []
    resume_stop_state(ph, resumed)
    done = 0
    for i in range(1, n_max + 1):
        it = it0 + i
        if ext is None and start is not None and it >= start:  # from the start, or later
            ext = ph.ext = extrapolation_for(slv, p, ph.noise)
            ext.restore(p, A, S, resumed if i == 1 else None)  # a checkpoint's state
        if ext is not None:
            S = ext.move(p, A, S)
        A_prev, S_prev = xp.asarray(A, copy=True), S
        ph.A_prev, ph.S_prev = A_prev, S_prev
        # the solver's state before a step that may be discarded or interrupted
        judged = ext is not None and not ext.plain
        before = _persistent_copy(ph, slv) if judged or cfg.checkpoint is not None else None
        out = _guarded_step(ph, slv, A, S, A_prev, before, rec, cfg, it, prev)
        if ext is not None and (out.fit_at_old_A or out.fit_S is not out.S):
            # the judge compares new points: one more pass for the fit at this one
            fit = slv.fit_at(p, A, out.S, ph.state, cfg.executor)
            fit = evaluate_fit(p, A, out.S) if fit is None else fit
            out = StepOut(S=out.S, fit=fit, fit_S=out.S)
        S = slv.filtered(p, A, out.S, S_prev, ph.state, hold=ph.gauge)
        pens = p.penalty_values(A_prev if out.fit_at_old_A else A, out.fit_S)
        obj = out.fit + sum(pens.values())
        if not (np.isfinite(obj) and _finite(p, A, S, maps=out.fit_at_old_A)):
            if ext is not None and ext.A_acc is not None:  # the last accepted point
                A_prev, S_prev = ext.A_acc, ext.S_acc
            A[:, :] = A_prev
            _warn_nonfinite(it)
            return S_prev, "non-finite", done
        done = i
        elapsed = rec.elapsed0 + time.perf_counter() - ph.t_loop
        kept = True
        if ext is not None:
            S, kept = ext.judge(p, A, S, obj)
        if kept:
            fit = out.fit
            rec.history.add(obj, fit, pens, elapsed, ph.number)
        else:  # back at the accepted point (and the solver's state there): no change
            ph.state.update(before)  # to judge the stop by
            obj, fit, pens = rec.history.repeat_last(elapsed, ph.number)
        info = IterationInfo(it, obj, fit, pens, elapsed, A, S, ph.number)
        lagged = (out.fit_at_old_A and i == 1) or not kept
        try:
            stop = stop_reason(cfg, slv, info, prev, ph, lagged=lagged)
        except KeyboardInterrupt:  # raised by the callback (e.g. a Ctrl-C it noticed)
            _checkpoint_now(cfg, rec, slv, ph, A, S, (ph.number, it, obj, elapsed), True)
            raise
        if stop is not None:
            return S, stop, done
        prev = obj
        if cfg.checkpoint is not None and cfg.checkpoint.due():
            _checkpoint_now(cfg, rec, slv, ph, A, S, (ph.number, it, prev, elapsed), False)
    return S, "max_iter", done


def _checkpoint_now(
    cfg: Settings,
    rec: RestartRecord,
    slv: Solver,
    ph: Phase,
    A: Any,
    S: Any,
    at: tuple,
    interrupted: bool,
) -> None:
    """Save the iterate ``(A, S)`` at ``at``; on an interrupt only if the checkpointer
    saves on interrupts."""
    ckpt = cfg.checkpoint
    if ckpt is None or (interrupted and not ckpt.on_interrupt):
        return
    state, keys = ph.state, slv.persistent
    more = {**stop_state(ph), **ph.p.schedules()}
    if ph.ext is not None:  # its state too; the iterate saved is its accepted point
        more.update(ph.ext.to_state())
    state, keys = {**state, **more}, (*keys, *more)
    ckpt.save(rec.snapshot(A, S, state, keys, at))
    if interrupted:
        logger.warning("Interrupted: checkpoint at iteration %d in %s", at[1], ckpt.path)


def _persistent_copy(ph: Phase, slv: Solver) -> dict:
    """A copy of the solver's persistent state (step sizes, duals, directions)."""
    xp = ph.p.be.xp
    return {
        k: xp.asarray(v, copy=True) if hasattr(v, "shape") else v
        for k, v in ((k, ph.state[k]) for k in slv.persistent)
    }


def _guarded_step(
    ph: Phase,
    slv: Solver,
    A: Any,
    S: Any,
    A_prev: Any,
    before: dict | None,
    rec: RestartRecord,
    cfg: Settings,
    it: int,
    prev: float,
) -> StepOut:
    """One solver step; on Ctrl-C, checkpoint the iterate before the step (``before``:
    the solver's persistent state then), then re-raise."""
    ckpt = cfg.checkpoint
    if ckpt is None:
        return slv.step(ph.p, A, S, ph.state, cfg.executor)
    try:
        return slv.step(ph.p, A, S, ph.state, cfg.executor)
    except KeyboardInterrupt:
        if ckpt.on_interrupt:
            if ph.ext is not None and ph.ext.A_acc is not None:
                A_prev, S = ph.ext.A_acc, ph.ext.S_acc  # resumed, the step is done again
            A[:, :] = A_prev
            ph.state.update(before)
            elapsed = rec.elapsed0 + time.perf_counter() - ph.t_loop
            _checkpoint_now(cfg, rec, slv, ph, A, S, (ph.number, it - 1, prev, elapsed), True)
        raise


def _finite(p: Problem, A: Any, S: Any, *, maps: bool) -> bool:
    """Whether ``S`` (and ``A``, on every process) hold only finite numbers.

    ``A`` is checked only where the objective cannot see it: after filters on the maps,
    or when the solver's objective is that of the maps before its step (``maps``); else
    a non-finite map already made the objective non-finite, and the check would cost a
    round of communication per iteration on split pixels.
    """
    xp = p.be.xp
    if maps or p.filters["A"]:
        bad = 0.0 if bool(xp.all(xp.isfinite(A))) else 1.0
        if float(p.data.reduce(np.array([bad]))[0]) != 0.0:  # the maps' rows may be split
            return False
    return bool(xp.all(xp.isfinite(S)))


def _warn_nonfinite(it: int) -> None:
    warnings.warn(
        f"The objective became non-finite at iteration {it} (regularization too "
        "strong or badly scaled data?); stopped and returned the last finite iterate.",
        RuntimeWarning,
        stacklevel=6,
    )
