"""Synthetic data with planted structure, for tests and benchmarks of hierarchies.

- :func:`make_hierarchy`: spectrum images whose endmembers form a two-level tree
  (parents x children; children share their parent's peaks plus one peak of their own).
- :func:`make_diffraction_patterns`: 2-D diffraction patterns of lattices at several
  in-plane rotations (the 4D-STEM precipitate-classification case).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Diffraction", "Hierarchy", "make_diffraction_patterns", "make_hierarchy"]


@dataclass
class Hierarchy:
    """A spectrum image ``X (pixels, channels) = A @ S_leaves + noise`` with a planted tree.

    Attributes
    ----------
    X : ndarray (pixels, channels)
    A : ndarray (pixels, n_leaves)
        Leaf abundances, each row sums to one.
    S_leaves : ndarray (n_leaves, channels)
        Child endmembers: their parent's peaks plus one peak of their own.
    S_parents : ndarray (n_parents, channels)
        The mean of each parent's children (the group seen as one material).
    S_base : ndarray (n_parents, channels)
        The peaks each parent's children share (with the flat floor).
    parent_of : ndarray (n_leaves,)
        The parent of every leaf.
    tree : dict
        ``{"name": "root", "children": [{"name": "P0", "children": [{"name": "P0.0",
        "leaf": 0}, ...]}, ...]}``.
    spatial_shape : (rows, cols)
    snr_db : float or None
    """

    X: np.ndarray
    A: np.ndarray
    S_leaves: np.ndarray
    S_parents: np.ndarray
    S_base: np.ndarray
    parent_of: np.ndarray
    tree: dict[str, Any]
    spatial_shape: tuple[int, int]
    snr_db: float | None


def _gauss(x: np.ndarray, c: float, w: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - c) / w) ** 2)


def make_hierarchy(
    n_parents: int = 2,
    n_children: int = 3,
    *,
    spatial_shape: tuple[int, int] = (40, 40),
    n_channels: int = 120,
    shared_peaks: int = 2,
    snr_db: float | None = 30.0,
    purity: float = 12.0,
    clip: bool = True,
    random_state: int | None = 0,
) -> Hierarchy:
    """A spectrum image whose endmembers have a planted two-level hierarchy.

    Every parent has ``shared_peaks`` Gaussian peaks; each of its ``n_children`` children
    has those peaks plus one of its own, at a channel no other peak uses.  Maps are smooth
    blobs (two a leaf) turned into abundances on the simplex by a softmax of strength
    ``purity`` (larger: purer pixels); Gaussian noise at ``snr_db``
    (``10 log10(||A S||^2 / ||noise||^2)``), clipped at 0 when ``clip`` (NMF data).

    Returns
    -------
    Hierarchy
    """
    if n_parents < 1 or n_children < 1:
        raise ValueError(
            f"need n_parents >= 1 and n_children >= 1; got {n_parents}, {n_children}."
        )
    rng = np.random.default_rng(random_state)
    n_leaves = n_parents * n_children
    n_peaks = n_parents * shared_peaks + n_leaves
    if n_channels < 4 * n_peaks:
        raise ValueError(
            f"n_channels={n_channels} is too few for {n_peaks} separated peaks; use at least "
            f"{4 * n_peaks}."
        )
    S_base, S_leaves, parent_of = _planted_spectra(
        rng, n_parents, n_children, n_channels, shared_peaks
    )
    S_parents = np.array([S_leaves[parent_of == p].mean(axis=0) for p in range(n_parents)])
    h, w = spatial_shape
    A = _blob_maps(rng, h, w, n_leaves, purity)
    Y = A @ S_leaves
    X = Y.copy()
    if snr_db is not None:
        sigma = np.sqrt(np.mean(Y**2) / 10 ** (snr_db / 10))
        X = X + sigma * rng.standard_normal(Y.shape)
    if clip:
        X = np.clip(X, 0.0, None)
    return Hierarchy(
        X=X,
        A=A,
        S_leaves=S_leaves,
        S_parents=S_parents,
        S_base=S_base,
        parent_of=parent_of,
        tree=_planted_tree(n_parents, n_children),
        spatial_shape=(h, w),
        snr_db=snr_db,
    )


def _planted_spectra(
    rng: np.random.Generator, n_parents: int, n_children: int, n_channels: int, shared_peaks: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(S_base, S_leaves, parent_of)``: each parent's shared peaks on a flat floor, and
    its children's spectra (those peaks plus one of their own), at randomly dealt slots."""
    n_leaves = n_parents * n_children
    n_peaks = n_parents * shared_peaks + n_leaves
    x = np.arange(n_channels, dtype=float)
    slots = (np.arange(n_peaks) + 0.5 + rng.uniform(-0.15, 0.15, n_peaks)) * n_channels / n_peaks
    slots = slots[rng.permutation(n_peaks)]
    width = 0.3 * n_channels / n_peaks
    S_base = np.full((n_parents, n_channels), 0.02)
    for p in range(n_parents):
        for j in range(shared_peaks):
            S_base[p] += rng.uniform(0.6, 1.0) * _gauss(x, slots[p * shared_peaks + j], width)
    own = slots[n_parents * shared_peaks :]
    parent_of = np.repeat(np.arange(n_parents), n_children)
    S_leaves = np.array(
        [
            S_base[parent_of[i]] + rng.uniform(0.6, 1.0) * _gauss(x, own[i], width)
            for i in range(n_leaves)
        ]
    )
    return S_base, S_leaves, parent_of


