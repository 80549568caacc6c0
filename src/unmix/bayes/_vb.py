"""Bayesian Poisson NMF by mean-field variational Bayes (Cemgil 2009), with ARD of the rank.

Model, with ``X`` (pixels, channels) counts, ``A`` (pixels, k) maps, ``S`` (k, channels)
endmembers and one relevance ``lambda_r = 1 / theta_r`` per component::

    X_ij    ~ Poisson(sum_r A_ir S_rj)
    A_ir    ~ Gamma(a_A, rate theta_r b_A)        S_rj ~ Gamma(a_S, rate theta_r b_S)
    theta_r ~ Gamma(a_t, rate b_t)                (ARD; theta_r = 1 fixed when ard=False)

The posterior is approximated by ``q(Z) q(A) q(S) q(theta)`` (``Z_ijr`` the counts of
``X_ij`` that come from component ``r``); with ``q(Z)`` at its optimum, every factor is
Gamma and the coordinate-ascent updates are::

    q(A_ir)    = Gamma(a_A + LA_ir sum_j R_ij LS_rj,  E[theta_r] b_A + sum_j E S_rj)
    q(S_rj)    = Gamma(a_S + LS_rj sum_i LA_ir R_ij,  E[theta_r] b_S + sum_i E A_ir)
    q(theta_r) = Gamma(a_t + n a_A + m a_S,  b_t + b_A sum_i E A_ir + b_S sum_j E S_rj)

with ``LA = exp(E log A)``, ``LS = exp(E log S)`` and ``R_ij = X_ij / (LA LS)_ij`` (zero
where ``X`` is, so sparse ``X`` costs ``O(nnz k)``; see :mod:`unmix.bayes._data`).  Each
update maximizes the evidence lower bound (ELBO)::

    L = sum_ij [X_ij log (LA LS)_ij - log X_ij!] - sum_r (sum_i E A_ir)(sum_j E S_rj)
        + E log p(A, S | theta) + E log p(theta) + H[q(A)] + H[q(S)] + H[q(theta)]

so ``L`` never decreases; it is recorded every iteration, and the run stops when its
relative change has stayed below ``tol`` for 5 iterations (after at least 50).  One
iteration is two passes over ``X`` (``q(Z)`` is refreshed between ``q(A)`` and ``q(S)``).

Prior rates are set from the data mean ``mu = sum X / (n m)``: ``b_A = a_A / s`` and
``b_S = a_S / s`` with ``s = sqrt(mu / k)``, so that the prior mean of ``A S`` is ``mu``
whatever the unit of ``X``; ``a_t = b_t = 1e-2`` (vague, mean 1).  ARD shrinks a component
the data do not need towards its prior floor (large ``E[theta_r]``, almost no counts); at the
end, components that explain fewer than ``max(1e-3 sum X, 10)`` counts are pruned.

With ``prune="evidence"`` (the default) the rank ARD keeps is then checked by the bound:
the kept components are refitted alone (warm start), and the weakest component (fewest
counts; the two weakest are tried) is removed while the refitted ELBO of the smaller
model is higher - backward elimination by the evidence lower bound, the bound being an
approximation of each model's log evidence.  One start of ARD from a ``k`` well above
the rank often stops at a local optimum that keeps a component too many (a split one, or
one that fits noise at low counts); the bound of the smaller model then says so.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from ._data import CountData, as_count_data
from ._gibbs import gibbs_summary
from ._posterior import GammaFactor, Priors, State, elbo, sweep
from ._result import BayesResult, make_result

logger = logging.getLogger("unmix")

__all__ = ["bayes_nmf"]

#: shape and rate of the vague Gamma prior on each component's precision ``theta_r``
_A_THETA = 1e-2
#: iterations before the stopping rule is looked at, and the iterations in a row it must hold
_MIN_ITER = 50
_PATIENCE = 5
#: a component is pruned when it explains fewer counts than this share of all counts ...
_PRUNE_SHARE = 1e-3
#: ... or than this many counts
_PRUNE_COUNTS = 10.0


def _is_int(v: Any, low: int) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, np.integer)) and v >= low


#: how the rank is chosen after ARD (``prune=``)
_PRUNE = ("evidence", "counts")


def _check_params(
    k: Any,
    a_A: float,
    a_S: float,
    max_iter: Any,
    tol: float,
    level: Any,
    n_init: Any,
    prune: Any = "evidence",
) -> None:
    if not _is_int(k, 1):
        raise ValueError(f"k must be an integer >= 1 (the largest rank to try); got {k!r}.")
    for name, v in (("a_A", a_A), ("a_S", a_S)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name} (a Gamma shape) must be a finite number > 0; got {v!r}.")
    if not _is_int(max_iter, 1):
        raise ValueError(f"max_iter must be an integer >= 1; got {max_iter!r}.")
    if prune not in _PRUNE:
        raise ValueError(f"prune must be one of {_PRUNE}; got {prune!r}.")
    if not _is_int(n_init, 1):
        raise ValueError(f"n_init must be an integer >= 1; got {n_init!r}.")
    if not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0; got {tol!r}.")
    if not (isinstance(level, (float, int, np.floating)) and 0.0 < float(level) < 1.0):
        raise ValueError(
            f"level must be in (0, 1) (e.g. 0.9 for a 90 % credible interval); got {level!r}."
        )


def _priors(data: CountData, k: int, a_A: float, a_S: float, ard: bool) -> Priors:
    """Prior parameters, the rates from the data mean: ``b = a / sqrt(mean(X) / k)``."""
    scale = float(np.sqrt(data.total / (data.n * data.m) / k))
    return Priors(
        a_A=a_A, a_S=a_S, b_A=a_A / scale, b_S=a_S / scale, a_t=_A_THETA, b_t=_A_THETA, ard=ard
    )


def _start(
    data: CountData, k: int, init: Any, rng: np.random.Generator, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Starting ``A`` (n, k) and ``S`` (k, m), positive: random or the user's ``(A0, S0)``."""
    n, m = data.n, data.m
    if init is None or (isinstance(init, str) and init == "random"):
        A0 = scale * rng.uniform(0.5, 1.5, (n, k))
        S0 = scale * rng.uniform(0.5, 1.5, (k, m))
        return A0, S0
    if not (isinstance(init, (tuple, list)) and len(init) == 2):
        raise ValueError(
            f"init must be None, 'random' or a tuple (A0 (pixels, k), S0 (k, channels)); "
            f"got {type(init).__name__}."
        )
    A0, S0 = (np.array(v, dtype=np.float64) for v in init)
    if A0.shape != (n, k) or S0.shape != (k, m):
        raise ValueError(
            f"init=(A0, S0) must have shapes {(n, k)} and {(k, m)}; got {A0.shape} and {S0.shape}."
        )
    if not (np.all(np.isfinite(A0)) and np.all(np.isfinite(S0))):
        raise ValueError("init=(A0, S0) has non-finite entries.")
    if A0.min() < 0 or S0.min() < 0:
        raise ValueError("init=(A0, S0) has negative entries; starting factors must be >= 0.")
    tiny = 1e-6 * scale
    return np.maximum(A0, tiny), np.maximum(S0, tiny)


