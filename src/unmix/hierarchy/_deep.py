"""Multilayer (deep) NMF with Neural-NMF-style joint fine-tuning of all layers.

``X`` is (pixels, channels).  Layer ``l`` has ``k_l`` components with
``k_1 > k_2 > ... > k_L``, maps ``A_l`` (pixels, k_l) and effective endmembers ``W_l``
(k_l, channels), ``X ~= A_l @ W_l``:

- ``mode="maps"`` (maps of maps, Cichocki & Zdunek 2006; Neural NMF's hierarchy):
  ``X ~= A_1 S_1``, ``A_1 ~= A_2 S_2``, ..., so ``W_l = S_l S_{l-1} ... S_1`` with
  ``S_l`` (k_l, k_{l-1}): every deeper endmember is a mixture of the ones above it.
- ``mode="endmembers"`` (endmembers of endmembers): ``X ~= A_1 S_1``,
  ``S_1 ~= B_2 S_2``, ``S_2 ~= B_3 S_3``, ..., so layer ``l`` is
  ``X ~= (A_1 B_2 ... B_l) S_l``: maps ``A_l = A_{l-1} B_l`` (pixels, k_l) with
  ``B_l`` (k_{l-1}, k_l), endmembers ``W_l = S_l`` (k_l, channels).  Every endmember of
  layer ``l - 1`` is a mixture of the ``k_l`` endmembers of layer ``l``.  This is the
  maps mode applied to ``X^T`` (the roles of maps and endmembers swapped).

Layer-by-layer fitting runs :func:`unmix.factorize` once a layer (on the previous maps,
or on the previous endmembers).  Fine-tuning then minimizes the total reconstruction
error of all layers::

    F = sum_l  w_l / 2 ||X - A_l W_l||_F^2.

As in Neural NMF (Gao, Haddock, Needell et al.) one factor of every layer is the forward
pass, an exact constrained least-squares solution given the layer weights, and the error
is backpropagated through the chain of products to the weights:

- maps mode: weights ``S_1, ..., S_L >= 0``, ``W_l = S_l ... S_1``,
  ``A_l = argmin_{A in C} ||X - A W_l||`` with ``C`` = ``A >= 0`` (and
  ``sum(A, axis=1) == 1`` with ``sum_to_one``); ``dF/dW_l = w_l (A_l^T A_l W_l -
  A_l^T X)``;
- endmembers mode: weights ``A_1, B_2, ..., B_L >= 0`` (rows on the simplex with
  ``sum_to_one``, so every ``A_l`` sums to one), ``S_l = argmin_{S >= 0} ||X - A_l S||``;
  ``dF/dA_l = w_l (A_l S_l S_l^T - X S_l^T)``.

The least-squares factor needs no differentiation: it minimizes the same error, so by the
envelope theorem its variation does not enter.  Steps are projected (non-negativity and
the simplex kept) with a backtracking line search, so ``F`` never increases.  The
gradients are explicit, so the same code runs on NumPy, PyTorch and CuPy arrays.

Terms.  ``loss``, ``constraints``, ``regularizers`` and ``solver`` shape the first
layer's fit, the one that sees the data: it is exactly ``factorize(X, ranks[0],
loss=loss, constraints=constraints, regularizers=regularizers, solver=solver,
max_iter=max_iter, tol=tol, random_state=random_state, compress=None,
spatial_shape=spatial_shape, signal_shape=signal_shape)`` with ``constraints`` defaulting
to ``[NonNegative()]`` and ``SumToOne()`` added with ``sum_to_one``.  Deeper layers
factorize maps or endmembers, not spectra, with the plain non-negative model.
Fine-tuning minimizes the Frobenius error of all layers and would undo the terms, so
with any of them ``finetune_iter`` must be 0 (a ``ValueError`` says so).

Sparse ``X`` (SciPy CSR / CSC / COO, pydata/sparse) is taken as CSR rows and never
densified: the first layer's fit is :func:`unmix.factorize` on it, the forward pass needs
only ``X @ W^T``, ``A^T X`` and squared norms, and the errors come from the Gram identity
(:mod:`~unmix.hierarchy._sparse`).  The deeper layers factorize the dense maps or
endmembers as for dense ``X``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._backend import Backend, backend_of
from .._ops import project_simplex_rows
from .._validation import check_nonnegative, ensure_2d_float, finite_report
from ..engine import factorize
from ..model import NonNegative, SumToOne
from ._maps import layer_maps
from ._sparse import checked_sparse, is_sparse, row_sq, sq_error, tmatmul

logger = logging.getLogger("unmix")

__all__ = ["DeepResult", "deep_nmf", "layer_maps"]

MODES = ("maps", "endmembers")


@dataclass
class DeepResult:
    """A multilayer NMF.

    Attributes
    ----------
    mode : str
        ``"maps"`` or ``"endmembers"``.
    ranks : tuple of int
        ``k_1 > k_2 > ... > k_L``.
    factors : list of arrays
        ``mode="maps"``: ``[S_1 (k_1, channels), S_2 (k_2, k_1), ..., S_L]``;
        ``mode="endmembers"``: ``[A_1 (pixels, k_1), B_2 (k_1, k_2), ...,
        B_L (k_{L-1}, k_L)]``.
    A, W : list of arrays
        Maps (pixels, k_l) and effective endmembers (k_l, channels) of every layer.
    errors : list of float
        ``||X - A_l W_l||_F^2 / ||X||_F^2`` of every layer (after fine-tuning, if any).
    layerwise_errors : list of float
        The same for the layer-by-layer fit (before fine-tuning).
    history : dict
        ``"total"``: the relative total error ``sum_l w_l ||X - A_l W_l||^2 / ||X||^2``
        per fine-tuning iteration (entry 0 is the start), ``"step"``: accepted steps.
    """

    mode: str
    ranks: tuple[int, ...]
    factors: list
    A: list
    W: list
    errors: list[float]
    layerwise_errors: list[float]
    sum_to_one: bool = False
    weights: tuple[float, ...] = ()
    history: dict[str, list] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def total_error(self) -> float:
        """``sum_l w_l ||X - A_l W_l||^2 / ||X||^2`` of the final model."""
        return float(sum(w * e for w, e in zip(self.weights, self.errors, strict=True)))

    @property
    def layerwise_total_error(self) -> float:
        """The same total for the layer-by-layer fit."""
        return float(sum(w * e for w, e in zip(self.weights, self.layerwise_errors, strict=True)))


def _check_ranks(ranks: Sequence[int], n: int, m: int) -> tuple[int, ...]:
    try:
        ranks = tuple(int(r) for r in ranks)
    except TypeError:
        raise TypeError(
            f"ranks must be a sequence of ints (k_1 > k_2 > ...); got {ranks!r}."
        ) from None
    if not ranks:
        raise ValueError("ranks is empty; give one rank a layer, e.g. ranks=[6, 3].")
    if min(ranks) < 1:
        raise ValueError(f"every rank must be >= 1; got {list(ranks)}.")
    if ranks[0] > min(n, m):
        raise ValueError(f"ranks[0]={ranks[0]} exceeds min(pixels, channels) = {min(n, m)} of X.")
    for layer in range(1, len(ranks)):
        if ranks[layer] >= ranks[layer - 1]:
            raise ValueError(
                f"ranks must shrink from layer to layer (each layer factorizes the previous "
                f"one into fewer components); got {list(ranks)}: layer {layer + 1} has "
                f"{ranks[layer]} >= {ranks[layer - 1]}. Use e.g. ranks=[6, 3]."
            )
    return ranks


def _effective(factors: list, mode: str) -> list:
    """The chained factor of every layer: ``W_l`` (maps mode) or ``A_l`` (endmembers)."""
    if mode == "maps":  # W_l = S_l W_{l-1}
        W = [factors[0]]
        for S in factors[1:]:
            W.append(S @ W[-1])
        return W
    A = [factors[0]]  # A_l = A_{l-1} B_l
    for B in factors[1:]:
        A.append(A[-1] @ B)
    return A


def _forward(
    X: Any, factors: list, mode: str, weights, simplex: bool, be: Backend, x2: float
) -> dict:
    """Maps and endmembers of every layer (the forward pass) and the relative total error."""
    xp = be.xp
    chain = _effective(factors, mode)
    state: dict[str, list] = {"W": [], "A": [], "AtX": [], "AtA": [], "errors": []}
    for C in chain:
        if mode == "maps":
            W, A = C, layer_maps(X, C, be, sum_to_one=simplex)
        else:  # S_l = argmin_{S >= 0} ||X^T - S^T A_l^T||: the maps problem of X^T
            A, W = C, layer_maps(X.T, C.T, be).T
        AtX, AtA, Wa = be.acc(tmatmul(A, X)), be.acc(A.T @ A), be.acc(W)
        e = x2 - 2 * float(xp.sum(AtX * Wa)) + float(xp.sum(AtA * (Wa @ Wa.T)))
        state["W"].append(W)
        state["A"].append(A)
        state["AtX"].append(AtX)
        state["AtA"].append(AtA)
        state["errors"].append(max(e, 0.0) / x2)
    state["total"] = float(sum(w * e for w, e in zip(weights, state["errors"], strict=True)))
    return state


def _backward(
    X: Any, state: dict, factors: list, mode: str, weights, be: Backend, x2: float
) -> list:
    """Gradient of the total error with respect to every factor (chain rule)."""
    W, A = state["W"], state["A"]
    L = len(W)
    D: list[Any] = [None] * L
    if mode == "maps":  # dF/dW_l; W_l = S_l W_{l-1}: D_l = G_l + S_{l+1}^T D_{l+1}
        G = [
            be.work(wl * (AtA @ be.acc(Wl) - AtX) / x2)
            for wl, Wl, AtA, AtX in zip(weights, W, state["AtA"], state["AtX"], strict=True)
        ]
        D[-1] = G[-1]
        for layer in range(L - 2, -1, -1):
            D[layer] = G[layer] + factors[layer + 1].T @ D[layer + 1]
        return [D[0]] + [D[layer] @ W[layer - 1].T for layer in range(1, L)]
    # dF/dA_l = w_l (A_l S_l S_l^T - X S_l^T); A_l = A_{l-1} B_l: D_l = G_l + D_{l+1} B_{l+1}^T
    G = [wl * (Al @ (Wl @ Wl.T) - X @ Wl.T) / x2 for wl, Al, Wl in zip(weights, A, W, strict=True)]
    D[-1] = G[-1]
    for layer in range(L - 2, -1, -1):
        D[layer] = G[layer] + D[layer + 1] @ factors[layer + 1].T
    return [D[0]] + [A[layer - 1].T @ D[layer] for layer in range(1, L)]


def deep_nmf(
    X: Any,
    ranks: Sequence[int],
    *,
    mode: str = "maps",
    sum_to_one: bool = False,
    finetune_iter: int = 100,
    weights: Sequence[float] | None = None,
    max_iter: int | None = None,
    tol: float = 1e-6,
    random_state: int | None = 0,
    loss: Any = None,
    constraints: Sequence[Any] | None = None,
    regularizers: Sequence[Any] = (),
    solver: Any = "auto",
    spatial_shape: tuple[int, ...] | None = None,
    signal_shape: tuple[int, ...] | None = None,
) -> DeepResult:
    """Multilayer NMF of ``X`` (pixels, channels), then joint fine-tuning of all layers.

    Parameters
    ----------
    X : array or sparse matrix (pixels, channels)
        Non-negative data (NumPy, PyTorch or CuPy; results follow its dtype/device; sparse
        X: CSR rows on the host, never densified, NumPy results).
    ranks : sequence of int
        Components of every layer, strictly decreasing (``[6, 3]``, ``[8, 4, 2]``).
    mode : {"maps", "endmembers"}
        Factorize the maps again (maps of maps) or the endmembers again.
    sum_to_one : bool
        Maps of every layer on the simplex (``A >= 0``, rows sum to one).
    finetune_iter : int
        Iterations of the joint fine-tuning (0: layer by layer only).
    weights : sequence of float, optional
        Weight ``w_l`` of every layer's error in the fine-tuned total (default all 1).
    max_iter, tol, random_state : int or None, float, int or None
        Of the layer-by-layer :func:`unmix.factorize` fits (None: the engine's default).
    loss, constraints, regularizers, solver : optional
        The model of the first layer, as for :func:`unmix.factorize` (see "Terms" in the
        module docstring); with any of them ``finetune_iter`` must be 0.
    spatial_shape, signal_shape : tuple of int, optional
        Scan grid and spectrum / pattern shape, for terms that need them.

    Returns
    -------
    DeepResult

    Raises
    ------
    ValueError
        Bad ranks, mode or weights, or terms with ``finetune_iter > 0``.
    """
    t0 = time.perf_counter()
    X, be = _checked(X)
    ranks, weights = _check_layers(ranks, mode, weights, tuple(int(s) for s in X.shape))
    fit = {"max_iter": max_iter, "tol": tol, "random_state": random_state, "compress": None}
    first = _first_layer_model(loss, constraints, regularizers, solver, sum_to_one, finetune_iter)
    first.update(spatial_shape=spatial_shape, signal_shape=signal_shape)
    factors, A, W = _layerwise(X, ranks, mode, sum_to_one, fit, first)
    layerwise = _relative_errors(X, A, W, be, x2 := _sq_norm(X, be))
    t1 = time.perf_counter()
    errors, hist = list(layerwise), {"total": [], "step": []}
    if finetune_iter > 0:
        tune = (mode, weights, sum_to_one, be, x2, finetune_iter, hist)
        factors, errors, A, W = _finetune(X, factors, *tune)
    logger.info("deep_nmf: layer-wise %s -> fine-tuned %s", layerwise, errors)
    t2 = time.perf_counter()
    return DeepResult(
        mode=mode,
        ranks=ranks,
        factors=factors,
        A=A,
        W=W,
        errors=errors,
        layerwise_errors=layerwise,
        sum_to_one=bool(sum_to_one),
        weights=weights,
        history=hist,
        timings={"layerwise": t1 - t0, "finetune": t2 - t1, "total": t2 - t0},
    )


def _sq_norm(X: Any, be: Backend) -> float:
    """``||X||_F^2`` (sparse ``X``: from its stored entries)."""
    if is_sparse(X):
        return float(np.sum(row_sq(X)))
    return float(be.xp.sum(be.acc(X) * be.acc(X)))


def _checked(X: Any) -> tuple[Any, Backend]:
    """``X`` as a finite, non-negative 2-D float array (sparse ``X`` as such CSR rows),
    and its backend."""
    why = "deep NMF (non-negative factors)"
    if is_sparse(X):
        X = checked_sparse(X, why)
        return X, backend_of(np.empty(0, dtype=X.dtype))
    X = ensure_2d_float(X)
    finite_report(X)
    check_nonnegative(X, why=why)
    return X, backend_of(X)


def _check_layers(
    ranks: Sequence[int], mode: str, weights: Sequence[float] | None, shape: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The ranks and the layers' weights, checked against each other and ``X``'s shape."""
    n, m = shape
    ranks = _check_ranks(ranks, n, m)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}.")
    weights = tuple(float(w) for w in (weights or [1.0] * len(ranks)))
    if len(weights) != len(ranks) or min(weights) < 0:
        raise ValueError(f"weights must be {len(ranks)} non-negative numbers; got {weights}.")
    return ranks, weights


