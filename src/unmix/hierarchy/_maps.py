"""Maps of a tree: nested maps without refit, and the refit of every level.

``X`` is (pixels, channels); a level's endmembers ``S_level`` (k, channels) are those of
the cut of the tree at one depth, and its maps ``A`` (pixels, k) cover every pixel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._backend import Backend, backend_of
from .._linalg import nnls_bpp
from ..engine import factorize
from ..model import NonNegative, SumToOne
from ._model import Level, Tree
from ._rank2 import nnls2
from ._terms import SplitModel

__all__ = ["joint_terms", "layer_maps", "nested_maps", "refit_level"]


def layer_maps(X: Any, W: Any, be: Backend, *, sum_to_one: bool = False) -> Any:
    """``argmin_{A >= 0} ||X - A W||_F^2`` for every pixel of ``X`` (pixels, channels).

    ``W`` (k, channels) are fixed endmembers.  Solved by block principal pivoting on a
    rescaled problem (endmembers to unit norm, data to unit largest pixel norm) so that
    the solver's tolerances do not depend on the data's units.  With ``sum_to_one`` the
    rows of ``A`` also sum to one (fully constrained least squares): the sum enters as an
    extra equation weighted 1e6 times the mean diagonal of the (rescaled) Gram matrix and
    the rows are then renormalized (a relative change of about 1e-4 or less).  A ridge of
    1e-10 of the largest diagonal entry keeps the solves regular when a component vanishes
    or the endmembers are rank deficient.
    """
    xp = be.xp
    k = int(W.shape[0])
    Wa = be.acc(W)
    s = xp.linalg.vector_norm(Wa, axis=1)
    s = xp.where(s > 0, s, 1.0)
    c = float(xp.max(xp.linalg.vector_norm(be.acc(X), axis=1)))
    c = c if c > 0 else 1.0
    Wn = Wa / s[:, None]
    G = Wn @ Wn.T
    B = be.acc(X @ be.work(Wn).T) / c
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


def _nnls_rows(X: Any, S: Any, be: Backend) -> Any:
    """``argmin_{A >= 0} ||X - A S||`` for every pixel, exactly (acc dtype for 2 rows)."""
    if S.shape[0] == 2:
        return nnls2(be.acc(S @ S.T)[None, :, :], be.acc(X @ S.T), be.xp)
    return layer_maps(X, S, be)


def nested_maps(X: Any, tree: Tree) -> Any:
    """Maps (pixels, n_nodes) without refit: each split shares its node's abundance.

    The root has abundance 1 everywhere; a node with children ``c`` gives child ``c_j``
    the fraction ``f_j = a_j / sum(a)`` of its own abundance, where ``a`` is the exact NNLS
    fit of the pixel by the children's endmembers (equal shares where ``a == 0``).  Every
    level of these maps sums to one per pixel.
    """
    be = backend_of(X)
    xp = be.xp
    n = int(X.shape[0])
    cols: list[Any] = [None] * len(tree.nodes)
    cols[0] = xp.ones((n,), dtype=be.dtype, device=be.device)
    for i in tree.preorder():
        ch = tree.nodes[i].children
        if not ch:
            continue
        Sc = xp.take(tree.S, xp.asarray(np.array(ch), device=be.device), axis=0)
        F = _nnls_rows(X, Sc, be)
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
    max_iter: int = 300,
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
    """
    be = backend_of(X)
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
