"""Online NMF: endmembers learned from mini-batches of pixels as they arrive.

Pixels (rows of ``X``, which is (pixels, channels)) come in batches - a scan line, a chunk
of lines - and are seen once (or a few times, ``n_epochs``).  Following Mairal et al.
(2010, online dictionary learning), the state keeps only the sufficient statistics of
the endmembers' least-squares problem::

    C  <-  forget * C  +  A_t^T A_t        (k x k)
    B  <-  forget * B  +  A_t^T X_t        (k x channels)

where ``A_t`` are the batch's maps, solved exactly against the current ``S``
(non-negative least squares by block principal pivoting, :func:`unmix._linalg.nnls_bpp`;
the sum-to-one rows by the Heinz-Chang augmented system, then an exact simplex
projection).  ``S`` is then updated by the engine's HALS sweeps
(:func:`unmix.engine.solvers.hals_sweeps`) on ``1/2 tr(S^T C S) - <B, S>``.  Memory is
``O((batch + k) * channels)`` whatever the number of pixels streamed.

Supported online: Frobenius loss; :class:`~unmix.NonNegative` (both factors),
:class:`~unmix.SumToOne` on the maps, :class:`~unmix.L1` and :class:`~unmix.L2` on the
maps (scalar strengths).  Everything else raises :class:`~unmix.UnsupportedError` naming
what works (use :func:`unmix.factorize` on the whole data for the other knobs).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from .._backend import backend_of, to_numpy
from .._linalg import nnls_bpp
from .._ops import project_simplex_rows
from .._validation import UnsupportedError, check_k, ensure_2d_float, finite_report
from .._version import __version__
from ..model import BindContext, Frobenius, Identity, NonNegative, make_loss
from ..result import Result
from ._factorize import factorize
from .solvers import hals_sweeps

logger = logging.getLogger("unmix")

__all__ = ["OnlineNMF", "online_factorize"]

#: what the online fit supports, for the error messages
SUPPORTED = (
    "loss='frobenius'; constraints NonNegative() (both factors) and SumToOne() on A; "
    "regularizers L1(lam) and L2(lam) on A"
)
#: weight of the sum-to-one equation against the largest diagonal of S S^T (Heinz-Chang)
SIMPLEX_WEIGHT = 1e6
#: an endmember whose norm is below this fraction of the largest is dead (restarted)
DEAD_NORM = 1e-3


class OnlineNMF:
    """The state of an online NMF fit: endmembers and their sufficient statistics.

    Feed batches of pixels with :meth:`partial_fit`; read the endmembers from :attr:`S`;
    get maps of any pixels against the current endmembers with :meth:`transform`.

    Parameters
    ----------
    k : int
        Number of endmembers.
    loss : {None, "frobenius"} or Frobenius, optional
        Only the Frobenius loss is supported online.
    constraints : sequence of Constraint, optional
        ``None`` means ``[NonNegative()]``; ``SumToOne()`` puts the maps on the simplex.
    regularizers : sequence of Term, optional
        ``L1(lam)`` and/or ``L2(lam)`` on ``A`` (scalar ``lam``).
    forget : float, optional
        Forgetting factor in (0, 1]: before batch ``t`` is added the statistics are
        multiplied by ``min(forget, 1 - 1/t)`` (the ``1 - 1/t`` warm-up forgets the
        start's poor maps fast; 1: later every batch weighs the same; smaller values
        follow a drifting stream).  Default 0.95 (a memory of about 20 batches).
    inner_max : int, optional
        Most HALS sweeps over ``S`` per batch (default 20).
    n_inner : int, optional
        Alternations of maps and endmembers per batch, the batch's share of the
        statistics replaced each time (default 1).
    random_state : int or None, optional
        Seed of the start (a short batch fit on the first batch).

    Attributes
    ----------
    S : array (k, channels) or None
        Current endmembers (None before the first batch), in the data's dtype.
    n_seen : int
        Pixels fed so far (all epochs).
    n_batches : int
        Batches fed so far.
    n_restarts : int
        Endmembers restarted so far: one that dies (norm below 1e-3 of the largest,
        e.g. under sum-to-one when the stream gets brighter than the start) is restarted
        from the worst-fitted pixel of the batch that killed it.
    history : dict of str -> list of float
        Per batch: ``"fit"`` (``1/2 ||X_t - A_t S||^2`` of the batch with the endmembers
        it was solved against), ``"pixels"`` and ``"time"`` (seconds since the start).
    """

    def __init__(
        self,
        k: int,
        *,
        loss: Any = None,
        constraints: Sequence[Any] | None = None,
        regularizers: Sequence[Any] = (),
        forget: float = 0.95,
        inner_max: int = 20,
        n_inner: int = 1,
        random_state: int | None = None,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be an integer >= 1; got {k!r}.")
        check_loss(loss)
        self.k = int(k)
        self.simplex = check_terms(constraints, regularizers)
        self.constraints = list(constraints) if constraints is not None else [NonNegative()]
        self.regularizers = list(regularizers)
        f = forget
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise ValueError(f"forget must be a number in (0, 1]; got {forget!r}.")
        if isinstance(inner_max, bool) or not isinstance(inner_max, int) or inner_max < 1:
            raise ValueError(f"inner_max must be an integer >= 1; got {inner_max!r}.")
        self.forget, self.inner_max = float(forget), int(inner_max)
        if isinstance(n_inner, bool) or not isinstance(n_inner, int) or n_inner < 1:
            raise ValueError(f"n_inner must be an integer >= 1; got {n_inner!r}.")
        self.n_inner = n_inner
        self.random_state = random_state
        self.S: Any = None
        self.C: Any = None
        self.B: Any = None
        self.be: Any = None
        self.bound: list[Any] = []  # the penalties bound to the data's backend
        self.gram: Any = None  # their exact model: Gram term (k x k) ...
        self.grad: Any = 0.0  # ... and constant gradient
        self.n_seen = 0
        self.n_batches = 0
        self.n_restarts = 0
        self.history: dict[str, list[float]] = {"fit": [], "pixels": [], "time": []}
        self.t0 = time.perf_counter()

    # ------------------------------------------------------------------ public
    def partial_fit(self, X: Any) -> Any:
        """Update the endmembers with one batch ``X`` (pixels, channels); return its maps.

        Returns
        -------
        array (pixels, k)
            The batch's maps, solved against the endmembers before this update.
        """
        X = self.checked(X)
        if self.S is None:
            self.start(X)
        be, xp = self.be, self.be.xp
        t = self.n_batches + 1
        beta = min(self.forget, 1.0 - 1.0 / t)  # warm-up: the first batches fade fast
        C0, B0, Xa = beta * self.C, beta * self.B, be.acc(X)
        for i in range(self.n_inner):  # this batch's share replaced on each repeat
            A = self.solve_maps(X, self.S)
            if i == 0:
                first, fit = A, 0.5 * float(xp.sum((X - A @ self.S) ** 2))
            Aa = be.acc(A)
            self.C, self.B = C0 + Aa.T @ Aa, B0 + Aa.T @ Xa
            St = xp.asarray(self.S, copy=True)
            self.S = hals_sweeps(
                St, be.work(self.B), be.work(self.C), be=be, inner_max=self.inner_max, delta=0.01
            )
        A = first
        self.revive(X)
        self.n_seen += int(X.shape[0])
        self.n_batches += 1
        self.history["fit"].append(fit)
        self.history["pixels"].append(float(X.shape[0]))
        self.history["time"].append(time.perf_counter() - self.t0)
        return A

    def transform(self, X: Any) -> Any:
        """Maps (pixels, k) of ``X`` (pixels, channels) against the current endmembers."""
        if self.S is None:
            raise ValueError("OnlineNMF has seen no data; call partial_fit(X_batch) first.")
        return self.solve_maps(self.checked(X), self.S)

    def penalty(self, A: Any) -> float:
        """The penalties' value on maps ``A`` (pixels, k) (0 before the first batch)."""
        return math.fsum(term.value(A) for term in self.bound)

    def result(
        self, A: Any = None, *, spatial_shape: Any = None, signal_shape: Any = None
    ) -> Result:
        """A :class:`~unmix.Result` of the current state with maps ``A`` (pixels, k).

        Its ``objective`` is the sum of the batch fits recorded so far (each batch against
        the endmembers it was solved with) plus the penalties of ``A``.
        """
        if self.S is None:
            raise ValueError("OnlineNMF has seen no data; call partial_fit(X_batch) first.")
        A = self.be.zeros((0, self.k)) if A is None else A
        objective = math.fsum(self.history["fit"]) + self.penalty(A)
        return build_result(self, A, spatial_shape, signal_shape, objective)

    # ---------------------------------------------------------------- internal
    def checked(self, X: Any) -> Any:
        """``X`` as a finite 2-D float array with the channels (and dtype) of the state."""
        X = ensure_2d_float(X, name="X_batch")
        finite_report(X, name="X_batch")
        if self.S is not None:
            if X.shape[1] != self.S.shape[1]:
                raise ValueError(
                    f"X_batch has {X.shape[1]} channels but the online fit has "
                    f"{self.S.shape[1]}; every batch needs the same channels."
                )
            if X.dtype != self.be.dtype:
                X = self.be.xp.astype(X, self.be.dtype)
        return X

    def start(self, X: Any) -> None:
        """Start from a short batch fit of the first batch (at least ``k`` pixels)."""
        if X.shape[0] < self.k:
            raise ValueError(
                f"The first batch has {X.shape[0]} pixels; the online fit starts from it "
                f"and needs at least k={self.k}: pass a larger first batch."
            )
        check_k(self.k, *X.shape)
        self.be = backend_of(X)
        with warnings.catch_warnings():  # a first batch may lack some components
            warnings.simplefilter("ignore", RuntimeWarning)
            first = factorize(
                X,
                self.k,
                constraints=self.constraints,
                regularizers=self.regularizers,
                max_iter=100,
                random_state=self.random_state,
            )
        self.S = self.be.work(first.S)
        self.bind(int(X.shape[1]))
        shape = (self.k, int(X.shape[1]))
        self.C = self.be.zeros((self.k, self.k), dtype=self.be.acc_dtype)
        self.B = self.be.zeros(shape, dtype=self.be.acc_dtype)

    def revive(self, X: Any) -> None:
        """Restart endmembers that died (norm below ``DEAD_NORM`` of the largest) from the
        pixels of batch ``X`` the model fits worst; their statistics start afresh.

        A dead endmember cannot come back by itself (its maps are 0, so its rows of ``C``
        and ``B`` only fade).  Under sum-to-one this happens whenever the stream gets
        brighter than the start: the brightest endmember takes every pixel.  The restart
        uses the worst-fitted pixel's spectrum (sum-to-one: a new vertex outside the
        hull) or its residual's positive part, as the batch fit's restart does.
        """
        be, xp = self.be, self.be.xp
        norms = np.sqrt(np.asarray(to_numpy(xp.sum(be.acc(self.S) ** 2, axis=1)), float))
        dead = np.flatnonzero(norms <= DEAD_NORM * norms.max())
        if dead.size == 0 or X.shape[0] == 0:
            return
        R = X - self.solve_maps(X, self.S) @ self.S
        worst = np.argsort(-np.asarray(to_numpy(xp.sum(R**2, axis=1)), float), kind="stable")
        for j, i in zip(dead.tolist(), worst.tolist(), strict=False):
            row = X[i] if self.simplex is not None else be.clip_min(R[i], 0.0)
            if float(xp.max(row)) <= 0.0:
                row = be.clip_min(X[i], 0.0)
            self.S[j, :] = row
            self.C[j, :] = 0.0
            self.C[:, j] = 0.0
            self.B[j, :] = 0.0
            self.n_restarts += 1
            logger.info(
                "online fit: endmember %d died at batch %d; restarted from the batch's "
                "worst-fitted pixel",
                j,
                self.n_batches + 1,
            )

    def bind(self, n_channels: int) -> None:
        """Bind the penalties; add up their exact models (Gram term, constant gradient)."""
        be = self.be
        ctx = BindContext(n_pixels=1, n_channels=n_channels, k=self.k, backend=be)
        self.bound = [term.bind(ctx) for term in self.regularizers]
        zero = be.zeros((1, self.k))
        for term in self.bound:
            m = term.model(zero)
            if m.gram is not None:
                self.gram = be.acc(m.gram) + (0.0 if self.gram is None else self.gram)
            if m.grad is not None:
                if getattr(m.grad, "ndim", 0) != 0:
                    _unsupported(term)  # a gradient per entry: not one constant
                self.grad = self.grad + float(m.grad)

    def solve_maps(self, X: Any, S: Any) -> Any:
        """Exact maps of ``X`` against ``S``: NNLS (plus L1, L2, sum-to-one), work dtype."""
        be, xp = self.be, self.be.xp
        G = be.acc(S) @ be.acc(S).T
        R = be.acc(X) @ be.acc(S).T
        if self.gram is not None:
            G = G + self.gram
        R = R - self.grad
        if self.simplex is not None:
            delta = SIMPLEX_WEIGHT * max(float(xp.max(xp.linalg.diagonal(G))), be.tiny)
            G = G + delta * be.ones((self.k, self.k), dtype=be.acc_dtype)
            R = R + delta * self.simplex
        A = nnls_bpp(G, R, be)
        if self.simplex is not None:
            A = project_simplex_rows(A, xp, self.simplex)
        return be.work(A)


