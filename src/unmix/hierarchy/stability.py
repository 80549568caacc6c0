"""Rank of a node chosen by the stability of its components (as in NMFk / HNMFk).

For every candidate rank ``r`` the node's pixels ``X_b`` (pixels, channels) are
factorized ``n_runs`` times, ``X_b * (1 + noise U(-1, 1)) ~= A S`` (a fresh
multiplicative perturbation and random start each time).  The endmembers of every run are
matched to those of the first run (Hungarian assignment on the spectral angle), which
groups the ``r * n_runs`` spectra into ``r`` clusters; the stability of rank ``r`` is the
smallest mean silhouette (cosine distance) of a cluster.  The chosen rank is the largest
whose stability is at least ``threshold`` (2 when none is).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from .._backend import backend_of, to_numpy

logger = logging.getLogger("unmix")

__all__ = ["rank_stability"]


def _silhouettes(V: np.ndarray, labels: np.ndarray, r: int) -> np.ndarray:
    """Mean silhouette of each cluster of unit vectors ``V`` under the cosine distance."""
    D = np.clip(1.0 - V @ V.T, 0.0, 2.0)
    s = np.zeros(len(V))
    for i in range(len(V)):
        own = labels == labels[i]
        own[i] = False
        a = D[i, own].mean() if own.any() else 0.0
        b = min(D[i, labels == c].mean() for c in range(r) if c != labels[i])
        s[i] = 0.0 if max(a, b) <= 0 else (b - a) / max(a, b)
    return np.array([s[labels == c].mean() for c in range(r)])


def rank_stability(
    X: Any,
    ranks: range | list[int],
    *,
    n_runs: int = 5,
    noise: float = 0.03,
    threshold: float = 0.75,
    max_iter: int = 200,
    random_state: int | None = 0,
) -> tuple[int, dict[int, float]]:
    """Choose the rank of ``X`` (pixels, channels) by component stability.

    Returns ``(rank, {r: stability})``; see the module docstring for the procedure.
    """
    from ..core import factorize

    be = backend_of(X)
    rng = np.random.default_rng(random_state)
    stab: dict[int, float] = {}
    for r in ranks:
        if r < 2 or r > min(int(X.shape[0]), int(X.shape[1])):
            continue
        runs = []
        for _ in range(n_runs):
            pert = be.asarray(1.0 + noise * rng.uniform(-1, 1, size=tuple(X.shape)))
            res = factorize(
                X * pert,
                r,
                solver="hals",
                init="random",
                max_iter=max_iter,
                random_state=int(rng.integers(2**31 - 1)),
                compress=None,
            )
            S = np.asarray(to_numpy(res.S), dtype=float)
            runs.append(S / np.maximum(np.linalg.norm(S, axis=1, keepdims=True), 1e-300))
        labels, vecs = [], []
        for S in runs:
            _, cols = linear_sum_assignment(-(S @ runs[0].T))
            labels.append(cols)
            vecs.append(S)
        stab[r] = float(_silhouettes(np.vstack(vecs), np.concatenate(labels), r).min())
    good = [r for r, s in stab.items() if s >= threshold]
    rank = max(good) if good else 2
    logger.info("rank_stability: %s -> rank %d", {r: round(s, 3) for r, s in stab.items()}, rank)
    return rank, stab
