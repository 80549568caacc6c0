"""Declared parameters: rules for the values a parameter accepts, checked and documented once.

A :class:`Param` row names a parameter, the values it accepts (a list of :class:`Rule`,
any of which may accept), its default, a short phrase for messages and ``--help``, and its
numpydoc entry.  A table is a dict of rows.  :func:`check_params` validates values
against a table (one wording for Python, TOML and the command line), every row can
produce a value it refuses (:meth:`Param.invalid`, from which tests are generated), and
:func:`document_parameters` writes a function's numpydoc ``Parameters`` entries from its
rows (the idea of scikit-learn's ``_parameter_constraints``, with the docs kept beside
the rules).  The tables: :data:`unmix.engine.PARAMETERS` (``factorize``, the ``NMF``
estimator, TOML, CLI) and those of :mod:`unmix.hierarchy` and :mod:`unmix.selection`.
"""

from __future__ import annotations

import inspect
import math
import numbers
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Anything",
    "Callback",
    "Instance",
    "Interval",
    "InvalidParameterError",
    "IsNone",
    "Options",
    "Param",
    "Rule",
    "Shape",
    "check_params",
    "document_parameters",
    "lower",
    "numpydoc_parameters",
    "table",
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

    def shown_default(self) -> Any:
        """The default to show (``--help``): the table's, or where that is None (resolved
        by a preset or the model) the one its documentation names - ``(default 500)``,
        ``"frobenius"`` (default), or the model's own start."""
        if self.default is not None:
            return self.default
        found = re.search(r"\(default ([^)]+)\)", self.details) or re.search(
            r'``"?([\w.-]+)"?`` \(default\)', self.details
        )
        if found:
            return found.group(1)
        if "Default (None): the model's own start" in " ".join(self.details.split()):
            return "the model's own start"
        return None

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


def lower(values: Iterable[str]) -> frozenset:
    """The lower-cased set of ``values`` (for :class:`Options`)."""
    return frozenset(v.lower() for v in values)


def table(*rows: Param) -> dict[str, Param]:
    """A table: the rows by name."""
    return {row.name: row for row in rows}


def numpydoc_parameters(rows: Mapping[str, Param], names: Iterable[str]) -> str:
    """The numpydoc entries of the rows ``names``, in that order."""
    return "".join(rows[name].numpydoc() for name in names)


def document_parameters(rows: Mapping[str, Param]) -> Callable[[Any], Any]:
    """Fill the line ``{parameters}`` of a function's docstring with the entries of the
    rows named like the function's parameters, in the signature's order."""

    def deco(f: Any) -> Any:
        names = [n for n in inspect.signature(f).parameters if n in rows]
        f.__doc__ = f.__doc__.replace("    {parameters}\n", numpydoc_parameters(rows, names))
        return f

    return deco


class InvalidParameterError(ValueError, TypeError):
    """A parameter value its table refuses: both a ``ValueError`` and a ``TypeError`` (a
    value out of range and a value of the wrong type read the same), as in scikit-learn."""


def check_params(values: Mapping[str, Any], rows: Mapping[str, Param], *, where: str) -> None:
    """Raise :class:`InvalidParameterError` for a value a row refuses (or an unknown name).

    Only the keys present are checked.
    """
    for name, value in values.items():
        row = rows.get(name)
        if row is None:
            raise InvalidParameterError(
                f"{where}: unknown parameter {name!r}; valid: {', '.join(sorted(rows))}."
            )
        if not row.accepts(value):
            raise InvalidParameterError(row.error(value, where))
