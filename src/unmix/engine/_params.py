"""One declarative table of the parameters of :func:`unmix.factorize`.

Each row names a parameter, the values it accepts (a list of rules, any of which may
accept), its default, a one-line description, and where else it appears: the ``NMF``
estimator, the TOML ``[factorize]`` table, a command-line flag.  One validator,
:func:`check_params`, serves all four, so a value refused in Python is refused with the
same words in a config file and on the command line; every row can generate a value it
refuses (:meth:`Param.invalid`), from which the test suite builds one invalid-value test
per row and per surface.  (The idea is scikit-learn's ``_parameter_constraints``.)

Deeper checks that need the data (shapes against ``X``, a term's own fields) stay with
the code that has the data; the table checks type and range up front.
"""

from __future__ import annotations

import inspect
import math
import numbers
import os
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..model import LINK_NAMES, LOSS_NAMES, PRESETS, Link, Loss
from ._init import METHODS
from .solvers import REGISTRY, Solver

__all__ = [
    "PARAMETERS",
    "Anything",
    "Callback",
    "Instance",
    "Interval",
    "IsNone",
    "Options",
    "Param",
    "Shape",
    "check_params",
    "document_parameters",
    "numpydoc_parameters",
]


# ---------------------------------------------------------------------- rules
class Rule:
    """A set of accepted values: ``accepts``, a phrase for messages, and a refused value."""

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def invalid(self) -> Any:
        """A value this rule refuses (None when there is none to offer)."""
        return None


@dataclass(frozen=True)
class IsNone(Rule):
    """``None`` (the default: let the preset or the engine choose)."""

    def accepts(self, value: Any) -> bool:
        return value is None

    def describe(self) -> str:
        return "None"


@dataclass(frozen=True)
class Interval(Rule):
    """A number of ``kind`` (``int`` or ``float``; booleans refused) in a range.

    ``closed`` says which ends belong to it: ``"both"``, ``"left"``, ``"right"``,
    ``"neither"``.  ``None`` ends are unbounded.  Floats must be finite.
    """

    kind: type
    lo: float | None = None
    hi: float | None = None
    closed: str = "both"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, (bool, np.bool_)):
            return False
        want = numbers.Integral if self.kind is int else numbers.Real
        if not isinstance(value, want) or not math.isfinite(float(value)):
            return False
        lo_ok = self.lo is None or (
            value >= self.lo if self.closed in ("both", "left") else value > self.lo
        )
        hi_ok = self.hi is None or (
            value <= self.hi if self.closed in ("both", "right") else value < self.hi
        )
        return lo_ok and hi_ok

    def describe(self) -> str:
        noun = "an int" if self.kind is int else "a finite number"
        parts = []
        if self.lo is not None:
            parts.append((">= " if self.closed in ("both", "left") else "> ") + f"{self.lo:g}")
        if self.hi is not None:
            parts.append(("<= " if self.closed in ("both", "right") else "< ") + f"{self.hi:g}")
        return noun + (" " + " and ".join(parts) if parts else "")

    def invalid(self) -> Any:
        if self.lo is not None:
            return (int(self.lo) - 1) if self.kind is int else float(self.lo) - 1.0
        if self.hi is not None:
            return (int(self.hi) + 1) if self.kind is int else float(self.hi) + 1.0
        return float("nan")


@dataclass(frozen=True)
class Options(Rule):
    """One of a set of strings (compared case-insensitively)."""

    values: frozenset

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value.strip().lower() in self.values

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in sorted(self.values))

    def invalid(self) -> Any:
        return "no-such-option"


@dataclass(frozen=True)
class Instance(Rule):
    """An instance of one of ``types`` (``what`` names them in messages)."""

    types: tuple
    what: str

    def accepts(self, value: Any) -> bool:
        if bool not in self.types and isinstance(value, bool):
            return False
        return isinstance(value, self.types)

    def describe(self) -> str:
        return self.what

    def invalid(self) -> Any:
        return "not-a-" + self.what.split()[-1] if str not in self.types else 3.5


@dataclass(frozen=True)
class Shape(Rule):
    """A shape: a sequence of ints >= 1."""

    def accepts(self, value: Any) -> bool:
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            return False
        items = list(value)
        ok = Interval(int, 1)
        return len(items) > 0 and all(ok.accepts(v) for v in items)

    def describe(self) -> str:
        return "a sequence of ints >= 1, e.g. (rows, cols)"

    def invalid(self) -> Any:
        return [0, 5]


@dataclass(frozen=True)
class Callback(Rule):
    """A callable."""

    def accepts(self, value: Any) -> bool:
        return callable(value)

    def describe(self) -> str:
        return "a callable"

    def invalid(self) -> Any:
        return "not-callable"


@dataclass(frozen=True)
class Anything(Rule):
    """Anything here; checked where it is used (e.g. an array against ``X``'s shape)."""

    what: str

    def accepts(self, value: Any) -> bool:
        return True

    def describe(self) -> str:
        return self.what


