"""Maps of new pixels for fitted endmembers: ``A = argmin loss(X, A S)`` with ``S`` fixed."""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np

from .._backend import backend_of, to_numpy
from .._validation import ensure_2d_float, finite_report
from ..blocks import checked_sparse_rows, is_device_sparse, is_sparse
from ..model import FixedEndmembers, NonNegative
from ..result import Result
from ..spectral_image import SpectralImage
from ._factorize import factorize

logger = logging.getLogger("unmix")

__all__ = ["fit_maps"]


def fit_maps(
    X: Any,
    result: Any,
    *,
    constraints: Any = None,
    max_iter: int = 1000,
    tol: float = 1e-7,
) -> Any:
    """Abundance maps (pixels, k) of ``X`` (pixels, channels) for given endmembers.

    Parameters
    ----------
    X : array (pixels, channels) or SpectralImage
        The spectra to unmix (dense or sparse; an image is unfolded).
    result : Result or array (k, channels)
        A fitted :class:`~unmix.Result` (its loss, link, preprocessing, constraints and
        pixel-local penalties on ``A`` are used; regularizers that couple pixels on the
        scan grid are dropped: new pixels have no grid), or the endmembers ``S`` themselves
        (Frobenius loss, ``A >= 0``).
    constraints : sequence of Constraint, optional
        Constraints on the maps that replace the fit's (e.g. ``[MaxActive(2)]``: at most
        two endmembers per pixel, each pixel refitted exactly over its best support); the
        maps stay non-negative when the fit's were (``NonNegative`` is added unless one
        of these already implies it).
    max_iter, tol : int, float
        The iterations of a fit that is not solved in one step.

    Plain non-negative least squares is solved exactly (block principal pivoting), so each
    pixel's map does not depend on the other pixels.
    """
    args, S, k = _fit_args(result)
    X = _checked(X)
    if X.shape[1] != S.shape[1]:
        raise ValueError(f"X has {X.shape[1]} channels but the endmembers have {S.shape[1]}.")
    steps = [copy.deepcopy(s) for s in args["preprocessing"]]
    for step in steps:
        S = step.to_model_S(S)
    Xp = _preprocessed(X, steps)
    be = _backend(Xp)
    S = be.xp.astype(be.asarray(S), be.dtype)
    given = args["constraints"] if constraints is None else constraints
    constraints = _on_maps(given)
    if not any(c.implies_nonneg for c in constraints) and any(
        c.implies_nonneg for c in _on_maps(args["constraints"])
    ):
        constraints.insert(0, NonNegative(target="A"))  # the fit's maps were >= 0
    exact = all(c.is_orthant or c.solves_rows for c in constraints)  # one exact solve
    if args["nonneg_S"]:
        constraints.append(NonNegative(target="S"))
    constraints.append(FixedEndmembers(S))
    regs = [r for r in args["regularizers"] if r.target == "A"]
    dropped = [type(r).__name__ for r in regs if r.couples_pixels]
    if dropped:
        logger.info("fit_maps: dropping %s (new pixels have no scan grid).", dropped)
    regs = [r for r in regs if not r.couples_pixels]
    solver = args["solver"] if given is args["constraints"] else "auto"
    plain = exact and args["nonneg_S"] and all(r.quadratic for r in regs)
    if solver in ("hals", "bpp", "auto") and plain:
        solver, max_iter = "bpp", 1  # the maps' subproblem is an exact NNLS
    res = factorize(
        Xp,
        k,
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


def _on_maps(constraints: Any) -> list:
    """The parts of ``constraints`` on the maps ``A``."""
    return [part for c in constraints for part in c.parts() if part.target == "A"]


def _fit_args(result: Any) -> tuple[dict, Any, int]:
    """``(fit arguments, S, k)`` of a fitted Result, or of endmembers given as an array."""
    if isinstance(result, Result):
        args = getattr(result, "fit_args", None)
        if args is None:
            raise ValueError(
                "This result was loaded from a file; fit_maps needs a fitted result, or "
                "pass its endmembers: fit_maps(X, result.S)."
            )
        return args, result.S, result.k
    S = ensure_2d_float(result, name="S")  # endmembers (k, channels)
    args = {
        "loss": None,
        "link": None,
        "constraints": [NonNegative(target="A")],
        "regularizers": [],
        "preprocessing": [],
        "solver": "auto",
        "solver_options": {},
        "nonneg_S": bool(np.all(to_numpy(S) >= 0)),
    }
    return args, S, int(S.shape[0])


def _preprocessed(X: Any, steps: list) -> Any:
    """``X`` through the fit's preprocessing steps (fitted: transform only)."""
    if steps and is_device_sparse(X):
        raise ValueError(
            "The fit's preprocessing does not take a torch sparse X: pass SciPy CSR (on the "
            "host) or a dense tensor."
        )
    for step in steps:
        X = step.transform(X, None)
    return X


def _backend(X: Any) -> Any:
    """The backend of ``X``: a host CSR's dtype on NumPy, a device CSR's values'."""
    if is_sparse(X):
        return backend_of(np.empty(0, X.dtype))
    return backend_of(X.values if is_device_sparse(X) else X)


def _checked(X: Any) -> Any:
    """``X`` as a finite 2-D float array, or sparse ``X`` as CSR with finite entries (an
    image from :func:`unmix.load`: its (pixels, channels) matrix)."""
    if isinstance(X, SpectralImage):
        X = X.unfold()
    sparse = checked_sparse_rows(X)
    if sparse is not None:
        return sparse
    X = ensure_2d_float(X)
    finite_report(X)
    return X
