"""Rank of a node chosen by the stability of its components (as in NMFk / HNMFk).

For every candidate rank ``r`` the node's pixels ``X_b`` (pixels, channels) are
factorized ``n_runs`` times, ``X_b * (1 + noise U(-1, 1)) ~= A S`` (a fresh
multiplicative perturbation and random start each time).  The endmembers of every run are
matched to those of the first run (Hungarian assignment on the spectral angle), which
groups the ``r * n_runs`` spectra into ``r`` clusters; the stability of rank ``r`` is the
smallest mean silhouette (cosine distance) of a cluster.  The chosen rank is the largest
whose stability is at least ``threshold`` (2 when none is).

Sparse ``X`` (CSR rows) is perturbed at its stored entries only (the perturbation is
multiplicative, so the zeros stay zeros), with the very draws of the dense perturbation
there: the runs, and the chosen rank, are those of the same data given dense.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from .._backend import to_numpy
from ..blocks import entry_rows
from ..engine import factorize
from ._sparse import backend, is_sparse, with_data

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
    ``X`` may be a CSR matrix (perturbed at its stored entries).
    """
    be = backend(X)
    shape = tuple(int(s) for s in X.shape)
    ok = stability_ranks(ranks, shape)
    runs: dict[int, list[np.ndarray]] = {r: [] for r in ok}
    pattern = X if is_sparse(X) else None
    for r, _, pert, seed in perturbations(shape, ok, n_runs, noise, random_state, pattern):
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
    pattern: Any = None,
) -> Iterator[tuple[int, int, np.ndarray, int]]:
    """``(r, run, perturbation, seed)`` of every run, in the order the draws are made.

    The multiplicative perturbations ``1 + noise U(-1, 1)`` (host, ``shape``) and the
    runs' seeds all come from one generator seeded with ``random_state``, so a run's draws
    depend on its place in this sequence: a process running some runs only replays the
    sequence up to them (see :mod:`unmix.hierarchy._parallel`).  With ``pattern`` (CSR
    ``X`` of ``shape``) a perturbation is its values at the stored entries (CSR order),
    drawn a block of rows at a time: the same draws, never a dense ``shape`` array.
    """
    rng = np.random.default_rng(random_state)
    for r in ranks:
        for j in range(n_runs):
            if pattern is None:
                pert = 1.0 + noise * rng.uniform(-1, 1, size=shape)
            else:
                pert = _entry_perturbation(rng, pattern, noise)
            yield r, j, pert, int(rng.integers(2**31 - 1))


def _entry_perturbation(rng: np.random.Generator, X: Any, noise: float) -> np.ndarray:
    """``1 + noise U(-1, 1)`` at the stored entries of CSR ``X``, drawn as the dense
    perturbation of ``X``'s shape would be (row-major), a bounded block of rows at a time."""
    n, m = (int(s) for s in X.shape)
    rows = entry_rows(X)
    step = max(1, (1 << 20) // max(m, 1))
    out = np.empty(X.nnz)
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        u = rng.uniform(-1, 1, size=(r1 - r0, m))
        p0, p1 = int(X.indptr[r0]), int(X.indptr[r1])
        out[p0:p1] = 1.0 + noise * u[rows[p0:p1] - r0, X.indices[p0:p1]]
    return out


def stability_run(X: Any, r: int, pert: Any, seed: int, max_iter: int) -> np.ndarray:
    """Unit-norm endmembers (r, channels), host float64, of one perturbed rank-``r`` fit
    (``pert`` at the stored entries of CSR ``X``, see :func:`perturbations`)."""
    res = factorize(
        with_data(X, X.data * pert) if is_sparse(X) else X * pert,
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
