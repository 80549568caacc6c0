"""The KL multiplicative-update pass over sparse ``X`` (CSR blocks), ``O(nnz k)`` a block.

Objective (generalized KL, separable weights ``w_i c_j``, ``Y = A S``)::

    sum_ij w_i c_j (X_ij log(X_ij / Y_ij) - X_ij + Y_ij)

Its gradient with respect to ``Y`` is ``W (1 - X / Y)``: the ratio ``X / Y`` is zero
wherever ``X`` is, so the multiplicative update's numerators ``(W X / Y) S^T`` and
``A^T (W X / Y)`` need the model at the nonzeros only, and its denominators
``(W 1) S^T = w (S c)^T`` and ``A^T (W 1) = (A^T w) c^T`` are rank one.  The data-fit
is the nonzeros' part plus ``w^T A S c``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...executors.base import Block, Executor
from .._problem import Problem

__all__ = ["kl_sparse_pass", "uses_sparse_kl"]


def uses_sparse_kl(p: Problem) -> bool:
    """True when ``p`` is KL on sparse ``X`` with at most separable weights."""
    data = p.data
    return (
        bool(getattr(data, "sparse", False))
        and p.loss.beta == 1
        and p.link.is_identity
        and not data.elementwise
    )


def kl_sparse_pass(
    p: Problem,
    A: Any,
    S: Any,
    executor: Executor,
    update_block: Callable[[slice, Any, Any, Any], Any],
) -> dict:
    """Update the maps block by block; return the sums that update ``S``.

    ``update_block(rows, A_b, num, den) -> new A_b`` gets the numerator ``(W X / Y) S^T``
    and denominator ``(W 1) S^T`` of the block.  Returns ``num`` ``(k, channels)``,
    ``den`` (``(k, 1)``, or ``(k, channels)`` with channel weights) and ``fit`` (the
    data-fit at the new maps and the old ``S``).
    """
    data, be, xp = p.data, p.be, p.be.xp
    tiny = float(be.tiny)
    S64 = be.acc(S)
    cw = None if data.channel_w is None else be.acc(data.channel_w)
    s_row = xp.sum(S64 if cw is None else S64 * cw, axis=1)[None, :]  # (S c)^T

    def ratio(block: Block, Ab: Any) -> tuple[Any, Any]:
        y = xp.clip(data.model_at_nonzeros(block, Ab, S64), min=tiny)
        x = data.values(block)
        w = data.entry_weights(block)
        return (x / y if w is None else w * x / y), y

    def kernel(block: Block) -> dict:
        sl = block.slice
        pw = data.pw(block)
        r, _ = ratio(block, A[sl, :])
        den = s_row if pw is None else be.acc(pw) * s_row
        Ab = update_block(sl, A[sl, :], data.values_times(block, r, S64.T), den)
        A[sl, :] = Ab
        r, y = ratio(block, Ab)
        Aw = be.acc(Ab)
        if pw is not None:
            Aw = Aw * be.acc(pw)
        col = xp.sum(Aw, axis=0)[:, None]
        fit = data.kl_at_nonzeros(block, y) + float(col[:, 0] @ (s_row[0]))
        return {
            "num": data.values_t_times(block, r, be.acc(Ab)).T,
            "den": col if cw is None else col * cw,
            "fit": fit,
        }

    return executor.map_reduce(kernel, data.blocks)
