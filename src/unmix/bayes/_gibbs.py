"""Gibbs sampling of Bayesian Poisson NMF: credible bands that hold the unmixing ambiguity.

The model of :mod:`unmix.bayes._vb` (``X`` (pixels, channels) counts ``~ Poisson(A @ S)``,
Gamma priors on the maps ``A`` (pixels, k) and the endmembers ``S`` (k, channels), one
relevance ``theta_r`` a component, here fixed at the variational fit's ``E[theta_r]``),
sampled with the counts split into components (Cemgil 2009, section 4)::

    Z_ij. | A, S ~ Multinomial(X_ij; A_ir S_rj / sum_l A_il S_lj)     (nonzero X_ij only)
    A_ir  | Z, S ~ Gamma(a_A + sum_j Z_ijr, rate theta_r b_A + sum_j S_rj)
    S_rj  | Z, A ~ Gamma(a_S + sum_i Z_ijr, rate theta_r b_S + sum_i A_ir)

Unlike the mean-field posterior, the chain moves ``A`` and ``S`` together, so its bands
widen where the split of the counts between components is uncertain (the unmixing
ambiguity), not only with the counting noise.  The chain starts at the variational
posterior means, drops the first fifth of its sweeps, and keeps 100 samples evenly
spaced over the rest; the bands are their quantiles.  A chain explores the mode it
starts in: it does not jump between distant solutions (nor permute components).
Each sweep costs ``O(nnz k)``; ``X`` must hold whole counts.
"""

from __future__ import annotations

import numpy as np

from ._data import CountData
from ._posterior import Priors

__all__ = ["gibbs_summary"]

#: samples kept for the quantiles (evenly spaced after the burn-in)
N_KEEP = 100
#: most ``nonzeros x k`` values of one sweep's allocation probabilities
MAX_ENTRIES = 50_000_000


def _entries(data: CountData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column and (integer) value of every nonzero of ``X`` (whole counts: checked
    before the fit, :attr:`CountData.whole`)."""
    if data.sparse:
        X = data.X
        rows, cols, x = np.asarray(data.rows), np.asarray(X.indices), np.asarray(X.data)
    else:
        X = np.asarray(data.X)
        rows, cols = np.nonzero(X)
        x = X[rows, cols]
    x = np.asarray(x, dtype=np.float64)
    keep = x > 0
    rows, cols, x = rows[keep], cols[keep], x[keep]
    return rows.astype(np.int64), cols.astype(np.int64), x.astype(np.int64)


def gibbs_summary(
    data: CountData,
    A0: np.ndarray,
    S0: np.ndarray,
    theta: np.ndarray,
    pr: Priors,
    *,
    sweeps: int,
    level: float,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Run the chain (module docstring) from ``A0`` (pixels, k), ``S0`` (k, channels) with
    relevances ``theta`` (k,) and return the sample means and central ``level`` bands of
    ``A``, ``S`` and the unit-sum endmembers (keys ``A_mean``, ``A_lower``, ...,
    ``S_unit_upper``), and the kept samples (``A_samples`` (samples, pixels, k),
    ``S_samples`` (samples, k, channels)) for the bands of derived quantities such as the
    model ``A @ S`` (:meth:`unmix.bayes.BayesResult.model_intervals`)."""
    rows, cols, x = _entries(data)
    n, m, k = data.n, data.m, A0.shape[1]
    if x.size * k > MAX_ENTRIES or n * k * N_KEEP > MAX_ENTRIES:
        raise ValueError(
            f"bands='gibbs' on {x.size} nonzeros x {k} components and {n} pixels is too "
            "large for the sampler's memory (bin the map, crop it, or use bands='vb')."
        )
    burn = sweeps // 5
    keep_at = set(np.linspace(burn, sweeps - 1, min(N_KEEP, sweeps - burn)).astype(int))
    A, S = np.maximum(A0, 1e-300), np.maximum(S0, 1e-300)
    kept_A, kept_S = [], []
    for sweep in range(sweeps):
        P = A[rows] * S[:, cols].T
        P /= P.sum(axis=1, keepdims=True)
        Z = rng.multinomial(x, P)
        ZA = np.stack([np.bincount(rows, Z[:, r], minlength=n) for r in range(k)], axis=1)
        ZS = np.stack([np.bincount(cols, Z[:, r], minlength=m) for r in range(k)])
        A = rng.gamma(pr.a_A + ZA, 1.0 / (theta * pr.b_A + S.sum(axis=1))[None, :])
        S = rng.gamma(pr.a_S + ZS, 1.0 / (theta * pr.b_S + A.sum(axis=0))[:, None])
        A, S = np.maximum(A, 1e-300), np.maximum(S, 1e-300)
        if sweep in keep_at:
            kept_A.append(A)
            kept_S.append(S)
    DA, DS = np.stack(kept_A), np.stack(kept_S)
    DU = DS / DS.sum(axis=2, keepdims=True)
    q = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
    out = {}
    for name, D in (("A", DA), ("S", DS), ("S_unit", DU)):
        out[f"{name}_mean"] = D.mean(axis=0)
        out[f"{name}_lower"], out[f"{name}_upper"] = np.quantile(D, q, axis=0)
    out["A_samples"], out["S_samples"] = DA, DS
    return out
