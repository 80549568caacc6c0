"""Scores of a candidate split: which leaf of the tree to split next.

``X_b`` (pixels, channels) are the pixels of a node and ``S`` (r, channels) the
endmembers of its candidate split.

- ``"gain"``: the reconstruction gain of the split, ``(e_1 - e_r) / e_root``, where
  ``e_1 = min ||X_b - u v||_F^2`` is the node's best rank-one residual, ``e_r`` the
  residual of its rank-r NMF, and ``e_root`` the rank-one residual of the whole image:
  the fraction of the image's variation beyond one spectrum that the split explains.
  When the splits have a model (a loss or terms, :mod:`unmix.hierarchy._terms`) the three
  are measured in the model's loss instead (its data term; the rank-one model exact for
  Frobenius and KL), so that a KL tree ranks its splits by the divergence it fits.
- ``"ndcg"``: a discounted-gain score on the channels, after the node-splitting rule of
  Kuang & Park (2013) that ranks terms by their weight in each child topic.  Channels
  play the role of terms: every child ranks the channels by its (max-normalized)
  endmember ``s_c``; a channel at rank ``i`` counts ``s_c(f_i) / log2(i + 1)`` and earns
  that gain in proportion to how exclusively it belongs to this child,
  ``p_c(f) = s_c(f) / sum_d s_d(f)``.  ``NDCG_c = sum_i s_c p_c / log2(i+1) /
  sum_i s_c / log2(i+1)`` lies in ``[1/r, 1]``; the score is
  ``(prod_c NDCG_c) ** (2 / r)``: 1 when the children's strongest channels are
  disjoint, ``1/r**2`` when the children are identical (for r = 2: 0.25).  It measures
  how distinct the children are, not how many pixels they explain.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SCORES", "ndcg_score", "split_gain"]

SCORES = ("gain", "ndcg")


def split_gain(err_rank1: float, err_split: float, err_root: float) -> float:
    """``(err_rank1 - err_split) / err_root``; 0 when the root is exactly rank one."""
    if not err_root > 0:
        return 0.0
    return max(float(err_rank1 - err_split), 0.0) / float(err_root)


def ndcg_score(S: np.ndarray) -> float:
    """The channel-ranking score of children endmembers ``S`` (r, channels), see above."""
    S = np.clip(np.asarray(S, dtype=float), 0.0, None)
    r, m = S.shape
    top = S.max(axis=1, keepdims=True)
    if np.any(top <= 0):
        return 0.0
    N = S / top
    total = N.sum(axis=0)
    P = np.divide(N, total, out=np.full_like(N, 1.0 / r), where=total > 0)
    disc = 1.0 / np.log2(np.arange(2, m + 2))
    prod = 1.0
    for c in range(r):
        order = np.argsort(-N[c], kind="stable")
        rel = N[c, order] * disc
        prod *= float(np.sum(rel * P[c, order]) / np.sum(rel))
    return prod ** (2.0 / r)
