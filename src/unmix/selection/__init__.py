"""Choosing ``k`` and the regularization strengths with evidence.

>>> from unmix.selection import select_rank, select_lambdas
>>> sel = select_rank(X, range(2, 12), n_restarts=10, n_jobs=2)  # doctest: +SKIP
>>> sel.recommended, sel.picks                                   # doctest: +SKIP
>>> lam = select_lambdas(X, sel.recommended, params=("sparsity", "smoothness"),
...                      spatial_shape=(95, 95), method="bayes")  # doctest: +SKIP

See ``docs/selection.md``.
"""

from __future__ import annotations

from ._lambdas import PLAUSIBILITY, LambdaSearch, check_lambda_search, select_lambdas
from ._rank import CRITERIA, RULES, RankSelection, select_rank
from ._report import run_config, write_selection_report
from ._uncertainty import Uncertainty, uncertainty_from_runs

__all__ = [
    "CRITERIA",
    "PLAUSIBILITY",
    "RULES",
    "LambdaSearch",
    "RankSelection",
    "Uncertainty",
    "check_lambda_search",
    "run_config",
    "select_lambdas",
    "select_rank",
    "uncertainty_from_runs",
    "write_selection_report",
]
