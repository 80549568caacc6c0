"""The model of a tree's splits: the terms of :func:`unmix.factorize` at every node.

``X`` is (pixels, channels).  Without terms a node's split is the exact rank-2 ANLS of
:func:`~unmix.hierarchy.rank2_nmf` (Frobenius, ``A >= 0``, ``S >= 0``).  With a loss,
constraints or regularizers (a :class:`SplitModel`) the split of a node whose pixels are
``idx`` is literally one call of the engine, started from the rank-2 routine's own start
(:func:`~unmix.hierarchy.spa_start` of the node's pixels, maps by exact NNLS)::

    factorize(X[idx], 2, loss=..., constraints=..., regularizers=..., solver=...,
              init=(None, spa_start(X[idx])), max_iter=max_iter, tol=tol,
              random_state=random_state, compress=None, signal_shape=signal_shape)

Terms that couple pixels (``couples_pixels``: ``GaussianMapFilter``,
``SpatialSmoothness``, ``GraphSmoothness``) need the pixels' neighbours, which a subset
of the scan does not have.  For them the node's pixels keep their scan positions: the
split is fitted on the whole grid with the loss weighted by membership, i.e. ::

    factorize(X, 2, weights=Weights(pixels=w), spatial_shape=spatial_shape,
              <the same terms, start and options>)

with ``w`` = 1 on the node's ``n_b`` pixels and ``OUTSIDE * n_b / (n - n_b)`` on the
other ``n - n_b`` (:data:`OUTSIDE` = 1e-3: together they weigh a thousandth of the
node, so the endmembers are the node's), and the node's maps are the rows ``idx`` of its
``A``.  The other pixels' maps are then their own fit by the node's two components (a
pixel's weight does not change its own map's update), so a map filter smooths the node's
maps with what their neighbours hold, as in a fit of the whole map.  With zero weights
instead, the other maps would be driven to 0 and the filter would pull every border pixel
of the node towards 0: on the Cu/ZnO EELS map a node of 1634 scattered pixels then fitted
worse than its best rank-one model (KL 2.84e6 against 1.56e6; 1.07e6 with ``OUTSIDE``).

A split's gain compares it with the node's rank-one model (:func:`split_losses`).  For
terms that couple pixels that model is the rank-one fit with the same terms on the same
weighted grid, started from the node's mean spectrum: an exact rank one follows every
pixel, which no smoothed model can, and on a noisy map (TEM EDS, ~6 counts a pixel) it
out-fitted every smoothed split, so every gain was 0.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import Backend, to_numpy
from ..blocks import Weights, entry_rows
from ..engine import factorize
from ..model import make_loss, tightening
from ._rank2 import group_rank1, spa_start
from ._sparse import is_sparse, loss_value

#: the total weight of the pixels outside a node, relative to the node's pixel count, in
#: a split fitted on the whole grid (terms that couple pixels)
OUTSIDE = 1e-3

__all__ = [
    "OUTSIDE",
    "SplitModel",
    "check_split_model",
    "fit_iterations",
    "model_split",
    "node_warnings",
    "split_losses",
    "split_model",
]


@dataclass(frozen=True)
class SplitModel:
    """The terms every split of a tree is fitted with (see the module docstring).

    Attributes
    ----------
    loss, constraints, regularizers, solver
        As for :func:`unmix.factorize`.
    spatial_shape, signal_shape : tuple of int or None
        The scan grid (terms that couple pixels) and the shape of one spectrum or pattern
        (``SpectralSmoothing`` of 2-D patterns).
    """

    loss: Any = None
    constraints: Sequence[Any] | None = None
    regularizers: Sequence[Any] = ()
    solver: Any = "auto"
    spatial_shape: tuple[int, ...] | None = None
    signal_shape: tuple[int, ...] | None = None

    @property
    def terms(self) -> list[Any]:
        return [*(self.constraints or ()), *self.regularizers]

    @property
    def coupled(self) -> list[str]:
        """Names of the terms that couple pixels (fitted on the whole grid, weighted)."""
        return [
            type(t).__name__
            for t in self.terms
            if getattr(t, "couples_pixels", False) or getattr(t, "couples_distant_pixels", False)
        ]

    @property
    def tightens(self) -> bool:
        """Whether a term holds a bound by a penalty that grows each time the fit converges
        (``Orthogonality``): its fit needs the engine's longer iteration budget."""
        return bool(tightening(self.regularizers))

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description (recorded in the tree's ``params["model"]``)."""
        loss = self.loss
        return {
            "loss": loss if loss is None or isinstance(loss, (str, int, float)) else repr(loss),
            "constraints": None
            if self.constraints is None
            else [t.describe() for t in self.constraints],
            "regularizers": [t.describe() for t in self.regularizers],
            "solver": self.solver if isinstance(self.solver, str) else repr(self.solver),
            "split": "whole grid, weighted by membership" if self.coupled else "node's pixels",
        }


def fit_iterations(given: int | None, model: SplitModel | None, plain: int) -> int | None:
    """The ``max_iter`` of an engine fit of the tree (a split, a joint refit): as ``given``;
    by default ``plain``, or None - :func:`unmix.factorize`'s own default, 5000 - for a
    model whose term tightens a bound (each strength's fit converges before the next: 300
    iterations left ``Orthogonality(max_cosine=0.05)`` unmet, cosines 0.05-0.07, in
    every split of the Cu/ZnO EELS map's tree)."""
    if given is not None:
        return int(given)
    return None if model is not None and model.tightens else plain


def split_model(p: dict[str, Any]) -> SplitModel | None:
    """The model of the splits from checked parameters ``p`` (None: no term given, the
    exact rank-2 routine)."""
    given = (
        p["loss"] is not None
        or p["constraints"] is not None
        or bool(p["regularizers"])
        or p["solver"] != "auto"
    )
    if not given:
        return None
    return SplitModel(
        loss=p["loss"],
        constraints=None if p["constraints"] is None else list(p["constraints"]),
        regularizers=list(p["regularizers"]),
        solver=p["solver"],
        spatial_shape=tuple(p["spatial_shape"]) if p["spatial_shape"] else None,
        signal_shape=tuple(p["signal_shape"]) if p["signal_shape"] else None,
    )


def check_split_model(model: SplitModel | None, p: dict[str, Any], n_pixels: int) -> None:
    """Refuse what the splits cannot do with ``model``, naming the terms and the fix."""
    if model is None:
        return
    if p["node_rank"] != 2:
        raise ValueError(
            'hierarchical_nmf: node_rank="stability" runs its own perturbed rank-r fits and '
            "takes no loss, constraints, regularizers or solver; use node_rank=2 with terms, "
            "or drop the terms for stability ranks."
        )
    coupled = [  # the scan neighbours' terms (a data graph needs no grid)
        type(t).__name__
        for t in model.terms
        if getattr(t, "couples_pixels", False) and not getattr(t, "couples_distant_pixels", False)
    ]
    if not coupled:
        return
    shape = model.spatial_shape
    if shape is None or int(np.prod(shape)) != n_pixels:
        got = "no spatial_shape" if shape is None else f"spatial_shape={tuple(shape)}"
        raise ValueError(
            f"hierarchical_nmf: {', '.join(coupled)} couple neighbouring pixels, so every "
            f"split is fitted on the whole scan grid, and X has {n_pixels} pixels with "
            f"{got}; pass spatial_shape=(rows, cols) of all of X's pixels, or drop "
            f"{', '.join(coupled)} (e.g. a tree grown on a pixel subsample has no grid)."
        )


@contextlib.contextmanager
def node_warnings(nid: int, n_pixels: int) -> Iterator[None]:
    """Warnings raised inside, shown again naming the node whose split raised them (a
    split's "Components [0] collapsed ... try k=1" or "reached max_iter=300" said neither
    which node nor that the fit was a rank-2 split)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        message = f"node {nid} ({n_pixels} pixels), its rank-2 split: {w.message}"
        warnings.warn_explicit(message, w.category, w.filename, w.lineno)


def model_split(
    X: Any,
    idx: np.ndarray,
    Xb: Any,
    model: SplitModel,
    be: Backend,
    *,
    max_iter: int | None,
    tol: float,
    seed: int,
) -> tuple[np.ndarray, Any, float, float]:
    """The split of the node whose pixels are ``idx`` (rows ``Xb`` of ``X``) by the engine.

    Returns the node's maps ``A_b`` (n_b, 2; host, float64), the endmembers ``S_b``
    (2, channels; X's backend) and, for the split's score, the model's loss (its data
    term) of the node's best rank-one model and of the split (:func:`split_losses`).
    """
    xp = be.xp
    options = {
        "loss": model.loss,
        "constraints": model.constraints,
        "regularizers": model.regularizers,
        "solver": model.solver,
        "init": (None, spa_start(Xb)),
        "max_iter": max_iter,
        "tol": tol,
        "random_state": seed,
        "compress": None,
        "signal_shape": model.signal_shape,
    }
    one = None
    if model.coupled:
        n, n_b = int(X.shape[0]), int(idx.size)
        member = np.full(n, OUTSIDE * n_b / max(n - n_b, 1))
        member[idx] = 1.0
        weights = Weights(pixels=be.asarray(member))
        grid = {"weights": weights, "spatial_shape": model.spatial_shape}
        rows = xp.asarray(idx, device=be.device)
        res = factorize(X, 2, **grid, **options)
        A = xp.take(res.A, rows, axis=0)
        # the baseline of the split's gain: the node's rank one under the same terms
        one_fit = factorize(X, 1, **grid, **{**options, "init": (None, _mean_row(Xb, be))})
        one = (xp.take(one_fit.A, rows, axis=0), one_fit.S)
    else:
        res = factorize(Xb, 2, **options)
        A = res.A
    e1, e2 = split_losses(Xb, A, res.S, model, be, rank_one=one)
    return np.asarray(to_numpy(A), dtype=float), res.S, e1, e2


def _mean_row(Xb: Any, be: Backend) -> Any:
    """The node's mean spectrum as a (1, channels) start (CSR rows: never densified)."""
    if is_sparse(Xb):
        return np.asarray(Xb.sum(axis=0), dtype=np.float64).reshape(1, -1) / Xb.shape[0]
    return be.xp.mean(Xb, axis=0, keepdims=True)


def split_losses(
    Xb: Any, A: Any, S: Any, model: SplitModel, be: Backend, *, rank_one: Any = None
) -> tuple[float, float]:
    """``(e_1, e_2)``: the loss of the node's pixels ``Xb`` (pixels, channels) under their
    best rank-one model and under the split ``A @ S``, in the model's loss (data term).

    The rank-one model is ``rank_one`` (maps (pixels, 1), endmember (1, channels)) when
    given - the rank-one fit under terms that couple pixels, whose maps cannot follow each
    pixel as an exact rank one does - else exact for Frobenius (the leading singular pair)
    and KL (the outer product of the pixel and channel sums over the total, the Poisson
    maximum likelihood); for other losses the least-squares rank one, evaluated in the
    loss.  Sparse ``Xb`` (CSR rows) is never densified
    (:func:`~unmix.hierarchy._sparse.loss_value`).
    """
    xp = be.xp
    loss = make_loss(model.loss)
    if rank_one is not None:
        return _loss_of(Xb, *rank_one, loss, be), _loss_of(Xb, A, S, loss, be)
    if is_sparse(Xb):
        return _sparse_split_losses(Xb, A, S, loss, be)
    Xa = be.acc(Xb)
    if loss.beta == 1 and not loss.reweights_pixels:
        total = max(float(xp.sum(Xa)), be.tiny)
        Y1 = xp.sum(Xa, axis=1, keepdims=True) @ xp.sum(Xa, axis=0, keepdims=True) / total
    else:
        V = be.acc(group_rank1(Xb)[0])  # (1, channels), unit norm
        Y1 = (Xa @ V.T) @ V
    Y2 = be.acc(A) @ be.acc(S)
    e1 = float(loss.value(Xa, Y1, xp=xp, tiny=be.tiny))
    return e1, float(loss.value(Xa, Y2, xp=xp, tiny=be.tiny))


def _loss_of(Xb: Any, A: Any, S: Any, loss: Any, be: Backend) -> float:
    """The loss (data term) of ``Xb`` under the model ``A @ S``."""
    if is_sparse(Xb):
        return float(loss_value(loss, Xb, to_numpy(A), to_numpy(S), be))
    Y = be.acc(A) @ be.acc(S)
    return float(loss.value(be.acc(Xb), Y, xp=be.xp, tiny=be.tiny))


def _sparse_split_losses(Xb: Any, A: Any, S: Any, loss: Any, be: Backend) -> tuple[float, float]:
    """:func:`split_losses` of CSR ``Xb``: the rank-one models as factors (pixels, 1) and
    (1, channels), every loss evaluated without ``Xb`` or a model dense."""
    if loss.beta == 1 and not loss.reweights_pixels:
        n, m = (int(d) for d in Xb.shape)
        x = np.asarray(Xb.data, dtype=np.float64)
        rows = np.bincount(entry_rows(Xb), weights=x, minlength=n).reshape(-1, 1)
        cols = np.bincount(Xb.indices, weights=x, minlength=m).reshape(1, -1)
        total = max(float(np.sum(rows)), be.tiny)
        u, v = rows, cols / total
    else:
        v = np.asarray(to_numpy(group_rank1(Xb)[0]), dtype=np.float64)  # (1, channels)
        u = np.asarray(Xb @ v.T, dtype=np.float64)
    e1 = loss_value(loss, Xb, u, v, be)
    return e1, loss_value(loss, Xb, to_numpy(A), to_numpy(S), be)
