"""The rank-selection criteria, as plain functions of fitted factors and errors.

Every function takes NumPy arrays in unmix's orientation: ``X`` (pixels, channels),
maps ``A`` (pixels, k), endmembers ``S`` (k, channels).  References:

- consensus matrix and cophenetic correlation: Brunet, Tamayo, Golub & Mesirov (2004),
  PNAS 101:4164;  dispersion: Kim & Park (2007), Bioinformatics 23:1495;
- information criteria with the dimension of the rank-``k`` model;
- Laplace approximation of the PCA evidence: Minka (2000), NIPS 13;
- knee of the error curve: Satopaa, Albrecht, Irwin & Raghavan (2011) ("Kneedle");
- similarity of components as ``k`` grows: Kannan, Ievlev, Laanait, Ziatdinov,
  Vasudevan, Jesse & Kalinin (2018), Adv. Struct. Chem. Imag. 4:6.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.cluster.hierarchy import cophenet, linkage
from scipy.optimize import linear_sum_assignment
from scipy.special import gammaln

__all__ = [
    "component_similarity",
    "consensus_matrix",
    "cophenetic_correlation",
    "dispersion",
    "information_criteria",
    "knee_point",
    "laplace_pca_evidence",
    "n_parameters",
    "pixel_labels",
    "roughness",
]


# ------------------------------------------------------------------ consensus
def pixel_labels(A: Any, S: Any) -> np.ndarray:
    """Cluster label of every pixel: the component with the largest contribution.

    ``argmax_j A_ij ||s_j||_2`` (Brunet et al. assign each sample to its largest
    coefficient; multiplying by the endmember norm makes the rule independent of how the
    scale is shared between ``A`` (pixels, k) and ``S`` (k, channels)).
    """
    A = np.asarray(A, dtype=float)
    norms = np.linalg.norm(np.asarray(S, dtype=float), axis=1)
    return np.argmax(A * norms[None, :], axis=1)


def consensus_matrix(labels: Any) -> np.ndarray:
    """Consensus matrix ``C_ij`` = fraction of runs in which pixels ``i`` and ``j`` share
    a cluster; ``labels`` is (runs, pixels) of integer labels."""
    L = np.asarray(labels)
    if L.ndim != 2 or L.shape[0] < 1:
        raise ValueError(f"labels must be (runs, pixels); got shape {L.shape}.")
    runs, n = L.shape
    C = np.zeros((n, n))
    for row in L:
        onehot = (row[:, None] == np.unique(row)[None, :]).astype(float)
        C += onehot @ onehot.T
    return C / runs


def _condensed(D: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(D.shape[0], k=1)
    return D[i, j]


def cophenetic_correlation(C: Any) -> float:
    """Cophenetic correlation of a consensus matrix (Brunet et al. 2004).

    Pearson correlation between the distances ``1 - C_ij`` and the cophenetic distances
    of their average-linkage tree.  1 for a perfect consensus (every entry 0 or 1); lower
    when pixels change clusters between runs.
    """
    C = np.asarray(C, dtype=float)
    if C.ndim != 2 or C.shape[0] != C.shape[1]:
        raise ValueError(f"C must be a square consensus matrix; got shape {C.shape}.")
    if C.shape[0] < 3:
        return 1.0
    d = _condensed(1.0 - C)
    if np.ptp(d) <= 1e-12:  # one cluster (or all apart): a perfect, trivial consensus
        return 1.0
    Z = linkage(d, method="average")
    coph = cophenet(Z)
    if np.ptp(coph) <= 1e-12:
        return 1.0
    return float(np.corrcoef(d, coph)[0, 1])


def dispersion(C: Any) -> float:
    """Dispersion of a consensus matrix (Kim & Park 2007): ``mean(4 (C_ij - 1/2)^2)``.

    1 when every entry is 0 or 1 (the same clusters in every run), 0 when all are 1/2.
    """
    C = np.asarray(C, dtype=float)
    return float(np.mean(4.0 * (C - 0.5) ** 2))


# -------------------------------------------------------- information criteria
def n_parameters(k: int, n_pixels: int, n_channels: int) -> int:
    """Free parameters of a rank-``k`` factorization of a (pixels, channels) matrix.

    ``A`` (pixels, k) and ``S`` (k, channels) hold ``k (n + m)`` numbers, but
    ``A S = (A T) (T^-1 S)`` for any invertible ``k x k`` matrix ``T`` that keeps both
    factors non-negative - for strictly positive factors an open set of dimension ``k^2``
    (not only the ``k`` scales and the permutations).  The model is therefore a set of
    dimension ``k (n + m - k)``, the dimension of the rank-``k`` matrices; plus one for
    the noise variance.
    """
    return int(k * (n_pixels + n_channels - k) + 1)


def information_criteria(sse: float, k: int, n_pixels: int, n_channels: int) -> dict:
    """AIC and BIC of a rank-``k`` fit with i.i.d. Gaussian noise.

    With ``N = n m`` entries and the maximum-likelihood variance ``sse / N``,
    ``-2 log L = N (log(2 pi sse / N) + 1)``; ``AIC = -2 log L + 2 p`` and
    ``BIC = -2 log L + p log N`` with ``p`` from :func:`n_parameters`.
    """
    N = n_pixels * n_channels
    p = n_parameters(k, n_pixels, n_channels)
    sse = max(float(sse), 1e-300)
    m2ll = N * (math.log(2.0 * math.pi * sse / N) + 1.0)
    return {"aic": m2ll + 2.0 * p, "bic": m2ll + p * math.log(N), "n_params": p}


def laplace_pca_evidence(X: Any, ks: Sequence[int]) -> np.ndarray:
    """Minka's (2000) Laplace approximation of ``log p(X | k)`` for probabilistic PCA.

    With ``lambda_1 >= ... >= lambda_d`` the eigenvalues of ``X^T X / N`` (``N`` pixels,
    ``d`` channels; not centred, because the factorization ``A S`` has no offset) and
    ``sigma^2 = sum_{j>k} lambda_j / (d - k)``::

        log p = log p(U) - N/2 sum_{j<=k} log lambda_j - N (d-k)/2 log sigma^2
                + (m + k)/2 log(2 pi) - 1/2 log|A_Z| - k/2 log N

    with ``m = d k - k (k+1)/2``, ``p(U) = 2^-k prod_i Gamma((d-i+1)/2) pi^(-(d-i+1)/2)``
    and ``|A_Z| = prod_{i<=k} prod_{j>i} N (1/lhat_j - 1/lhat_i)(lambda_i - lambda_j)``
    (``lhat_j = lambda_j`` for ``j <= k``, ``sigma^2`` otherwise).  Larger is better;
    NaN where ``k >= d``.  ``X`` may also be given as ``(gram, N, d)``: the smaller Gram
    matrix (``X^T X`` when ``N >= d``, else ``X X^T``) with the shape of ``X``.
    """
    if isinstance(X, tuple):
        gram, N, d = X
    else:
        X = np.asarray(X, dtype=float)
        N, d = X.shape
        gram = X.T @ X if N >= d else X @ X.T
    lam = np.linalg.eigvalsh(np.asarray(gram, dtype=float) / N)[::-1]
    if N < d:
        lam = np.concatenate([lam, np.zeros(d - lam.size)])
    floor = max(lam[0], 1e-300) * 1e-12
    lam = np.maximum(lam, floor)
    out = np.full(len(ks), np.nan)
    for idx, k in enumerate(ks):
        k = int(k)
        if k < 1 or k >= d:
            continue
        sigma2 = max(lam[k:].sum() / (d - k), floor)
        i = np.arange(1, k + 1)
        log_pu = -k * math.log(2.0) + float(
            np.sum(gammaln((d - i + 1) / 2.0) - (d - i + 1) / 2.0 * math.log(math.pi))
        )
        m = d * k - k * (k + 1) / 2.0
        lhat = lam.copy()
        lhat[k:] = sigma2
        log_az = 0.0
        for a in range(k):
            js = np.arange(a + 1, d)
            log_az += float(
                np.sum(
                    np.log(N)
                    + np.log(np.abs(1.0 / lhat[js] - 1.0 / lhat[a]))
                    + np.log(np.abs(lam[a] - lam[js]) + floor)
                )
            )
        out[idx] = (
            log_pu
            - N / 2.0 * float(np.sum(np.log(lam[:k])))
            - N * (d - k) / 2.0 * math.log(sigma2)
            + (m + k) / 2.0 * math.log(2.0 * math.pi)
            - 0.5 * log_az
            - k / 2.0 * math.log(N)
        )
    return out


# ------------------------------------------------------------------------ knee
def knee_point(ks: Sequence[int], errors: Sequence[float], *, log: bool = True) -> int | None:
    """The knee of a decreasing error curve: the point farthest below the chord.

    Both axes are scaled to [0, 1] (the errors in log scale by default, so that a drop
    to the noise floor counts the same at every level); the knee is the ``k`` whose
    point lies farthest below the straight line from the first to the last point.
    None when fewer than three finite points or no point lies below the chord.
    """
    k = np.asarray(ks, dtype=float)
    e = np.asarray(errors, dtype=float)
    ok = np.isfinite(e) & (e > 0 if log else np.isfinite(e))
    k, e = k[ok], e[ok]
    if k.size < 3:
        return None
    y = np.log(e) if log else e
    if np.ptp(y) <= 0:
        return None
    xn = (k - k[0]) / (k[-1] - k[0])
    yn = (y - y.min()) / np.ptp(y)
    chord = yn[0] + (yn[-1] - yn[0]) * xn
    below = chord - yn
    i = int(np.argmax(below))
    return int(k[i]) if below[i] > 1e-12 else None


# ----------------------------------------------------- similarity as k grows
def roughness(V: Any, axis: int = -1) -> np.ndarray:
    """Noise-likeness of each curve: ``sum (diff v)^2 / (2 sum (v - mean v)^2)``.

    About 1 for white noise, near 0 for a smooth curve (a spectrum with peaks wider than
    a few channels).  Computed along ``axis`` for every other index.
    """
    V = np.moveaxis(np.asarray(V, dtype=float), axis, -1)
    dv = np.diff(V, axis=-1)
    c = V - V.mean(axis=-1, keepdims=True)
    den = 2.0 * np.sum(c * c, axis=-1)
    return np.where(den > 0, np.sum(dv * dv, axis=-1) / np.maximum(den, 1e-300), 1.0)


def map_roughness(A: Any, spatial_shape: Sequence[int]) -> np.ndarray:
    """Spatial noise-likeness of each map (columns of ``A`` (pixels, k)), about 1 for
    white noise and near 0 for smooth maps: the mean squared difference between grid
    neighbours over twice the variance."""
    A = np.asarray(A, dtype=float)
    shape = tuple(int(s) for s in spatial_shape)
    M = A.reshape(*shape, A.shape[1])
    num = np.zeros(A.shape[1])
    cnt = 0
    for ax in range(len(shape)):
        if shape[ax] > 1:
            d = np.diff(M, axis=ax).reshape(-1, A.shape[1])
            num += np.mean(d * d, axis=0)
            cnt += 1
    var = A.var(axis=0)
    if cnt == 0:
        return np.full(A.shape[1], np.nan)
    return np.where(var > 0, num / cnt / np.maximum(2.0 * var, 1e-300), 1.0)


def _angles(P: np.ndarray, Q: np.ndarray) -> np.ndarray:
    Pn = P / np.maximum(np.linalg.norm(P, axis=1, keepdims=True), 1e-300)
    Qn = Q / np.maximum(np.linalg.norm(Q, axis=1, keepdims=True), 1e-300)
    return np.degrees(np.arccos(np.clip(Pn @ Qn.T, -1.0, 1.0)))


def component_similarity(
    S_prev: Any,
    S: Any,
    *,
    A: Any = None,
    spatial_shape: Sequence[int] | None = None,
    repeat_deg: float = 10.0,
    noise_roughness: float = 0.5,
) -> dict:
    """Kannan et al.'s rule for one step ``k - 1 -> k`` of the rank.

    The ``k - 1`` old endmembers ``S_prev`` are matched to the ``k`` new ones ``S``
    (Hungarian assignment on the spectral angle); the one new endmember left over is
    *the new component*.  It **repeats** an old one when its angle to the nearest
    endmember of either solution is below ``repeat_deg`` degrees (a component split in
    two); any component at ``k`` is **noise-like** when its spectrum's
    :func:`roughness` - or, with ``A`` and ``spatial_shape``, its map's
    :func:`map_roughness` - exceeds ``noise_roughness``.  Either means ``k`` is too large.

    Returns a dict with ``new`` (index of the new component), ``repeat_angle`` (its
    smallest angle in degrees to another endmember, old or new), ``repeats``,
    ``roughness`` (largest spectrum roughness at ``k``), ``map_roughness`` (largest map
    roughness or NaN), ``noise_like`` and ``too_large`` (repeats or noise-like).
    """
    S = np.asarray(S, dtype=float)
    k = S.shape[0]
    rough = roughness(S)
    mrough = (
        map_roughness(A, spatial_shape)
        if A is not None and spatial_shape is not None
        else np.full(k, np.nan)
    )
    noisy = bool(np.any(rough > noise_roughness) or np.any(mrough > noise_roughness))
    out = {
        "new": None,
        "repeat_angle": float("nan"),
        "repeats": False,
        "roughness": float(np.max(rough)),
        "map_roughness": float(np.nanmax(mrough)) if np.any(np.isfinite(mrough)) else np.nan,
        "noise_like": noisy,
    }
    if S_prev is not None and np.asarray(S_prev).shape[0] >= 1:
        P = np.asarray(S_prev, dtype=float)
        ang = _angles(S, P)  # (k, k-1)
        rows, _ = linear_sum_assignment(ang)
        new = int(np.setdiff1d(np.arange(k), rows)[0]) if rows.size < k else None
        if new is not None:
            own = _angles(S[new : new + 1], np.delete(S, new, axis=0))[0]
            rep = float(min(ang[new].min(), own.min() if own.size else np.inf))
            out.update(new=new, repeat_angle=rep, repeats=bool(rep < repeat_deg))
    out["too_large"] = bool(out["repeats"] or noisy)
    return out