# --------------------------------------------------------------------- checks
def check_loss(loss: Any) -> None:
    """Refuse every loss but Frobenius, naming what works."""
    made = make_loss(loss)
    if made.beta != 2 or made.reweights_pixels:
        raise UnsupportedError(
            f"loss={loss!r}: the online fit supports only {SUPPORTED}; fit the whole data "
            "with unmix.factorize for other losses."
        )


def check_terms(constraints: Any, regularizers: Any) -> float | None:
    """The simplex total of the maps (None: no simplex); refuse what the fit cannot do.

    Asks the terms what they can do, never what they are: orthant constraints, simplex
    rows of ``A``, and penalties on ``A`` whose local model is exact and pixel-local
    (``quadratic``, not ``couples_pixels``: L1 and L2) are supported.
    """
    given = [NonNegative()] if constraints is None else list(constraints)
    parts = [p for c in given for p in c.parts()]
    targets = {p.target for p in parts if getattr(p, "is_orthant", False)}
    simplex = None
    for p in parts:
        if getattr(p, "simplex_rows", False) and p.target == "A":
            simplex = float(p.row_sum)
        elif not getattr(p, "is_orthant", False):
            _unsupported(p)
    if "S" not in targets or ("A" not in targets and simplex is None):
        raise UnsupportedError(
            f"constraints={constraints!r}: the online fit needs non-negative maps and "
            f"endmembers (NonNegative()); it supports {SUPPORTED}."
        )
    for r in regularizers:
        exact = getattr(r, "quadratic", False) and hasattr(r, "model")
        if r.target != "A" or not exact or r.couples_pixels or r.couples_distant_pixels:
            _unsupported(r)
    return simplex


