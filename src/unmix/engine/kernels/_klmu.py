"""The fused one-pass KL multiplicative update for dense blocks (numba).

Objective (generalized Kullback-Leibler, ``Y = A S``, ``A, S >= 0``)::

    sum_ij X_ij log(X_ij / Y_ij) - X_ij + Y_ij  +  l1 sum A

The reference path of :class:`~unmix.engine.solvers.MU` makes, per pixel block, about
seven NumPy/BLAS calls with block-sized temporaries: ``A_b S``, the ratio
``X_b / (A_b S)``, its product with ``S^T``, the model and the ratio again at the new
maps, ``A_b^T (X_b / Y_b)`` and the fit (a logarithm an entry).  The compiled kernel
(:mod:`._klmu_numba`) does the same work a few pixel rows at a time with the rows' model
in L1: one read of ``X_b``, four products of the size of ``A_b S`` (the model twice, the
numerator of the maps' update and ``A_b^T Q``), two divisions and one vectorized
logarithm an entry.  It returns the sums the endmembers' update needs, in float64 as the
reference does, so the rest of the iteration is unchanged and the iterates are the
reference's up to rounding.

Where it runs: NumPy X (in memory, C-contiguous, or streamed block by block) of float32
or float64, no weights or mask, the identity link, only non-negativity on ``A`` and
penalties on ``A`` whose gradient is one constant (L1).  ``kernel="auto"`` takes it from
:data:`~._onepass.AUTO_MIN_ENTRIES` entries of ``X`` when numba is installed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...blocks import LowRankData
from ._onepass import AUTO_MIN_ENTRIES, KERNELS, compiled_pass_reasons

__all__ = ["kl_mu_pass", "reasons", "resolve"]


def reasons(p: Any) -> list[str]:
    """Why the fused KL kernel cannot run ``p`` (empty when it can)."""
    out = compiled_pass_reasons(p)
    if p.loss.beta != 1:
        out.append(f"loss={p.loss.name!r} (the fused kernels: Frobenius and KL)")
    return out


def resolve(option: Any, p: Any) -> bool:
    """Whether MU's KL step runs the fused kernel for ``kernel=option``.

    ``"auto"``: when numba is installed, the problem qualifies and ``X`` has at least
    :data:`AUTO_MIN_ENTRIES` entries (below, the JIT cache load outweighs the gain);
    ``"onepass"``: always, or a ValueError naming why not; ``"blas"``: never (the
    reference NumPy/BLAS path).  The compressed phase of ``compress=`` never does.
    """
    option = "auto" if option is None else option
    if option not in KERNELS:
        raise ValueError(f"kernel={option!r}: expected one of {', '.join(map(repr, KERNELS))}")
    if option == "blas" or isinstance(p.data, LowRankData):
        return False
    why = reasons(p)
    if option == "onepass" and why:
        raise ValueError(f"kernel='onepass' cannot run this problem: {'; '.join(why)}")
    if option == "auto" and p.data.n_pixels * p.data.n_channels < AUTO_MIN_ENTRIES:
        return False
    return not why


def kl_mu_pass(p: Any, A: Any, S: Any, executor: Any) -> dict:
    """One pass of the KL MU: update ``A`` in place (``A <- A * (Q S^T) / (1 S^T + l1)``
    with ``Q = X / (A S)``); return the float64 sums at the new maps: ``num = A^T Q``,
    ``den = A^T 1`` (k x 1) and ``fit``, the KL divergence at ``(A, S)``."""
    from ._klmu_numba import block_kl_mu

    data = p.data
    dt = np.dtype(p.be.dtype)
    tiny = dt.type(p.be.tiny)
    S_ = np.ascontiguousarray(S, dtype=dt)
    l1 = p.constant_penalty_gradient("A") or 0.0
    den = np.ascontiguousarray(np.maximum(np.sum(S_, axis=1) + l1, tiny), dtype=dt)
    k, m = int(S_.shape[0]), int(data.n_channels)

    def kernel(block: Any) -> dict:
        Ab = A[block.slice, :]
        work = Ab if Ab.flags.c_contiguous else np.ascontiguousarray(Ab)
        Xb = np.ascontiguousarray(data.x(block), dtype=dt)  # one read when streamed
        P = np.empty((k, m), dt)
        colsum = np.empty(k, np.float64)
        fit = block_kl_mu(Xb, work, S_, den, tiny, P, colsum)
        if work is not Ab:
            A[block.slice, :] = work
        return {"num": P.astype(np.float64), "den": colsum[:, None], "fit": np.asarray(fit)}

    return executor.map_reduce(kernel, data.blocks)
