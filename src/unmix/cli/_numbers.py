"""Number flags checked as typed: :class:`FiniteRange`, ``click.FloatRange`` without
``nan`` and ``inf`` (click's ranges let ``nan`` through: every comparison with it is
false), and :data:`STRENGTH`, a term's strength."""

from __future__ import annotations

import math
from typing import Any

import click

__all__ = ["STRENGTH", "FiniteRange"]


class FiniteRange(click.FloatRange):
    """A finite number in a range (``click.FloatRange``'s bounds, shown in ``--help``); the
    error names the value as typed and the range, plus ``note`` (what the bound means).
    Checked before the file is read: the fit scales some strengths by the data, and the
    model refused ``--sparsity -1`` as ``lam=-63022.87``, a number the user never gave."""

    def __init__(
        self,
        min: float | None = None,
        max: float | None = None,
        *,
        min_open: bool = False,
        max_open: bool = False,
        note: str = "",
    ) -> None:
        super().__init__(min, max, min_open=min_open, max_open=max_open)
        self.note = note

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        x = click.FLOAT.convert(value, param, ctx)
        below = self.min is not None and (x <= self.min if self.min_open else x < self.min)
        above = self.max is not None and (x >= self.max if self.max_open else x > self.max)
        if not math.isfinite(x) or below or above:
            self.fail(f"{value} is not a finite number {self._wanted()}{self.note}.", param, ctx)
        return x

    def _wanted(self) -> str:
        """``>= 0``, ``> 0``, ``in [0, 1)``, ..."""
        if self.max is None:
            return f"{'>' if self.min_open else '>='} {self.min:g}"
        if self.min is None:
            return f"{'<' if self.max_open else '<='} {self.max:g}"
        lo, hi = "(" if self.min_open else "[", ")" if self.max_open else "]"
        return f"in {lo}{self.min:g}, {self.max:g}{hi}"


#: a term's strength or width as typed (0: the term is off)
STRENGTH = FiniteRange(0.0, note=" (0: the term is off)")
