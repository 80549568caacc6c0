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
from collections.abc import Iterator
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from .._backend import backend_of, to_numpy
from ..engine import factorize

logger = logging.getLogger("unmix")

__all__ = [
    "DEFAULTS",
    "choose_rank",
    "perturbations",
    "rank_stability",
    "stability_ranks",
    "stability_run",
    "stability_score",
]


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


#: defaults of :func:`rank_stability`'s options (``stability=`` of ``hierarchical_nmf``)
DEFAULTS = {"n_runs": 5, "noise": 0.03, "threshold": 0.75, "max_iter": 200}


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
    be = backend_of(X)
    shape = tuple(int(s) for s in X.shape)
    ok = stability_ranks(ranks, shape)
    runs: dict[int, list[np.ndarray]] = {r: [] for r in ok}
    for r, _, pert, seed in perturbations(shape, ok, n_runs, noise, random_state):
        runs[r].append(stability_run(X, r, be.asarray(pert), seed, max_iter))
    stab = {r: stability_score(runs[r], r) for r in ok}
    return choose_rank(stab, threshold), stab


def stability_ranks(ranks: range | list[int], shape: tuple[int, int]) -> list[int]:
    """The ranks of ``ranks`` a (pixels, channels) block of ``shape`` can be fitted with."""
    return [r for r in ranks if 2 <= r <= min(shape)]


def perturbations(
    shape: tuple[int, int],
    ranks: list[int],
    n_runs: int,
    noise: float,
    random_state: int | None,
) -> Iterator[tuple[int, int, np.ndarray, int]]:
    """``(r, run, perturbation, seed)`` of every run, in the order the draws are made.

    The multiplicative perturbations ``1 + noise U(-1, 1)`` (host, ``shape``) and the
    runs' seeds all come from one generator seeded with ``random_state``, so a run's draws
    depend on its place in this sequence: a process running some runs only replays the
    sequence up to them (see :mod:`unmix.hierarchy._parallel`).
    """
    rng = np.random.default_rng(random_state)
    for r in ranks:
        for j in range(n_runs):
            pert = 1.0 + noise * rng.uniform(-1, 1, size=shape)
            yield r, j, pert, int(rng.integers(2**31 - 1))


def stability_run(X: Any, r: int, pert: Any, seed: int, max_iter: int) -> np.ndarray:
    """Unit-norm endmembers (r, channels), host float64, of one perturbed rank-``r`` fit."""
    res = factorize(
        X * pert,
        r,
        solver="hals",
        init="random",
        max_iter=max_iter,
        random_state=seed,
        compress=None,
    )
    S = np.asarray(to_numpy(res.S), dtype=float)
    return S / np.maximum(np.linalg.norm(S, axis=1, keepdims=True), 1e-300)


def stability_score(runs: list[np.ndarray], r: int) -> float:
    """Smallest mean cluster silhouette of the runs' endmembers matched to the first run's."""
    labels, vecs = [], []
    for S in runs:
        _, cols = linear_sum_assignment(-(S @ runs[0].T))
        labels.append(cols)
        vecs.append(S)
    return float(_silhouettes(np.vstack(vecs), np.concatenate(labels), r).min())


def choose_rank(stab: dict[int, float], threshold: float) -> int:
    """The largest rank whose stability reaches ``threshold`` (2 when none does)."""
    good = [r for r, s in stab.items() if s >= threshold]
    rank = max(good) if good else 2
    logger.info("rank_stability: %s -> rank %d", {r: round(s, 3) for r, s in stab.items()}, rank)
    return rank
