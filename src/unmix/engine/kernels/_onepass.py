"""One-pass compiled CPU kernels (numba) for the plain-Frobenius MU and HALS iterations.

Per pixel block ``b`` the reference path makes two BLAS calls, ``X_b @ S.T`` and
``A_b.T @ X_b``, each with only ``k`` columns on one side, which BLAS runs far below its
peak.  The kernels here do the block's whole share of an iteration in compiled loops:

1. ``T_b = X_b S^T``, register-blocked (tiles of 2 rows x 4 components, vectorized loops
   over chunks of channels that stay in L1), stored transposed (k x n_b);
2. the solver's inner repeats on ``A_b`` (worked on transposed, k x n_b, so that each of
   a sweep's k x k steps is one vectorized loop over the block's rows) from ``T_b`` and
   ``G = S S^T`` alone (MU: ``A_b <- A_b * T_b / (A_b G + l1)``; HALS: coordinate
   sweeps), with the *same* block-level stopping rule as the reference path (Gillis &
   Glineur ``delta`` rule over the whole block), so the iterates are the reference's up
   to rounding;
3. ``A_b^T X_b`` (tiles of 4 rows x 2 components over chunks of channels) and
   ``A_b^T A_b``, returned in float64 for ``executor.map_reduce`` to sum as before.

Step 3 reads ``X_b`` a second time: the block-level stopping rule needs every row's
``T`` before any row's final ``A`` is known.  With cache-sized blocks (``block_size``)
that second read comes from cache; the default 8 MB blocks sit in L3 on most CPUs.

Dot products and block sums are accumulated in the working dtype, as BLAS does in the
reference path (float32 stays float32); the kernels allow re-association and fused
multiply-adds only (``reassoc``/``contract``: no reciprocal or NaN/Inf assumptions),
which changes results by rounding alone.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from ...blocks import LowRankData, PixelData, StreamedData

__all__ = ["available", "hals_pass", "mu_pass", "reasons", "resolve"]

# numba itself (LLVM, about 150 MB resident) is imported only when a kernel runs
_HAVE = importlib.util.find_spec("numba") is not None

KERNELS = ("auto", "onepass", "blas")
# "auto" takes the kernel from this many entries of X: below it the JIT cache load (about
# 0.5 s a process) and numba's import (about 150 MB resident) outweigh the gain
AUTO_MIN_ENTRIES = 1 << 22


def available() -> bool:
    """True when numba can be imported."""
    return _HAVE


# ------------------------------------------------------------------ capability
def reasons(p: Any, solver: str) -> list[str]:
    """Why the one-pass kernel cannot run ``p`` for ``solver`` (empty when it can)."""
    out = compiled_pass_reasons(p)
    if not p.loss.is_frobenius:
        out.append(f"loss={p.loss.name!r}")
    if solver == "mu" and not p.nonneg_A:
        out.append("A without non-negativity")
    return out


def compiled_pass_reasons(p: Any) -> list[str]:
    """What keeps ``p`` off the compiled passes over dense NumPy blocks, whatever the
    loss (this module's and the fused KL step's): numba, the backend, the data's form,
    weights, a link, constraints and penalties on the maps they do not apply."""
    out = []
    if not _HAVE:
        out.append("numba is not installed (pip install 'unmix[fast]')")
    if p.be.name != "numpy":
        out.append(f"backend {p.be.name!r} (NumPy on CPU only)")
    d = p.data
    if getattr(d, "sparse", False):
        out.append("sparse X (the passes on its nonzeros)")
    elif isinstance(d, StreamedData):
        pass  # each block is read into a NumPy array of the working dtype
    elif type(d) is not PixelData:
        out.append("data that is not an in-memory or streamed array")
    elif not isinstance(d.X, np.ndarray) or not d.X.flags.c_contiguous:
        out.append("X that is not a C-contiguous NumPy array")
    elif d.X.dtype not in (np.float32, np.float64):
        out.append(f"dtype {d.X.dtype}")
    if d.weighted:
        out.append("weights or a mask")
    if not p.link.is_identity:
        out.append(f"link={p.link.name!r}")
    for c in p.constraints["A"]:
        if not c.is_orthant:
            out.append(f"{type(c).__name__} on A")
    if p.constant_penalty_gradient("A") is None:
        out.append("penalties on A whose gradient is not one constant (only L1 on A >= 0)")
    return out


def resolve(option: Any, p: Any, solver: str) -> bool:
    """Whether to run the one-pass kernel for ``kernel=option``.

    ``"auto"``: when numba is installed, the problem qualifies and ``X`` has at least
    :data:`AUTO_MIN_ENTRIES` entries (HALS per pass 1.4-1.8x faster than BLAS, see
    ``benchmarks/results/onepass.md``); ``"onepass"``: always, or a ValueError naming
    why not; ``"blas"``: never (the reference path).  The compressed
    phase of ``compress=`` (small projected data) always takes the reference path.
    """
    option = "auto" if option is None else option
    if option not in KERNELS:
        raise ValueError(f"kernel={option!r}: expected one of {', '.join(map(repr, KERNELS))}")
    if option == "blas":
        return False
    if isinstance(p.data, LowRankData):
        return False  # the compressed phase of compress=: no large X to pass over
    why = reasons(p, solver)
    if option == "onepass" and why:
        raise ValueError(f"kernel='onepass' cannot run this problem: {'; '.join(why)}")
    if option == "auto" and p.data.n_pixels * p.data.n_channels < AUTO_MIN_ENTRIES:
        return False
    return not why


def _pass(p: Any, A: Any, S: Any, G: Any, executor: Any, *, hals: bool, options: dict) -> dict:
    from ._numba import block_pass

    data = p.data
    dt = np.dtype(p.be.dtype)
    inner_max = int(options.get("inner_max", 10))
    delta = float(options.get("inner_delta", 0.1))
    lam = p.constant_penalty_gradient("A") or 0.0
    S_ = np.ascontiguousarray(S, dtype=dt)
    G_ = np.ascontiguousarray(G, dtype=dt)
    nonneg = bool(p.nonneg_A)
    tiny = float(p.be.tiny)
    m, k = int(data.n_channels), int(S_.shape[0])

    def kernel(block: Any) -> dict:
        Ab = A[block.slice, :]
        Xb = np.ascontiguousarray(data.x(block))  # a view in memory, one read when streamed
        AtX = np.empty((k, m), dt)
        AtA = block_pass(Xb, Ab, S_, G_, lam, tiny, nonneg, inner_max, delta, hals, AtX)
        return {"AtX": AtX.astype(np.float64), "AtA": AtA}

    return executor.map_reduce(kernel, p.data.blocks)


def mu_pass(p: Any, A: Any, S: Any, G: Any, executor: Any, options: dict, inner: int) -> dict:
    """One MU pass: update ``A`` in place; return the float64 sums ``AtX``, ``AtA``."""
    return _pass(p, A, S, G, executor, hals=False, options=dict(options, inner_max=inner))


def hals_pass(p: Any, A: Any, S: Any, G: Any, executor: Any, options: dict) -> dict:
    """One HALS pass: update ``A`` in place; return the float64 sums ``AtX``, ``AtA``."""
    return _pass(p, A, S, G, executor, hals=True, options=options)