# ------------------------------------------------------------------ the table
@dataclass(frozen=True)
class Param:
    """A row of the table.

    ``doc`` is a short phrase (messages, ``--help``); ``type_doc`` and ``details`` are the
    row's entry in the numpydoc ``Parameters`` section of :func:`unmix.factorize` (and
    of the estimator).  ``toml``: settable in a config's ``[factorize]`` table;
    ``estimator``: a parameter of :class:`unmix.estimators.NMF`; ``cli``: its
    command-line flag, if any (the click option takes the row's name).
    """

    name: str
    rules: tuple[Rule, ...]
    default: Any
    doc: str
    type_doc: str = ""
    details: str = ""
    toml: bool = True
    estimator: bool = True
    cli: str | None = None

    def accepts(self, value: Any) -> bool:
        return any(rule.accepts(value) for rule in self.rules)

    def describe(self) -> str:
        return " or ".join(rule.describe() for rule in self.rules)

    def invalid(self) -> Any:
        """A value every rule refuses (None when the row accepts anything)."""
        for rule in self.rules:
            value = rule.invalid()
            if value is not None and not self.accepts(value):
                return value
        return None

    def error(self, value: Any, where: str) -> str:
        shown = repr(value) if len(repr(value)) <= 60 else f"<{type(value).__name__}>"
        names = [r for r in self.rules if isinstance(r, Options)]
        if names and isinstance(value, str):
            others = [r.describe() for r in self.rules if not isinstance(r, (Options, IsNone))]
            also = f" (or {' or '.join(others)})" if others else ""
            return (
                f"{where}: {self.name}={shown} is unknown; choose one of "
                f"{sorted(names[0].values)}{also}."
            )
        return (
            f"{where}: {self.name}={shown} is not allowed; {self.name} must be "
            f"{self.describe()} ({self.doc})."
        )

    def numpydoc(self) -> str:
        """This row as an entry of a numpydoc ``Parameters`` section (4-space indent)."""
        body = textwrap.indent(inspect.cleandoc(self.details), " " * 8)
        return f"    {self.name} : {self.type_doc}\n{body}\n"


def _lower(values: Iterable[str]) -> frozenset:
    return frozenset(v.lower() for v in values)


_NONE = IsNone()
_POSITIVE_INT = Interval(int, 1)
_TERMS = Instance((list, tuple), "a list of terms")

PARAMETERS: dict[str, Param] = {
    p.name: p
    for p in (
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
                Options(_lower(LOSS_NAMES)),
                Interval(float),
                Instance((Loss,), "a unmix Loss"),
            ),
            None,
            "the similarity: a loss name or the beta of a beta-divergence",
            "str, float or Loss, optional",
            """``"frobenius"`` (default), ``"kl"``, ``"itakura-saito"`` or a beta value.""",
            cli="--loss",
        ),
        Param(
            "solver",
            (Options(_lower([*REGISTRY, "auto"])), Instance((Solver,), "a unmix Solver")),
            "auto",
            "the solver",
            "str or Solver",
            """``"auto"``, ``"mu"``, ``"hals"``, ``"bpp"``, ``"admm"``, ``"gradient"`` or
            ``"svd"``.  ``"auto"`` picks one that supports the other knobs.""",
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
            (_NONE, Options(_lower(LINK_NAMES)), Instance((Link,), "a unmix Link")),
            None,
            "the link f of X ~= f(A S)",
            "str or Link, optional",
            """``"identity"`` (default) or ``"logistic"``.""",
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
            (_NONE, Options(_lower(METHODS)), Instance((list, tuple), "a tuple (A0, S0)")),
            None,
            "the start",
            "str or tuple, optional",
            """``"nndsvda"`` (default), ``"nndsvd"``, ``"nndsvdar"``, ``"random"``, ``"spa"``,
            ``"vca"`` or ``(A0, S0)``.""",
            cli="--init",
        ),
        Param(
            "max_iter",
            (_NONE, _POSITIVE_INT),
            None,
            "most iterations",
            "int, optional",
            "Most iterations (default 500).",
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
            "Seed for reproducible starts.",
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
            """Solver-specific options (e.g. ``{"inner": 10}`` for ADMM, ``{"lr": 0.05}``).""",
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
            allows it; ``None``/``False`` turns it off.""",
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
            seed.""",
            toml=False,
            estimator=False,
        ),
        Param(
            "preset",
            (_NONE, Options(_lower(PRESETS))),
            None,
            "a documented bundle of defaults",
            "str, optional",
            """A documented bundle of defaults, e.g. ``"blind-unmixing"`` (see
            :mod:`unmix.model`); explicit arguments override it.""",
            cli="--preset",
        ),
    )
}


def numpydoc_parameters(names: Iterable[str]) -> str:
    """The numpydoc entries of the rows ``names``, in that order."""
    return "".join(PARAMETERS[name].numpydoc() for name in names)


def document_parameters(*, skip: tuple[str, ...] = ()) -> Callable[[Any], Any]:
    """Fill ``{parameters}`` in a function's docstring with its rows of the table."""

    def deco(f: Any) -> Any:
        names = [n for n in inspect.signature(f).parameters if n in PARAMETERS and n not in skip]
        f.__doc__ = f.__doc__.replace("    {parameters}\n", numpydoc_parameters(names))
        return f

    return deco


def check_params(values: Mapping[str, Any], *, where: str = "factorize") -> None:
    """Raise ``ValueError`` (``TypeError`` for a wrong type) for a value a row refuses.

    Only the keys present are checked; names outside the table are refused too.
    """
    for name, value in values.items():
        row = PARAMETERS.get(name)
        if row is None:
            raise ValueError(
                f"{where}: unknown parameter {name!r}; valid: {', '.join(sorted(PARAMETERS))}."
            )
        if not row.accepts(value):
            numeric = any(isinstance(r, Interval) for r in row.rules)
            wrong_type = not numeric or not isinstance(value, numbers.Real)
            raise (TypeError if wrong_type and _is_type_error(row, value) else ValueError)(
                row.error(value, where)
            )


def _is_type_error(row: Param, value: Any) -> bool:
    """A value of a type no rule could accept (rather than a value out of range)."""
    probes: list[Callable[[Any], bool]] = []
    for rule in row.rules:
        if isinstance(rule, Interval):
            probes.append(lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool))
        elif isinstance(rule, Options):
            probes.append(lambda v: isinstance(v, str))
        else:
            probes.append(rule.accepts)
    return not any(probe(value) for probe in probes)
