"""The one protocol behind constraints, regularizers and between-iteration filters.

A *term* acts on one factor: ``target="A"`` (the maps, pixels x k) or ``target="S"``
(the endmembers, k x channels).  There are three families:

- :class:`Constraint` - a hard constraint, applied as a projection (``project``).
- :class:`Penalty` - a soft regularizer ``lam * r(M)`` added to the objective.  It offers
  a local *model* around the current iterate that every solver can use:

  ``r(M') <= r(M) + <grad, M' - M> + 1/2 <M' - M, (M' - M) * curv>
  + 1/2 tr(M' gram M'^T) - 1/2 tr(M gram M^T)``

  i.e. a quadratic coupling of the components (``gram``, k x k), a gradient and a diagonal
  curvature that majorize the rest; plus a split of the gradient into non-negative parts
  for multiplicative updates.
- :class:`Filter` - an operator applied to the factor between iterations (Gaussian
  smoothing of maps, median filtering of spectra): a projection-like heuristic that is not
  part of the objective.

**Capabilities.**  Solvers and the fit's set-up never ask what a term *is* (its class);
they ask what it *can do*, through the attributes below, so a user-written term works
like a built-in one:

============================  ==========================================================
``separable``                 how a constraint's projection decomposes: ``"entries"``
                              (entry by entry: :meth:`Constraint.project_part` projects
                              any column or row alone), ``"rows"`` (row by row of the
                              factor: a pixel's abundances, one endmember), ``"none"``;
                              ``"product"``: it bounds the model ``A @ S`` (pixels x
                              channels), not a factor - ``project`` clips model rows and
                              only a solver that splits the model off holds it
``solves_rows``               the constraint solves each row's non-negative least squares
                              over its set exactly (:meth:`Constraint.solve_rows`; exact
                              ANLS uses it for the maps)
``finishes``                  the constraint refines the maps once after the fit
                              (:meth:`Constraint.finish`: an exact polish, a last
                              feasibility step)
``implies_nonneg``            every feasible point of the constraint is ``>= 0``
``is_orthant``                the feasible set is exactly ``M >= 0`` (exact NNLS solves it)
``is_orthonormal``            the set is ``S S^T = I`` (what a truncated SVD gives)
``simplex_rows``              each row lies on a scaled simplex (fixed row sums; a start
                              from pure pixels suits the model)
``one_per_row``               each row holds at most one non-zero (on ``A``: a hard
                              segmentation; endmembers then look like pixels, and a
                              dead one restarts from pixel spectra)
``one_per_column``            each column holds at most one non-zero (on ``S``: every
                              channel in one endmember, orthogonal NMF; a start whose
                              endmembers look alike - pixels - gives one all channels)
``rescales``                  the set is reached by moving scale between the factors
                              (:meth:`Constraint.rescale`, ``A @ S`` unchanged)
``fixed()``                   the entries the constraint pins, or None
``couples_pixels``            a penalty or filter on ``A`` that links neighbouring pixels
                              (a halo exchange when the pixels are split)
``has_prox``, ``smooth``      a penalty with a cheap proximal operator (:meth:`Penalty.prox`);
                              differentiable (proximal solvers use the prox otherwise)
``constant_gradient()``       a penalty whose gradient is one constant on the feasible
                              set (L1 on a non-negative factor), or None
``quadratic``                 a penalty whose local model is exact (a constant Gram term
                              and a constant gradient: exact ANLS solves it)
``scale_free``                the term acts the same on ``c * X`` as on ``X`` (otherwise its
                              absolute strengths carry the data's units)
``tightens``                  a penalty that holds a bound: where the fit converged with
                              the bound unmet it raises its strength and the fit goes on
                              (:meth:`Penalty.tighten`; the strength is checkpointed;
                              extrapolation is on by default, each strength's fit being
                              a slow slope)
============================  ==========================================================

Terms are frozen descriptions; :meth:`Term.bind` returns a copy bound to one problem
(shapes checked, grid operators precomputed).  A solver never grows one keyword per term.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._backend import Backend
from .._validation import check_lam

__all__ = [
    "BindContext",
    "Constraint",
    "Filter",
    "Penalty",
    "PenaltyModel",
    "Term",
    "tightening",
]

TARGETS = ("A", "S")


@dataclass(frozen=True)
class BindContext:
    """What a term may need to know about the problem it is bound to.

    ``n_pixels`` counts this process's pixels.  With the pixels split over processes,
    ``rows`` are this process's ``[start, stop)`` rows of ``X``, ``n_total`` the pixels
    of all processes and ``executor`` the executor (terms that couple neighbouring
    pixels exchange boundary scan lines through its ``halo``); all None when serial.
    """

    n_pixels: int
    n_channels: int
    k: int
    backend: Backend
    spatial_shape: tuple[int, ...] | None = None
    signal_shape: tuple[int, ...] | None = None
    nonneg_A: bool = True
    nonneg_S: bool = True
    executor: Any = None
    rows: tuple[int, int] | None = None
    n_total: int | None = None

    def shape_of(self, target: str) -> tuple[int, int]:
        return (self.n_pixels, self.k) if target == "A" else (self.k, self.n_channels)

    @property
    def distributed(self) -> bool:
        """True when the pixels are split over processes."""
        return bool(getattr(self.executor, "distributed", False))

    def reduce(self, value: Any) -> Any:
        """The sum of ``value`` over the processes sharing the pixels (itself when serial)."""
        return self.executor.allreduce(value) if self.distributed else value

    @property
    def pixel_range(self) -> tuple[int, int, int]:
        """``(start, stop, n_total)``: this process's rows among all pixels."""
        start, stop = self.rows if self.rows is not None else (0, self.n_pixels)
        total = self.n_total if self.n_total is not None else self.n_pixels
        return int(start), int(stop), int(total)


