"""The solver protocol: what a solver supports, and one iteration as one data pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..._validation import UnsupportedError
from ...executors.base import Executor
from .._problem import Problem

__all__ = [
    "REGISTRY",
    "Solver",
    "StepOut",
    "register",
    "solvers_supporting",
]


@dataclass
class StepOut:
    """What one iteration returns.

    ``fit`` is the data-fit term evaluated at ``(A_new, fit_S)``; ``fit_S`` is either the
    new or the previous ``S`` (solvers compute it where it is free).
    """

    S: Any
    fit: float
    fit_S: Any
    #: True when ``fit`` was evaluated at the maps *before* this step
    fit_at_old_A: bool = False


class Solver:
    """Base class: declare capabilities, check a problem, run iterations.

    Subclasses set the capability class attributes and implement :meth:`step`.
    Everything that depends on the data happens inside ``step`` as one pass over the
    pixel blocks through ``executor.map_reduce``.
    """

    name: ClassVar[str] = "?"
    #: beta values supported ("any" or a tuple of betas)
    betas: ClassVar[Any] = (2.0,)
    #: the separabilities of the constraints the solver applies on A and on S (a
    #: constraint's ``separable``); :meth:`accepts` may ask more of a constraint
    separable_A: ClassVar[frozenset] = frozenset({"entries", "rows", "none"})
    separable_S: ClassVar[frozenset] = frozenset({"entries", "rows", "none"})
    #: penalties are applied (every Penalty through its local model)
    takes_penalties: ClassVar[bool] = True
    links: ClassVar[bool] = False
    #: "none", "mask" (binary mask only), "pixels" (pixel weights alone), "pixels+mask",
    #: "separable" (pixel and channel weights; takes "pixels" too), "full" (takes all)
    weights: ClassVar[frozenset] = frozenset({"none"})
    #: the step lowers (ADMM: approximately) a weighted Frobenius objective whose pixel
    #: weights may change between iterations, each change followed by :meth:`setup`:
    #: what a loss that reweights the pixels (l2,1, :mod:`unmix.engine._robust`) drives
    reweightable: ClassVar[bool] = False
    needs_nonneg: ClassVar[bool] = False
    #: every step lowers the objective (the stop rule trusts one small change); a solver
    #: that is not monotone must see the change stay small (see unmix.engine._stop)
    monotone: ClassVar[bool] = False
    #: the loop may extrapolate between its steps (``solver_options={"extrapolate":
    #: True}``, unmix.engine._extrapolate): a monotone step from any feasible point
    extrapolates: ClassVar[bool] = False
    #: ... and, unless the fit says, from this iteration on (a fit still iterating by
    #: then is on a slow slope); None: only when asked or on a simplex
    extrapolates_after: ClassVar[int | None] = None
    #: extrapolate the logarithms of the factors (multiplicative steps: an entry the
    #: clip at 0 reached could never grow again)
    extrapolates_geometrically: ClassVar[bool] = False
    #: every step returns feasible endmembers from any start (each row projected): an
    #: extrapolated ``S`` need not be projected first
    step_projects_S: ClassVar[bool] = True
    #: solved in a single step (no iterations)
    one_shot: ClassVar[bool] = False
    #: state keys that carry over between iterations (saved in checkpoints)
    persistent: ClassVar[tuple] = ()
    #: the ``max_iter`` a fit takes when none is given (a slow solver takes more)
    default_max_iter: ClassVar[int] = 500
    #: the keys of ``solver_options`` the solver takes (its docstring's "Options"); None
    #: (a user's solver that does not declare them): any
    option_names: ClassVar[frozenset | None] = None

    def __init__(self, **options: Any) -> None:
        self._check_options(options)
        self.options = options

    def _check_options(self, options: dict) -> None:
        """Refuse option names the solver does not declare in :attr:`option_names`."""
        if self.option_names is None:
            return
        flag = options.get("extrapolate", False)
        if not isinstance(flag, bool):
            raise ValueError(
                f"solver_options: extrapolate must be True or False; got {flag!r} "
                "(on the command line: --solver-option extrapolate=true)."
            )
        unknown = sorted(set(options) - self.option_names)
        if unknown:
            valid = ", ".join(repr(n) for n in sorted(self.option_names)) or "none"
            raise ValueError(
                f"solver_options: solver {self.name!r} has no option "
                f"{', '.join(repr(n) for n in unknown)}; its options: {valid}."
            )

    # ----------------------------------------------------------------- checks
    def problems(self, p: Problem) -> list[str]:
        """Reasons this solver cannot handle ``p`` (empty when it can)."""
        out = []
        takes_loss = self.takes_loss(p.loss)
        if not takes_loss:
            out.append(f"loss={p.loss.name!r}")
        if not p.link.is_identity and not self.links:
            out.append(f"link={p.link.name!r}")
        for target in ("A", "S"):
            for c in p.constraints[target]:
                if not self.accepts(c, target):
                    out.append(f"{type(c).__name__} on {target}")
            for pen in p.penalties[target]:
                if not self.takes_penalties:
                    out.append(f"{type(pen).__name__} on {target}")
        need = _weight_kind(p, loss=takes_loss)  # a refused loss's weights: said already
        if not self.takes_weights(need):
            why = {
                "mask": "a mask",
                "pixels": "pixel weights",
                "pixels+mask": "pixel weights and a mask",
                "separable": "pixel/channel weights",
                "full": "full (n_pixels, n_channels) weights",
            }[need]
            if need != _weight_kind(p, loss=False):
                why += f" (loss={p.loss.name!r} weights the pixels)"
            out.append(why)
        if self.needs_nonneg and not (p.nonneg_A and p.nonneg_S):
            out.append("factors that may be negative")
        return out

    def takes_weights(self, kind: str) -> bool:
        """Whether the solver fits data weighted as ``kind`` (``"none"``, ``"mask"``,
        ``"pixels"``, ``"pixels+mask"``, ``"separable"`` or ``"full"``, :attr:`weights`):
        pixel weights alone are a case of separable ones, with a mask of full ones."""
        broader = {"pixels": "separable", "pixels+mask": "full"}.get(kind)
        return kind in self.weights or broader in self.weights

    def takes_loss(self, loss: Any) -> bool:
        """Whether the solver minimizes ``loss``: a beta it declares in :attr:`betas`; a
        loss that reweights the pixels, if :attr:`reweightable` (by Frobenius steps)."""
        if loss.reweights_pixels:
            return self.reweightable and (self.betas == "any" or 2.0 in self.betas)
        return self.betas == "any" or loss.beta in self.betas

    def accepts(self, c: Any, target: str) -> bool:
        """Whether the solver applies the bound constraint ``c`` on ``target``."""
        allowed = self.separable_A if target == "A" else self.separable_S
        return c.separable in allowed

    def fit_at(self, p: Problem, A: Any, S: Any, state: dict, executor: Executor) -> float | None:
        """The data fit at ``(A, S)`` computed the solver's own (faster) way, or None: the
        loop then evaluates it entry by entry (:func:`unmix.engine._record.evaluate_fit`)."""
        return None

    def extrapolation_refused(self, p: Problem) -> str:
        """Why the loop may not extrapolate between this solver's steps on ``p``, as the
        end of "solver_options extrapolate=True ..." (empty when it may: every step is
        monotone from any feasible point).  Solvers add their own reasons to these."""
        if not self.extrapolates:
            return f"is not taken by solver={self.name!r}"
        filters = [f.label for t in ("A", "S") for f in p.filters[t]]
        if filters:
            return (
                f"cannot be used with filters ({', '.join(filters)}): they change the "
                "factors between iterations, so a step cannot be judged by its objective. "
                "Drop the option or the filter"
            )
        if p.loss.reweights_pixels:
            return (
                "does not run loss='l21': its pixel weights are recomputed at every step, "
                "so a discarded step would leave the weights of a point the fit went back "
                "from; drop the option or use loss='frobenius'"
            )
        return ""

    def check(self, p: Problem) -> None:
        """Raise :class:`UnsupportedError` naming solvers that do support ``p``."""
        refused = self.extrapolation_refused(p)
        if self.options.get("extrapolate") and refused:
            raise UnsupportedError(f"solver_options extrapolate=True {refused}.")
        reasons = self.problems(p)
        if reasons:
            others = solvers_supporting(p)
            hint = (
                f"solvers that do: {', '.join(repr(s) for s in others)}."
                if others
                else "no solver supports this exact combination; drop one of them."
            )
            raise UnsupportedError(
                f"solver={self.name!r} does not support {', '.join(reasons)}; {hint}"
            )

    # ------------------------------------------------------------ iteration
    def setup(self, p: Problem, A: Any, S: Any) -> dict:
        """Per-fit state (e.g. dual variables), created once."""
        return {}

    def step(self, p: Problem, A: Any, S: Any, state: dict, executor: Executor) -> StepOut:
        """One iteration: update ``A`` in place block by block, return the new ``S``."""
        raise NotImplementedError

    def filtered(self, p: Problem, A: Any, S: Any, S_prev: Any, state: dict, *, hold: bool) -> Any:
        """After a step: the filters between iterations (``A`` in place, the new ``S``);
        with ``hold`` (:meth:`Problem.gauge_floats`: nothing else holds the factors'
        scale), each endmember then keeps its norm in ``S_prev`` and the state follows
        (:meth:`regauge`)."""
        S = p.filtered(A, S)
        if hold:
            S, d = p.hold_gauge(A, S, S_prev)
            self.regauge(state, d)
        return S

    def regauge(self, state: dict, d: Any) -> None:
        """The loop multiplied the maps' columns by ``d`` (k,) and divided the endmembers'
        rows by it, ``A @ S`` unchanged (:meth:`Problem.hold_gauge`): bring the state
        that carries a factor's scale along (duals, directions).  Nothing by default: a
        state of products (``A @ S``) or of the data is unchanged."""


def _weight_kind(p: Problem, *, loss: bool = True) -> str:
    """The weights the fit needs; ``loss=False``: those of the data alone (not counting
    the pixel weights of a loss that reweights them)."""
    d = p.data
    if d.full_w is not None:
        return "full"
    pixels = p.pixel_weighted if loss else d.pixel_w is not None
    if pixels and d.channel_w is None:
        return "pixels" if d.mask is None else "pixels+mask"
    if pixels or d.channel_w is not None:
        return "separable" if d.mask is None else "full"
    if d.mask is not None:
        return "mask"
    return "none"


REGISTRY: dict[str, type[Solver]] = {}


def register(cls: type[Solver]) -> type[Solver]:
    REGISTRY[cls.name] = cls
    return cls


def solvers_supporting(p: Problem) -> list[str]:
    return [name for name, cls in REGISTRY.items() if not cls().problems(p)]
