"""The variational factors of Bayesian Poisson NMF, their bound and their updates.

Model (Cemgil 2009), ``X`` (pixels, channels) counts, ``A`` (pixels, k) maps, ``S``
(k, channels) endmembers, one precision ``theta_r`` per component (ARD)::

    X_ij ~ Poisson((A @ S)_ij),  A_ir ~ Gamma(a_A, rate theta_r b_A),
    S_rj ~ Gamma(a_S, rate theta_r b_S),  theta_r ~ Gamma(a_t, rate b_t)

Mean-field ``q(Z) q(A) q(S) q(theta)``, all Gamma but ``q(Z)`` (multinomial, kept at its
optimum).  Updates and bound: see :mod:`unmix.bayes._vb`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import digamma, gammaln

from ._data import CountData

__all__ = ["GammaFactor", "Priors", "State", "elbo", "sweep"]


@dataclass
class Priors:
    """Shapes ``a_*`` and rates ``b_*`` of the priors of ``A``, ``S`` and ``theta``."""

    a_A: float
    a_S: float
    b_A: float
    b_S: float
    a_t: float
    b_t: float
    ard: bool


@dataclass
class GammaFactor:
    """Gamma factors with entry shapes and one rate per component (the axis ``axis``)."""

    shape: np.ndarray
    rate: np.ndarray  # (k,)
    axis: int  # the component axis of ``shape``: 1 for A (n, k), 0 for S (k, m)

    def _rate(self) -> np.ndarray:
        return self.rate[None, :] if self.axis == 1 else self.rate[:, None]

    def mean(self) -> np.ndarray:
        return self.shape / self._rate()

    def geo(self) -> np.ndarray:
        """``exp(E log x)``."""
        return np.exp(digamma(self.shape)) / self._rate()

    def totals(self) -> np.ndarray:
        """``sum E x`` per component."""
        return self.shape.sum(axis=1 - self.axis) / self.rate

    def prior_terms(self, a: float, b: float, e_theta: np.ndarray, e_logt: np.ndarray) -> float:
        """``E log p(x | theta) + H[q(x)]`` with prior ``Gamma(a, theta b)``."""
        al = self.shape
        cnt = al.shape[1 - self.axis]
        log_rate = np.log(self.rate)
        # E log x = psi(al) - log rate; E x = al / rate (rates per component)
        psi = digamma(al)
        sum_psi = psi.sum(axis=1 - self.axis)
        ex = self.totals()
        prior = (
            cnt * (a * (e_logt + np.log(b)) - gammaln(a))
            + (a - 1.0) * (sum_psi - cnt * log_rate)
            - b * e_theta * ex
        )
        entropy = (
            al.sum(axis=1 - self.axis)
            - cnt * log_rate
            + gammaln(al).sum(axis=1 - self.axis)
            + ((1.0 - al) * psi).sum(axis=1 - self.axis)
        )
        return float(np.sum(prior + entropy))


@dataclass
class State:
    """``q(A)``, ``q(S)`` and ``q(theta_r) = Gamma(t_shape, t_rate)``."""

    qA: GammaFactor
    qS: GammaFactor
    t_shape: np.ndarray  # (k,)
    t_rate: np.ndarray  # (k,)

    def e_theta(self) -> np.ndarray:
        return self.t_shape / self.t_rate

    def take(self, cols: np.ndarray) -> State:
        """The state of the components ``cols`` alone."""
        return State(
            qA=GammaFactor(self.qA.shape[:, cols], self.qA.rate[cols], axis=1),
            qS=GammaFactor(self.qS.shape[cols], self.qS.rate[cols], axis=0),
            t_shape=self.t_shape[cols],
            t_rate=self.t_rate[cols],
        )

    def e_logt(self) -> np.ndarray:
        return digamma(self.t_shape) - np.log(self.t_rate)


def elbo(data: CountData, st: State, pr: Priors, xlogm: float) -> float:
    """The evidence lower bound at the current factors (``xlogm`` from the same state)."""
    e_t = st.e_theta() if pr.ard else np.ones_like(st.t_shape)
    e_lt = st.e_logt() if pr.ard else np.zeros_like(st.t_shape)
    fit = xlogm - data.log_factorials - float(st.qA.totals() @ st.qS.totals())
    out = fit + st.qA.prior_terms(pr.a_A, pr.b_A, e_t, e_lt)
    out += st.qS.prior_terms(pr.a_S, pr.b_S, e_t, e_lt)
    if pr.ard:
        a, b, al, be = pr.a_t, pr.b_t, st.t_shape, st.t_rate
        out += float(np.sum(a * np.log(b) - gammaln(a) + (a - 1.0) * e_lt - b * e_t))
        out += float(np.sum(al - np.log(be) + gammaln(al) + (1.0 - al) * digamma(al)))
    return out


def sweep(
    data: CountData, st: State, pr: Priors, LA: np.ndarray, LS: np.ndarray, stats_A: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One round of updates: ``q(A)``, then ``q(Z)`` and ``q(S)``, then ``q(theta)``.

    ``stats_A = R @ LS.T`` comes from the pass at the current state; returns the new
    ``LA`` and ``LS``.
    """
    e_t = st.e_theta() if pr.ard else np.ones_like(st.t_shape)
    st.qA.shape = pr.a_A + LA * stats_A
    st.qA.rate = e_t * pr.b_A + st.qS.totals()
    LA = st.qA.geo()
    stats_S, _ = data.ratio_pass(LA, LS, "S")
    st.qS.shape = pr.a_S + LS * stats_S
    st.qS.rate = e_t * pr.b_S + st.qA.totals()
    LS = st.qS.geo()
    if pr.ard:
        st.t_rate = pr.b_t + pr.b_A * st.qA.totals() + pr.b_S * st.qS.totals()
    return LA, LS
