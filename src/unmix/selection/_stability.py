"""Stability of endmembers over perturbed restarts (NMFk: Alexandrov & Vesselinov).

Every restart ``r`` of a rank-``k`` model gives ``k`` endmembers (rows of ``S_r``, shape
(k, channels)).  They are clustered into ``k`` clusters under the constraint that each
restart puts exactly one endmember in each cluster (a k-means on the cosine distance
whose assignment step is a Hungarian matching per restart), and the quality of the
clusters is measured by silhouettes (Rousseeuw 1987) with the cosine distance.  Stable
components give tight clusters (silhouettes near 1); a rank that is too large splits or
invents components differently in every restart, and its worst cluster's silhouette
drops.  The same alignment serves the uncertainty bands of :mod:`.uncertainty`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["align_components", "cluster_silhouettes"]


def _unit(S: np.ndarray) -> np.ndarray:
    return S / np.maximum(np.linalg.norm(S, axis=-1, keepdims=True), 1e-300)


def align_components(
    S_runs: Sequence[Any], *, reference: int = 0, max_iter: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster the endmembers of several runs, one per run in each cluster.

    Parameters
    ----------
    S_runs : sequence of arrays (k, channels)
        Endmembers of each run (same ``k``).
    reference : int
        The run whose endmembers start the centroids (e.g. the best fit).
    max_iter : int
        Most alternations of Hungarian assignment and centroid update.

    Returns
    -------
    order : int array (runs, k)
        ``order[r, c]`` is the row of ``S_runs[r]`` that belongs to cluster ``c``
        (cluster ``c`` starts at the reference's component ``c``).
    centroids : array (k, channels)
        Unit-norm mean directions of the clusters.
    """
    U = np.stack([_unit(np.asarray(S, dtype=float)) for S in S_runs])  # (R, k, m)
    R, k, _ = U.shape
    cent = U[reference].copy()
    order = np.tile(np.arange(k), (R, 1))
    for it in range(max_iter):
        new = np.empty_like(order)
        for r in range(R):
            cost = 1.0 - U[r] @ cent.T  # (k runs' rows, k clusters)
            rows, cols = linear_sum_assignment(cost)
            new[r, cols] = rows
        cent = _unit(np.mean(U[np.arange(R)[:, None], new], axis=0))
        if it > 0 and np.array_equal(new, order):
            break
        order = new
    return order, cent


def cluster_silhouettes(S_runs: Sequence[Any], *, reference: int = 0) -> dict[str, Any]:
    """Silhouettes of the endmember clusters of ``S_runs`` (see the module).

    Returns ``mean`` (mean silhouette of all endmembers), ``min_cluster`` (the smallest
    per-cluster mean silhouette, NMFk's criterion), ``per_cluster`` (k,), ``order`` and
    ``centroids`` from :func:`align_components`.  With ``k = 1`` silhouettes are
    undefined: all values are NaN.
    """
    order, cent = align_components(S_runs, reference=reference)
    U = np.stack([_unit(np.asarray(S, dtype=float)) for S in S_runs])
    R, k, _ = U.shape
    if k < 2 or R < 2:
        nan = float("nan")
        return {
            "mean": nan,
            "min_cluster": nan,
            "per_cluster": np.full(k, np.nan),
            "order": order,
            "centroids": cent,
        }
    pts = U[np.arange(R)[:, None], order].reshape(R * k, -1)  # run-major, cluster-minor
    labels = np.tile(np.arange(k), R)
    D = np.clip(1.0 - pts @ pts.T, 0.0, 2.0)
    np.fill_diagonal(D, 0.0)
    sil = np.empty(R * k)
    for i in range(R * k):
        same = labels == labels[i]
        same[i] = False
        a = D[i, same].mean() if same.any() else 0.0
        b = min(D[i, labels == c].mean() for c in range(k) if c != labels[i])
        sil[i] = 0.0 if max(a, b) <= 0 else (b - a) / max(a, b)
    per = np.array([sil[labels == c].mean() for c in range(k)])
    return {
        "mean": float(sil.mean()),
        "min_cluster": float(per.min()),
        "per_cluster": per,
        "order": order,
        "centroids": cent,
    }
