"""Cyclic coordinate descent for KL NMF (Hsieh & Dhillon 2011), compiled per pixel block.

Objective (generalized Kullback-Leibler, Poisson counts, ``Y = A S``; ``X`` is
(pixels, channels); ``w_i`` the pixel weights, 1 when none are given; ``M`` the mask,
1 at the observed entries)::

    sum_ij w_i M_ij (X_ij log(X_ij / Y_ij) - X_ij + Y_ij)  +  l1_A sum A  +  l1_S sum S
    subject to A >= 0, S >= 0

One iteration:

1. **maps** (one pass over the pixel blocks, independent per pixel): for each pixel the
   model row ``Y_i = A_i S`` is formed, then each entry ``A[i, r]`` in turn takes up to
   ``inner_A`` projected Newton steps on its 1-D problem with ``Y_i`` kept up to date;
   the pass also returns the fit at the maps *before* the update and the sums for the
   first row of ``S``;
2. **endmembers**: each row ``S[r, :]`` in turn takes ``inner_S`` steps; its channels
   are independent 1-D problems whose gradient ``sum_i A_ir (1 - X_ij / Y_ij)`` and
   curvature ``sum_i A_ir^2 X_ij / Y_ij^2`` are sums over all pixels: one
   ``executor.map_reduce`` over the blocks a step, which also applies the previous step
   to the blocks' model ``Y_b`` (kept in ``X``'s dtype, as large as the process's share
   of ``X``; for a block held in CSR form, at its nonzeros only).

Every Newton step to the right lowers the 1-D objective (its curvature decreases with the
variable), as does the multiplicative update (a majorize-minimize step), and the longer of
the two is taken; a Newton step to the left is kept when the curvature at its end
certifies a decrease, else halved (:mod:`unmix.engine.kernels._klcd`); the last step to
the left of an endmember row is the multiplicative update (:meth:`KLCD._row`).  The
objective never increases (``monotone``).  An iteration makes ``k inner_S`` passes over
the blocks: the last step of the last row needs none (the next maps pass recomputes the
model), and a row's last step, certified, needs the sums of the next row alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...blocks import LowRankData, StreamedData, entry_rows
from ...executors.base import Block, Executor
from .._problem import Problem
from ..kernels import available, klcd_kernels
from ._base import Solver, StepOut, register

__all__ = ["KLCD", "SPARSE_BELOW", "KLViews", "kl_fit_at", "kl_views", "views_weigh"]

logger = logging.getLogger("unmix")

#: ``sparse="auto"`` keeps a block in CSR form below this share of nonzero entries
SPARSE_BELOW = 0.4


def _kernels() -> Any:
    """The numba kernels (numba is imported when a fit runs, not when unmix is)."""
    return klcd_kernels()


@register
class KLCD(Solver):
    """Coordinate descent with safeguarded Newton steps for KL NMF (numba kernels).

    Options
    -------
    inner_A : int
        Most Newton steps per map entry and iteration (default 1).
    inner_S : int
        Newton steps (each a pass over the blocks) per endmember row and iteration
        (default 1; the last step to the left of a row is the multiplicative update).
    sparse : {"auto", True, False}
        Work on the nonzeros of ``X`` alone (CSR blocks, kept for the fit: each pass costs
        ``O(nnz k)``) or on dense blocks.  ``"auto"`` (default): per block, sparse when
        fewer than :data:`SPARSE_BELOW` of its entries are nonzero, and always for sparse
        ``X`` (SciPy / pydata), whose CSR rows are used as they are.
    extrapolate : bool
        Extrapolate between iterations with restarts (Ang & Gillis 2019,
        :mod:`unmix.engine._extrapolate`) from the first iteration (True) or never
        (False).  Default: from iteration :attr:`extrapolates_after` (50) on, when the
        fit is still running - the plain iteration crawls there (XRD k 3: 500 iterations
        at ``max_iter``, KL 1.5 % above the minimum; extrapolated from the start 82 to
        ``tol``).  ``benchmarks/results/kl_extrapolate.md``.  The fit stops only when
        the fall still to come is within ``tol`` too
        (:func:`unmix.engine._stop.remaining_fall`): from the Poisson start on the EELS
        map it stopped after 4 iterations on a slope, 0.19 % above where it goes on to.
    """

    name = "klcd"
    option_names = frozenset({"inner_A", "inner_S", "sparse", "extrapolate"})
    betas = (1.0,)
    weights = frozenset({"none", "pixels", "mask", "pixels+mask"})
    needs_nonneg = True
    monotone = True
    extrapolates = True
    extrapolates_after = 50

    def accepts(self, c: Any, target: str) -> bool:
        """The non-negative orthant on both factors, and pinned endmembers (whole rows,
        checked in :meth:`problems`); no bounds or rescaling."""
        return bool(c.is_orthant) or (target == "S" and c.fixed() is not None)

    def problems(self, p: Problem) -> list[str]:
        """The base checks, plus: penalties with one constant gradient (L1) only, whole
        pinned endmembers only, NumPy data held in memory (not streamed from a file or a
        memory map: the model of every block is kept in memory; a Dask worker's rows are
        held), and numba installed."""
        out = super().problems(p)
        for target in ("A", "S"):
            if p.penalties[target] and p.constant_penalty_gradient(target) is None:
                names = ", ".join(type(t).__name__ for t in p.penalties[target])
                out.append(f"{names} on {target} (only L1 on a non-negative factor)")
        if not p.pinned_whole_rows():
            out.append("endmember entries pinned in part of a row (only whole endmembers)")
        if p.be.name != "numpy":
            out.append(f"backend {p.be.name!r} (NumPy on CPU only)")
        if isinstance(p.data, LowRankData):
            out.append("compressed data (compress=)")
        if isinstance(p.data, StreamedData) and not _held_in_memory(p.data.source):
            # the model of every block is kept in memory: as large as X itself
            out.append("streamed data (X read block by block from a file or a memory map)")
        if not available():
            out.append("numba not installed (pip install 'unmix[fast]')")
        return out

    def setup(self, p: Problem, A: Any, S: Any) -> dict:
        """One read of the blocks (:func:`kl_views`): ``sum X log X - X`` and, per block,
        the model's storage (dense, X's dtype) or the block in CSR form with its model,
        its pixel weights and its holes."""
        choice = self.options.get("sparse", "auto")
        if choice not in ("auto", True, False):
            raise ValueError(f"solver_options: sparse={choice!r}; expected 'auto', True or False")
        return {"views": kl_views(p, choice=choice)}

    def step(self, p: Problem, A: Any, S: Any, state: dict, executor: Executor) -> StepOut:
        sums = self._update_A(p, A, S, state, executor)
        fit = _divergence(state["views"].xlogx, sums["fit"])
        S_new = self._update_S(p, A, S, state, executor, sums) if p.update_S else S
        return StepOut(S=S_new, fit=fit, fit_S=S, fit_at_old_A=True)

    def fit_at(self, p: Problem, A: Any, S: Any, state: dict, executor: Executor) -> float:
        """The KL divergence at ``(A, S)`` by the compiled kernels (:func:`kl_fit_at`)."""
        return kl_fit_at(p, A, S, state["views"], executor)

    # ------------------------------------------------------------------ maps
    def _update_A(self, p: Problem, A: Any, S: Any, state: dict, ex: Executor) -> dict:
        kn = _kernels()
        dt = np.dtype(p.be.dtype)
        S_ = np.ascontiguousarray(S, dtype=dt)
        l1 = float(p.constant_penalty_gradient("A") or 0.0)
        inner = max(1, int(self.options.get("inner_A", 1)))
        tiny = _floor(p)
        r0 = (p.free_rows() or [0])[0]  # the first endmember row the S update steps

        views = state["views"]

        def kernel(block: Block) -> dict:
            Ab = np.ascontiguousarray(A[block.slice, :])
            Yb = views.Y[block.index]
            args = (Ab, S_, l1, views.w[block.index])
            rest = (inner, tiny, r0, views.holes[block.index])
            if isinstance(Yb, np.ndarray):
                Xb = np.ascontiguousarray(p.data.x(block), dtype=dt)
                fit, q0, h0, asum = kn.block_a_pass(Xb, *args, Yb, *rest)
            else:
                fit, q0, h0, asum = kn.sparse_a_pass(Yb, *args, *rest)
            A[block.slice, :] = Ab
            return {"fit": fit, "q": q0, "h": h0, "asum": asum}

        return ex.map_reduce(kernel, p.data.blocks)

    # ------------------------------------------------------------ endmembers
    def _update_S(self, p: Problem, A: Any, S: Any, state: dict, ex: Executor, sums: dict) -> Any:
        kn = _kernels()
        S64 = np.array(S, dtype=np.float64)
        l1 = p.constant_penalty_gradient("S") or 0.0
        c = np.asarray(sums["asum"], dtype=np.float64) + l1  # (k, channels) or (k, 1)
        q, h = sums["q"], sums["h"]
        inner = max(1, int(self.options.get("inner_S", 1)))
        tiny = _floor(p)

        views = state["views"]

        def run_pass(r_apply: int, delta: Any, r1: int, r2: int) -> tuple:
            def kernel(block: Block) -> dict:
                Ab = np.ascontiguousarray(A[block.slice, :])
                Yb, w = views.Y[block.index], views.w[block.index]
                if isinstance(Yb, np.ndarray):
                    Xb = np.ascontiguousarray(p.data.x(block), dtype=Yb.dtype)
                    out = kn.block_s_pass(Xb, Ab, w, Yb, r_apply, delta, r1, r2, tiny)
                else:
                    out = kn.sparse_s_pass(Yb, Ab, w, r_apply, delta, r1, r2, tiny)
                return dict(zip(("q1", "h1", "q2", "h2"), out, strict=True))

            s = ex.map_reduce(kernel, p.data.blocks)
            return s["q1"], s["h1"], s["q2"], s["h2"]

        ctx = {"inner": inner, "run_pass": run_pass}
        rows = p.free_rows()
        for i, r in enumerate(rows):
            nxt = rows[i + 1] if i + 1 < len(rows) else -1
            q, h = self._row(S64[r], c[r], q, h, r, nxt, ctx)
        return p.be.asarray(S64)

    def _row(self, s: Any, c: Any, q: Any, h: Any, r: int, nxt: int, ctx: dict) -> tuple:
        """Newton steps on row ``r`` of ``S`` (``s``, float64, in place) from the sums
        ``q``, ``h`` at the current model and the constant gradient ``c`` (per channel, or
        one for all); returns the sums of row ``nxt`` afterwards.

        Each pass applies the steps to the blocks' model and returns the sums at the new
        point.  A step to the right (Newton, or the multiplicative update where it goes
        further) is certified; one to the left is Newton's, checked with the curvature at
        its end and undone and halved in the next pass if it fails, except the last,
        which is the multiplicative update (certified: nothing to undo after the row).
        """
        inner, run_pass = ctx["inner"], ctx["run_pass"]
        pending = np.zeros_like(s)  # the correction of an uncertified step, not yet in Y
        halve = np.zeros(s.shape, dtype=bool)
        d_prev = np.zeros_like(s)
        q_n = h_n = None
        for t in range(inner):
            g = c - q
            last = t == inner - 1
            newton = _newton(s, g, h)
            mu = np.where(c > 0, s * q / np.where(c > 0, c, 1.0) - s, newton)  # MM: certified
            d = np.where(newton > 0, np.maximum(newton, mu), newton)
            # the last step goes left by MU (certified, nothing to undo); earlier ones by
            # Newton, checked after the pass and halved in the next one if need be
            d = np.where(d < 0, mu, d) if last else np.where(halve, 0.5 * d_prev, d)
            if last:  # certified: the sums of row r are not needed, only those of nxt
                if nxt >= 0:  # (after the last row the next maps pass recomputes Y)
                    _, _, q_n, h_n = run_pass(r, d + pending, -1, nxt)
                s += d
                break
            q1, h1, _, _ = run_pass(r, d + pending, r, -1)
            ok = (d >= 0) | (g * d + 0.5 * h1 * d * d <= 0)
            s += np.where(ok, d, 0.0)
            pending = np.where(ok, 0.0, -d)
            q, h = np.where(ok, q1, q), np.where(ok, h1, h)
            halve, d_prev = ~ok, d
        return q_n, h_n


def _held_in_memory(source: Any) -> bool:
    """Whether a streamed source is, under its row views (``.src``), a NumPy array held
    in memory (a Dask worker's rows), not a file, a memory map or a lazy array."""
    for _ in range(8):
        if not hasattr(source, "src"):
            break
        source = source.src
    return isinstance(source, np.ndarray) and not isinstance(source, np.memmap)


@dataclass
class KLViews:
    """What the compiled KL passes read besides ``X`` itself, per block (by its index),
    made in one read of the blocks by :func:`kl_views`."""

    Y: dict  # the model's storage (dense, X's dtype), None, or the block in CSR form
    w: dict  # the pixel weights (float64; ones without them)
    holes: dict  # the missing entries (kernel ``Holes``)
    xlogx: float  # ``sum w_i (x log x - x)`` over the observed entries, all processes


def views_weigh(data: Any) -> bool:
    """Whether the compiled KL passes (:func:`kl_views`, :func:`kl_fit_at`) weigh ``data``
    as its objective does: pixel weights and a mask's holes, not channel or full weights
    (:attr:`KLCD.weights`)."""
    return getattr(data, "channel_w", None) is None and getattr(data, "full_w", None) is None


def kl_views(p: Problem, *, choice: Any = "auto", model: bool = True) -> KLViews:
    """One read of the blocks: per block its CSR form (sparse ``X``, or below
    :data:`SPARSE_BELOW` nonzeros with ``choice="auto"``; every block with True, none with
    False) or, for a dense block, storage for its model (``model``; else None); its pixel
    weights and holes; and the constant ``sum X log X - X`` of the divergence (summed over
    the processes)."""
    kn = _kernels()
    dt = np.dtype(p.be.dtype)
    views = KLViews(Y={}, w={}, holes={}, xlogx=0.0)
    total = 0.0
    csr_input = getattr(p.data, "sparse", False) and choice is not False
    for b in p.data.blocks:
        w = views.w[b.index] = _pixel_weights(p, b)
        views.holes[b.index] = _holes(p, b)
        if csr_input:  # sparse X: its CSR rows as they are, never densified
            B = _observed(p.data.csr(b), p.data.mask, b)
            total += float(w @ _xlogx_rows(B))
            views.Y[b.index] = kn.Sparse.from_csr(B, dt)
            continue
        Xb = np.asarray(p.data.x(b), dtype=np.float64)
        total += float(w @ _xlogx(Xb).sum(axis=1))
        dense = np.count_nonzero(Xb) >= SPARSE_BELOW * max(Xb.size, 1)
        if choice is True or (choice == "auto" and not dense):
            views.Y[b.index] = kn.Sparse(np.ascontiguousarray(Xb, dtype=dt))
        else:
            views.Y[b.index] = np.empty(Xb.shape, dt) if model else None
    n_sparse = sum(isinstance(v, kn.Sparse) for v in views.Y.values())
    logger.debug("KL blocks: %d of %d in CSR form", n_sparse, len(views.Y))
    views.xlogx = float(p.data.reduce(total))
    return views


def kl_fit_at(p: Problem, A: Any, S: Any, views: KLViews, ex: Executor) -> float:
    """The KL divergence at ``(A, S)`` by the compiled kernels: dense blocks read from
    ``X``, CSR blocks (``views``, :func:`kl_views`) at their nonzeros alone.  The loop's
    judge of an extrapolated step asks for it every iteration, and the entry-by-entry
    NumPy evaluation cost up to 40 of KL-CD's iterations (EDS TEM map, 99 % zeros)."""
    kn = _kernels()
    dt = np.dtype(p.be.dtype)
    S_ = np.ascontiguousarray(S, dtype=dt)
    tiny = _floor(p)

    def kernel(block: Block) -> dict:
        Ab = np.ascontiguousarray(A[block.slice, :])
        i = block.index
        Yb, w, holes = views.Y[i], views.w[i], views.holes[i]
        if isinstance(Yb, kn.Sparse):
            return {"fit": kn.sparse_fit(Yb, Ab, S_, w, tiny, holes)}
        Xb = np.ascontiguousarray(p.data.x(block), dtype=dt)
        return {"fit": kn.block_fit(Xb, Ab, S_, w, tiny, holes)}

    return _divergence(views.xlogx, ex.map_reduce(kernel, p.data.blocks)["fit"])


def _holes(p: Problem, block: Block) -> Any:
    """The block's missing entries (mask False) as kernel ``Holes`` (none without a mask)."""
    kn = _kernels()
    mask = p.data.mask
    if mask is None:
        return kn.Holes.none(block.size)
    return kn.Holes(np.asarray(mask[block.slice, :]))


def _pixel_weights(p: Problem, block: Block) -> np.ndarray:
    """The block's pixel weights ``w_i`` for the kernels (float64, contiguous; ones when
    the fit has none)."""
    pw = p.data.pw(block)
    if pw is None:
        return np.ones(block.size)
    return np.ascontiguousarray(np.asarray(pw, dtype=np.float64).reshape(-1))


def _observed(B: Any, mask: Any, block: Block) -> Any:
    """A CSR block without its stored entries that ``mask`` marks missing (as given
    without a mask)."""
    if mask is None:
        return B
    keep = np.asarray(mask[block.slice, :])[entry_rows(B), B.indices]
    if keep.all():
        return B
    out = B.copy()
    out.data = np.where(keep, B.data, 0)
    out.eliminate_zeros()
    return out


def _xlogx(v: np.ndarray) -> np.ndarray:
    """``x log x - x`` entry by entry (float64, entries >= 0; ``0 log 0 = 0``)."""
    pos = v > 0
    return np.where(pos, v * np.log(np.where(pos, v, 1.0)), 0.0) - v


def _xlogx_rows(B: Any) -> np.ndarray:
    """``sum_j x log x - x`` of each row of a CSR block (float64; its entries >= 0)."""
    per_entry = _xlogx(np.asarray(B.data, dtype=np.float64))
    return np.bincount(entry_rows(B), weights=per_entry, minlength=B.shape[0])


def _divergence(xlogx: float, model_part: Any) -> float:
    """The KL divergence from its part that depends on the model (``sum y - x log y``, as
    the kernels return it) and the constant ``sum x log x - x`` (:func:`kl_views`)."""
    return max(xlogx + float(model_part), 0.0)


def _floor(p: Problem) -> float:
    """The floor of the model in the kernels: the dtype's ``tiny``, at least 1e-150, so
    that ``x / y^2`` stays finite in float64 (``inf`` past it, never ``inf * 0``)."""
    return max(float(p.be.tiny), 1e-150)


def _newton(s: Any, g: Any, h: Any) -> Any:
    """Projected Newton steps ``max(0, s - g/h) - s`` per channel (to 0 where ``h = 0 < g``)."""
    safe = np.where(h > 0, h, 1.0)
    step = np.maximum(0.0, s - g / safe) - s
    flat = np.where(g > 0, -s, 0.0)
    return np.where(h > 0, step, flat)
