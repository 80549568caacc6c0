"""Compiled per-block kernels: alternate implementations of the solvers' block work."""

from __future__ import annotations

from ._onepass import AUTO_MIN_ENTRIES, KERNELS, available, hals_pass, mu_pass, reasons, resolve

__all__ = [
    "AUTO_MIN_ENTRIES",
    "KERNELS",
    "available",
    "hals_pass",
    "mu_pass",
    "reasons",
    "resolve",
]