@dataclass
class PenaltyModel:
    """Local model of a penalty around the current factor ``M`` (see module docstring).

    Any field may be None (absent).  ``grad`` and ``curv`` broadcast against ``M``.
    ``mu_pos - mu_neg`` equals the full gradient (``gram`` part included), both >= 0.
    ``lipschitz`` bounds the curvature of the non-``gram`` part.
    """

    gram: Any = None
    grad: Any = None
    curv: Any = None
    lipschitz: float = 0.0
    mu_pos: Any = None
    mu_neg: Any = None

    @property
    def empty(self) -> bool:
        """True when the model has no Gram, gradient or curvature part."""
        return self.gram is None and self.grad is None and self.curv is None


def _check_target(target: str, allowed: tuple[str, ...], owner: str) -> str:
    if target not in allowed:
        raise ValueError(f"{owner}: target must be one of {allowed}; got {target!r}.")
    return target


@dataclass(frozen=True)
class Term:
    """Base class of constraints, penalties and filters."""

    target: str = field(default="A", kw_only=True)
    _allowed_targets = TARGETS

    def __post_init__(self) -> None:
        _check_target(self.target, self._allowed_targets, type(self).__name__)

    def bind(self, ctx: BindContext) -> Term:
        """Return a copy checked against and prepared for the problem ``ctx``."""
        bound = copy.copy(self)
        object.__setattr__(bound, "_ctx", ctx)
        bound._prepare(ctx)
        return bound

    def _prepare(self, ctx: BindContext) -> None:
        """Hook for subclasses: validate shapes, precompute operators."""

    @property
    def ctx(self) -> BindContext:
        try:
            return self._ctx  # type: ignore[attr-defined]
        except AttributeError:
            raise RuntimeError(f"{type(self).__name__} is not bound to a problem.") from None

    @property
    def label(self) -> str:
        """Short name used in loss histories and messages, e.g. ``'L1(A)'``."""
        return f"{type(self).__name__}({self.target})"

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description (for the result's problem spec)."""
        out: dict[str, Any] = {"type": type(self).__name__}
        for name, value in vars(self).items():
            if name.startswith("_"):
                continue
            out[name] = _jsonable(value)
        return out

    def on_data(self, problem: Any) -> None:
        """Called once with the whole problem before any start (data-scaled strengths)."""

    def on_init(self, A: Any, S: Any, loss_value: float) -> None:
        """Called once after initialization (e.g. to resolve relative strengths)."""

    def parts(self) -> list[Term]:
        """The term as one term per factor (a term on both factors splits in two)."""
        return [self]

    #: a penalty or filter on ``A`` that couples neighbouring pixels
    couples_pixels: ClassVar[bool] = False
    #: ... or pixels anywhere on the map (a data graph): no halo exchange can serve it
    couples_distant_pixels: ClassVar[bool] = False

    @property
    def scale_free(self) -> bool:
        """True when the term acts the same on ``c * X`` as on ``X``."""
        return True


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"<array shape {tuple(shape)}>"
    return repr(value)


@dataclass(frozen=True)
class Constraint(Term):
    """A hard constraint applied by projection (see the module for its capabilities).

    Subclasses implement :meth:`project`, declare their capabilities, and, when
    ``separable == "entries"``, :meth:`project_part`.
    """

    #: how the projection decomposes: "entries", "rows" or "none"
    separable: ClassVar[str] = "none"
    #: the feasible set is exactly the non-negative orthant
    is_orthant: ClassVar[bool] = False
    #: the feasible set is {S : S S^T = I}
    is_orthonormal: ClassVar[bool] = False
    #: each row lies on a scaled simplex (non-negative, its sum :attr:`row_sum`)
    simplex_rows: ClassVar[bool] = False
    #: the fixed sum of each row, for ``simplex_rows`` constraints
    row_sum: ClassVar[float | None] = None
    #: the set is reached by moving scale between the factors (see :meth:`rescale`)
    rescales: ClassVar[bool] = False
    #: the maps are refined once after the fit (see :meth:`finish`)
    finishes: ClassVar[bool] = False
    #: each row's least squares over the set is solved exactly (see :meth:`solve_rows`)
    solves_rows: ClassVar[bool] = False

    @property
    def implies_nonneg(self) -> bool:
        """True when every feasible point is ``>= 0``."""
        return self.is_orthant or self.simplex_rows

    @property
    def one_per_row(self) -> bool:
        """True when each row of the target holds at most one non-zero (on ``A``: every
        pixel is one endmember alone, a hard segmentation)."""
        return False

    @property
    def one_per_column(self) -> bool:
        """True when each column of the target holds at most one non-zero (on ``S``: each
        channel belongs to one endmember, whose rows are then orthogonal)."""
        return False

    def project(self, M: Any) -> Any:
        """Euclidean projection of ``M`` onto the constraint set."""
        raise NotImplementedError

    def project_part(self, values: Any, rows: Any, cols: Any) -> Any:
        """Project the entries ``M[rows, cols]`` alone (``values``, the same shape as that
        part): for ``separable == "entries"`` (any part) and ``"rows"`` (whole rows)."""
        if self.separable == "rows" and isinstance(cols, slice) and cols == slice(None):
            return self.project(values)
        part = "rows" if isinstance(cols, slice) and cols == slice(None) else "entries"
        raise NotImplementedError(f"{type(self).__name__} does not project {part} alone.")

    def rescale(self, A: Any, S: Any) -> tuple[Any, Any]:
        """Move scale between ``A`` (pixels, k) and ``S`` (k, channels) so that the target
        factor is as close to the set as a change of scale brings it, with ``A @ S``
        unchanged (a start's balance; for ``rescales`` constraints, exactly feasible)."""
        return A, S

    def fixed(self) -> tuple[Any, Any] | None:
        """``(mask, values)``: the entries the constraint pins (full factor shape), or None."""
        return None

    def solve_rows(self, G: Any, B: Any, diag_add: Any = None) -> Any:
        """For ``solves_rows`` constraints: ``argmin 1/2 a (G + diag(c)) a^T - a . b`` over
        the set for every row ``b`` of ``B`` (pixels, k), ``G`` (k, k) a Gram matrix,
        ``diag_add`` the rows' diagonal additions ``c`` (or None)."""
        raise NotImplementedError(f"{type(self).__name__} does not solve rows exactly.")

    def finish(self, A: Any, S: Any, XSt: Any, rows: slice) -> Any:
        """The maps ``A`` (a block of pixels, k) refined once after the fit, for
        ``finishes`` constraints.  ``XSt`` is ``X_b @ S.T`` (pixels, k) when the loss is
        plain Frobenius (None otherwise: refine without the data); ``rows`` are the block's
        rows among this process's pixels."""
        return A


@dataclass(frozen=True)
class Penalty(Term):
    """A soft regularizer ``lam * r(M)`` (see the module for its capabilities)."""

    lam: float = 0.0
    #: :meth:`prox` is implemented (proximal solvers apply the penalty through it)
    has_prox: ClassVar[bool] = False
    #: the local model is exact: a constant Gram term and a constant gradient
    quadratic: ClassVar[bool] = False
    #: differentiable (a non-smooth penalty is best applied through its prox)
    smooth: ClassVar[bool] = True
    #: holds a bound by a growing strength (:meth:`tighten`)
    tightens: ClassVar[bool] = False

    @property
    def scale_free(self) -> bool:
        """A penalty's ``lam`` is absolute (in the data's units) unless it says otherwise."""
        return not self.lam

    def constant_gradient(self) -> float | None:
        """The gradient when it is one scalar everywhere on the feasible set, else None."""
        return None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "lam", check_lam(self.lam, type(self).__name__))

    def value(self, M: Any) -> float:
        """The penalty's contribution to the objective at ``M``."""
        raise NotImplementedError

    def model(self, M: Any) -> PenaltyModel:
        """Local model around ``M`` (see :class:`PenaltyModel`)."""
        raise NotImplementedError

    def effective(self) -> dict[str, float]:
        """The absolute strengths in use (differs from ``lam`` for scaled penalties)."""
        return {"lam": float(self.lam)}

    def prox(self, V: Any, step: float) -> Any | None:
        """Proximal operator of ``step * lam * r`` if it has a cheap one, else None."""
        return None

    def tighten(self, A: Any, S: Any) -> bool:
        """For a penalty that holds a bound (the quadratic penalty method): at a point
        where the fit converged, raise the strength if the bound is not met and return
        True - the fit goes on from there; False otherwise (the default: a fixed
        strength)."""
        return False

    def unmet(self, A: Any, S: Any) -> str | None:
        """For a penalty that tightens: what of its bound the final point misses (a
        sentence for a warning), or None."""
        return None

    @property
    def schedule(self) -> float | None:
        """The strength a tightening penalty has reached (for a checkpoint), or None."""
        return None

    def resume_schedule(self, value: float) -> None:
        """Put back the strength a checkpoint saved (:attr:`schedule`)."""


@dataclass(frozen=True)
class Filter(Term):
    """An operator applied to a factor after each iteration (not part of the objective)."""

    def apply(self, M: Any) -> Any:
        raise NotImplementedError


def tightening(terms: Any) -> list[Any]:
    """The terms of ``terms`` that hold a bound by a growing strength (``tightens``, with a
    strength: ``lam=0`` holds nothing) - the rule of the engine's loop, of the default
    ``max_iter`` and of the tree's split budget."""
    return [t for t in terms if getattr(t, "tightens", False) and t.lam]
