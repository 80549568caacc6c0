"""Scores for unmixing results: spectral angles, Hungarian matching, abundance RMSE.

Scoring convention (Zhu 2017; used for every number unmix reports): match estimated to
true endmembers by the Hungarian assignment on spectral angle, report the mean spectral
angle distance (SAD, degrees) and the abundance RMSE after normalizing abundances to sum
to one per pixel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from ._backend import to_numpy

__all__ = ["abundance_rmse", "match_components", "score", "spectral_angles"]


def spectral_angles(S_est: Any, S_true: Any) -> np.ndarray:
    """Angles in degrees between every estimated and true endmember, shape (k_est, k_true)."""
    E = np.asarray(to_numpy(S_est), dtype=float)
    T = np.asarray(to_numpy(S_true), dtype=float)
    En = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-300)
    Tn = T / np.maximum(np.linalg.norm(T, axis=1, keepdims=True), 1e-300)
    return np.degrees(np.arccos(np.clip(En @ Tn.T, -1.0, 1.0)))


def match_components(S_est: Any, S_true: Any) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian assignment on spectral angle: ``(est_index, true_index)`` arrays."""
    angles = spectral_angles(S_est, S_true)
    return linear_sum_assignment(angles)


def abundance_rmse(A_est: Any, A_true: Any, order: np.ndarray | None = None) -> float:
    """RMSE of sum-to-one-normalized abundances; ``order[j]`` = estimated column of true j."""
    A = np.asarray(to_numpy(A_est), dtype=float)
    T = np.asarray(to_numpy(A_true), dtype=float)
    A = A / np.maximum(A.sum(axis=1, keepdims=True), 1e-300)
    T = T / np.maximum(T.sum(axis=1, keepdims=True), 1e-300)
    if order is not None:
        A = A[:, order]
    return float(np.sqrt(np.mean((A - T) ** 2)))


def score(S_est: Any, S_true: Any, A_est: Any = None, A_true: Any = None) -> dict[str, Any]:
    """Mean SAD (deg), per-component SAD, and abundance RMSE (when maps are given)."""
    rows, cols = match_components(S_est, S_true)
    angles = spectral_angles(S_est, S_true)[rows, cols]
    out: dict[str, Any] = {"sad": float(np.mean(angles)), "sad_each": angles.tolist()}
    if A_est is not None and A_true is not None:
        order = np.empty(len(cols), dtype=int)
        order[cols] = rows
        out["rmse"] = abundance_rmse(A_est, A_true, order)
    return out
