"""Compiled per-block kernels: alternate implementations of the solvers' block work."""

from __future__ import annotations

from types import SimpleNamespace

from ._klmu import kl_mu_pass
from ._klmu import reasons as kl_reasons
from ._klmu import resolve as kl_resolve
from ._onepass import AUTO_MIN_ENTRIES, KERNELS, available, hals_pass, mu_pass, reasons, resolve

__all__ = [
    "AUTO_MIN_ENTRIES",
    "KERNELS",
    "available",
    "hals_pass",
    "kl_mu_pass",
    "kl_reasons",
    "kl_resolve",
    "klcd_kernels",
    "mu_pass",
    "reasons",
    "resolve",
]


def klcd_kernels() -> SimpleNamespace:
    """The coordinate-descent KL kernels (numba is imported when a fit runs, not when
    unmix is): ``Sparse`` (a CSR block with its model), ``Holes`` (a block's missing
    entries), ``block_a_pass``, ``block_s_pass``,
    ``sparse_a_pass``, ``sparse_s_pass`` and the fits ``block_fit``, ``sparse_fit``."""
    from ._klcd import (
        Holes,
        Sparse,
        block_a_pass,
        block_fit,
        block_s_pass,
        sparse_a_pass,
        sparse_fit,
        sparse_s_pass,
    )

    return SimpleNamespace(
        Sparse=Sparse,
        Holes=Holes,
        block_a_pass=block_a_pass,
        block_s_pass=block_s_pass,
        sparse_a_pass=sparse_a_pass,
        sparse_s_pass=sparse_s_pass,
        block_fit=block_fit,
        sparse_fit=sparse_fit,
    )