def _unsupported(term: Any) -> None:
    raise UnsupportedError(
        f"{term!r} is not supported by the online fit; it supports {SUPPORTED}. Fit the "
        "whole data with unmix.factorize for the other terms."
    )


# ------------------------------------------------------------ the functional core
def online_factorize(
    batches: Any,
    k: int,
    *,
    n_epochs: int = 1,
    batch_size: int | None = None,
    refit: bool = True,
    spatial_shape: tuple[int, ...] | None = None,
    signal_shape: tuple[int, ...] | None = None,
    callback: Callable[[OnlineNMF], Any] | None = None,
    **options: Any,
) -> Result:
    """Factorize a stream of pixel batches (each (pixels, channels)) by online NMF.

    Parameters
    ----------
    batches : array, sequence of arrays, callable or iterator
        The stream: an array ``X`` (pixels, channels) cut into ``batch_size`` rows; a
        sequence of batches; a callable returning a fresh iterable of batches on each
        call (e.g. reading files); or a one-shot iterator (then ``n_epochs`` must be 1 and
        the maps are those computed as the batches arrived).
    k : int
        Number of endmembers.
    n_epochs : int, optional
        Passes over the stream (default 1).
    batch_size : int, optional
        Rows a batch when ``batches`` is one array (default: the scan line,
        ``spatial_shape[-1]``, else 256).
    refit : bool, optional
        Recompute the maps of every pixel against the final endmembers in one more pass
        (default True; impossible for a one-shot iterator, whose maps are kept as they
        were computed).
    spatial_shape, signal_shape : tuple of int, optional
        Scan and signal shapes recorded in the result.
    callback : callable, optional
        Called with the :class:`OnlineNMF` state after each batch.
    **options
        Keywords of :class:`OnlineNMF` (``loss``, ``constraints``, ``regularizers``,
        ``forget``, ``inner_max``, ``n_inner``, ``random_state``).

    Returns
    -------
    Result
        ``A`` (pixels seen in one pass, k), ``S`` (k, channels); ``objective`` is
        ``1/2 ||X - A S||^2`` over the pixels of one pass plus the penalties of ``A``
        (without ``refit``: each batch's fit against the endmembers it was solved with).
    """
    state = OnlineNMF(k, **options)
    source, again = _source(batches, batch_size, spatial_shape)
    if isinstance(n_epochs, bool) or not isinstance(n_epochs, int) or n_epochs < 1:
        raise ValueError(f"n_epochs must be an integer >= 1; got {n_epochs!r}.")
    if n_epochs > 1 and not again:
        raise ValueError(
            f"n_epochs={n_epochs} needs a stream that can be read again: pass an array, a "
            "sequence of batches or a callable returning the batches, not an iterator."
        )
    maps: list[Any] = []
    for epoch in range(n_epochs):
        maps, n0 = [], state.n_batches
        for X in source():
            A = state.partial_fit(X)
            if epoch == n_epochs - 1 and not (refit and again):
                maps.append(A)
            if callback is not None:
                callback(state)
    if state.S is None:
        raise ValueError("batches is empty: the online fit saw no pixels.")
    if refit and again:
        fit = 0.0
        for X in source():
            X = state.checked(X)
            A = state.transform(X)
            fit += 0.5 * float(state.be.xp.sum((X - A @ state.S) ** 2))
            maps.append(A)
    else:  # the batches are gone: their fits as they were streamed
        fit = math.fsum(state.history["fit"][n0:])
    A = state.be.xp.concat(maps, axis=0)
    objective = fit + state.penalty(A)
    return build_result(state, A, spatial_shape, signal_shape, objective, n_epochs=n_epochs)


