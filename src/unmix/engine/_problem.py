"""A frozen combination of knobs bound to one data set: what every solver works on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._backend import Backend
from ..blocks import PixelData
from ..model import Constraint, Filter, Link, Loss, Penalty, PenaltyModel

__all__ = ["Problem"]


def _add(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


@dataclass
class Problem:
    """Everything a solver needs: data, loss, link and the bound terms per factor."""

    k: int
    loss: Loss
    link: Link
    be: Backend
    data: PixelData
    constraints: dict[str, list[Constraint]]
    penalties: dict[str, list[Penalty]]
    filters: dict[str, list[Filter]]
    spatial_shape: tuple[int, ...] | None = None
    signal_shape: tuple[int, ...] | None = None
    update_S: bool = True
    #: this process's ``[start, stop)`` rows of ``X`` and the block size of the serial grid
    rows: tuple[int, int] | None = None
    block_size: int | None = None

    @property
    def nonneg_A(self) -> bool:
        return self._nonneg("A")

    @property
    def nonneg_S(self) -> bool:
        return self._nonneg("S")

    def _nonneg(self, target: str) -> bool:
        for c in self.constraints[target]:
            if c.kind in ("nonneg", "simplex"):
                return True
            if c.kind == "box" and getattr(c, "nonneg", False):
                return True
        return False

    def kinds(self, target: str) -> set[str]:
        return {c.kind for c in self.constraints[target]}

    def project(self, target: str, M: Any) -> Any:
        """Apply the hard constraints on ``target`` in order."""
        for c in self.constraints[target]:
            M = c.project(M)
        return M

    def filter(self, target: str, M: Any) -> Any:
        for f in self.filters[target]:
            M = f.apply(M)
        return M

    @property
    def fixed(self) -> Any:
        """The bound FixedEndmembers constraint, or None."""
        for c in self.constraints["S"]:
            if c.kind == "fixed":
                return c
        return None

    def free_rows(self) -> list[int]:
        """Rows of ``S`` that are updated (all but fully fixed endmembers)."""
        fixed = self.fixed
        frozen = set(fixed.frozen_rows) if fixed is not None else set()
        return [j for j in range(self.k) if j not in frozen]

    def model(self, target: str, M: Any, *, exclude: tuple[str, ...] = ()) -> PenaltyModel:
        """Combined local model of the penalties on ``target`` at ``M``.

        Penalties whose class name is in ``exclude`` are left out (a solver that applies
        them through their proximal operator instead).
        """
        out = PenaltyModel()
        for p in self.penalties[target]:
            if p.lam == 0 or type(p).__name__ in exclude:
                continue
            m: PenaltyModel = p.model(M)
            if m.mu_pos is None and m.mu_neg is None:
                m.mu_pos, m.mu_neg = self._mu_split(target, M, m)
            out.gram = _add(out.gram, m.gram)
            out.grad = _add(out.grad, m.grad)
            out.curv = _add(out.curv, m.curv)
            out.lipschitz += m.lipschitz
            out.mu_pos = _add(out.mu_pos, m.mu_pos)
            out.mu_neg = _add(out.mu_neg, m.mu_neg)
        return out

    def _mu_split(self, target: str, M: Any, m: PenaltyModel) -> tuple[Any, Any]:
        """Generic split of a model's gradient into non-negative parts (for MU)."""
        xp, be = self.be.xp, self.be
        pos = neg = None
        if m.grad is not None:
            pos, neg = be.clip_min(m.grad, 0.0), be.clip_min(-m.grad, 0.0)
        if m.gram is not None:
            gp, gn = be.work(be.clip_min(m.gram, 0.0)), be.work(be.clip_min(-m.gram, 0.0))
            qp, qn = (M @ gp, M @ gn) if target == "A" else (gp @ M, gn @ M)
            pos, neg = _add(pos, qp), _add(neg, qn)
        del xp
        return pos, neg

    def penalty_values(self, A: Any, S: Any) -> dict[str, float]:
        """Each penalty's value; those on ``A`` summed over the processes sharing pixels."""
        vals: dict[str, float] = {}
        for target, M in (("A", A), ("S", S)):
            for p in self.penalties[target]:
                v = p.value(M) if p.lam else 0.0
                if target == "A":
                    v = float(self.data.reduce(v))
                vals[p.label] = vals.get(p.label, 0.0) + v
        return vals