def _first_layer_model(
    loss: Any,
    constraints: Sequence[Any] | None,
    regularizers: Sequence[Any],
    solver: Any,
    sum_to_one: bool,
    finetune_iter: int,
) -> dict[str, Any]:
    """The model keywords of the first layer's :func:`unmix.factorize` fit."""
    given = [
        name
        for name, on in (
            ("loss", loss is not None),
            ("constraints", constraints is not None),
            ("regularizers", bool(regularizers)),
            ("solver", solver != "auto"),
        )
        if on
    ]
    if given and finetune_iter > 0:
        raise ValueError(
            f"deep_nmf: {', '.join(given)} shape the first layer's fit, and fine-tuning "
            f"(finetune_iter={finetune_iter}) minimizes the plain Frobenius error of all "
            "layers, which would undo them; pass finetune_iter=0 with these terms (or drop "
            "them to fine-tune)."
        )
    cons = [NonNegative()] if constraints is None else list(constraints)
    if sum_to_one and not any(getattr(c, "simplex_rows", False) for c in cons):
        cons.append(SumToOne())
    return {
        "loss": loss,
        "constraints": cons,
        "regularizers": list(regularizers),
        "solver": solver,
    }


def _layerwise(
    X: Any,
    ranks: tuple[int, ...],
    mode: str,
    sum_to_one: bool,
    fit: dict,
    model: dict | None = None,
) -> tuple[list, list, list]:
    """Layer-by-layer fits with :func:`unmix.factorize`: ``(factors, A, W)`` of every layer.

    ``fit`` holds the options of every layer's fit (``max_iter``, ``tol``, ...), ``model``
    the first layer's model (:func:`_first_layer_model`; default non-negative).
    """
    cons = [NonNegative()] + ([SumToOne()] if sum_to_one else [])
    first = factorize(X, ranks[0], **(model or {"constraints": cons}), **fit)
    A = [first.A]
    if mode == "maps":  # factorize the maps again
        factors = [first.S]
        for k in ranks[1:]:
            r = factorize(A[-1], k, constraints=cons, **fit)
            A.append(r.A)
            factors.append(r.S)
        return factors, A, _effective(factors, mode)
    factors, W = [first.A], [first.S]  # factorize the endmembers again
    for k in ranks[1:]:
        r = factorize(W[-1], k, constraints=cons, **fit)
        A.append(A[-1] @ r.A)
        factors.append(r.A)
        W.append(r.S)
    return factors, A, W