def _source(
    batches: Any, batch_size: int | None, spatial_shape: Any
) -> tuple[Callable[[], Iterable[Any]], bool]:
    """``(make, again)``: a callable giving the batches, and whether it can be re-called."""
    if hasattr(batches, "shape") and getattr(batches, "ndim", 0) == 2:
        X = batches
        size = batch_size
        if size is None:
            size = int(spatial_shape[-1]) if spatial_shape else 256
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}.")
        return (lambda: (X[i : i + size] for i in range(0, X.shape[0], size))), True
    if callable(batches):
        return batches, True
    if isinstance(batches, (list, tuple)):
        return (lambda: iter(batches)), True
    if isinstance(batches, (Iterator, Iterable)):
        return (lambda: batches), False
    raise TypeError(
        "batches must be an array (pixels, channels), a sequence of such arrays, a "
        f"callable returning them or an iterator; got {type(batches).__name__}."
    )


def build_result(
    state: OnlineNMF,
    A: Any,
    spatial_shape: Any,
    signal_shape: Any,
    objective: float,
    *,
    n_epochs: int = 1,
) -> Result:
    """The :class:`~unmix.Result` of an online state with maps ``A`` (pixels, k)."""
    n = int(A.shape[0])
    shape = tuple(spatial_shape) if spatial_shape and math.prod(spatial_shape) == n else None
    hist = {key: np.asarray(v, dtype=float) for key, v in state.history.items()}
    hist["objective"] = hist["fit"].copy()
    elapsed = time.perf_counter() - state.t0
    spec = {
        "unmix_version": __version__,
        "k": state.k,
        "n_pixels": n,
        "n_channels": int(state.S.shape[1]),
        "loss": "frobenius",
        "beta": 2.0,
        "link": "identity",
        "solver": "online",
        "solver_options": {"forget": state.forget, "inner_max": state.inner_max},
        "constraints": [c.describe() for c in state.constraints],
        "penalties": [r.describe() for r in state.regularizers],
        "filters": [],
        "n_epochs": n_epochs,
        "n_batches": state.n_batches,
        "n_seen": state.n_seen,
        "n_restarts": state.n_restarts,
        "random_state": state.random_state,
        "spatial_shape": None if shape is None else list(shape),
        "signal_shape": None if signal_shape is None else list(signal_shape),
        "backend": state.be.name,
        "dtype": str(state.be.dtype),
        "device": str(state.be.device),
    }
    result = Result(
        A=A,
        S=state.S,
        objective=float(objective),
        history=hist,
        n_iter=state.n_batches,
        converged=False,
        stop_reason="stream",
        timings={
            "init": 0.0,
            "iterations": elapsed,
            "total": elapsed,
            "per_iteration": elapsed / max(state.n_batches, 1),
        },
        spec=spec,
        spatial_shape=shape,
        signal_shape=None if signal_shape is None else tuple(signal_shape),
    )
    result.link = Identity()
    result.fit_args = {
        "loss": Frobenius(),
        "link": Identity(),
        "constraints": state.constraints,
        "regularizers": state.regularizers,
        "preprocessing": [],
        "solver": "bpp",
        "solver_options": {},
        "nonneg_S": True,
    }
    logger.debug("online fit: %d batches, %d pixels", state.n_batches, state.n_seen)
    return result
