"""Maps of new pixels for fitted endmembers: ``A = argmin loss(X, A S)`` with ``S`` fixed."""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np

from .._backend import backend_of
from .._validation import ensure_2d_float, finite_report
from ..blocks import as_csr_rows, check_sparse_finite, is_sparse
from ..model import FixedEndmembers, NonNegative
from ..result import Result
from ._factorize import factorize

logger = logging.getLogger("unmix")

__all__ = ["fit_maps"]


def fit_maps(X: Any, result: Result, *, max_iter: int = 1000, tol: float = 1e-7) -> Any:
    """Abundance maps (pixels, k) of ``X`` (pixels, channels) for ``result``'s endmembers.

    Uses the fit's loss, link, preprocessing and the constraints and (pixel-local)
    penalties on ``A``; regularizers that couple pixels on the scan grid are dropped
    (new pixels have no grid).  Plain non-negative least squares is solved exactly (block
    principal pivoting), so each pixel's map does not depend on the other pixels.
    """
    args = getattr(result, "fit_args", None)
    if args is None:
        raise ValueError("This result was loaded from a file; fit_maps needs a fitted result.")
    X = _checked(X)
    if X.shape[1] != result.S.shape[1]:
        raise ValueError(
            f"X has {X.shape[1]} channels but the endmembers have {result.S.shape[1]}."
        )
    steps = [copy.deepcopy(s) for s in args["preprocessing"]]
    S = result.S
    for step in steps:
        S = step.to_model_S(S)
    Xp = X
    for step in steps:
        Xp = step.transform(Xp, None)
    be = backend_of(np.empty(0, Xp.dtype) if is_sparse(Xp) else Xp)
    S = be.xp.astype(S, be.dtype)
    constraints = [part for c in args["constraints"] for part in c.parts() if part.target == "A"]
    exact = all(c.is_orthant for c in constraints)
    if args["nonneg_S"]:
        constraints.append(NonNegative(target="S"))
    constraints.append(FixedEndmembers(S))
    regs = [r for r in args["regularizers"] if r.target == "A"]
    dropped = [type(r).__name__ for r in regs if r.couples_pixels]
    if dropped:
        logger.info("fit_maps: dropping %s (new pixels have no scan grid).", dropped)
    regs = [r for r in regs if not r.couples_pixels]
    solver = args["solver"]
    if solver in ("hals", "bpp") and exact and all(r.quadratic for r in regs):
        solver, max_iter = "bpp", 1  # the maps' subproblem is an exact NNLS
    res = factorize(
        Xp,
        result.k,
        loss=args["loss"],
        link=args["link"],
        solver=solver,
        constraints=constraints,
        regularizers=regs,
        init=(None, S),
        max_iter=max_iter,
        tol=tol,
        solver_options=args["solver_options"],
    )
    A = res.A
    for step in reversed(steps):
        A, _ = step.undo_factors(A, S)
    return A


def _checked(X: Any) -> Any:
    """``X`` as a finite 2-D float array, or sparse ``X`` as CSR with finite entries."""
    if is_sparse(X):
        X = as_csr_rows(X)
        check_sparse_finite(X)
        return X
    X = ensure_2d_float(X)
    finite_report(X)
    return X