def _relative_errors(X: Any, A: list, W: list, be: Backend, x2: float) -> list[float]:
    """``||X - A_l W_l||_F^2 / ||X||_F^2`` of every layer."""
    xp = be.xp
    errors = []
    for Al, Wl in zip(A, W, strict=True):
        if is_sparse(X):
            errors.append(sq_error(X, Al, Wl, be) / x2)
            continue
        R = X - Al @ Wl
        errors.append(float(xp.sum(be.acc(R) * be.acc(R))) / x2)
    return errors


def _finetune(X, factors, mode, weights, simplex, be, x2, n_iter, hist):
    """Projected gradient with backtracking on the total error; never increases it."""
    xp = be.xp

    def norm(a: Any) -> float:
        return float(xp.linalg.vector_norm(be.acc(a)))

    def project(P: Any) -> Any:
        if simplex and mode == "endmembers":  # A_1 and B_l: rows on the simplex
            return project_simplex_rows(P, xp)
        return be.clip_min(P, 0.0)

    state = _forward(X, factors, mode, weights, simplex, be, x2)
    hist["total"].append(state["total"])
    t = 0.1
    for _ in range(n_iter):
        grads = _backward(X, state, factors, mode, weights, be, x2)
        # a relative step per factor: t * |P| / |grad P|
        scales = [norm(P) / max(norm(g), 1e-300) for P, g in zip(factors, grads, strict=True)]
        for _ in range(30):
            trial = [
                project(P - (t * sc) * g) for P, g, sc in zip(factors, grads, scales, strict=True)
            ]
            new = _forward(X, trial, mode, weights, simplex, be, x2)
            if new["total"] < state["total"]:
                break
            t *= 0.5
        else:
            logger.info("deep_nmf: fine-tuning stopped (no decrease at step %.3g)", t)
            break
        previous = state["total"]
        factors, state = trial, new
        hist["total"].append(state["total"])
        hist["step"].append(t)
        t = min(2.0 * t, 1.0)
        if previous - state["total"] <= 1e-9 * previous:
            break
    return factors, state["errors"], state["A"], state["W"]
