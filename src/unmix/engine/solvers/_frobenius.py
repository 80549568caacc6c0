"""The one data pass shared by the Frobenius solvers (HALS, ANLS-BPP, AO-ADMM).

Objective (weights ``w_i`` per pixel, ``c_j`` per channel, binary mask ``M``)::

    1/2 sum_ij M_ij w_i c_j (X_ij - (A S)_ij)^2 + penalties

Per block ``b`` the pass reads ``X_b`` once: (masked entries are imputed with the current
model, an EM / majorize-minimize step), forms ``X_b diag(c) S^T``, lets the solver update
``A_b``, then adds ``A_b^T W_b X_b`` and ``A_b^T W_b A_b`` to the sums that update ``S``.
Without a mask the data-fit value is then free by the Gram identity::

    1/2 (||X||_w^2 - 2 <A^T W X, S diag(c)> + <A^T W A, S diag(c) S^T>)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...executors.base import Block, Executor
from .._problem import Problem

__all__ = ["fit_from_sums", "fit_of", "frobenius_pass", "gram_A"]


def gram_A(p: Problem, S: Any) -> tuple[Any, Any]:
    """``(S diag(c), S diag(c) S^T)``: what the A-update of every block needs."""
    be = p.be
    cw = p.data.channel_w
    Sc = S if cw is None else S * cw
    return Sc, be.acc(Sc @ S.T)


def frobenius_pass(
    p: Problem,
    A: Any,
    S: Any,
    executor: Executor,
    update_block: Callable[[Block, Any, Any], Any],
    extra: Callable[[Block, Any], dict] | None = None,
) -> dict:
    """Run the one pass; ``update_block(block, A_b, X_b diag(c) S^T) -> new A_b``.

    Returns the sums ``AtX`` (k x channels) and ``AtA`` (k x k) in the accumulation dtype,
    and with a mask also ``fit`` (the masked data-fit at the new ``A`` and the old ``S``);
    plus the sums of ``extra(block, new A_b)`` (a dict of arrays) when given.
    """
    be, data, xp = p.be, p.data, p.be.xp
    Sc, _ = gram_A(p, S)

    def kernel(block: Block) -> dict:
        sl = block.slice
        Ab = A[sl, :]
        if data.mask is None:
            Ab = update_block(block, Ab, data.x_times(block, Sc.T))
        else:
            Xb = xp.where(data.mask[sl, :], data.x(block), Ab @ S)  # EM imputation
            Ab = update_block(block, Ab, Xb @ Sc.T)
        A[sl, :] = Ab
        pw = data.pw(block)
        Aw = Ab if pw is None else Ab * pw
        AtX = data.t_times(block, Aw) if data.mask is None else Aw.T @ Xb
        out = {"AtX": be.acc(AtX), "AtA": be.acc(Aw.T @ Ab)}
        if data.mask is not None:
            W = data.w(block)
            R = data.x(block) - Ab @ S
            out["fit"] = 0.5 * xp.sum(be.acc(W * R * R))
        if extra is not None:
            out.update(extra(block, Ab))
        return out

    return executor.map_reduce(kernel, data.blocks)


def fit_from_sums(p: Problem, sums: dict, S: Any, xx: float) -> float:
    """Data-fit at the new ``A`` and ``S`` from the pass sums (Gram identity)."""
    be, xp = p.be, p.be.xp
    S64 = be.acc(S)
    cw = p.data.channel_w
    Sc = S64 if cw is None else S64 * be.acc(cw)
    cross = xp.sum(sums["AtX"] * Sc)
    quad = xp.sum((sums["AtA"] @ S64) * Sc)
    return max(0.5 * (xx - 2.0 * float(cross) + float(quad)), 0.0)


def fit_of(p: Problem, sums: dict, S_new: Any, S_old: Any, xx: float) -> tuple[float, Any]:
    """``(fit, S at which it was evaluated)`` for a Frobenius pass."""
    if "fit" in sums:
        return float(sums["fit"]), S_old
    return fit_from_sums(p, sums, S_new, xx), S_new
