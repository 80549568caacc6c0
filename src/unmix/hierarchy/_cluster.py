"""Clustering of components into a dendrogram.

Endmembers ``S`` (k, channels) are compared pairwise and grouped by agglomerative linkage
(:func:`scipy.cluster.hierarchy.linkage`):

- ``metric="angle"``: the spectral angle ``arccos(<s_a, s_b> / (|s_a| |s_b|))`` in degrees.
- ``metric="rotation"``: for 2-D patterns (diffraction), a distance blind to in-plane
  rotation.  Each pattern is resampled on a polar grid ``(r, theta)`` around the pattern
  centre, the angular mean of every ring is removed (optional: it holds the isotropic
  part common to all patterns, such as the central beam and diffuse background), rings are
  weighted by ``sqrt(r)`` (the polar area element), and two patterns are compared by their
  circular cross-correlation along the angle only::

      c_ab(tau) = sum_{r, theta} P_a(r, theta) P_b(r, theta + tau),
      d_ab = arccos(max_tau c_ab(tau) / (|P_a| |P_b|))   (degrees)

  computed for all shifts at once by FFTs along theta.  Rotated copies of one crystal's
  pattern are at distance ~0 and group together; the best shift is the relative rotation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.cluster.hierarchy import cophenet, fcluster, linkage, to_tree
from scipy.ndimage import map_coordinates
from scipy.spatial.distance import squareform

from .._backend import to_numpy

__all__ = [
    "Dendrogram",
    "cluster_components",
    "polar_transform",
    "rotation_distances",
    "spectral_angle_distances",
]

METRICS = ("angle", "rotation")


def spectral_angle_distances(S: Any) -> np.ndarray:
    """Spectral angles (degrees) between all rows of ``S`` (k, channels): (k, k)."""
    E = np.asarray(to_numpy(S), dtype=float)
    E = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-300)
    D = np.degrees(np.arccos(np.clip(E @ E.T, -1.0, 1.0)))
    np.fill_diagonal(D, 0.0)
    return (D + D.T) / 2


def _patterns(P: Any, signal_shape: tuple[int, int] | None) -> np.ndarray:
    P = np.asarray(to_numpy(P), dtype=float)
    if P.ndim == 2:
        if signal_shape is None or int(np.prod(signal_shape)) != P.shape[1]:
            raise ValueError(
                f"patterns of shape {P.shape} are unfolded: give signal_shape=(ny, nx) with "
                f"ny * nx = {P.shape[1]} (or pass them as (k, ny, nx))."
            )
        P = P.reshape(P.shape[0], *signal_shape)
    if P.ndim != 3:
        raise ValueError(f"2-D patterns must be (k, ny, nx); got shape {P.shape}.")
    return P


def polar_transform(
    P: Any,
    *,
    center: tuple[float, float] | None = None,
    n_radii: int | None = None,
    n_angles: int = 360,
    r_max: float | None = None,
    signal_shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Resample 2-D patterns (k, ny, nx) on a polar grid (k, n_radii, n_angles), bilinearly.

    ``center`` is (row, column) in pixels (default: the centre of mass of the mean
    pattern); ``r_max`` defaults to the largest circle inside the detector.  Returns the
    polar patterns and ``{"center", "r_max", "radii", "angles"}`` (angles in degrees).
    """
    P = _patterns(P, signal_shape)
    _, ny, nx = P.shape
    if center is None:
        mean = np.clip(P.mean(axis=0), 0, None)
        tot = mean.sum()
        if tot > 0:
            cy = float(mean.sum(axis=1) @ np.arange(ny)) / tot
            cx = float(mean.sum(axis=0) @ np.arange(nx)) / tot
        else:
            cy, cx = (ny - 1) / 2, (nx - 1) / 2
    else:
        cy, cx = (float(c) for c in center)
    if r_max is None:
        r_max = min(cy, cx, ny - 1 - cy, nx - 1 - cx)
    if not r_max > 0:
        raise ValueError(
            f"the pattern centre ({cy:g}, {cx:g}) is not inside the {ny} x {nx} detector; "
            "give center=(row, col) inside it, or r_max > 0."
        )
    nr = int(n_radii) if n_radii else int(np.floor(r_max)) + 1
    radii = np.linspace(0.0, r_max, nr)
    theta = np.arange(n_angles) * (2 * np.pi / n_angles)
    yy = cy + radii[:, None] * np.sin(theta)[None, :]
    xx = cx + radii[:, None] * np.cos(theta)[None, :]
    out = np.stack([map_coordinates(p, [yy, xx], order=1, mode="constant", cval=0.0) for p in P])
    info = {"center": (cy, cx), "r_max": float(r_max), "radii": radii, "angles": np.degrees(theta)}
    return out, info


