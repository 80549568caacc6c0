"""The parameter table of :func:`unmix.factorize`: one row a keyword.

The same rows check ``factorize``'s arguments, document them (its numpydoc
``Parameters`` section and the ``NMF`` estimator's), define the keys of a TOML config's
``[factorize]`` table, and the command-line flags that set them (see
:mod:`unmix._params` for the rules).  Deeper checks that need the data (shapes against
``X``, a term's own fields) stay with the code that has the data.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

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
    document_parameters,
    lower,
    table,
)
from ..model import BETA_RANGE, LINK_NAMES, LOSS_NAMES, PRESETS, Link, Loss
from ._init import METHODS
from .solvers import REGISTRY, Solver

__all__ = ["PARAMETERS", "check_factorize_params", "document_factorize"]

_NONE = IsNone()
_POSITIVE_INT = Interval(int, 1)
_TERMS = Instance((list, tuple), "a list of terms")

PARAMETERS: dict[str, Param] = table(
    Param(
        "k",
        (_POSITIVE_INT,),
        None,
        "number of components",
        "int",
        "Number of components, ``1 <= k <= min(n_pixels, n_channels)``.",
        estimator=False,
        cli="-k",
    ),
    Param(
        "loss",
        (
            _NONE,
            Options(lower(LOSS_NAMES)),
            Interval(float, *BETA_RANGE),
            Instance((Loss,), "a unmix Loss"),
        ),
        None,
        "the similarity: a loss name or the beta of a beta-divergence, 0 to 3",
        "str, float or Loss, optional",
        """``"frobenius"`` (default), ``"kl"``, ``"itakura-saito"``, ``"l21"`` or the
            beta of a beta-divergence, ``0 <= beta <= 3`` (0 Itakura-Saito, 1 KL, 2
            Frobenius).  ``"l21"``: the robust ``sum_i w_i ||x_i - a_i S||_2`` (one norm a
            pixel: spikes and hot pixels pull the fit far less), by iteratively
            reweighted least squares with ``hals``, ``mu``, ``bpp`` or ``admm``.""",
        cli="--loss",
    ),
    Param(
        "solver",
        (Options(lower([*REGISTRY, "auto"])), Instance((Solver,), "a unmix Solver")),
        "auto",
        "the solver",
        "str or Solver",
        """``"auto"``, ``"hals"``, ``"klcd"``, ``"mu"``, ``"bpp"``, ``"admm"``,
            ``"gradient"`` or ``"svd"``.  ``"auto"`` picks the first of hals, klcd, mu,
            bpp, admm, gradient that supports the other knobs.""",
        cli="--solver",
    ),
    Param(
        "constraints",
        (_NONE, _TERMS),
        None,
        "hard constraints",
        "list of Constraint, optional",
        """Hard constraints; None means ``[NonNegative()]`` (``[Orthogonal()]`` for
            ``solver="svd"``).  ``[]`` means none (unconstrained factorization).""",
    ),
    Param(
        "regularizers",
        (_TERMS,),
        (),
        "penalties and filters",
        "list of Penalty or Filter",
        """Soft penalties (``L1``, ``L2``, ``SpatialSmoothness``, ``MinVolume``) and
            between-iteration filters (``GaussianMapFilter``, ``SpectralSmoothing``).""",
    ),
    Param(
        "weights",
        (_NONE, Anything("unmix.Weights or an array (pixels, channels)")),
        None,
        "entry weights of the loss",
        "Weights or array (n_pixels, n_channels), optional",
        """Entry weights of the loss.  Use ``Weights(pixels=w)`` / ``Weights(channels=c)``
            for separable weights (fast path).""",
        toml=False,
        estimator=False,
    ),
    Param(
        "mask",
        (_NONE, Anything("a bool array (pixels, channels)")),
        None,
        "False marks missing entries",
        "bool array (n_pixels, n_channels), optional",
        "False marks missing entries (they may hold NaN).",
        toml=False,
        estimator=False,
    ),
    Param(
        "link",
        (_NONE, Options(lower(LINK_NAMES)), Instance((Link,), "a unmix Link")),
        None,
        "the link f of X ~= f(A S)",
        "str or Link, optional",
        """``"identity"`` (default) or ``"logistic"`` (data in [0, 1]: fractions,
        probabilities, Boolean maps; ``f(0)`` set from the data's floor, see
        :class:`unmix.Logistic`).""",
        cli="--link",
        estimator=False,
    ),
    Param(
        "preprocessing",
        (Instance((list, tuple), "a list of preprocessing steps"),),
        (),
        "steps applied to X and undone in the result",
        "list of Step",
        """E.g. ``[NormalizePixels()]``, ``[PoissonScaling()]``, ``[Center()]``; undone
            in the result (see :mod:`unmix.preprocessing`).""",
        estimator=False,
    ),
    Param(
        "init",
        (_NONE, Options(lower(METHODS)), Instance((list, tuple), "a tuple (A0, S0)")),
        None,
        "the start",
        "str or tuple, optional",
        """``"nndsvda"``, ``"poisson"``, ``"nndsvd"``, ``"nndsvdar"``, ``"random"``,
            ``"spa"``, ``"vca"`` or ``(A0, S0)``.  Default (None): the model's own start -
            ``"spa"`` for abundances on a simplex (but ``"nndsvda"`` for KL maps on a
            simplex over pixels of one sum, the plain KL fit put on the simplex),
            ``"poisson"`` (HALS on Poisson-scaled ``X``; plain NMF, no other constraint;
            a mask's holes filled for it, dense ``X`` in memory) for plain KL NMF on
            counts that are at most half zeros, else ``"nndsvda"``.""",
        cli="--init",
    ),
    Param(
        "max_iter",
        (_NONE, _POSITIVE_INT),
        None,
        "most iterations",
        "int, optional",
        "Most iterations (default 500; 2000 for MU, whose steps are short; 5000 with a "
        "penalty that tightens a bound, such as Orthogonality).",
        cli="--max-iter",
    ),
    Param(
        "tol",
        (_NONE, Interval(float, 0.0)),
        None,
        "relative change of the objective that stops the fit",
        "float, optional",
        "Stop when the relative change of the objective is below ``tol`` (default 1e-5).",
        cli="--tol",
    ),
    Param(
        "time_limit",
        (_NONE, Interval(float, 0.0, closed="neither")),
        None,
        "seconds per restart",
        "float, optional",
        "Seconds per restart.",
        estimator=False,
    ),
    Param(
        "n_restarts",
        (_POSITIVE_INT,),
        1,
        "independent starts",
        "int",
        "Independent starts (different seeds); the lowest objective wins.",
        cli="--restarts",
    ),
    Param(
        "random_state",
        (_NONE, Interval(int, 0), Instance((np.random.Generator,), "a numpy Generator")),
        None,
        "the seed",
        "int or Generator, optional",
        """Seed of the starts.  None draws one from the operating system (logged at INFO);
            a Generator gives one int drawn from it.  The seed used is always recorded as
            an int in ``result.spec["random_state"]``: passing it again repeats the fit
            bit for bit.  With ``resume=True``, None takes the seed recorded in the
            checkpoint (an explicit seed must equal it).""",
        cli="--seed",
    ),
    Param(
        "callback",
        (_NONE, Callback()),
        None,
        "called after every iteration",
        "callable, optional",
        "``callback(IterationInfo)`` after each iteration; a truthy return stops the fit.",
        toml=False,
        estimator=False,
    ),
    Param(
        "spatial_shape",
        (_NONE, Shape()),
        None,
        "the scan grid",
        "tuple of int, optional",
        """Scan grid of the pixels (needed by spatial regularizers; kept in the
            result).""",
        toml=False,
    ),
    Param(
        "signal_shape",
        (_NONE, Shape()),
        None,
        "the shape of one spectrum",
        "tuple of int, optional",
        """Shape of one spectrum/pattern (needed by 2-D spectral filters; kept in the
            result).""",
        toml=False,
    ),
    Param(
        "block_size",
        (_NONE, _POSITIVE_INT),
        None,
        "pixels per block of the data pass",
        "int, optional",
        "Pixels per block of the data pass (default: about 8 MB of X on CPU, all on GPU).",
        estimator=False,
    ),
    Param(
        "executor",
        (_NONE, Anything("an executor (unmix.executors)")),
        None,
        "where the blocks run",
        "Executor, optional",
        "Where blocks run (default: :class:`~unmix.executors.SerialExecutor`).",
        toml=False,
        estimator=False,
    ),
    Param(
        "device",
        (_NONE, Anything("a device name or object")),
        None,
        "the compute device for host or file data",
        "str or device, optional",
        """Only for host or file data (NumPy, ``h5py``, Zarr, Dask, memory maps): compute
            on this device while ``X`` stays where it is, streaming one block at a time
            (``"cuda"``, ``"cuda:1"``, ``"torch"`` for PyTorch on the CPU, ``"cupy"``; see
            :func:`unmix._backend.compute_backend`).  The factors live on that device.
            Default: compute where ``X`` is.""",
        estimator=False,
    ),
    Param(
        "solver_options",
        (_NONE, Instance((dict,), "a dict")),
        None,
        "solver-specific options",
        "dict, optional",
        """Solver-specific options (e.g. ``{"inner": 10}`` for ADMM, ``{"lr": 0.05}`` for
            gradient; each solver's docstring lists its own).  A key the chosen solver
            does not take is refused, with the list of those it does.  ``extrapolate``
            (HALS, BPP, ADMM, gradient, klcd, MU): extrapolation between iterations, on
            by default when the maps sum to one or a penalty couples pixels (grid or
            graph smoothness, total variation), and for ``klcd``, ``gradient`` and ``mu``
            from their 50th iteration
            (``result.spec["extrapolated"]``: True, False or that iteration;
            ``{"extrapolate": False}`` turns it off).""",
        cli="--solver-option",
    ),
    Param(
        "compress",
        (_NONE, Options(frozenset({"auto"})), Instance((bool,), "a bool"), _POSITIVE_INT),
        "auto",
        "rank of the compressed first phase",
        'int, bool, "auto" or None',
        """Iterate first on a rank-``r`` truncated SVD of ``X`` (``True``: ``r = k + 10``),
            then refine on ``X`` until ``tol`` (low-rank-approximation NMF, Zhou et al.
            2012).  Each compressed pass costs ``O((pixels + channels) r k)``: 8-9x faster
            than scikit-learn to the same objective in ``benchmarks/results/engine.md``.
            Frobenius solvers (hals, mu, bpp, admm) without weights or a mask.  ``"auto"``
            (default) turns it on when ``X`` has at least 2**22 entries and the problem
            allows it; ``None``/``False`` turns it off.  KL has its own compressed first
            phase: ``init="poisson"``, its default on counts, runs HALS on a truncated SVD
            of the Poisson-scaled data.""",
        cli="--compress",
    ),
    Param(
        "checkpoint",
        (_NONE, Instance((str, os.PathLike), "a path")),
        None,
        "checkpoint file",
        "path, optional",
        """Save the iterate to this HDF5 file every ``checkpoint_every`` seconds (``0``:
            every iteration) and on Ctrl-C; removed when the fit completes.""",
        toml=False,
        estimator=False,
    ),
    Param(
        "checkpoint_every",
        (Interval(float, 0.0),),
        60.0,
        "seconds between checkpoints",
        "float",
        "Seconds between checkpoints (default 60).",
        toml=False,
        estimator=False,
    ),
    Param(
        "resume",
        (Instance((bool,), "a bool"),),
        False,
        "continue from the checkpoint",
        "bool",
        """Continue from ``checkpoint`` when it exists (same data and options, checked by
            a fingerprint); the answer equals that of an uninterrupted fit with the same
            seed.  Without ``random_state`` the seed recorded in the checkpoint is used.""",
        toml=False,
        estimator=False,
    ),
    Param(
        "preset",
        (_NONE, Options(lower(PRESETS))),
        None,
        "a documented bundle of defaults",
        "str, optional",
        """A documented bundle of defaults, e.g. ``"blind-unmixing"`` (see
            :mod:`unmix.model`); explicit arguments override it.""",
        cli="--preset",
    ),
)


def check_factorize_params(values: Mapping[str, Any], *, where: str = "factorize") -> None:
    """Check ``values`` (keyword: value) against :data:`PARAMETERS`."""
    check_params(values, PARAMETERS, where=where)


#: Fill ``{parameters}`` in a docstring with the rows of :data:`PARAMETERS`.
document_factorize = document_parameters(PARAMETERS)
