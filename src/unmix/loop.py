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

from ._backend import to_numpy
from ._linalg import svd_topk
from .executor import LowRankData
from .init import initialize
from .problem import Problem
from .solvers._frobenius import data_norm
from .solvers.base import Solver

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


def evaluate_fit(p: Problem, A: Any, S: Any) -> float:
    """Data-fit term at ``(A, S)`` (one pass).

    Plain Frobenius in float64 uses the Gram identity ``1/2 (||X||^2 - 2 <A^T X, S> +
    <A^T A, S S^T>)`` (one product per block, no temporaries of X's size); everything else
    is computed entry by entry.
    """
    be, xp = p.be, p.be.xp
    if p.loss.is_frobenius and p.link.is_identity and not p.data.weighted and (
        be.dtype == be.acc_dtype
    ):
        AtX = sum(be.acc(p.data.t_times(b, A[b.slice, :])) for b in p.data.blocks)
        S64 = be.acc(S)
        cross = float(xp.sum(AtX * S64))
        quad = float(xp.sum((be.acc(A.T @ A) @ S64) * S64))
        return max(0.5 * (p.data.norm2() - 2.0 * cross + quad), 0.0)
    total = 0.0
    for b in p.data.blocks:
        Y = p.link.forward(A[b.slice, :] @ S, xp)
        total += float(be.acc(p.loss.value(p.data.x(b), Y, p.data.w(b), xp=xp, tiny=be.tiny)))
    return total


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


def _compressed(p: Problem, rank: int, rng: np.random.Generator) -> Problem:
    be = p.be
    r = int(min(rank, p.data.n_pixels, p.data.n_channels))
    U, s, Vt = svd_topk(p.data.X, r, be, rng=rng, n_iter=2)
    data = LowRankData(U, s, Vt, be, block_size=p.data.n_pixels)
    return dataclasses.replace(p, data=data)


def _iterate(
    p: Problem,
    slv: Solver,
    A: Any,
    S: Any,
    hist: _History,
    it0: int,
    n_max: int,
    tol: float,
    cfg: Settings,
    t_loop: float,
    phase: int,
    prev: float | None = None,
    offset: float = 0.0,
) -> tuple[Any, str, int]:
    """Run up to ``n_max`` iterations on ``p``; returns ``(S, stop_reason, iterations)``.

    The relative change is measured against ``|objective| + offset`` (for the compressed
    phase, ``offset`` is the energy of ``X`` outside the kept subspace, so that ``tol``
    means the same as on ``X``).
    """
    xp = p.be.xp
    state = slv.setup(p, A, S)
    prev = hist.values["objective"][-1] if prev is None else prev
    stop, done = "max_iter", 0
    for i in range(1, n_max + 1):
        it = it0 + i
        A_prev, S_prev = xp.asarray(A, copy=True), S
        out = slv.step(p, A, S, state, cfg.executor)
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
        elapsed = time.perf_counter() - t_loop
        hist.add(obj, out.fit, pens, elapsed, phase)
        info = IterationInfo(it, obj, out.fit, pens, elapsed, A, S, phase)
        if cfg.callback is not None and cfg.callback(info):
            stop = "callback"
            break
        if slv.one_shot:
            stop = "tol"
            break
        lagged_first = out.fit_at_old_A and i == 1
        if not lagged_first and abs(prev - obj) <= tol * max(abs(prev) + offset, 1e-300):
            stop = "tol"
            break
        prev = obj
        if cfg.time_limit is not None and elapsed >= cfg.time_limit:
            stop = "time_limit"
            break
    return S, stop, done


def run_once(p: Problem, slv: Solver, init: Any, seed: int, cfg: Settings) -> dict:
    """One restart: start, iterate (compressed, then exact), evaluate the objective."""
    be, xp = p.be, p.be.xp
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    p_lr = _compressed(p, cfg.compress, rng) if cfg.compress else None
    if slv.one_shot:
        A = be.zeros((p.data.n_pixels, p.k))
        S = be.zeros((p.k, p.data.n_channels))
        slv.options.setdefault("seed", seed)
    else:
        fast = p_lr is not None and isinstance(init, str) and init.startswith(("nndsvd", "rand"))
        A, S = initialize(p_lr if fast else p, init, rng)
        A = xp.asarray(p.project("A", A), copy=True)
        S = p.project("S", S)
    fit0 = evaluate_fit(p, A, S) if not slv.one_shot else float("nan")
    for t in p.penalties["A"] + p.penalties["S"]:
        t.on_init(A, S, fit0)
    pens = p.penalty_values(A, S) if not slv.one_shot else {}
    hist = _History()
    hist.add(fit0 + sum(pens.values()), fit0, pens, 0.0, 0)
    balance0 = _balance(A, S, xp)
    t_init = time.perf_counter() - t0
    t_loop = time.perf_counter()
    n_iter = 0
    if p_lr is not None:
        outside = 0.5 * max(data_norm(p, cfg.executor) - data_norm(p_lr, cfg.executor), 0.0)
        S, stop, n_iter = _iterate(
            p_lr, slv, A, S, hist, 0, cfg.max_iter, cfg.tol, cfg, t_loop, phase=1, offset=outside
        )
    remaining = cfg.max_iter - n_iter
    if p_lr is None or (stop in ("tol", "max_iter") and remaining > 0):
        prev = None
        if p_lr is not None:  # the exact objective where the compressed phase ended
            prev = evaluate_fit(p, A, S) + sum(p.penalty_values(A, S).values())
        S, stop, done = _iterate(
            p, slv, A, S, hist, n_iter, max(remaining, 1), cfg.tol, cfg, t_loop, phase=2, prev=prev
        )
        n_iter += done
    t_iter = time.perf_counter() - t_loop
    final = evaluate_fit(p, A, S) + sum(p.penalty_values(A, S).values())
    history = hist.arrays()
    if slv.one_shot:
        history["objective"][0] = history["objective"][-1]
        history["fit"][0] = history["fit"][-1]
    else:
        _warn_collapsed(p, A, S)
        _warn_scale_drift(balance0, _balance(A, S, xp))
    logger.info("%s: %d iterations, objective %.6g (%s)", slv.name, n_iter, final, stop)
    return {
        "A": A,
        "S": S,
        "objective": final,
        "n_iter": n_iter,
        "stop_reason": stop,
        "history": history,
        "t_init": t_init,
        "t_iter": t_iter,
    }


def _balance(A: Any, S: Any, xp: Any) -> float:
    """``||A||_F / ||S||_F`` (how the scale is shared between the factors)."""
    na, ns = float(xp.sqrt(xp.sum(A * A))), float(xp.sqrt(xp.sum(S * S)))
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
    contrib = to_numpy(xp.sqrt(xp.sum(be.acc(A * A), axis=0) * xp.sum(be.acc(S * S), axis=1)))
    norm_x = p.data.norm2()
    dead = [int(j) for j in np.nonzero(contrib <= 1e-8 * max(np.sqrt(norm_x), 1e-300))[0]]
    if dead:
        warnings.warn(
            f"Components {dead} collapsed to zero (a regularization strength too large, "
            "or k larger than the data supports).",
            RuntimeWarning,
            stacklevel=4,
        )
