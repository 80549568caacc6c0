"""Bayesian Poisson NMF: variational Bayes with ARD of the rank and credible intervals.

Model: counts ``X`` (pixels, channels) ``~ Poisson(A @ S)`` with Gamma priors on the maps
``A`` (pixels, k) and the endmembers ``S`` (k, channels), one relevance per component
(automatic relevance determination); see :func:`bayes_nmf`.
"""

from __future__ import annotations

from ._bootstrap import bootstrap_bands
from ._result import BayesResult
from ._vb import bayes_nmf

__all__ = ["BayesResult", "bayes_nmf", "bootstrap_bands"]
