"""Growing a tree over groups of MPI ranks (private).

The independent work of :func:`unmix.hierarchy.hierarchical_nmf` is dealt over groups of
ranks (:meth:`unmix.mpi.MPIExecutor.split`) and every result is shared with every rank
(:meth:`~unmix.mpi.MPIExecutor.allgather_items`), so that every rank grows the tree of a
serial run:

- the candidate splits of the leaves a round of growth creates (rank-2 NMF of each new
  leaf's pixels): one work item a leaf;
- with ``node_rank="stability"``: every perturbed restart ``(leaf, rank, run)`` of the
  stability search, then each leaf's split at its chosen rank;
- the refit of every level of the finished tree.

A work item's seed belongs to the item (the leaf's id, the run's place in its leaf's
sequence of draws), never to the group that runs it.  Every rank of a group computes the
group's items (a split's pixels are not divided among the ranks of a group); the group's
first rank shares the results.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from .._backend import Backend, to_numpy
from ..executors.groups import Groups, Work
from ._model import Level
from ._sparse import is_sparse
from ._split import Candidate, Options, node_ranks, propose, screen, split_fit
from ._stability import (
    DEFAULTS,
    choose_rank,
    perturbations,
    stability_ranks,
    stability_run,
    stability_score,
)

logger = logging.getLogger("unmix")

__all__ = ["propose_mpi", "refit_levels_mpi"]


# ------------------------------------------------------------------ candidate splits
def _to_host(c: Candidate) -> Candidate:
    if c.S is None:
        return c
    return replace(c, S=np.asarray(to_numpy(c.S)), S_split=np.asarray(to_numpy(c.S_split)))


def _to_backend(c: Candidate, be: Backend) -> Candidate:
    return c if c.S is None else replace(c, S=be.asarray(c.S), S_split=be.asarray(c.S_split))


def propose_mpi(
    X: Any, be: Backend, items: list[tuple[int, np.ndarray]], opts: Options, groups: Groups
) -> dict[int, Candidate]:
    """:func:`~unmix.hierarchy._split.propose` with the nodes' fits dealt over ``groups``."""
    if opts.node_rank == 2:
        return _propose_rank2(X, be, items, opts, groups)
    return _propose_stability(X, be, items, opts, groups)


def _propose_rank2(X, be, items, opts, groups) -> dict[int, Candidate]:
    """One item a node: its group fits it (batched with the group's other nodes)."""
    pixels = dict(items)

    def fit(mine: list[Work]) -> list:
        cands = propose(X, be, [(w.key, pixels[w.key]) for w in mine], opts)
        return [("root_err", opts.root_err)] + [(nid, _to_host(c)) for nid, c in cands.items()]

    out: dict[int, Candidate] = {}
    for key, value in groups.run([Work(nid, float(idx.size)) for nid, idx in items], fit):
        if key == "root_err":
            opts.root_err = max(opts.root_err, float(value))
        else:
            out[key] = _to_backend(value, be)
    return out


def _propose_stability(X, be, items, opts, groups) -> dict[int, Candidate]:
    """Every restart of every node's stability search, then every node's split."""
    unknown = set(opts.stability) - set(DEFAULTS)
    if unknown:
        raise TypeError(
            f"stability= has unknown option(s) {sorted(unknown)}; use {sorted(DEFAULTS)}."
        )
    settings = {**DEFAULTS, **opts.stability}
    out, batch, Xs, err1, offsets = screen(X, be, items, opts)  # every rank: cheap, exact
    nodes = {
        nid: (b, idx, Xs[offsets[b] : offsets[b + 1]])
        for b, (nid, idx) in enumerate(batch)
        if nid not in out
    }
    ranks = {
        nid: stability_ranks(node_ranks(X, idx, opts), tuple(int(s) for s in Xb.shape))
        for nid, (_, idx, Xb) in nodes.items()
    }
    work = [
        Work((nid, r, j), float(nodes[nid][1].size * r))
        for nid in nodes
        for r in ranks[nid]
        for j in range(settings["n_runs"])
    ]
    runs: dict[int, dict[int, dict]] = {nid: {r: {} for r in ranks[nid]} for nid in nodes}
    restarts = groups.run(work, lambda mine: _restarts(mine, nodes, ranks, be, opts))
    for (nid, r, j), S in restarts:
        runs[nid][r][j] = S
    chosen = {}
    for nid in nodes:
        stab = {r: stability_score(_in_order(runs[nid][r]), r) for r in ranks[nid]}
        chosen[nid] = choose_rank(stab, settings["threshold"])

    def fit(mine: list[Work]) -> list:
        res = []
        for w in mine:
            b, idx, Xb = nodes[w.key]
            c = split_fit(w.key, idx, Xb, chosen[w.key], err1[b], be, opts)
            res.append((w.key, _to_host(c)))
        return res

    split_work = [Work(nid, float(nodes[nid][1].size * chosen[nid])) for nid in nodes]
    for nid, c in groups.run(split_work, fit):
        out[nid] = _to_backend(c, be)
    return out


def _in_order(runs: dict[int, np.ndarray]) -> list[np.ndarray]:
    return [runs[j] for j in sorted(runs)]


def _restarts(mine: list[Work], nodes: dict, ranks: dict, be: Backend, opts: Options) -> list:
    """The perturbed fits ``(node, rank, run)`` of ``mine``: each replays its node's
    sequence of draws up to its own, so that it gets the draws of a serial run."""
    settings = {**DEFAULTS, **opts.stability}
    res = []
    for w in mine:
        nid, r, j = w.key
        Xb = nodes[nid][2]
        shape = tuple(int(s) for s in Xb.shape)
        pattern = Xb if is_sparse(Xb) else None  # CSR: perturbed at its stored entries
        seq = perturbations(
            shape, ranks[nid], settings["n_runs"], settings["noise"], opts.seed + nid, pattern
        )
        pert, seed = next((p, s) for rr, jj, p, s in seq if (rr, jj) == (r, j))
        S = stability_run(Xb, r, be.asarray(pert), seed, settings["max_iter"])
        res.append((w.key, S))
    return res


# ------------------------------------------------------------------ levels
def refit_levels_mpi(X: Any, be: Backend, depths: list[int], refit: Callable, groups: Groups):
    """``refit(d)`` for every depth, dealt over ``groups``; the levels in depth order."""
    tree_cost = [Work(d, 1.0 + d) for d in depths]

    def fit(mine: list[Work]) -> list:
        return [(w.key, _level_to_host(refit(w.key))) for w in mine]

    got = dict(groups.run(tree_cost, fit))
    return [_level_to_backend(got[d], be) for d in depths]


def _level_to_host(lv: Level) -> Level:
    return replace(lv, A=np.asarray(to_numpy(lv.A)), S=np.asarray(to_numpy(lv.S)))


def _level_to_backend(lv: Level, be: Backend) -> Level:
    if be.name == "numpy":
        return lv
    return replace(lv, A=be.asarray(lv.A), S=be.asarray(lv.S))
