"""Compare a recovered tree with a planted one (synthetic data with known structure).

- :func:`match_leaves`: Hungarian assignment of recovered leaves to true leaf endmembers on
  the spectral angle (the scoring convention of :mod:`unmix.metrics`).
- :func:`triplet_agreement`: the fraction of the planted tree's rooted triplets
  ``(a, b | c)`` (``a`` and ``b`` closer to each other than to ``c``) that the recovered
  tree resolves the same way, i.e. whose lowest common ancestor of ``a, b`` lies strictly
  below that of ``a, c``.  1.0 when every planted group is a clade (a subtree) of the
  recovered tree, whatever extra binary splits it made inside a group.
- :func:`clade_recovery`: for every planted internal node, whether the recovered leaves
  matched to its leaves are exactly the leaves of one recovered subtree.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

from .._backend import to_numpy
from ..metrics import match_components, score, spectral_angles
from ._model import Tree

__all__ = ["clade_recovery", "match_leaves", "planted_groups", "triplet_agreement"]


def match_leaves(tree: Tree, S_true: Any) -> dict[str, Any]:
    """Match the tree's leaves to true endmembers ``S_true`` (k, channels).

    Returns ``{"mapping": {true index: leaf id}, "sad": mean SAD (deg), "sad_each": [...]}``
    (SAD listed per true endmember).
    """
    leaves = tree.leaves
    S = np.asarray(to_numpy(tree.S), dtype=float)[leaves]
    rows, cols = match_components(S, S_true)
    angles = spectral_angles(S, S_true)
    mapping = {int(c): int(leaves[r]) for r, c in zip(rows, cols, strict=True)}
    each = [
        float(angles[r, c]) for r, c in sorted(zip(rows, cols, strict=True), key=lambda t: t[1])
    ]
    return {
        "mapping": mapping,
        "sad": float(np.mean(each)),
        "sad_each": each,
        "score": score(S, S_true),
    }


def planted_groups(planted: dict) -> list[set[int]]:
    """Leaf sets of every internal node of a nested planted tree (root excluded)."""
    out: list[set[int]] = []

    def rec(node: dict) -> set[int]:
        if "leaf" in node:
            return {int(node["leaf"])}
        leaves: set[int] = set()
        for ch in node.get("children", []):
            leaves |= rec(ch)
        out.append(leaves)
        return leaves

    rec(planted)
    return out[:-1]  # the root is last


def _triplets(planted: dict) -> list[tuple[int, int, int]]:
    """Rooted triplets (a, b | c) of a nested planted tree."""
    trip = []

    def leaves_of(node: dict) -> list[int]:
        if "leaf" in node:
            return [int(node["leaf"])]
        return [x for ch in node["children"] for x in leaves_of(ch)]

    def rec(node: dict) -> None:
        if "leaf" in node:
            return
        kids = [leaves_of(ch) for ch in node["children"]]
        for i, inside in enumerate(kids):
            outside = [x for j, k in enumerate(kids) if j != i for x in k]
            for a, b in combinations(inside, 2):
                trip.extend((a, b, c) for c in outside)
        for ch in node["children"]:
            rec(ch)

    rec(planted)
    return trip


def _lca(tree: Tree, a: int, b: int) -> int:
    pa = [a, *tree.ancestors(a)]
    pb = set([b, *tree.ancestors(b)])
    return next(x for x in pa if x in pb)


def triplet_agreement(tree: Tree, planted: dict, mapping: dict[int, int]) -> float:
    """Fraction of planted triplets resolved the same way (``mapping``: true -> leaf id)."""
    trip = _triplets(planted)
    if not trip:
        return 1.0
    good = 0
    for a, b, c in trip:
        if a not in mapping or b not in mapping or c not in mapping:
            continue
        la, lb, lc = mapping[a], mapping[b], mapping[c]
        ab, ac = _lca(tree, la, lb), _lca(tree, la, lc)
        good += int(ab != ac and ac in tree.ancestors(ab))
    return good / len(trip)


def clade_recovery(tree: Tree, planted: dict, mapping: dict[int, int]) -> dict[str, Any]:
    """For every planted group: the recovered subtree whose leaves are exactly its leaves.

    Returns ``{"recovered": n, "total": n_groups, "nodes": [node id or None, ...]}``.
    """
    groups = planted_groups(planted)
    found = []
    for g in groups:
        ids = [mapping[t] for t in g if t in mapping]
        node = ids[0] if ids else None
        for x in ids[1:]:
            node = _lca(tree, node, x)
        ok = node is not None and set(tree.subtree_leaves(node)) == set(ids) and len(ids) == len(g)
        found.append(node if ok else None)
    return {"recovered": sum(x is not None for x in found), "total": len(groups), "nodes": found}