def rotation_distances(
    P: Any,
    *,
    center: tuple[float, float] | None = None,
    n_angles: int = 360,
    r_min: float = 0.0,
    r_max: float | None = None,
    subtract_ring_mean: bool = True,
    mirror: bool = False,
    signal_shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rotation-invariant distances (degrees) between 2-D patterns, and best rotations.

    Parameters
    ----------
    P : array (k, ny, nx), or (k, ny * nx) with ``signal_shape``
        Patterns (e.g. the endmembers of a 4D-STEM factorization).
    center, r_max, n_angles
        Polar grid (see :func:`polar_transform`).
    r_min : float
        Rings closer to the centre are ignored (e.g. the central beam), in pixels.
    subtract_ring_mean : bool
        Remove each ring's angular mean first, so only the angular structure counts.
    mirror : bool
        Also compare with the mirror image (``theta -> -theta``).

    Returns
    -------
    D : ndarray (k, k)
        ``arccos`` of the best normalized angular cross-correlation, in degrees.
    rotation : ndarray (k, k)
        The rotation (degrees) of pattern ``b`` that best matches pattern ``a``.
    """
    Q, info = polar_transform(
        P, center=center, n_angles=n_angles, r_max=r_max, signal_shape=signal_shape
    )
    radii = info["radii"]
    Q = Q[:, radii >= r_min, :]
    if Q.shape[1] == 0:
        raise ValueError(f"r_min={r_min} leaves no ring (r_max = {info['r_max']:g}).")
    if subtract_ring_mean:
        Q = Q - Q.mean(axis=2, keepdims=True)
    Q = Q * np.sqrt(np.maximum(radii[radii >= r_min], 1e-12))[None, :, None]
    norms = np.sqrt(np.sum(Q * Q, axis=(1, 2)))
    F = np.fft.rfft(Q, axis=2)
    Fm = np.fft.rfft(Q[:, :, (-np.arange(n_angles)) % n_angles], axis=2) if mirror else None
    k = Q.shape[0]
    D = np.zeros((k, k))
    rot = np.zeros((k, k))
    step = 360.0 / n_angles
    for a in range(k):
        cc = np.fft.irfft(np.sum(np.conj(F[a])[None] * F, axis=1), n=n_angles, axis=1)
        if Fm is not None:
            cc = np.maximum(
                cc, np.fft.irfft(np.sum(np.conj(F[a])[None] * Fm, axis=1), n=n_angles, axis=1)
            )
        best = np.argmax(cc, axis=1)
        denom = np.maximum(norms[a] * norms, 1e-300)
        D[a] = np.degrees(np.arccos(np.clip(cc[np.arange(k), best] / denom, -1.0, 1.0)))
        rot[a] = best * step
    np.fill_diagonal(D, 0.0)
    return (D + D.T) / 2, rot


@dataclass
class Dendrogram:
    """Agglomerative clustering of components.

    Attributes
    ----------
    linkage : ndarray (k - 1, 4)
        SciPy linkage matrix.
    distances : ndarray (k, k)
        Pairwise distances (degrees).
    metric, method : str
    names : list of str
    cophenetic : float
        Cophenetic correlation of the dendrogram with ``distances``.
    rotations : ndarray (k, k) or None
        Best relative rotations (degrees) for ``metric="rotation"``.
    """

    linkage: np.ndarray
    distances: np.ndarray
    metric: str
    method: str
    names: list[str]
    cophenetic: float
    rotations: np.ndarray | None = field(default=None, repr=False)

    def labels(self, n_clusters: int | None = None, threshold: float | None = None) -> np.ndarray:
        """Flat clusters (0-based): ``n_clusters`` of them, or cut at ``threshold`` degrees."""
        if (n_clusters is None) == (threshold is None):
            raise ValueError("give exactly one of n_clusters= or threshold=.")
        if n_clusters is not None:
            lab = fcluster(self.linkage, t=int(n_clusters), criterion="maxclust")
        else:
            lab = fcluster(self.linkage, t=float(threshold), criterion="distance")
        return lab - 1

    def newick(self) -> str:
        """The dendrogram in Newick format with branch lengths (half the merge height)."""
        root = to_tree(self.linkage)

        def rec(nd: Any, parent_h: float) -> str:
            length = (parent_h - nd.dist) / 2
            if nd.is_leaf():
                return f"{self.names[nd.id]}:{length:.4g}"
            return f"({rec(nd.left, nd.dist)},{rec(nd.right, nd.dist)}):{length:.4g}"

        return rec(root, root.dist) + ";"

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "method": self.method,
            "names": list(self.names),
            "linkage": self.linkage.tolist(),
            "distances": self.distances.tolist(),
            "cophenetic": self.cophenetic,
            "newick": self.newick(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


def cluster_components(
    S: Any,
    *,
    metric: str = "angle",
    method: str = "average",
    names: list[str] | None = None,
    signal_shape: tuple[int, int] | None = None,
    **rotation_options: Any,
) -> Dendrogram:
    """Dendrogram of the components ``S`` (k, channels), or of 2-D patterns.

    Parameters
    ----------
    S : array (k, channels), or (k, ny, nx) patterns
        Endmembers on any backend (compared on the host).
    metric : {"angle", "rotation"}
        Spectral angle, or the rotation-invariant polar distance for 2-D patterns (give
        ``signal_shape`` for unfolded patterns).
    method : str
        SciPy linkage method (``"average"``, ``"complete"``, ``"single"``, ``"ward"``...).
    names : list of str, optional
        One label a component (default ``"c0"``, ``"c1"``, ...).
    **rotation_options
        Passed to :func:`rotation_distances` (``center``, ``r_min``, ``mirror``...).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}.")
    arr = np.asarray(to_numpy(S), dtype=float)
    k = arr.shape[0]
    if k < 2:
        raise ValueError(f"clustering needs at least 2 components; got {k}.")
    rot = None
    if metric == "angle":
        if rotation_options:
            raise TypeError(f"options {sorted(rotation_options)} apply to metric='rotation'.")
        D = spectral_angle_distances(arr.reshape(k, -1))
    else:
        D, rot = rotation_distances(arr, signal_shape=signal_shape, **rotation_options)
    cond = squareform(D, checks=False)
    Z = linkage(cond, method=method)
    coph = float(cophenet(Z, cond)[0]) if k > 2 else 1.0
    names = list(names) if names is not None else [f"c{i}" for i in range(k)]
    if len(names) != k:
        raise ValueError(f"names has {len(names)} entries for {k} components.")
    return Dendrogram(Z, D, metric, method, names, coph, rot)