def _stalled(history: list[float], tol: float) -> bool:
    """True after ``_MIN_ITER`` iterations once the ELBO's relative change has stayed below
    ``tol`` for ``_PATIENCE`` iterations in a row (VB can sit on a plateau for a while
    near a symmetric start before the components separate)."""
    if len(history) < max(_MIN_ITER, _PATIENCE + 1):
        return False
    last = np.asarray(history[-_PATIENCE - 1 :])
    change = np.abs(np.diff(last)) / max(abs(last[-1]), 1e-300)
    return bool(np.all(change < tol))


def _run(
    data: CountData, k: int, pr: Priors, A0: np.ndarray, S0: np.ndarray, max_iter: int, tol: float
) -> tuple[State, list[float], int]:
    """Iterate the updates until :func:`_stalled`; the ELBO is recorded after each sweep
    (from the next sweep's first pass, which it shares)."""
    n, m = data.n, data.m
    # the start: q(A), q(S) with the given means (shape 1), theta at its prior mean
    st = State(
        qA=GammaFactor(np.ones((n, k)), np.ones(k), axis=1),
        qS=GammaFactor(np.ones((k, m)), np.ones(k), axis=0),
        t_shape=np.full(k, pr.a_t + n * pr.a_A + m * pr.a_S),
        t_rate=np.full(k, (pr.a_t + n * pr.a_A + m * pr.a_S) * pr.b_t / pr.a_t),
    )
    LA, LS = A0, S0
    st.qS.shape = S0 / S0.mean(axis=1, keepdims=True)
    st.qS.rate = 1.0 / S0.mean(axis=1)
    history: list[float] = []
    n_iter = 0
    for it in range(max_iter + 1):
        stats_A, xlogm = data.ratio_pass(LA, LS, "A")
        if it > 0:
            history.append(elbo(data, st, pr, xlogm))
            if _stalled(history, tol):
                break
        if it == max_iter:
            break
        LA, LS = sweep(data, st, pr, LA, LS, stats_A)
        n_iter += 1
    if len(history) > 1 and history[-1] - history[-2] < -1e-9 * abs(history[-1]):
        logger.warning("bayes_nmf: the ELBO decreased (%g); rounding?", history[-1] - history[-2])
    return st, history, n_iter