def _blob_maps(
    rng: np.random.Generator, h: int, w: int, n_leaves: int, purity: float
) -> np.ndarray:
    """Leaf abundances (h * w, n_leaves) on the simplex: a softmax of smooth blobs.

    Two blobs a leaf, centred in the cells of a jittered grid dealt out at random, so that
    every leaf covers a similar area.
    """
    yy, xx = np.mgrid[0:h, 0:w]
    n_cells = 2 * n_leaves
    gr = int(np.floor(np.sqrt(n_cells * h / w))) or 1
    gc = int(np.ceil(n_cells / gr))
    cells = rng.permutation(gr * gc)[:n_cells]
    logits = np.zeros((h, w, n_leaves))
    for j, cell in enumerate(cells):
        i = j % n_leaves
        cy = (cell // gc + rng.uniform(0.3, 0.7)) * h / gr
        cx = (cell % gc + rng.uniform(0.3, 0.7)) * w / gc
        r = rng.uniform(0.5, 0.7) * min(h / gr, w / gc)
        logits[..., i] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    logits *= purity
    A = np.exp(logits - logits.max(axis=2, keepdims=True))
    return (A / A.sum(axis=2, keepdims=True)).reshape(h * w, n_leaves)


def _planted_tree(n_parents: int, n_children: int) -> dict[str, Any]:
    """The planted tree as nested dicts (see :attr:`Hierarchy.tree`)."""
    return {
        "name": "root",
        "children": [
            {
                "name": f"P{p}",
                "children": [
                    {"name": f"P{p}.{j}", "leaf": int(p * n_children + j)}
                    for j in range(n_children)
                ],
            }
            for p in range(n_parents)
        ],
    }


@dataclass
class Diffraction:
    """Diffraction patterns ``(n, ny, nx)`` with their lattice and rotation (degrees)."""

    patterns: np.ndarray
    lattice: np.ndarray
    rotation: np.ndarray
    center: tuple[float, float]


def _lattice_points(kind: str, spacing: float, r_max: float) -> np.ndarray:
    if kind == "square":
        a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    elif kind == "hexagonal":
        a, b = np.array([1.0, 0.0]), np.array([0.5, np.sqrt(3) / 2])
    else:
        raise ValueError(f"lattice kind must be 'square' or 'hexagonal'; got {kind!r}.")
    n = int(np.ceil(r_max / spacing)) + 2
    i, j = np.mgrid[-n : n + 1, -n : n + 1]
    pts = spacing * (i.reshape(-1, 1) * a + j.reshape(-1, 1) * b)
    rad = np.hypot(pts[:, 0], pts[:, 1])
    return pts[(rad > 0) & (rad <= r_max)]


def make_diffraction_patterns(
    lattices: tuple[tuple[str, float], ...] = (("square", 9.0), ("hexagonal", 12.0)),
    rotations: tuple[tuple[float, ...], ...] = ((0.0, 17.0, 33.0, 52.0, 71.0), (8.0, 26.0, 44.0)),
    *,
    size: int = 64,
    spot_sigma: float = 1.2,
    noise: float = 0.01,
    center_beam: float = 3.0,
    random_state: int | None = 0,
) -> Diffraction:
    """Spot patterns of each lattice at each of its in-plane rotations.

    Spots are Gaussians at the lattice points inside a disc (intensity decaying with the
    radius), on a bright central beam, plus Gaussian noise of standard deviation
    ``noise`` (relative to the brightest spot), clipped at 0.
    """
    rng = np.random.default_rng(random_state)
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    r_max = 0.45 * size
    pats, lat, rot = [], [], []
    for li, ((kind, spacing), angles) in enumerate(zip(lattices, rotations, strict=True)):
        pts = _lattice_points(kind, spacing, r_max)
        for ang in angles:
            t = np.deg2rad(ang)
            R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
            q = pts @ R.T
            img = center_beam * np.exp(
                -((yy - c) ** 2 + (xx - c) ** 2) / (2 * (2 * spot_sigma) ** 2)
            )
            for qx, qy in q:
                amp = np.exp(-np.hypot(qx, qy) / (0.5 * size))
                img += amp * np.exp(
                    -((xx - c - qx) ** 2 + (yy - c - qy) ** 2) / (2 * spot_sigma**2)
                )
            img = img + noise * rng.standard_normal(img.shape)
            pats.append(np.clip(img, 0.0, None))
            lat.append(li)
            rot.append(ang)
    return Diffraction(
        patterns=np.array(pats), lattice=np.array(lat), rotation=np.array(rot), center=(c, c)
    )
