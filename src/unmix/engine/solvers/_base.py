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
    "unit_rows_into_maps",
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
    #: constraint kinds supported on A and on S
    kinds_A: ClassVar[frozenset] = frozenset()
    kinds_S: ClassVar[frozenset] = frozenset()
    #: penalties supported: "any" (every Penalty through its local model) or class names
    penalties: ClassVar[Any] = "any"
    links: ClassVar[bool] = False
    #: "none", "mask" (binary mask only), "separable", "full"
    weights: ClassVar[frozenset] = frozenset({"none"})
    needs_nonneg: ClassVar[bool] = False
    monotone: ClassVar[bool] = False
    #: solved in a single step (no iterations)
    one_shot: ClassVar[bool] = False
    #: state keys that carry over between iterations (saved in checkpoints)
    persistent: ClassVar[tuple] = ()

    def __init__(self, **options: Any) -> None:
        self.options = options

    # ----------------------------------------------------------------- checks
    def problems(self, p: Problem) -> list[str]:
        """Reasons this solver cannot handle ``p`` (empty when it can)."""
        out = []
        if self.betas != "any" and p.loss.beta not in self.betas:
            out.append(f"loss={p.loss.name!r}")
        if not p.link.is_identity and not self.links:
            out.append(f"link={p.link.name!r}")
        for target, allowed in (("A", self.kinds_A), ("S", self.kinds_S)):
            for c in p.constraints[target]:
                if c.kind not in allowed:
                    out.append(f"{type(c).__name__} on {target}")
        for target in ("A", "S"):
            for pen in p.penalties[target]:
                if self.penalties != "any" and type(pen).__name__ not in self.penalties:
                    out.append(f"{type(pen).__name__} on {target}")
        need = _weight_kind(p)
        if need not in self.weights:
            out.append(
                {
                    "mask": "a mask",
                    "separable": "pixel/channel weights",
                    "full": "full (n_pixels, n_channels) weights",
                }[need]
            )
        if self.needs_nonneg and not (p.nonneg_A and p.nonneg_S):
            out.append("factors that may be negative")
        return out

    def check(self, p: Problem) -> None:
        """Raise :class:`UnsupportedError` naming solvers that do support ``p``."""
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


def unit_rows_into_maps(p: Problem, A: Any, S: Any) -> Any:
    """With unit-norm endmembers, return ``S`` with rows of norm 1 and move each row's norm
    into the matching column of ``A`` (in place), so that ``A @ S`` is unchanged."""
    xp = p.be.xp
    if "unitnorm" not in p.kinds("S"):
        return S
    norms = xp.sqrt(xp.sum(S * S, axis=1))
    norms = xp.where(norms > 0, norms, 1.0)
    A *= norms[None, :]
    return S / norms[:, None]


def _weight_kind(p: Problem) -> str:
    d = p.data
    if d.full_w is not None:
        return "full"
    if d.pixel_w is not None or d.channel_w is not None:
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