def _prune(st: State, pr: Priors, data: CountData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relevance, expected counts and the mask of the kept components.

    The relevance ``1 / E[theta_r]`` is returned relative to the largest.  A component is
    pruned when ARD has switched it off: the counts it explains beyond its prior,
    ``sum_j E[sum_i Z_ijr] = sum_j (shape of q(S_rj) - a_S)``, are below
    ``max(1e-3 sum X, 10)`` (a switched-off component keeps the few counts its prior
    draws; a component explaining fewer than 10 counts cannot be estimated anyway).
    """
    k = st.t_shape.size
    counts = _counts_of(st, pr, data.m)
    if not pr.ard:
        return np.ones(k), counts, np.ones(k, dtype=bool)
    relevance = 1.0 / st.e_theta()
    relevance = relevance / relevance.max()
    active = counts >= max(_PRUNE_SHARE * data.total, _PRUNE_COUNTS)
    if not active.any():
        active[int(np.argmax(counts))] = True
    return relevance, counts, active


def _fit(
    data: CountData,
    k: int,
    pr: Priors,
    init: Any,
    rng: np.random.Generator,
    n_init: int,
    max_iter: int,
    tol: float,
) -> tuple[State, list[float], int]:
    """The best (highest final ELBO) of ``n_init`` runs; the first starts from ``init``."""
    scale = pr.a_A / pr.b_A
    best: tuple[State, list[float], int] | None = None
    for i in range(n_init):
        A0, S0 = _start(data, k, init if i == 0 else None, rng, scale)
        st, history, n_iter = _run(data, k, pr, A0, S0, max_iter, tol)
        logger.debug("bayes_nmf: start %d, ELBO %.6g after %d iterations", i, history[-1], n_iter)
        if best is None or history[-1] > best[1][-1]:
            best = (st, history, n_iter)
    assert best is not None
    return best


def _counts_of(st: State, pr: Priors, m: int) -> np.ndarray:
    """Expected counts of each component beyond its prior (see :func:`_prune`)."""
    return np.maximum(st.qS.shape.sum(axis=1) - pr.a_S * m, 0.0)


def _by_evidence(
    data: CountData,
    pr: Priors,
    st: State,
    keep: np.ndarray,
    max_iter: int,
    tol: float,
) -> tuple[np.ndarray, tuple[State, list[float], int], list[tuple[int, float]]]:
    """Backward elimination by the bound (module docstring), from the kept components
    ``keep`` of the ARD fit ``st``.

    Returns the components finally kept (indices into the ``k`` of the ARD fit), the
    last refit ``(state, ELBO history, iterations)`` and the path ``[(rank, ELBO)]``.
    """

    def refit(state: State, cols: np.ndarray) -> tuple[State, list[float], int]:
        A0, S0 = state.qA.mean()[:, cols], state.qS.mean()[cols]
        return _run(data, cols.size, pr, A0, S0, max_iter, tol)

    current = refit(st, keep)
    path = [(int(keep.size), current[1][-1])]
    while keep.size > 1:
        weakest = np.argsort(_counts_of(current[0], pr, data.m), kind="stable")[:2]
        tries = []
        for drop in weakest:
            rest = np.delete(np.arange(keep.size), drop)
            tries.append((rest, refit(current[0], rest)))
        rest, best = max(tries, key=lambda t: t[1][1][-1])
        logger.debug(
            "bayes_nmf: rank %d ELBO %.6g, rank %d ELBO %.6g",
            keep.size,
            current[1][-1],
            rest.size,
            best[1][-1],
        )
        if best[1][-1] <= current[1][-1]:
            break
        keep, current = keep[rest], best
        path.append((int(keep.size), current[1][-1]))
    return keep, current, path


def _check_sampler(bands: Any, sweeps: Any) -> None:
    if bands not in ("vb", "gibbs"):
        raise ValueError(f"bands must be 'vb' or 'gibbs'; got {bands!r}.")
    if not _is_int(sweeps, 10):
        raise ValueError(f"sweeps must be an integer >= 10 (Gibbs sweeps); got {sweeps!r}.")


def _sampled(
    res: BayesResult,
    data: CountData,
    st: State,
    pr: Priors,
    sweeps: int,
    level: float,
    rng: np.random.Generator,
) -> BayesResult:
    """``res`` with its means and intervals from the Gibbs chain started at the kept
    components' state ``st``."""
    theta = st.e_theta() if pr.ard else np.ones(st.t_shape.size)
    A0, S0 = st.qA.mean(), st.qS.mean()
    out = gibbs_summary(data, A0, S0, theta, pr, sweeps=sweeps, level=level, rng=rng)
    cast = {key: np.ascontiguousarray(v, dtype=data.dtype) for key, v in out.items()}
    return dataclasses.replace(res, **cast, bands_method="gibbs", sweeps=sweeps)


def _choose_rank(
    data: CountData,
    pr: Priors,
    fit: tuple[State, list[float], int],
    prune: str,
    max_iter: int,
    tol: float,
) -> tuple[State, list[float], int, np.ndarray, np.ndarray, np.ndarray, list]:
    """ARD's pruning, then (``prune='evidence'``) the evidence check; the final state of
    the kept components, its bound history and iterations, counts, kept mask (of all
    ``k``), relevance and the rank path."""
    st, history, n_iter = fit
    k = st.t_shape.size
    relevance, counts, active = _prune(st, pr, data)
    if (~active).any():
        logger.info("bayes_nmf: pruned components %s (ARD)", np.flatnonzero(~active).tolist())
    path = [(int(active.sum()), history[-1])]
    if not (pr.ard and prune == "evidence"):
        return st.take(np.flatnonzero(active)), history, n_iter, counts, active, relevance, path
    kept = np.flatnonzero(active)
    keep, (st_kept, history, n_iter), path = _by_evidence(data, pr, st, kept, max_iter, tol)
    dropped = kept[~np.isin(kept, keep)]
    if dropped.size:
        logger.info("bayes_nmf: removed components %s (evidence)", dropped.tolist())
    counts = counts.copy()
    counts[keep] = _counts_of(st_kept, pr, data.m)
    active = np.isin(np.arange(k), keep)
    return st_kept, history, n_iter, counts, active, relevance, path


def _summary(
    data: CountData,
    pr: Priors,
    chosen: tuple,
    max_iter: int,
    level: float,
    sampler: tuple[str, int],
    rng: np.random.Generator,
) -> BayesResult:
    """The result of the chosen fit (:func:`_choose_rank`), with the Gibbs chain's means
    and bands when ``sampler`` is ``("gibbs", sweeps)``."""
    st, history, n_iter, counts, active, relevance, path = chosen
    res = make_result(
        A_shape=st.qA.shape,
        A_rate=st.qA.rate,
        S_shape=st.qS.shape,
        S_rate=st.qS.rate,
        relevance=relevance,
        counts=counts,
        active=active,
        elbo=history,
        n_iter=n_iter,
        converged=n_iter < max_iter,
        level=level,
        dtype=data.dtype,
        rank_path=path,
    )
    if sampler[0] == "gibbs":
        res = _sampled(res, data, st, pr, sampler[1], level, rng)
    return res


def bayes_nmf(
    X: Any,
    k: int,
    *,
    ard: bool = True,
    a_A: float = 1.0,
    a_S: float = 1.0,
    max_iter: int = 500,
    tol: float = 1e-5,
    level: float = 0.9,
    random_state: int | np.random.Generator | None = None,
    init: Any = None,
    n_init: int = 1,
    prune: str = "evidence",
    bands: str = "vb",
    sweeps: int = 500,
) -> BayesResult:
    r"""Bayesian Poisson NMF of counts ``X`` (pixels, channels) by variational Bayes.

    Model (Gamma-Poisson, Cemgil 2009): ``X_ij ~ Poisson((A @ S)_ij)``, maps ``A_ir ~
    Gamma(a_A, rate theta_r b_A)``, endmembers ``S_rj ~ Gamma(a_S, rate theta_r b_S)``,
    ``theta_r ~ Gamma(1e-2, 1e-2)`` (1 without ARD), ``b = a / sqrt(mean(X) / k)``.  The
    mean-field posterior maximizes the evidence lower bound (ELBO), which never decreases
    (module docstring).  Its intervals hold the counting noise only, not the unmixing
    ambiguity (``benchmarks/results/bayes.md``).

    Parameters
    ----------
    X : array or scipy.sparse matrix (n_pixels, n_channels)
        Non-negative counts; sparse input is used as CSR (``O(nnz k)`` an iteration).
    k : int
        Number of components; with ``ard=True`` an upper bound on the rank.
    ard : bool
        One precision ``theta_r`` a component learnt from the data (relevance
        ``1 / E[theta_r]``); the components it switches off are pruned.
    a_A, a_S, max_iter, tol : float, float, int, float
        Gamma prior shapes of maps and endmembers (1: exponential); most iterations; stop
        when the ELBO's relative change stays below ``tol`` 5 times.
    level, random_state : float in (0, 1); int, Generator or None
        Probability of the central credible intervals; seed of the random starts.
    init : None, 'random' or tuple (A0, S0)
        The first start (non-negative; random: uniform in ``[0.5 s, 1.5 s]``).
    n_init : int
        Starts (the others random); the highest final ELBO is kept.
    prune : {'evidence', 'counts'}
        With ``ard``: ``'evidence'`` also removes the weakest components while the
        refitted bound of the smaller model is higher (module docstring); ``'counts'``
        keeps what ARD keeps (more than ``max(1e-3 sum X, 10)`` counts).
    bands, sweeps : {'vb', 'gibbs'}, int
        Intervals (and means) from the variational posterior, or from ``sweeps`` sweeps
        of a Gibbs sampler started at it (:mod:`unmix.bayes._gibbs`; whole counts).

    Returns
    -------
    BayesResult
        Means, intervals (``.model_intervals()``: of A @ S), relevance, ELBO; X's dtype.

    Raises
    ------
    ValueError, TypeError
        Negative, non-finite, all-zero or non-numeric ``X``; a bad parameter.
    """
    _check_params(k, a_A, a_S, max_iter, tol, level, n_init, prune)
    _check_sampler(bands, sweeps)
    data = as_count_data(X)
    if bands == "gibbs" and not data.whole:  # refused before the fit, not after it
        raise ValueError(
            "bands='gibbs' samples how each count splits between components, so X must "
            "hold whole counts; scale the data to counts (or use bands='vb')."
        )
    if not data.whole:
        logger.warning(
            "bayes_nmf: X holds values that are not whole counts: the Poisson model (and "
            "its bands) assumes counts - scale the data to counts first when you can."
        )
    pr = _priors(data, int(k), float(a_A), float(a_S), bool(ard))
    rng = np.random.default_rng(random_state)
    fit = _fit(data, int(k), pr, init, rng, int(n_init), int(max_iter), float(tol))
    chosen = _choose_rank(data, pr, fit, prune, int(max_iter), float(tol))
    return _summary(data, pr, chosen, int(max_iter), float(level), (bands, int(sweeps)), rng)
