"""The engine: :func:`factorize` as a short pipeline of named steps.

validate the inputs -> resolve the preset and defaults -> build the pixel blocks ->
bind the terms into a :class:`Problem` -> choose a solver -> run the restarts (start,
iterate with one data pass per iteration, stop by one rule, checkpoint) -> wrap the
:class:`~unmix.Result`.  Solvers live in :mod:`unmix.engine.solvers`, compiled per-block
kernels in :mod:`unmix.engine.kernels`.
"""

from __future__ import annotations

from ._checkpoint import fingerprint
from ._factorize import default_max_iter, factorize
from ._fit_maps import fit_maps
from ._inputs import check_mask, check_weights
from ._loop import IterationInfo
from ._online import OnlineNMF, online_factorize
from ._params import PARAMETERS, check_factorize_params
from ._problem import Problem
from .solvers import hals_sweeps

__all__ = [
    "PARAMETERS",
    "IterationInfo",
    "OnlineNMF",
    "Problem",
    "check_factorize_params",
    "check_mask",
    "check_weights",
    "default_max_iter",
    "factorize",
    "fingerprint",
    "fit_maps",
    "hals_sweeps",
    "online_factorize",
]
