"""What one restart keeps besides the factors: its history and checkpoint bookkeeping."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._problem import Problem
from ._robust import l21_fit
from .solvers._kl_sparse import uses_sparse_kl

__all__ = [
    "History",
    "RestartRecord",
    "evaluate_fit",
    "exact_descent",
    "objective_at",
    "restore_state",
]


def evaluate_fit(p: Problem, A: Any, S: Any) -> float:
    """Data-fit term at ``(A, S)`` (one pass).

    Plain Frobenius in float64 uses the Gram identity ``1/2 (||X||^2 - 2 <A^T X, S> +
    <A^T A, S S^T>)`` (one product per block, no temporaries of X's size); everything else
    is computed entry by entry; the l2,1 loss from every pixel's residual norm.
    """
    be, xp = p.be, p.be.xp
    if p.loss.reweights_pixels:
        return l21_fit(p, A, S)
    if (
        p.loss.is_frobenius
        and p.link.is_identity
        and not p.data.weighted
        and (be.dtype == be.acc_dtype)
    ):
        AtX = sum(be.acc(p.data.t_times(b, A[b.slice, :])) for b in p.data.blocks)
        S64 = be.acc(S)
        cross = float(xp.sum(AtX * S64)) if p.data.blocks else 0.0
        quad = float(xp.sum((be.acc(A.T @ A) @ S64) * S64))
        cross, quad = (float(v) for v in p.data.reduce(np.array([cross, quad])))
        return max(0.5 * (p.data.norm2() - 2.0 * cross + quad), 0.0)
    total = 0.0
    if uses_sparse_kl(p):  # KL from the nonzeros of sparse X and the column sums
        tiny = float(be.tiny)
        local = sum(p.data.kl_value(b, A[b.slice, :], S, tiny) for b in p.data.blocks)
        return float(p.data.reduce(local))
    for b in p.data.blocks:
        Y = p.link.forward(A[b.slice, :] @ S, xp)
        total += float(be.acc(p.loss.value(p.data.x(b), Y, p.data.w(b), xp=xp, tiny=be.tiny)))
    return float(p.data.reduce(total))


def objective_at(p: Problem, A: Any, S: Any) -> float:
    """The full objective at ``(A, S)``: :func:`evaluate_fit` plus every penalty."""
    return evaluate_fit(p, A, S) + sum(p.penalty_values(A, S).values())


def exact_descent(
    p: Problem, tol: float, ref: tuple[int, float] | None, it: int, now: tuple, before: tuple
) -> tuple[bool, tuple[int, float]]:
    """Whether the objective at ``now = (A, S)`` of iteration ``it``, evaluated entry by
    entry (:func:`objective_at`, accurate far below the rounding noise of a float32
    Gram-identity objective), fell by more than ``tol`` times it an iteration, on
    average, since ``ref = (iteration, objective)``, the last such evaluation; with none,
    since ``before``, the iteration before's ``(A, S)`` (one more pass).  Returns that and
    the new reference.

    A float32 fit stopping on changes within the noise asks it first: MU on the EELS map
    (Gram noise ~2e6, up and down, against true changes of ~1e6 an iteration) stopped
    after 26 iterations 4 % above float64's fit, and the CLI's HALS fit of the Raman map
    at 40, 1 % above float64's 359 (now 358, the same objective to 1e-5).
    """
    f = objective_at(p, *now)
    ref = (it - 1, objective_at(p, *before)) if ref is None else ref
    return ref[1] - f > tol * abs(f) * (it - ref[0]), (it, f)


class History:
    """Per-iteration objective, fit, time, phase and each penalty's value."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {"objective": [], "fit": [], "time": [], "phase": []}

    def add(self, obj: float, fit: float, pens: dict, elapsed: float, phase: int) -> None:
        n = len(self.values["objective"])
        for key, val in (("objective", obj), ("fit", fit), ("time", elapsed), ("phase", phase)):
            self.values[key].append(val)
        for key, val in pens.items():
            self.values.setdefault(key, [float("nan")] * n).append(val)

    def repeat_last(self, elapsed: float, phase: int) -> tuple[float, float, dict]:
        """Record the last row again (an iteration that went back to the last point);
        returns its ``(objective, fit, penalties)``."""
        for key, vals in self.values.items():
            vals.append(elapsed if key == "time" else phase if key == "phase" else vals[-1])
        own = ("objective", "fit", "time", "phase")
        pens = {key: vals[-1] for key, vals in self.values.items() if key not in own}
        return self.values["objective"][-1], self.values["fit"][-1], pens

    def __len__(self) -> int:
        return len(self.values["objective"])

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` rows (a restart of components that was given up)."""
        for vals in self.values.values():
            del vals[n:]

    @property
    def last(self) -> float:
        return self.values["objective"][-1]

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=float) for k, v in self.values.items()}

    @classmethod
    def from_arrays(cls, arrays: dict) -> History:
        h = cls()
        h.values = {k: [float(x) for x in np.asarray(v)] for k, v in arrays.items()}
        return h


@dataclass
class RestartRecord:
    """Mutable bookkeeping of one restart (what a checkpoint needs besides A and S)."""

    restart: int
    seed: int
    A0: Any
    S0: Any
    fit0: float
    t_init: float
    elapsed0: float = 0.0
    resume_state: dict | None = None
    history: History | None = None
    revived: list[int] = field(default_factory=list)  # components restarted once

    @classmethod
    def from_snapshot(cls, snap: dict, restart: int, seed: int, be: Any) -> RestartRecord:
        return cls(
            restart,
            seed,
            be.asarray(snap["A0"]),
            be.asarray(snap["S0"]),
            snap["fit0"],
            snap["t_init"],
            snap["elapsed"],
            snap["state"],
            History.from_arrays(snap["history"]),
        )

    def snapshot(
        self,
        A: Any,
        S: Any,
        state: dict,
        persistent: tuple,
        at: tuple[int, int, float, float],
    ) -> dict:
        """Everything :meth:`from_snapshot` and the loop need to continue; ``at`` is
        ``(phase, iteration, previous objective, elapsed seconds)``."""
        phase, it, prev, elapsed = at
        return {
            "A": A,
            "S": S,
            "A0": self.A0,
            "S0": self.S0,
            "history": self.history.arrays(),
            "state": {k: state[k] for k in persistent},
            "restart": self.restart,
            "seed": self.seed,
            "phase": phase,
            "iteration": it,
            "prev": prev,
            "fit0": self.fit0,
            "t_init": self.t_init,
            "elapsed": elapsed,
        }


def restore_state(state: dict, saved: dict | None, p: Problem) -> None:
    """Put a checkpoint's solver state (dual variables, moments) back into ``state``."""
    for key, value in (saved or {}).items():
        if key in state and hasattr(state[key], "shape"):
            state[key] = p.be.asarray(value)
        elif key in state:
            state[key] = type(state[key])(value)
