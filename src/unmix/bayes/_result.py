"""The result of :func:`unmix.bayes.bayes_nmf`: posterior means and credible intervals.

Model: ``X`` (pixels, channels) ``~ Poisson(A @ S)``, ``A`` (pixels, k) maps, ``S``
(k, channels) endmembers; the variational posterior is ``q(A_ir) = Gamma(alpha_ir, rate
rho_r)`` and ``q(S_rj) = Gamma(gamma_rj, rate sigma_r)`` (one rate per component, as the
updates give).  Intervals:

- ``A`` and ``S``: central intervals of the Gamma marginals (``scipy.stats.gamma.ppf`` at
  ``(1 - level) / 2`` and ``(1 + level) / 2``).
- Unit-sum endmembers ``S_rj / sum_j S_rj`` (what is compared with planted spectra, free of
  the scale ambiguity ``A S = (A c)(S / c)``): independent Gammas of one rate, normalized
  by their sum, are Dirichlet, so under ``q`` row ``r`` is ``Dirichlet(gamma_r1..gamma_rm)``
  and entry ``j`` is ``Beta(gamma_rj, sum_l gamma_rl - gamma_rj)``: mean
  ``gamma_rj / sum_l gamma_rl`` and exact quantiles (``scipy.stats.beta.ppf``), no sampling.
- Maps on that scale, ``A_ir sum_j S_rj`` (the counts of component ``r`` in pixel ``i``):
  :meth:`BayesResult.unit_map_intervals` samples ``q`` (seeded).

These are intervals of the mean-field posterior, which ignores the correlation between
``A`` and ``S``: they tend to be too narrow (see ``benchmarks/results/bayes.md``).

:func:`as_result` makes the fit an ordinary :class:`unmix.Result`: the posterior means
are the factors, the intervals :class:`unmix.Bands` (saved in ``result.h5``, drawn in the
report), the negative evidence lower bound the objective (``history["objective"]`` per
iteration of the final fit), so the run report, notebooks and ``load_result`` read it as
any fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from .._bands import Bands
from ..result import Result

__all__ = [
    "METHOD",
    "METHOD_GIBBS",
    "NOTE",
    "NOTE_GIBBS",
    "BayesResult",
    "as_result",
    "make_result",
]


@dataclass
class BayesResult:
    """Posterior summary of Bayesian Poisson NMF ``X ~ Poisson(A @ S)``.

    ``X`` is (pixels, channels), ``A`` (pixels, k) and ``S`` (k, channels).  The arrays of
    the factors hold the kept components only (``k_effective`` of them, column ``c`` of
    ``A_mean`` is component ``np.flatnonzero(active)[c]``); ``relevance`` and ``active``
    cover all ``k``.

    Attributes
    ----------
    A_mean, A_lower, A_upper : arrays (pixels, k_effective)
        Posterior mean and central credible interval of each map entry.
    S_mean, S_lower, S_upper : arrays (k_effective, channels)
        The same for each endmember entry.
    S_unit_mean, S_unit_lower, S_unit_upper : arrays (k_effective, channels)
        Mean and interval of the unit-sum endmembers ``S_rj / sum_l S_rl`` (exact
        Dirichlet marginals of ``q(S)``, see :mod:`unmix.bayes._result`).
    relevance : array (k,)
        ARD relevance ``1 / E[theta_r]`` of every component in the ARD fit, relative to
        the largest (ones when ``ard=False``); a component ARD switched off sits at its
        prior's floor (a few %).
    counts : array (k,)
        Expected counts each component explains beyond its prior, ``E[sum_ij Z_ijr] -
        m a_S`` (ARD's pruning criterion: below ``max(1e-3 sum X, 10)``): of the final
        fit for the kept components, of the ARD fit for the others.
    active : bool array (k,)
        Components kept (not pruned by ARD nor removed by the evidence check).
    k_effective : int
        Number of kept components.
    elbo : list of float
        Evidence lower bound after each iteration of the final fit (non-decreasing).
    bands_method : {'vb', 'gibbs'}
        Where the means and intervals come from: the variational posterior, or the
        ``sweeps`` sweeps of the Gibbs chain started at it (``A_shape`` ... stay the
        variational ones, and :meth:`unit_map_intervals` samples them).
    rank_path : list of (int, float)
        The ranks the evidence check visited and the bound of each refitted model (one
        entry, the ARD fit's, with ``prune='counts'`` or without ARD).
    n_iter : int
        Iterations run.
    level : float
        Probability of the intervals.
    converged : bool
        Whether the ELBO's relative change fell below ``tol`` before ``max_iter``.
    A_shape, A_rate, S_shape, S_rate : arrays
        Parameters of the Gamma posteriors of the kept components: shapes as ``A``/``S``,
        one rate per component (k_effective,).
    A_samples, S_samples : arrays or None
        With ``bands='gibbs'``: the chain's kept samples, (samples, pixels, k_effective)
        and (samples, k_effective, channels); None for the variational bands.
    """

    A_mean: np.ndarray
    S_mean: np.ndarray
    A_lower: np.ndarray
    A_upper: np.ndarray
    S_lower: np.ndarray
    S_upper: np.ndarray
    S_unit_mean: np.ndarray
    S_unit_lower: np.ndarray
    S_unit_upper: np.ndarray
    relevance: np.ndarray
    counts: np.ndarray
    active: np.ndarray
    k_effective: int
    elbo: list[float]
    n_iter: int
    level: float
    converged: bool = False
    rank_path: list = field(default_factory=list)
    bands_method: str = "vb"
    sweeps: int = 0
    A_shape: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    A_rate: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    S_shape: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    S_rate: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    A_samples: np.ndarray | None = field(default=None, repr=False)
    S_samples: np.ndarray | None = field(default=None, repr=False)

    def to_result(self, **kw: Any) -> Result:
        """This fit as a :class:`unmix.Result` with its credible bands (``result.bands``):
        posterior means as ``A`` and ``S``, the negative ELBO as the objective; keywords
        ``spatial_shape``, ``signal_shape`` and ``spec`` (see :func:`as_result`)."""
        return as_result(self, **kw)

    @property
    def pruned(self) -> np.ndarray:
        """Indices (of the ``k`` started with) of the components ARD pruned."""
        return np.flatnonzero(~self.active)

    def unit_map_intervals(
        self,
        level: float | None = None,
        *,
        n_draws: int = 400,
        random_state: int | np.random.Generator | None = 0,
        block_rows: int = 4096,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean and interval of the maps on the unit-sum-endmember scale, by sampling ``q``.

        ``B_ir = A_ir sum_j S_rj`` (pixels, k_effective) is the expected count of component
        ``r`` in pixel ``i``, the scale on which ``A @ S`` has unit-sum endmembers.  Draws
        ``n_draws`` samples of ``A`` and of the row sums of ``S`` from ``q`` (independent
        Gammas; a row sum of ``S`` is ``Gamma(sum_j shape, rate)``), ``block_rows`` pixels at
        a time, and returns ``(mean, lower, upper)`` (exact mean, sample quantiles).
        """
        level = self.level if level is None else float(level)
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1); got {level!r}.")
        rng = np.random.default_rng(random_state)
        tot_shape = self.S_shape.sum(axis=1)
        sums = rng.gamma(tot_shape, 1.0 / self.S_rate, size=(n_draws, tot_shape.size))
        mean = (self.A_shape / self.A_rate) * (tot_shape / self.S_rate)
        q = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
        lower = np.empty_like(mean)
        upper = np.empty_like(mean)
        for a in range(0, mean.shape[0], block_rows):
            sh = self.A_shape[a : a + block_rows]
            draws = rng.gamma(sh, 1.0 / self.A_rate, size=(n_draws, *sh.shape))
            draws *= sums[:, None, :]
            lower[a : a + block_rows], upper[a : a + block_rows] = np.quantile(draws, q, axis=0)
        dt = self.A_mean.dtype
        return mean.astype(dt), lower.astype(dt), upper.astype(dt)

    def model_intervals(
        self,
        pixels: Any = None,
        level: float | None = None,
        *,
        n_draws: int = 400,
        random_state: int | np.random.Generator | None = 0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean and interval of the model ``(A @ S)_ij``, the expected counts of pixel
        ``i`` in channel ``j``, for the ``pixels`` given (indices or a boolean mask over
        the pixels; default all): arrays (len(pixels), channels).

        Unlike the factors, the model is identifiable: whichever way the counts split
        between components, ``A @ S`` is what the data pin down, so these bands can be
        checked against planted expected counts (``benchmarks/results/bayes.md``).  From
        the Gibbs chain's kept samples when ``bands='gibbs'``; else from ``n_draws``
        independent draws of ``A`` and ``S`` from the mean-field ``q`` (seeded by
        ``random_state``), which ignores their correlation and so tends to be narrow.
        The mean is the sample mean; the interval the central ``level`` quantiles.
        """
        level = self.level if level is None else float(level)
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1); got {level!r}.")
        rows = np.arange(self.A_mean.shape[0])
        rows = rows if pixels is None else np.atleast_1d(rows[pixels])
        q = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
        if self.A_samples is not None and self.S_samples is not None:
            DS = self.S_samples

            def draw_A(sel: np.ndarray) -> np.ndarray:
                return self.A_samples[:, sel, :]
        else:
            rng = np.random.default_rng(random_state)
            DS = rng.gamma(
                self.S_shape, 1.0 / self.S_rate[:, None], size=(n_draws, *self.S_shape.shape)
            )

            def draw_A(sel: np.ndarray) -> np.ndarray:
                sh = self.A_shape[sel]
                return rng.gamma(sh, 1.0 / self.A_rate, size=(n_draws, *sh.shape))

        m = DS.shape[2]
        block = max(1, MODEL_ENTRIES // max(DS.shape[0] * m, 1))
        out = [np.empty((rows.size, m)) for _ in range(3)]
        for a in range(0, rows.size, block):
            M = np.einsum("tik,tkj->tij", draw_A(rows[a : a + block]), DS)
            out[0][a : a + block] = M.mean(axis=0)
            out[1][a : a + block], out[2][a : a + block] = np.quantile(M, q, axis=0)
        dt = self.A_mean.dtype
        return out[0].astype(dt), out[1].astype(dt), out[2].astype(dt)

    def model_band_fields(self, pixels: Any) -> dict[str, Any]:
        """The :class:`unmix.Bands` fields of the bands of the model at ``pixels`` (flat
        indices; sorted, each once): ``model_pixels``, ``model_lower``, ``model_upper``."""
        pix = np.unique(np.asarray(pixels, dtype=np.int64).reshape(-1))
        _, lo, hi = self.model_intervals(pix)
        return {"model_pixels": pix, "model_lower": lo, "model_upper": hi}


#: most sampled model entries held at once by :meth:`BayesResult.model_intervals`
MODEL_ENTRIES = 8_000_000


def _gamma_interval(shape: np.ndarray, rate: np.ndarray, level: float) -> tuple:
    scale = 1.0 / rate
    lo = stats.gamma.ppf((1.0 - level) / 2.0, shape, scale=scale)
    hi = stats.gamma.ppf((1.0 + level) / 2.0, shape, scale=scale)
    return lo, hi


def make_result(
    *,
    A_shape: np.ndarray,
    A_rate: np.ndarray,
    S_shape: np.ndarray,
    S_rate: np.ndarray,
    relevance: np.ndarray,
    counts: np.ndarray,
    active: np.ndarray,
    elbo: list[float],
    n_iter: int,
    converged: bool,
    level: float,
    dtype: np.dtype,
    rank_path: list | None = None,
) -> BayesResult:
    """Summaries of the kept components' Gamma posteriors (see the module): the
    ``A_*`` and ``S_*`` arrays are those of the kept components, ``active`` (with
    ``relevance`` and ``counts``) covers all ``k``."""
    a_sh, a_rt, s_sh, s_rt = A_shape, A_rate, S_shape, S_rate  # the kept components
    A_lo, A_hi = _gamma_interval(a_sh, a_rt[None, :], level)
    S_lo, S_hi = _gamma_interval(s_sh, s_rt[:, None], level)
    tot = s_sh.sum(axis=1, keepdims=True)
    U_lo = stats.beta.ppf((1.0 - level) / 2.0, s_sh, tot - s_sh)
    U_hi = stats.beta.ppf((1.0 + level) / 2.0, s_sh, tot - s_sh)

    def cast(v: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(v, dtype=dtype)

    return BayesResult(
        A_mean=cast(a_sh / a_rt[None, :]),
        S_mean=cast(s_sh / s_rt[:, None]),
        A_lower=cast(A_lo),
        A_upper=cast(A_hi),
        S_lower=cast(S_lo),
        S_upper=cast(S_hi),
        S_unit_mean=cast(s_sh / tot),
        S_unit_lower=cast(U_lo),
        S_unit_upper=cast(U_hi),
        relevance=cast(relevance),
        counts=cast(counts),
        active=np.asarray(active, dtype=bool),
        k_effective=int(np.count_nonzero(active)),
        elbo=[float(v) for v in elbo],
        n_iter=int(n_iter),
        level=float(level),
        converged=bool(converged),
        rank_path=[(int(r), float(e)) for r, e in (rank_path or [])],
        A_shape=a_sh.copy(),
        A_rate=a_rt.copy(),
        S_shape=s_sh.copy(),
        S_rate=s_rt.copy(),
    )


#: how the bands were made (the report shows it beside them)
METHOD = "model-based: mean-field variational Bayes of the Poisson model (Cemgil 2009)"
#: the same for the Gibbs chain
METHOD_GIBBS = "model-based: Gibbs sampling of the Poisson model (Cemgil 2009), {} sweeps"
#: what the chain's bands hold
NOTE_GIBBS = (
    "Model-based credible intervals from a Gibbs chain started at the variational fit: "
    "they hold the counting (Poisson) noise and the uncertainty of how the counts split "
    "between components (the unmixing ambiguity the chain explores around its start), "
    "not errors of the model (non-count data, background, detector effects), nor "
    "solutions far from the start. On planted counts they cover the true spectra more "
    "often than the variational bands but still less than their level at high counts "
    "(benchmarks/results/bayes.md)."
)
#: what they hold and leave out
NOTE = (
    "Model-based credible intervals: they hold the counting (Poisson) noise of the counts "
    "each component explains under the model, not the ambiguity of the unmixing itself "
    "(mean-field VB drops the correlation of maps and endmembers), nor errors of the model "
    "(non-count data, background, detector effects). On planted counts they cover the true "
    "spectra less often than their level says (benchmarks/results/bayes.md); the bootstrap "
    "bands of `unmix select` hold the spread of the point fit over resampled pixels instead."
)


def as_result(
    res: BayesResult,
    *,
    spatial_shape: tuple[int, ...] | None = None,
    signal_shape: tuple[int, ...] | None = None,
    spec: dict[str, Any] | None = None,
    model_pixels: Any = None,
) -> Result:
    """The fit ``res`` of ``X`` (pixels, channels) as a :class:`unmix.Result`.

    ``A`` and ``S`` are the posterior means of the kept components, ``result.bands`` the
    credible intervals of every entry (``res.level``), the objective the negative ELBO.
    ``spec`` adds to the recorded specification (``solver="bayes-vb"``, ``loss="kl"``,
    the ranks, relevance and the rank path of the evidence check).  ``model_pixels``
    (flat pixel indices): the bands also hold the model ``A @ S`` at those pixels
    (:meth:`BayesResult.model_intervals`; the report shades them in its pixel figure).
    """
    elbo = np.asarray(res.elbo, dtype=np.float64)
    full = {
        "solver": "bayes-vb",
        "loss": "kl",
        "k": int(res.k_effective),
        "k_max": int(res.active.size),
        "n_pixels": int(res.A_mean.shape[0]),
        "n_channels": int(res.S_mean.shape[1]),
        "objective": "negative evidence lower bound (ELBO)",
        "relevance": [float(v) for v in res.relevance],
        "active": [bool(v) for v in res.active],
        "rank_path": [[int(r), float(e)] for r, e in res.rank_path],
        "level": float(res.level),
        "bands": res.bands_method,
        "dtype": str(res.A_mean.dtype),
        **(spec or {}),
    }
    bands = Bands(
        S_lower=res.S_lower,
        S_upper=res.S_upper,
        A_lower=res.A_lower,
        A_upper=res.A_upper,
        level=float(res.level),
        method=METHOD if res.bands_method == "vb" else METHOD_GIBBS.format(res.sweeps),
        note=NOTE if res.bands_method == "vb" else NOTE_GIBBS,
        **({} if model_pixels is None else res.model_band_fields(model_pixels)),
    )
    return Result(
        A=res.A_mean,
        S=res.S_mean,
        objective=float(-elbo[-1]) if elbo.size else float("nan"),
        history={"objective": -elbo},
        n_iter=int(res.n_iter),
        converged=bool(res.converged),
        stop_reason="tol" if res.converged else "max_iter",
        timings={},
        spec=full,
        spatial_shape=tuple(spatial_shape) if spatial_shape else None,
        signal_shape=tuple(signal_shape) if signal_shape else None,
        bands=bands,
    )
