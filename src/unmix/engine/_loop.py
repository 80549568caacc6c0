"""The iteration loop of one restart: initialize, iterate, stop, evaluate.

With ``compress=r`` the loop first iterates on a rank-``r`` truncated SVD of ``X``
(low-rank-approximation NMF, Zhou, Cichocki & Xie 2012: each pass costs
``O((pixels + channels) r k)`` instead of ``O(pixels channels k)``), then refines on ``X``
itself until ``tol``.  ``history["phase"]`` is 1 for compressed and 2 for exact
iterations; objective values of phase 1 refer to the compressed data.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import to_numpy
from ..blocks._lowrank import LowRankData
from ._init import initialize
from ._problem import Problem
from .solvers._base import Solver
from .solvers._frobenius import data_norm

logger = logging.getLogger("unmix")

__all__ = ["IterationInfo", "Settings", "evaluate_fit", "run_once"]


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


def evaluate_fit(p: Problem, A: Any, S: Any) -> float:
    """Data-fit term at ``(A, S)`` (one pass).

    Plain Frobenius in float64 uses the Gram identity ``1/2 (||X||^2 - 2 <A^T X, S> +
    <A^T A, S S^T>)`` (one product per block, no temporaries of X's size); everything else
    is computed entry by entry.
    """
    be, xp = p.be, p.be.xp
    if (
        p.loss.is_frobenius
        and p.link.is_identity
        and not p.data.weighted
        and (be.dtype == be.acc_dtype)
    ):
        AtX = sum(be.acc(p.data.t_times(b, A[b.slice, :])) for b in p.data.blocks)
        S64 = be.acc(S)
        cross = float(xp.sum(AtX * S64)) if p.data.blocks else 0.0
        quad = float(xp.sum((be.acc(A.T @ A) @ S64) * S64))
        cross, quad = (float(v) for v in p.data.reduce(np.array([cross, quad])))
        return max(0.5 * (p.data.norm2() - 2.0 * cross + quad), 0.0)
    total = 0.0
    for b in p.data.blocks:
        Y = p.link.forward(A[b.slice, :] @ S, xp)
        total += float(be.acc(p.loss.value(p.data.x(b), Y, p.data.w(b), xp=xp, tiny=be.tiny)))
    return float(p.data.reduce(total))


def _all_finite(M: Any, xp: Any) -> bool:
    return bool(xp.all(xp.isfinite(M)))


class _History:
    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {"objective": [], "fit": [], "time": [], "phase": []}

    def add(self, obj: float, fit: float, pens: dict, elapsed: float, phase: int) -> None:
        n = len(self.values["objective"])
        for key, val in (("objective", obj), ("fit", fit), ("time", elapsed), ("phase", phase)):
            self.values[key].append(val)
        for key, val in pens.items():
            self.values.setdefault(key, [float("nan")] * n).append(val)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=float) for k, v in self.values.items()}

    @classmethod
    def from_arrays(cls, arrays: dict) -> _History:
        h = cls()
        h.values = {k: [float(x) for x in np.asarray(v)] for k, v in arrays.items()}
        return h


def _compressed(p: Problem, rank: int, rng: np.random.Generator) -> Problem:
    be = p.be
    r = int(min(rank, p.data.n_total, p.data.n_channels))
    U, s, Vt = p.data.svd(r, rng, n_iter=2)
    data = LowRankData(
        U,
        s,
        Vt,
        be,
        block_size=p.data.block_size,  # the same block grid
        executor=p.data.executor,
        n_total=p.data.n_total,
    )
    return dataclasses.replace(p, data=data)


@dataclass
class _Run:
    """Mutable bookkeeping of one restart (what a checkpoint needs besides A and S)."""

    restart: int
    seed: int
    A0: Any
    S0: Any
    fit0: float
    t_init: float
    elapsed0: float = 0.0
    resume_state: dict | None = None


def _snapshot(
    run: _Run,
    A: Any,
    S: Any,
    hist: _History,
    state: dict,
    slv: Solver,
    phase: int,
    iteration: int,
    prev: float,
    elapsed: float,
) -> dict:
    return {
        "A": A,
        "S": S,
        "A0": run.A0,
        "S0": run.S0,
        "history": hist.arrays(),
        "state": {k: state[k] for k in slv.persistent},
        "restart": run.restart,
        "seed": run.seed,
        "phase": phase,
        "iteration": iteration,
        "prev": prev,
        "fit0": run.fit0,
        "t_init": run.t_init,
        "elapsed": elapsed,
    }


def _restore_state(state: dict, saved: dict | None, p: Problem) -> None:
    for key, value in (saved or {}).items():
        if key in state and hasattr(state[key], "shape"):
            state[key] = p.be.asarray(value)
        elif key in state:
            state[key] = type(state[key])(value)


def _iterate(
    p: Problem,
    slv: Solver,
    A: Any,
    S: Any,
    hist: _History,
    it0: int,
    n_max: int,
    cfg: Settings,
    t_loop: float,
    phase: int,
    run: _Run,
    prev: float | None = None,
    offset: float = 0.0,
) -> tuple[Any, str, int]:
    """Run up to ``n_max`` iterations on ``p``; returns ``(S, stop_reason, iterations)``.

    The relative change is measured against ``|objective| + offset`` (for the compressed
    phase, ``offset`` is the energy of ``X`` outside the kept subspace, so that ``tol``
    means the same as on ``X``).  With a checkpointer in ``cfg``, the iterate is saved
    periodically and on Ctrl-C (then ``KeyboardInterrupt`` propagates).
    """
    xp = p.be.xp
    state = slv.setup(p, A, S)
    _restore_state(state, run.resume_state, p)
    run.resume_state = None
    prev = hist.values["objective"][-1] if prev is None else prev
    stop, done, ckpt = "max_iter", 0, cfg.checkpoint
    for i in range(1, n_max + 1):
        it = it0 + i
        A_prev, S_prev = xp.asarray(A, copy=True), S
        kept = (
            {
                k: xp.asarray(state[k], copy=True) if hasattr(state[k], "shape") else state[k]
                for k in slv.persistent
            }
            if ckpt is not None
            else {}
        )
        try:
            out = slv.step(p, A, S, state, cfg.executor)
        except KeyboardInterrupt:
            if ckpt is not None and ckpt.on_interrupt:
                A[:, :] = A_prev
                state.update(kept)
                elapsed = run.elapsed0 + time.perf_counter() - t_loop
                ckpt.save(
                    _snapshot(run, A, S_prev, hist, state, slv, phase, it - 1, prev, elapsed)
                )
                logger.warning("Interrupted: checkpoint at iteration %d in %s", it - 1, ckpt.path)
            raise
        S = out.S
        if p.filters["A"]:
            A[:, :] = p.project("A", p.filter("A", A))
        if p.filters["S"]:
            S = p.project("S", p.filter("S", S))
        pens = p.penalty_values(A_prev if out.fit_at_old_A else A, out.fit_S)
        obj = out.fit + sum(pens.values())
        if not (np.isfinite(obj) and _all_finite(S, xp)):
            A[:, :] = A_prev
            S, stop = S_prev, "non-finite"
            warnings.warn(
                f"The objective became non-finite at iteration {it} (regularization too "
                "strong or badly scaled data?); stopped and returned the last finite iterate.",
                RuntimeWarning,
                stacklevel=4,
            )
            break
        done = i
        elapsed = run.elapsed0 + time.perf_counter() - t_loop
        hist.add(obj, out.fit, pens, elapsed, phase)
        info = IterationInfo(it, obj, out.fit, pens, elapsed, A, S, phase)
        if cfg.callback is not None and cfg.callback(info):
            stop = "callback"
            break
        if slv.one_shot:
            stop = "tol"
            break
        lagged_first = out.fit_at_old_A and i == 1
        if not lagged_first and abs(prev - obj) <= cfg.tol * max(abs(prev) + offset, 1e-300):
            stop = "tol"
            break
        prev = obj
        if cfg.time_limit is not None and elapsed >= cfg.time_limit:
            stop = "time_limit"
            break
        if ckpt is not None and ckpt.due():
            ckpt.save(_snapshot(run, A, S, hist, state, slv, phase, it, prev, elapsed))
    return S, stop, done


def _start(
    p: Problem, p_lr: Problem | None, slv: Solver, init: Any, rng: np.random.Generator
) -> tuple[Any, Any]:
    be, xp = p.be, p.be.xp
    if slv.one_shot:
        slv.options.setdefault("seed", int(rng.integers(2**31 - 1)))
        return be.zeros((p.data.n_pixels, p.k)), be.zeros((p.k, p.data.n_channels))
    fast = p_lr is not None and isinstance(init, str) and init.startswith(("nndsvd", "rand"))
    A, S = initialize(p_lr if fast else p, init, rng)
    return xp.asarray(p.project("A", A), copy=True), p.project("S", S)


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
    be, xp = p.be, p.be.xp
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    p_lr = _compressed(p, cfg.compress, rng) if cfg.compress else None
    if snap is None:
        A, S = _start(p, p_lr, slv, init, rng)
        fit0 = evaluate_fit(p, A, S) if not slv.one_shot else float("nan")
        keep = cfg.checkpoint is not None
        run = _Run(restart, seed, xp.asarray(A, copy=True) if keep else None, S, fit0, 0.0)
        hist, start_phase, n_iter, prev = _History(), 0, 0, None
    else:
        A, S = xp.asarray(be.asarray(snap["A"]), copy=True), be.asarray(snap["S"])
        run = _Run(
            restart,
            seed,
            be.asarray(snap["A0"]),
            be.asarray(snap["S0"]),
            snap["fit0"],
            snap["t_init"],
            snap["elapsed"],
            snap["state"],
        )
        hist = _History.from_arrays(snap["history"])
        start_phase, n_iter, prev = snap["phase"], snap["iteration"], snap["prev"]
    for t in p.penalties["A"] + p.penalties["S"]:
        t.on_init(run.A0 if run.A0 is not None else A, run.S0, run.fit0)
    if snap is None:
        pens = p.penalty_values(A, S) if not slv.one_shot else {}
        hist.add(run.fit0 + sum(pens.values()), run.fit0, pens, 0.0, 0)
        run.t_init = time.perf_counter() - t0
    balance0 = _balance(p, run.A0 if run.A0 is not None else A, run.S0)
    t_loop = time.perf_counter()
    stop = "max_iter"
    if p_lr is not None and start_phase <= 1:
        outside = 0.5 * max(data_norm(p, cfg.executor) - data_norm(p_lr, cfg.executor), 0.0)
        S, stop, done = _iterate(
            p_lr,
            slv,
            A,
            S,
            hist,
            n_iter,
            cfg.max_iter - n_iter,
            cfg,
            t_loop,
            1,
            run,
            prev=prev,
            offset=outside,
        )
        n_iter, prev = n_iter + done, None
    remaining = cfg.max_iter - n_iter
    if p_lr is None or start_phase == 2 or (stop in ("tol", "max_iter") and remaining > 0):
        if p_lr is not None and prev is None:  # exact objective where phase 1 ended
            prev = evaluate_fit(p, A, S) + sum(p.penalty_values(A, S).values())
        S, stop, done = _iterate(
            p, slv, A, S, hist, n_iter, max(remaining, 1), cfg, t_loop, 2, run, prev=prev
        )
        n_iter += done
    t_iter = run.elapsed0 + time.perf_counter() - t_loop
    final = evaluate_fit(p, A, S) + sum(p.penalty_values(A, S).values())
    history = hist.arrays()
    if slv.one_shot:
        history["objective"][0] = history["objective"][-1]
        history["fit"][0] = history["fit"][-1]
    else:
        _warn_collapsed(p, A, S)
        _warn_scale_drift(balance0, _balance(p, A, S))
    logger.info("%s: %d iterations, objective %.6g (%s)", slv.name, n_iter, final, stop)
    return {
        "A": A,
        "S": S,
        "objective": final,
        "n_iter": n_iter,
        "stop_reason": stop,
        "history": history,
        "t_init": run.t_init,
        "t_iter": t_iter,
    }


def _balance(p: Problem, A: Any, S: Any) -> float:
    """``||A||_F / ||S||_F`` (how the scale is shared between the factors)."""
    xp = p.be.xp
    na = np.sqrt(float(p.data.reduce(float(xp.sum(A * A)))))
    ns = float(xp.sqrt(xp.sum(S * S)))
    return na / ns if ns > 0 else float("inf")


def _warn_scale_drift(before: float, after: float) -> None:
    if not (np.isfinite(before) and before > 0 and np.isfinite(after) and after > 0):
        return
    if abs(np.log10(after / before)) > 8:
        warnings.warn(
            f"The factors' scale drifted by 1e{np.log10(after / before):+.0f} (||A|| / ||S||): "
            "a penalty on one factor without a norm constraint on the other is "
            "scale-ambiguous; add UnitNorm() on S (or penalize both factors).",
            RuntimeWarning,
            stacklevel=4,
        )


def _warn_collapsed(p: Problem, A: Any, S: Any) -> None:
    """Warn about components whose contribution ||a_j|| ||s_j|| is negligible."""
    xp, be = p.be.xp, p.be
    col = np.asarray(to_numpy(p.data.reduce(xp.sum(be.acc(A * A), axis=0))))
    contrib = np.sqrt(col * np.asarray(to_numpy(xp.sum(be.acc(S * S), axis=1))))
    norm_x = p.data.norm2()
    dead = [int(j) for j in np.nonzero(contrib <= 1e-8 * max(np.sqrt(norm_x), 1e-300))[0]]
    if dead:
        warnings.warn(
            f"Components {dead} collapsed to zero (a regularization strength too large, "
            "or k larger than the data supports).",
            RuntimeWarning,
            stacklevel=4,
        )
