"""Maps of a tree: nested maps without refit, and the refit of every level.

``X`` is (pixels, channels); a level's endmembers ``S_level`` (k, channels) are those of
the cut of the tree at one depth, and its maps ``A`` (pixels, k) cover every pixel.
``X`` may be sparse (CSR rows, :mod:`~unmix.hierarchy._sparse`): the maps need only its
products with the endmembers and its squared pixel norms, and it is never densified.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import Backend
from .._linalg import nnls_bpp
from ..engine import factorize
from ..model import NonNegative, SumToOne
from ._model import Level, Tree
from ._rank2 import nnls2
from ._sparse import backend, is_sparse, row_sq, sq_error
from ._terms import SplitModel

__all__ = [
    "MapProducts",
    "joint_terms",
    "layer_maps",
    "maps_from_products",
    "nested_maps",
    "refit_level",
]


@dataclass
class MapProducts:
    """What exact least-squares maps need of ``X`` (pixels, channels) and endmembers ``W``
    (k, channels): ``XW = X @ W.T`` (pixels, k), ``WW = W @ W.T`` (k, k) and the squared
    pixel norms ``x2`` (pixels,).  One pass over ``X`` makes them for every level of a tree
    at once; the maps and their residuals then cost O(pixels k^2), not O(pixels channels).
    Sparse ``X`` gives them from its stored entries (O(nnz k)).
    """

    XW: Any
    WW: Any
    x2: Any

    @classmethod
    def of(cls, X: Any, W: Any, be: Backend) -> MapProducts:
        xp = be.xp
        if is_sparse(X):
            x2 = be.acc(row_sq(X))
            return cls(be.acc(np.asarray(X @ be.work(W).T)), be.acc(W) @ be.acc(W).T, x2)
        Xa = be.acc(X)
        if isinstance(Xa, np.ndarray):  # one pass, no (pixels, channels) temporary
            x2 = np.einsum("ij,ij->i", Xa, Xa)
        else:
            x2 = xp.linalg.vector_norm(Xa, axis=1) ** 2
        return cls(be.acc(X @ be.work(W).T), be.acc(W) @ be.acc(W).T, x2)

    def take(self, cols: Any, be: Backend) -> MapProducts:
        """The products with the endmembers ``W[cols]``."""
        xp = be.xp
        sel = xp.asarray(np.asarray(cols), device=be.device)
        WW = xp.take(xp.take(self.WW, sel, axis=0), sel, axis=1)
        return MapProducts(xp.take(self.XW, sel, axis=1), WW, self.x2)

    def residual(self, A: Any, be: Backend) -> float:
        """``||X - A W||_F^2`` from the products (float64; clipped at 0)."""
        xp = be.xp
        Aa = be.acc(A)
        fit = 2.0 * xp.sum(Aa * self.XW) - xp.sum((Aa @ self.WW) * Aa)
        return max(float(xp.sum(self.x2)) - float(fit), 0.0)


def layer_maps(X: Any, W: Any, be: Backend, *, sum_to_one: bool = False) -> Any:
    """``argmin_{A >= 0} ||X - A W||_F^2`` for every pixel of ``X`` (pixels, channels).

    ``X`` is an array or a sparse matrix (CSR or CSC rows; never densified) and ``W``
    (k, channels) are fixed endmembers.  Solved by block principal pivoting on a
    rescaled problem (endmembers to unit norm, data to unit largest pixel norm) so that
    the solver's tolerances do not depend on the data's units.  With ``sum_to_one`` the
    rows of ``A`` also sum to one (fully constrained least squares): the sum enters as an
    extra equation weighted 1e6 times the mean diagonal of the (rescaled) Gram matrix and
    the rows are then renormalized (a relative change of about 1e-4 or less).  A ridge of
    1e-10 of the largest diagonal entry keeps the solves regular when a component vanishes
    or the endmembers are rank deficient.
    """
    return maps_from_products(MapProducts.of(X, W, be), be, sum_to_one=sum_to_one)


def maps_from_products(p: MapProducts, be: Backend, *, sum_to_one: bool = False) -> Any:
    """:func:`layer_maps` from the products of ``X`` with the endmembers."""
    xp = be.xp
    k = int(p.WW.shape[0])
    s = xp.sqrt(xp.clip(xp.linalg.diagonal(p.WW), 0.0, None))
    s = xp.where(s > 0, s, 1.0)
    c = math.sqrt(float(xp.max(p.x2))) if int(p.x2.shape[0]) else 0.0
    c = c if c > 0 else 1.0
    G = p.WW / (s[:, None] * s[None, :])
    B = p.XW / (s[None, :] * c)
    v = c / s  # A = A_scaled * v, so sum(A) = A_scaled @ v
    if sum_to_one:
        lam = 1e6 / float(xp.sum(v * v))
        G = G + lam * (v[:, None] * v[None, :])
        B = B + lam * v[None, :]
    ridge = 1e-10 * float(xp.max(xp.linalg.diagonal(G)))
    G = G + ridge * xp.eye(k, dtype=G.dtype, device=be.device)
    A = nnls_bpp(G, B, be) * v[None, :]
    if sum_to_one:
        tot = xp.sum(A, axis=1, keepdims=True)
        A = xp.where(tot > 0, A / xp.where(tot > 0, tot, 1.0), 1.0 / k)
    return be.work(A)


def _nnls_rows(X: Any, S: Any, be: Backend, products: MapProducts | None = None) -> Any:
    """``argmin_{A >= 0} ||X - A S||`` for every pixel, exactly (acc dtype for 2 rows);
    from ``products`` of ``X`` with ``S`` when given."""
    p = MapProducts.of(X, S, be) if products is None else products
    if S.shape[0] == 2:
        return nnls2(p.WW[None, :, :], p.XW, be.xp)
    return maps_from_products(p, be)


def nested_maps(X: Any, tree: Tree, products: MapProducts | None = None) -> Any:
    """Maps (pixels, n_nodes) without refit: each split shares its node's abundance.

    The root has abundance 1 everywhere; a node with children ``c`` gives child ``c_j``
    the fraction ``f_j = a_j / sum(a)`` of its own abundance, where ``a`` is the exact NNLS
    fit of the pixel by the children's endmembers (equal shares where ``a == 0``).  Every
    level of these maps sums to one per pixel.  ``products`` of ``X`` with ``tree.S`` (all
    nodes) spare the passes over ``X``.  ``X`` may be a sparse matrix (CSR rows).
    """
    be = backend(X)
    xp = be.xp
    n = int(X.shape[0])
    cols: list[Any] = [None] * len(tree.nodes)
    cols[0] = xp.ones((n,), dtype=be.dtype, device=be.device)
    for i in tree.preorder():
        ch = tree.nodes[i].children
        if not ch:
            continue
        Sc = xp.take(tree.S, xp.asarray(np.array(ch), device=be.device), axis=0)
        F = _nnls_rows(X, Sc, be, None if products is None else products.take(ch, be))
        tot = xp.sum(F, axis=1, keepdims=True)
        frac = xp.where(tot > 0, F / xp.where(tot > 0, tot, 1.0), 1.0 / len(ch))
        for j, c in enumerate(ch):
            cols[c] = cols[i] * be.work(frac[:, j])
    return xp.stack(cols, axis=1)


def refit_level(
    X: Any,
    tree: Tree,
    depth: int,
    *,
    mode: str = "maps",
    sum_to_one: bool = False,
    max_iter: int | None = 300,
    tol: float = 1e-6,
    random_state: int | None = 0,
    model: SplitModel | None = None,
) -> Level:
    """Maps of all pixels of ``X`` (pixels, channels) for the tree's level at ``depth``.

    ``mode="maps"`` solves ``min_{A >= 0} ||X - A S_level||_F^2`` exactly (block principal
    pivoting), with ``sum_to_one`` under ``sum(A, axis=1) == 1`` as well (fully
    constrained least squares, :func:`layer_maps`).  ``mode="joint"`` then minimizes over
    ``A`` and ``S`` together with the engine (:func:`unmix.factorize` with
    ``NonNegative`` and, with ``sum_to_one``, ``SumToOne``), started from the refitted maps
    and the tree's endmembers; with ``model`` (the terms of the tree's splits) the joint
    refit minimizes that model instead (its loss, its constraints plus ``SumToOne`` with
    ``sum_to_one``, its regularizers).  ``mode="none"`` takes the tree's nested maps.
    ``X`` may be a sparse matrix (CSR rows): the error comes from the Gram identity.
    """
    be = backend(X)
    xp = be.xp
    ids = tree.level_of(depth)
    sel = xp.asarray(np.array(ids), device=be.device)
    S = xp.take(tree.S, sel, axis=0)
    k = len(ids)
    if mode == "none":
        A = xp.take(tree.node_maps, sel, axis=1)
    elif k == 1 and sum_to_one:
        A = xp.ones((int(X.shape[0]), 1), dtype=be.dtype, device=be.device)
    elif sum_to_one:
        A = layer_maps(X, S, be, sum_to_one=True)
    else:
        A = be.work(_nnls_rows(X, S, be))
    if mode == "joint":
        res = factorize(
            X,
            k,
            **joint_terms(model, sum_to_one),
            init=(A, S),
            max_iter=max_iter,
            tol=tol,
            compress=None,
            random_state=random_state,
        )
        A, S = res.A, res.S
    if is_sparse(X):
        err = sq_error(X, A, S, be) / max(float(np.sum(row_sq(X))), 1e-300)
    else:
        R = X - A @ S
        err = float(xp.sum(R * R)) / max(float(xp.sum(X * X)), 1e-300)
    return Level(depth=depth, nodes=ids, A=A, S=S, refit=mode, error=err)


def joint_terms(model: SplitModel | None, sum_to_one: bool) -> dict[str, Any]:
    """The keywords of :func:`unmix.factorize` for a level's joint refit: non-negative
    factors (rows of ``A`` on the simplex with ``sum_to_one``), or the splits' ``model``."""
    if model is None:
        return {"constraints": [NonNegative()] + ([SumToOne()] if sum_to_one else [])}
    cons = [NonNegative()] if model.constraints is None else list(model.constraints)
    if sum_to_one and not any(getattr(c, "simplex_rows", False) for c in cons):
        cons.append(SumToOne())
    out = {
        "loss": model.loss,
        "constraints": cons,
        "regularizers": model.regularizers,
        "solver": model.solver,
        "signal_shape": model.signal_shape,
    }
    if model.coupled:
        out["spatial_shape"] = model.spatial_shape
    return out
