"""Truncated SVD / PCA in the same framework: ``X ~= A S`` with ``S S^T = I``.

Objective: ``1/2 ||X - A S||_F^2`` subject to orthonormal rows of ``S`` (the
:class:`~unmix.model.Orthogonal` constraint).  Solved in one step by the leading
singular triplets: ``A = U diag(s)``, ``S = Vt``.  With centering (preprocessing
``Center()``) this is PCA; compare it side by side with NMF on the same data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...executors.base import Executor
from .._problem import Problem
from ._base import Solver, StepOut, register

__all__ = ["SVD"]


@register
class SVD(Solver):
    """Exact (or randomized, for large X) truncated SVD.

    Options
    -------
    seed : int
        Seed of the randomized range finder (default: drawn from the restart's seed).
    """

    name = "svd"
    option_names = frozenset({"seed"})
    takes_penalties = False

    def accepts(self, c: Any, target: str) -> bool:
        """The leading singular triplets: only orthonormal endmembers."""
        return target == "S" and c.is_orthonormal

    one_shot = True

    def step(self, p: Problem, A: Any, S: Any, state: dict, executor: Executor) -> StepOut:
        be, xp = p.be, p.be.xp
        seed = int(self.options.get("seed", 0))
        U, s, Vt = p.data.svd(p.k, np.random.default_rng(seed), n_iter=4, exact=True)
        A[:, :] = U * s[None, :]
        xx = p.data.norm2()
        fit = max(0.5 * (xx - float(xp.sum(be.acc(s) ** 2))), 0.0)
        return StepOut(S=Vt, fit=fit, fit_S=Vt)
