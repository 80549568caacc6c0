"""Solvers.  Each declares what it supports; see :func:`unmix.engine.solvers.get_solver`."""

from __future__ import annotations

from typing import Any

from ._admm import ADMM
from ._base import REGISTRY, Solver, StepOut, solvers_supporting
from ._bpp import BPP
from ._gradient import Gradient
from ._hals import HALS
from ._kl_cd import KLCD
from ._mu import MU
from ._svd import SVD
from ._sweeps import PenaltyRows, hals_sweeps

__all__ = [
    "ADMM",
    "BPP",
    "HALS",
    "KLCD",
    "MU",
    "REGISTRY",
    "SVD",
    "Gradient",
    "PenaltyRows",
    "Solver",
    "StepOut",
    "get_solver",
    "hals_sweeps",
    "solvers_supporting",
]


def get_solver(name: str | Solver, **options: Any) -> Solver:
    """A solver instance by name (``'mu'``, ``'hals'``, ``'bpp'``, ``'admm'``,
    ``'gradient'``, ``'svd'``, ``'klcd'``) or pass-through of an instance (whose options are its
    own: ``options`` with an instance are refused, not silently dropped)."""
    if isinstance(name, Solver):
        if options:
            raise ValueError(
                f"solver_options {sorted(options)} given with a Solver instance: pass them "
                f"to the instance instead, e.g. {type(name).__name__}(**options)."
            )
        return name
    try:
        return REGISTRY[name](**options)
    except KeyError:
        raise ValueError(
            f"solver={name!r} is unknown; choose one of {sorted(REGISTRY)} or 'auto'."
        ) from None
