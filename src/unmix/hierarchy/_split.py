"""Candidate splits of tree nodes: batched rank-2 NMF, scaling, assignment, scores.

``X`` is (pixels, channels); a node is a set of pixel indices.  All candidate splits of a
batch of nodes are fitted together (:func:`~unmix.hierarchy.rank2_nmf`), then each
is turned into children: components scaled so that a pure pixel has abundance 1, pixels
assigned to their dominant component, children's endmembers (the NMF component or the
mean of the child's core pixels), and the split's score.  Sparse ``X`` (CSR rows) is
read through :mod:`~unmix.hierarchy._sparse` and never densified.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._backend import Backend, to_numpy
from ..engine import factorize
from ._cluster import spectral_angle_distances
from ._rank2 import group_rank1, rank2_nmf
from ._scores import ndcg_score, split_gain
from ._sparse import col_mean, row_sq, sq_error, take_rows, unit_rows
from ._stability import rank_stability
from ._terms import SplitModel, model_split, node_warnings

__all__ = ["Candidate", "Options", "node_ranks", "propose", "screen", "split_fit"]


@dataclass
class Options:
    min_size: int
    min_score: float
    min_angle: float
    max_depth: int | None
    score: str
    node_rank: Any
    max_rank: int
    max_iter: int | None  # None: the engine's default (a model that tightens a bound)
    tol: float
    stability: dict
    seed: int
    endmember: str = "core"
    core_fraction: float = 0.4
    root_err: float = 0.0
    model: SplitModel | None = None


@dataclass
class Candidate:
    node: int
    S: Any = None
    parts: list = field(default_factory=list)
    score: float = -np.inf
    gain: float = 0.0
    rank: int = 2
    angle: float | None = None
    reason: str | None = None
    pixels: Any = None
    A: Any = None
    S_split: Any = None


def propose(X: Any, be: Backend, items: list[tuple[int, np.ndarray]], opts: Options) -> dict:
    """Candidate splits of the nodes ``items`` = [(id, pixel indices)], batched."""
    out, batch, Xs, err1, offsets = screen(X, be, items, opts)
    if not batch:
        return out
    if opts.model is not None:  # one engine fit a node (see unmix.hierarchy._terms)
        for b, (nid, idx) in enumerate(batch):
            if nid in out:
                continue
            Xb = Xs[int(offsets[b]) : int(offsets[b + 1])]
            with node_warnings(nid, int(idx.size)):
                A_b, S_b, e_1, e_r = model_split(
                    X,
                    idx,
                    Xb,
                    opts.model,
                    be,
                    max_iter=opts.max_iter,
                    tol=opts.tol,
                    seed=opts.seed,
                )
            if nid == 0:  # the gain in the model's loss, relative to the root's rank one
                opts.root_err = e_1
            out[nid] = _finish(nid, idx, Xb, A_b, S_b, e_1, e_r, be, opts)
        return out
    if opts.node_rank == 2:
        fit = rank2_nmf(Xs, _groups(offsets), len(batch), max_iter=opts.max_iter, tol=opts.tol)
        A_h = np.asarray(to_numpy(fit.A), dtype=float)
        for b, (nid, idx) in enumerate(batch):
            if nid in out:
                continue
            rows = slice(int(offsets[b]), int(offsets[b + 1]))
            out[nid] = _finish(
                nid, idx, Xs[rows], A_h[rows], fit.S[b], err1[b], fit.error[b], be, opts
            )
        return out
    for b, (nid, idx) in enumerate(batch):
        if nid in out:
            continue
        Xb = Xs[offsets[b] : offsets[b + 1]]
        ranks = node_ranks(X, idx, opts)
        r, _ = rank_stability(Xb, ranks, random_state=opts.seed + nid, **opts.stability)
        out[nid] = split_fit(nid, idx, Xb, r, err1[b], be, opts)
    return out


def screen(X: Any, be: Backend, items: list[tuple[int, np.ndarray]], opts: Options) -> tuple:
    """What every candidate split of a batch needs before its fit.

    Returns ``(out, batch, Xs, err1, offsets)``: ``out`` the candidates already decided
    (too few pixels, pixels identical), ``batch`` the nodes with enough pixels (those
    decided as rank one included: ``out`` holds them), ``Xs`` their pixels stacked
    (rows ``offsets[b]:offsets[b + 1]`` for ``batch[b]``) and ``err1`` their best rank-one
    residuals.  Sets ``opts.root_err`` when the batch starts with the root.
    """
    out: dict[int, Candidate] = {}
    batch = []
    for nid, idx in items:
        if idx.size < 2 * opts.min_size:
            out[nid] = Candidate(
                nid, reason=f"too few pixels ({idx.size} < 2 * min_size = {2 * opts.min_size})"
            )
        else:
            batch.append((nid, idx))
    if not batch:
        return out, batch, None, None, None
    sizes = np.array([idx.size for _, idx in batch])
    idx_all = np.concatenate([idx for _, idx in batch])
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    groups = _groups(offsets)
    Xs = take_rows(X, idx_all, be)
    _, err1 = group_rank1(Xs, groups, len(batch))
    norm2 = to_numpy(_group_norms(Xs, groups, len(batch), be))
    if opts.root_err == 0.0 and batch[0][0] == 0:
        opts.root_err = float(err1[0])
    rank1_tol = 1e4 * be.eps**2
    for b, (nid, _) in enumerate(batch):
        if err1[b] <= rank1_tol * norm2[b]:
            out[nid] = Candidate(nid, reason="pixels identical (rank one)")
    return out, batch, Xs, err1, offsets


def _groups(offsets: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))


def node_ranks(X: Any, idx: np.ndarray, opts: Options) -> range:
    """The ranks a node's stability may choose: ``2..max_rank`` within its size."""
    return range(2, min(opts.max_rank, idx.size // opts.min_size, int(X.shape[1])) + 1)


def split_fit(
    nid: int, idx: np.ndarray, Xb: Any, r: int, err1: float, be: Backend, opts: Options
) -> Candidate:
    """The candidate split of a node into ``r`` children (rank-``r`` NMF of its pixels)."""
    if r == 2:
        f = rank2_nmf(Xb, max_iter=opts.max_iter, tol=opts.tol)
        A_b, S_b, err_r = f.A, f.S[0], f.error[0]
    else:
        res = factorize(
            Xb,
            r,
            solver="hals",
            max_iter=opts.max_iter * 2,
            tol=opts.tol,
            compress=None,
            random_state=opts.seed,
        )
        A_b, S_b = res.A, res.S
        err_r = sq_error(Xb, A_b, S_b, be)
    A_h = np.asarray(to_numpy(A_b), dtype=float)
    return _finish(nid, idx, Xb, A_h, S_b, err1, err_r, be, opts)


def _group_norms(Xs: Any, groups: np.ndarray, B: int, be: Backend) -> Any:
    rn = to_numpy(be.acc(row_sq(Xs)))
    return np.bincount(groups, weights=np.asarray(rn, dtype=float), minlength=B)


def _finish(
    nid: int,
    idx: np.ndarray,
    Xb: Any,
    A: np.ndarray,
    S: Any,
    err1: float,
    err_r: float,
    be: Backend,
    opts: Options,
) -> Candidate:
    """Scale the components to pure-pixel units, assign pixels, check sizes, score."""
    r = A.shape[1]
    scale = np.quantile(A, 0.99, axis=0)
    scale = np.where(scale > 0, scale, A.max(axis=0))
    if np.any(scale <= 0):
        return Candidate(nid, reason="degenerate split (a component of the fit is empty)", rank=r)
    labels = np.argmax(A / scale, axis=1)
    counts = np.bincount(labels, minlength=r)
    if counts.min() < opts.min_size:
        return Candidate(
            nid,
            reason=f"unbalanced split ({counts.min()} pixels on one side < min_size "
            f"{opts.min_size})",
            rank=r,
        )
    order = np.argsort(-counts, kind="stable")  # the larger child first
    Sd = S * be.asarray(scale)[:, None]
    fitted = be.xp.stack([Sd[j] for j in order], axis=0)
    if opts.endmember == "core":
        Sd = _core(Xb, Sd, labels, r, opts.core_fraction, be)
    gain = split_gain(err1, err_r, opts.root_err if opts.root_err > 0 else err1)
    Sh = np.asarray(to_numpy(Sd), dtype=float)
    D = spectral_angle_distances(Sh)
    angle = float(np.min(D[np.triu_indices(r, 1)]))
    sc = gain if opts.score == "gain" else ndcg_score(Sh)
    cand = Candidate(
        nid,
        S=be.xp.stack([Sd[j] for j in order], axis=0),
        parts=[idx[labels == j] for j in order],
        score=float(sc),
        gain=float(gain),
        rank=r,
        angle=angle,
        pixels=idx,
        A=(A / scale)[:, order],
        S_split=fitted,
    )
    if angle < opts.min_angle:
        cand.reason = (
            f"children not distinguishable (spectral angle {angle:.3g} deg < min_angle "
            f"{opts.min_angle:g})"
        )
    return cand


def _core(
    Xb: Any, S: Any, labels: np.ndarray, r: int, q: float, be: Backend, n_iter: int = 10
) -> Any:
    """Mean of the ``q`` of each child's pixels closest in angle to the estimate, iterated
    from the split's endmember (a mean shift to the densest direction of the child)."""
    xp = be.xp
    Xn = unit_rows(Xb, be)
    rows = []
    for j in range(r):
        mine = np.flatnonzero(labels == j)
        n_top = max(min(3, mine.size), int(np.ceil(q * mine.size)))
        Xm = take_rows(Xb, mine, be)
        Xmn = take_rows(Xn, mine, be)
        s = S[j]
        prev = None
        for _ in range(n_iter):
            cos = np.asarray(to_numpy(Xmn @ s), dtype=float)
            top = np.sort(np.argsort(-cos, kind="stable")[:n_top])
            if prev is not None and np.array_equal(top, prev):
                break
            prev = top
            s = col_mean(Xm, be, top)
        rows.append(s)
    return xp.stack(rows, axis=0)
