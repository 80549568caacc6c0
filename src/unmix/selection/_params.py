"""The parameter tables of :func:`select_rank` and :func:`select_lambdas`: one row a keyword.

The rows check the functions' arguments and write their numpydoc ``Parameters`` entries
(see :mod:`unmix._params` for the rules).  Rows the two functions share are defined once
(``executor`` and ``groups`` in :mod:`unmix.executors.groups`, for every function that
deals independent fits over MPI ranks); where only the wording differs (a default, what
the option does there) a shared row is varied with :func:`dataclasses.replace`, so that
the rule stays one.  Checks that need the
data (``ks`` against the shape of ``X``, ``spatial_shape`` against its pixels) or several
parameters at once (restarts for the chosen criteria, ``groups`` against the executor's
ranks) stay with the functions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from .._params import (
    Anything,
    Callback,
    Instance,
    Interval,
    IsNone,
    Options,
    Param,
    Shape,
    check_params,
    table,
)
from ..executors.groups import EXECUTOR, GROUPS

__all__ = [
    "LAMBDA_PARAMETERS",
    "PLAUSIBILITY_NAMES",
    "RANK_PARAMETERS",
    "check_selection_params",
]

_NONE = IsNone()
_POSITIVE_INT = Interval(int, 1)
_BOOL = Instance((bool,), "a bool")

#: The keys of :data:`unmix.selection.PLAUSIBILITY` (kept here: that module imports this).
PLAUSIBILITY_NAMES = ("sparsity", "smoothness", "negative_lobes")

# ------------------------------------------------------------ shared rows
SPATIAL_SHAPE = Param(
    "spatial_shape",
    (_NONE, Shape()),
    None,
    "the scan grid of the pixels",
    "tuple of int, optional",
    "Scan grid of the pixels.",
)
RANDOM_STATE = Param(
    "random_state",
    (_NONE, Interval(int, 0)),
    0,
    "the seed of every random draw",
    "int, optional",
    "Seeds every random draw (a run is reproducible).",
)
MAX_ITER = Param(
    "max_iter",
    (_POSITIVE_INT,),
    None,
    "most iterations of each fit",
    "int",
    "Most iterations of each fit.",
)
TOL = Param(
    "tol",
    (Interval(float, 0.0),),
    None,
    "relative change of the objective that stops each fit",
    "float",
    "Stopping rule of each fit: relative objective change below ``tol``.",
)
FIT_OPTIONS = Param(
    "fit_options",
    (_NONE, Instance((Mapping,), "a dict")),
    None,
    "keywords of unmix.factorize for each fit",
    "dict, optional",
    "Keywords of :func:`unmix.factorize` for each fit (``solver`` left out: the "
    "model's own, e.g. HALS for plain NMF, KL-CD for ``loss='kl'``, BPP for sum-to-one "
    "maps).",
)
PROGRESS = Param(
    "progress",
    (_NONE, Callback()),
    None,
    "called after every fit",
    "callable, optional",
    "Called after every fit.",
)

# ------------------------------------------------------------ select_rank
RANK_PARAMETERS: dict[str, Param] = table(
    Param(
        "ks",
        (_NONE, Anything("an iterable of ints in [2, min(n_pixels, n_channels) - 1]")),
        None,
        "the candidate ranks",
        "iterable of int, optional",
        "Candidate ranks, each in ``[2, min(n_pixels, n_channels) - 1]``; default 2 to 11, "
        "cut to that range (a small ``X`` gets fewer).",
    ),
    Param(
        "n_restarts",
        (_POSITIVE_INT,),
        10,
        "restarts per rank",
        "int",
        "Restarts per rank (>= 3 for consensus and stability; 10 recommended).",
    ),
    Param(
        "criteria",
        (_NONE, Instance((list, tuple), "a list of criterion names")),
        None,
        "the criteria to compute",
        "list of str, optional",
        "Subset of :data:`CRITERIA` (default: all).",
    ),
    Param(
        "cv_repeats",
        (Interval(int, 0),),
        2,
        "held-out fits per rank",
        "int",
        """Held-out fits per rank (disjoint folds of the same partition for every rank);
            >= 1 for the ``cv`` criterion.""",
    ),
    Param(
        "holdout",
        (Options(frozenset({"entries", "blocks"})),),
        "entries",
        "the pattern of held-out entries",
        '{"entries", "blocks"}',
        """Speckled random entries (fraction ``cv_fraction`` per fold) or Owen & Perry's
            pixel-block x channel-block pattern (a quarter of ``X`` per fold).""",
    ),
    Param(
        "cv_fraction",
        (Interval(float, 0.0, 0.5, closed="right"),),
        0.1,
        "share of the entries held out per fit",
        "float",
        """Share of the entries held out per fit for ``holdout="entries"``, in
            ``(0, 0.5]``.""",
    ),
    replace(
        SPATIAL_SHAPE,
        details="Scan grid of the pixels: adds the maps' roughness to the similarity rule.",
    ),
    replace(
        RANDOM_STATE,
        details="Seeds every bootstrap draw, hold-out and start (a run is reproducible).",
    ),
    Param(
        "n_jobs",
        (_POSITIVE_INT,),
        1,
        "worker processes on the CPU",
        "int",
        """Worker processes on the CPU (each with one BLAS thread); ranks are distributed.
            Leave it at 1 with an MPI ``executor``.""",
    ),
    replace(
        EXECUTOR,
        details="""Run the fits on the ranks of an MPI communicator (the script runs under
            ``mpiexec -n N python -m mpi4py script.py``, every rank calling
            :func:`select_rank` with the same arguments): they are dealt over ``groups``
            groups of ranks, each group splits the pixels of its fits over its ranks, and
            every rank returns the same selection as a serial run (the seeds belong to the
            fits, not to the ranks that run them).  Use instead of ``n_jobs``.""",
    ),
    replace(
        GROUPS,
        details="""Number of groups the executor's ranks form
            (:meth:`unmix.mpi.MPIExecutor.split`), from 1 (every fit split over all ranks:
            when ``X`` is large) to the number of ranks (the default: every rank fits
            alone, no communication during the fits).""",
    ),
    Param(
        "checkpoint",
        (_NONE, Instance((str, os.PathLike), "a path")),
        None,
        "directory that records every finished fit",
        "path, optional",
        """A directory that records every finished fit; with ``resume=True`` (default) a
            killed or interrupted selection called again with the same arguments continues
            from the fits it finished.""",
    ),
    Param(
        "resume",
        (_BOOL,),
        True,
        "continue from the fits recorded in the checkpoint",
        "bool",
        """Continue from the fits recorded in ``checkpoint`` (same data and settings,
            checked by a fingerprint); False starts over.""",
    ),
    replace(
        PROGRESS,
        rules=(_BOOL, Callback()),
        default=False,
        type_doc="bool or callable",
        details="True for a progress bar on stderr; a callable gets ``(done, total, key)``.",
    ),
    replace(MAX_ITER, default=1000),
    replace(
        TOL,
        default=1e-4,
        details="""Stopping rule of each fit: relative objective change below ``tol`` (1e-4
            ranks the models as 1e-5 does at half the work).""",
    ),
    replace(
        FIT_OPTIONS,
        details="""Run each fit through :func:`unmix.factorize` with these options (e.g.
            ``{"loss": "kl", "solver": "mu"}``) instead of the batched Frobenius solver.""",
    ),
    Param(
        "consensus_pixels",
        (_POSITIVE_INT,),
        1000,
        "pixels in the consensus matrices",
        "int",
        "Pixels (a fixed random subsample) in the consensus matrices.",
    ),
    Param(
        "silhouette_threshold",
        (Interval(float, -1.0, 1.0),),
        0.7,
        "least silhouette of a stable rank",
        "float",
        """Least mean silhouette of the worst endmember cluster for the ``silhouette``
            pick (:data:`RULES`).""",
    ),
    Param(
        "cv_tolerance",
        (Interval(float, 0.0),),
        0.005,
        "relative slack over the least held-out error",
        "float",
        """Relative slack over the least held-out error for the ``cv`` pick
            (:data:`RULES`).""",
    ),
    Param(
        "consensus_drop",
        (Interval(float, 0.0),),
        0.005,
        "fall of the consensus that ends the rank",
        "float",
        """Fall of the cophenetic correlation (or the dispersion) that ends the
            ``cophenetic`` and ``dispersion`` picks (:data:`RULES`).""",
    ),
    Param(
        "repeat_deg",
        (Interval(float, 0.0, 180.0),),
        10.0,
        "angle under which a new component repeats an old one",
        "float",
        """Angle in degrees under which a new component repeats an old one (the
            ``similarity`` pick, :data:`RULES`).""",
    ),
    Param(
        "noise_roughness",
        (Interval(float, 0.0),),
        0.5,
        "roughness above which a component looks like noise",
        "float",
        """Roughness of a spectrum (or map) above which a component looks like noise
            (the ``similarity`` pick, :data:`RULES`).""",
    ),
    Param(
        "noise",
        (Options(frozenset({"auto", "poisson", "gaussian"})),),
        "auto",
        "the noise model the fits assume",
        "{'auto', 'poisson', 'gaussian'}",
        """The noise model: ``"poisson"`` scales ``X`` by Keenan & Kotula's
            ``1 / sqrt(g h^T)`` (mean spectrum ``h``, mean pixel ``g``; see
            :class:`~unmix.PoissonScaling`) so that the Frobenius fits weigh counts by their
            variance; ``"gaussian"`` fits ``X`` as it is; ``"auto"`` (default) takes
            ``"poisson"`` when ``X`` holds counts (every entry a non-negative integer, the
            rule of :func:`unmix.preprocessing.is_counts` that ``unmix inspect`` reports),
            else ``"gaussian"``: one rule for all data.""",
    ),
)

# ------------------------------------------------------------ select_lambdas
LAMBDA_PARAMETERS: dict[str, Param] = table(
    Param(
        "k",
        (_POSITIVE_INT,),
        None,
        "number of components",
        "int",
        "Number of components (e.g. from :func:`select_rank`).",
    ),
    Param(
        "params",
        (
            Instance(
                (str, Sequence, Mapping),
                "a strength name, a sequence of them or a mapping name -> (low, high)",
            ),
        ),
        ("sparsity",),
        "the strengths to search",
        "sequence of str or mapping of str -> (low, high)",
        """Strengths to search, ``"sparsity"`` and/or ``"smoothness"`` (see the module),
            with their log-scale ranges (defaults ``(1e-3, 1)`` and ``(1e-3, 10)``).""",
    ),
    Param(
        "method",
        (Options(frozenset({"grid", "random", "bayes"})),),
        "grid",
        "the search",
        '{"grid", "random", "bayes"}',
        """Log-spaced grid, log-uniform random draws, or Optuna's TPE sampler (needs the
            ``optuna`` package: ``pip install "unmix[select]"``; its trials depend on the
            ones before, so it does not run with ``executor``).""",
    ),
    Param(
        "n_trials",
        (Interval(int, 2),),
        8,
        "trials per stage",
        "int",
        "Trials per stage, >= 2 (the unregularized model is one more).",
    ),
    Param(
        "staged",
        (_BOOL,),
        True,
        "search the strengths one after the other",
        "bool",
        """Search sparsity first, then smoothness at the best sparsity (Kannan et al.);
            False searches both together (the grid is then their product).""",
    ),
    Param(
        "plausibility",
        (_NONE, Options(frozenset(PLAUSIBILITY_NAMES)), Callback()),
        None,
        "the implausibility term q of the score",
        "str or callable, optional",
        """Implausibility term ``q``: a key of :data:`PLAUSIBILITY` or
            ``f(result) -> float`` in [0, 1]; None scores by held-out error alone.""",
    ),
    Param(
        "weight",
        (Interval(float, 0.0),),
        0.1,
        "weight of q in the score",
        "float",
        "Weight of ``q`` in the score ``e_cv * (1 + weight * q)``.",
    ),
    Param(
        "n_folds",
        (Interval(int, 2),),
        10,
        "one entry in n_folds is held out",
        "int",
        "One entry in ``n_folds`` is held out (the same entries for every trial).",
    ),
    replace(SPATIAL_SHAPE, details="Scan grid (needed for smoothness)."),
    replace(
        RANDOM_STATE, details="Seeds the hold-out, the starts and the random / Bayesian draws."
    ),
    replace(MAX_ITER, default=300),
    replace(TOL, default=1e-5),
    replace(
        FIT_OPTIONS,
        details="""More keywords for :func:`unmix.factorize` (e.g. ``{"loss": "kl"}``); the
            held-out error stays the Frobenius one.""",
    ),
    replace(
        PROGRESS,
        details="Called as ``progress(done, total, trial)`` after every trial.",
    ),
    EXECUTOR,
    GROUPS,
)


def check_selection_params(
    values: Mapping[str, Any], rows: Mapping[str, Param], *, where: str
) -> dict[str, Any]:
    """Check ``values`` against ``rows`` (:func:`unmix._params.check_params`); the values
    with option names lower-cased (an :class:`~unmix._params.Options` rule accepts any
    case)."""
    check_params(values, rows, where=where)
    return {
        name: value.strip().lower()
        if isinstance(value, str) and any(isinstance(r, Options) for r in rows[name].rules)
        else value
        for name, value in values.items()
    }
