"""Choosing the regularization strengths: grid, random or Bayesian (Optuna) search.

Each trial fits ``X ~= A @ S`` through :func:`unmix.factorize` with non-negative factors,
unit-norm endmembers and the regularizers of the trial, on the entries *not* held out
(the engine's ``mask``), and is scored by

    score = e_cv * (1 + weight * q)

where ``e_cv = ||X_H - (A S)_H|| / ||X_H||`` is the relative error on the held-out
entries ``H`` (a seeded 1/``n_folds`` share of the entries) and ``q`` in [0, 1] an
implausibility the user picks (:data:`PLAUSIBILITY`, or any callable of the fitted
:class:`unmix.Result`).  Lower is better.

The strengths are

- ``sparsity``: ``L1(lam = sparsity * s)`` on the maps, ``s`` the mean pixel norm of
  ``X`` (scale-free, the same convention as ``unmix run --sparsity``);
- ``smoothness``: ``SpatialSmoothness(lam = smoothness)`` on the maps (graph Laplacian of
  the scan grid; with unit-norm endmembers the strength is already scale-free).

Following Kannan et al. (2018), the search is staged by default: sparsity first (with no
smoothness), then smoothness with the best sparsity fixed.  Every search also tries the
unregularized model, so "no regularization" wins when the data do not ask for any.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._backend import to_numpy
from .._params import document_parameters
from .._validation import ensure_2d_float
from ..blocks import is_sparse, mean_row_scale
from ..engine import factorize
from ..executors.groups import Groups, Work, check_executor
from ..model import L1, NonNegative, SpatialSmoothness, UnitNorm, beta_of
from ._criteria import map_roughness
from ._params import LAMBDA_PARAMETERS, check_selection_params
from ._plan import HoldoutSpec, holdout_entries

logger = logging.getLogger("unmix")

__all__ = ["PLAUSIBILITY", "LambdaSearch", "check_lambda_search", "select_lambdas"]

DEFAULT_RANGES = {"sparsity": (1e-3, 1.0), "smoothness": (1e-3, 10.0)}


def _hoyer(M: np.ndarray) -> float:
    """Mean Hoyer (2004) sparsity of the columns: 0 for flat, 1 for one non-zero."""
    n = M.shape[0]
    if n < 2:
        return 0.0
    l1 = np.sum(np.abs(M), axis=0)
    l2 = np.sqrt(np.sum(M * M, axis=0))
    s = (math.sqrt(n) - l1 / np.maximum(l2, 1e-300)) / (math.sqrt(n) - 1.0)
    return float(np.mean(np.clip(s, 0.0, 1.0)))


def _q_sparsity(res: Any, spatial_shape: Any) -> float:
    return 1.0 - _hoyer(np.asarray(to_numpy(res.A), dtype=float))


def _q_smoothness(res: Any, spatial_shape: Any) -> float:
    if spatial_shape is None:
        raise ValueError("plausibility='smoothness' needs spatial_shape.")
    r = map_roughness(np.asarray(to_numpy(res.A), dtype=float), spatial_shape)
    return float(np.clip(np.nanmean(r), 0.0, 1.0))


def _q_negative(res: Any, spatial_shape: Any) -> float:
    q = 0.0
    for M in (res.A, res.S):
        M = np.asarray(to_numpy(M), dtype=float)
        q += float(np.sum(np.clip(-M, 0.0, None)) / max(np.sum(np.abs(M)), 1e-300))
    return q / 2.0


#: Built-in implausibility terms, each in [0, 1] (0 = plausible):
#: ``"sparsity"`` 1 - mean Hoyer sparsity of the maps; ``"smoothness"`` mean roughness of
#: the maps on the scan grid (about 1 for white noise); ``"negative_lobes"`` share of
#: negative mass in the factors (0 for NMF; for semi-NMF ``fit_options``).
PLAUSIBILITY: dict[str, Callable[[Any, Any], float]] = {
    "sparsity": _q_sparsity,
    "smoothness": _q_smoothness,
    "negative_lobes": _q_negative,
}


@dataclass
class LambdaSearch:
    """What :func:`select_lambdas` returns.

    Attributes
    ----------
    k : int
        Rank of every trial.
    method : str
        ``"grid"``, ``"random"`` or ``"bayes"``.
    names : list of str
        Searched strengths (``"sparsity"``, ``"smoothness"``).
    trials : list of dict
        Per trial: ``params``, ``stage``, ``cv_error``, ``implausibility``, ``score``,
        ``n_iter``, ``warnings`` (the engine's, e.g. collapsed components), ``seconds``.
    best : dict of str -> float
        The strengths of the lowest score.
    best_score : float
    scale : float
        Mean pixel norm of ``X`` (``sparsity`` is relative to it).
    settings : dict
        Every option (for provenance).
    """

    k: int
    method: str
    names: list[str]
    trials: list[dict]
    best: dict[str, float]
    best_score: float
    scale: float
    settings: dict = field(default_factory=dict)

    def regularizers(self, params: Mapping[str, float] | None = None) -> list:
        """The regularizer objects of ``params`` (default: the best)."""
        return _regularizers(dict(self.best if params is None else params), self.scale)

    def factorize_config(self) -> dict[str, Any]:
        """The ``[factorize]`` table of the best model (``unmix run --config`` reads it)."""
        regs = [_term_dict(r) for r in self.regularizers()]
        out: dict[str, Any] = {
            "k": self.k,
            "constraints": [{"type": "NonNegative"}, {"type": "UnitNorm"}],
        }
        if regs:
            out["regularizers"] = regs
        return out

    def plot(self, path: str | os.PathLike) -> str:
        """Score of every trial against each strength (PNG)."""
        from ._figures import plot_lambda_search

        return plot_lambda_search(self, path)

    def to_markdown(self) -> str:
        """The trials as a Markdown table, best first."""
        head = "| " + " | ".join([*self.names, "stage", "held-out error", "q", "score"]) + " |"
        lines = [head, "|" + "---|" * (len(self.names) + 4)]
        for t in sorted(self.trials, key=lambda t: t["score"]):
            vals = [f"{t['params'][n]:.4g}" for n in self.names]
            lines.append(
                "| "
                + " | ".join(
                    [
                        *vals,
                        str(t["stage"]),
                        f"{t['cv_error']:.5f}",
                        f"{t['implausibility']:.3f}",
                        f"{t['score']:.5f}",
                    ]
                )
                + " |"
            )
        return "\n".join(lines)


def _term_dict(term: Any) -> dict[str, Any]:
    """The term as a config table entry (``{type = ..., lam = ..., ...}``)."""
    return {**term.describe(), "lam": float(term.lam)}


def _regularizers(params: dict[str, float], scale: float) -> list:

    regs = []
    if params.get("sparsity", 0.0) > 0:
        regs.append(L1(float(params["sparsity"]) * scale))
    if params.get("smoothness", 0.0) > 0:
        regs.append(SpatialSmoothness(float(params["smoothness"])))
    return regs


def _ranges(params: Any, spatial_shape: Any) -> dict[str, tuple[float, float]]:
    """The log-scale range of every strength to search (in the order of the stages)."""
    if isinstance(params, str):
        params = [params]
    if not isinstance(params, Mapping):
        params = {p: DEFAULT_RANGES.get(p) for p in params}
    unknown = [p for p in params if p not in DEFAULT_RANGES]
    if unknown or not params:
        raise ValueError(
            f"unknown strengths {unknown or 'none given'}; search over "
            f"{sorted(DEFAULT_RANGES)} (e.g. params=('sparsity', 'smoothness'))."
        )
    ranges = {}
    for p in sorted(params, key=["sparsity", "smoothness"].index):
        lo, hi = (float(v) for v in params[p])
        if not 0.0 < lo < hi:
            raise ValueError(f"range of {p} must satisfy 0 < low < high; got ({lo}, {hi}).")
        ranges[p] = (lo, hi)
    if "smoothness" in ranges and spatial_shape is None:
        raise ValueError("searching 'smoothness' needs spatial_shape (the scan grid).")
    return ranges


def check_lambda_search(
    params: Any, *, spatial_shape: tuple[int, ...] | None = None, **options: Any
) -> dict[str, tuple[float, float]]:
    """Refuse a strength search's mistakes before anything is fitted: the strengths'
    names and ranges (``params``, as :func:`select_lambdas` takes them) and any of its
    other options given as keywords (``method=``, ``n_trials=``, ...).  The CLI checks
    ``--lambdas`` with it before its rank selection, which would otherwise run first;
    :func:`select_lambdas` makes its checks with it.  Returns the log-scale range of each
    strength to search.

    Raises
    ------
    ValueError
        An unknown strength, a bad range, ``smoothness`` without ``spatial_shape``, or an
        option outside its values (the message names it and what it accepts).
    """
    check_selection_params(options, LAMBDA_PARAMETERS, where="select_lambdas")
    return _ranges(params, spatial_shape)


@document_parameters(LAMBDA_PARAMETERS)
def select_lambdas(
    X: Any,
    k: int,
    *,
    params: Sequence[str] | Mapping[str, tuple[float, float]] = ("sparsity",),
    method: str = "grid",
    n_trials: int = 8,
    staged: bool = True,
    plausibility: str | Callable[[Any], float] | None = None,
    weight: float = 0.1,
    n_folds: int = 10,
    spatial_shape: Sequence[int] | None = None,
    random_state: int | None = 0,
    max_iter: int = 300,
    tol: float = 1e-5,
    fit_options: dict | None = None,
    progress: Callable[[int, int, dict], None] | None = None,
    executor: Any = None,
    groups: int | None = None,
) -> LambdaSearch:
    """Search the regularization strengths of a rank-``k`` model by held-out error.

    Each trial is scored by ``e_cv * (1 + weight * q)``, the held-out error times an
    implausibility penalty (see the module); the search is staged and includes the
    unregularized model.

    Parameters
    ----------
    X : array (n_pixels, n_channels)
        Non-negative data, dense (a sparse matrix raises ``TypeError``: the held-out
        entries are an engine mask of ``X``'s shape).
    {parameters}

    Returns
    -------
    LambdaSearch

    Raises
    ------
    ValueError, TypeError
        A parameter outside its values (the message names it and what it accepts),
        unknown strengths, bad ranges, smoothness without ``spatial_shape``; sparse
        ``X`` (``TypeError``).
    ImportError
        ``method="bayes"`` without Optuna installed.
    """
    given = {name: value for name, value in locals().items() if name != "X"}
    check_executor(executor, groups, task=_TEAM_TASK)  # first: its messages name the MPI setup
    opt = check_selection_params(given, LAMBDA_PARAMETERS, where="select_lambdas")
    ranges = check_lambda_search(params, spatial_shape=spatial_shape)  # options: above
    team = _Team.make(executor, groups, opt["method"])
    if opt["method"] == "bayes":
        _quiet_optuna()
    data = _HeldOut.make(X, n_folds, random_state, (fit_options or {}).get("loss"))
    names = list(ranges)
    stages = [[p] for p in names] if staged and len(names) > 1 else [names]
    per_stage = [n_trials ** len(st) if opt["method"] == "grid" else n_trials for st in stages]
    search = _Search(
        data, int(k), names, total=1 + sum(per_stage), **{n: opt[n] for n in _SEARCH_OPTIONS}
    )
    _run_stages(search, stages, ranges, opt["method"], n_trials, team)
    return _result(search, opt, ranges)


_TEAM_TASK = "split its trials into groups of ranks"
_SEARCH_OPTIONS = (
    "spatial_shape",
    "max_iter",
    "tol",
    "fit_options",
    "plausibility",
    "weight",
    "progress",
)


def _result(search: _Search, opt: dict[str, Any], ranges: dict) -> LambdaSearch:
    """The search's trials, its best strengths and every option (for provenance)."""
    best_t, plausibility = search.best(), opt["plausibility"]
    return LambdaSearch(
        k=int(opt["k"]),
        method=opt["method"],
        names=search.names,
        trials=search.trials,
        best=dict(best_t["params"]),
        best_score=float(best_t["score"]),
        scale=search.data.scale,
        settings={
            "ranges": {p: list(r) for p, r in ranges.items()},
            **{name: opt[name] for name in ("n_trials", "staged")},
            "plausibility": plausibility
            if isinstance(plausibility, str) or plausibility is None
            else getattr(plausibility, "__name__", "callable"),
            **{name: opt[name] for name in ("weight", "n_folds", "random_state")},
            "max_iter": opt["max_iter"],
            "tol": opt["tol"],
        },
    )


def _quiet_optuna() -> None:
    """Import Optuna (for ``method="bayes"``) and silence its per-trial log."""
    try:
        import optuna
    except ImportError as err:
        raise ImportError(
            "method='bayes' needs Optuna: pip install optuna (or 'unmix[select]')."
        ) from err
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass
class _HeldOut:
    """The data of every trial: ``X``, its scale and the entries held out of the fits."""

    X: Any
    scale: float
    seed: int
    rows: np.ndarray
    cols: np.ndarray
    mask: np.ndarray
    xh: np.ndarray
    xh_norm: float

    @classmethod
    def make(cls, X: Any, n_folds: int, random_state: int | None, loss: Any = None) -> _HeldOut:
        """A seeded ``1 / n_folds`` share of the entries of ``X`` held out; ``scale``, the
        unit of the strengths, is how much a unit of map moves a typical pixel's ``loss``
        (:func:`unmix.blocks.mean_row_scale`: the mean pixel norm for Frobenius)."""
        if is_sparse(X):
            raise TypeError(
                "select_lambdas needs dense X: its trials hold out entries through "
                "unmix.factorize's mask, an array of X's shape; pass X.toarray() "
                "(select_rank takes sparse X)."
            )
        X = ensure_2d_float(X)
        Xn = np.asarray(to_numpy(X), dtype=float)
        n, m = Xn.shape
        scale = mean_row_scale(Xn, beta_of(loss))
        seed = int(np.random.default_rng(random_state).integers(2**31 - 1))
        rows, cols = holdout_entries(HoldoutSpec("entries", int(n_folds), 0, seed), n, m)
        mask = np.ones((n, m), dtype=bool)
        mask[rows, cols] = False
        xh = Xn[rows, cols]
        xh_norm = max(float(np.sqrt(np.sum(xh * xh))), 1e-300)
        return cls(X, scale, seed, rows, cols, mask, xh, xh_norm)

    def error(self, A: np.ndarray, S: np.ndarray) -> float:
        """Relative error of the model ``A S`` on the held-out entries."""
        u = np.einsum("ij,ji->i", A[self.rows], S[:, self.cols])
        return float(np.sqrt(np.sum((u - self.xh) ** 2))) / self.xh_norm


@dataclass
class _Search:
    """The trials of a search: fits them, scores them and records them in order."""

    data: _HeldOut
    k: int
    names: list[str]
    spatial_shape: Sequence[int] | None
    max_iter: int
    tol: float
    fit_options: dict | None
    plausibility: str | Callable[[Any], float] | None
    weight: float
    total: int
    progress: Callable[[int, int, dict], None] | None
    trials: list[dict] = field(default_factory=list)

    def fit(self, values: dict[str, float], stage: str, sub: Any = None) -> dict:
        """One trial: fit with the strengths ``values`` (on the ranks of ``sub``), score."""
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            res = self._factorize(values, sub)
        for w in caught:  # e.g. components collapsing under a too strong penalty
            logger.info("lambda trial %s: %s", values, w.message)
        A = np.asarray(to_numpy(res.A), dtype=float)
        S = np.asarray(to_numpy(res.S), dtype=float)
        e = self.data.error(A, S)
        q = self._implausibility(res)
        return {
            "params": {p: float(values.get(p, 0.0)) for p in self.names},
            "stage": stage,
            "cv_error": e,
            "implausibility": q,
            "score": e * (1.0 + self.weight * q),
            "n_iter": int(res.n_iter),
            "warnings": [str(w.message) for w in caught],
            "seconds": time.perf_counter() - t0,
        }

    def _factorize(self, values: dict[str, float], sub: Any) -> Any:

        opts = dict(self.fit_options or {})
        opts.setdefault("constraints", [NonNegative(), UnitNorm()])
        res = factorize(
            self.data.X,
            self.k,
            regularizers=_regularizers(values, self.data.scale),
            mask=self.data.mask,
            spatial_shape=self.spatial_shape,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=self.data.seed,
            **opts,
            **({"executor": sub} if sub is not None else {}),
        )
        if sub is not None:  # each rank holds its rows of the maps: all of them
            res.A = np.concatenate(sub.allgather(to_numpy(res.A)), axis=0)
        return res

    def _implausibility(self, res: Any) -> float:
        p = self.plausibility
        qfun = PLAUSIBILITY.get(p) if isinstance(p, str) else p
        if qfun is None:
            return 0.0
        if isinstance(p, str):
            return float(qfun(res, self.spatial_shape))
        return float(qfun(res))

    def record(self, trial: dict) -> float:
        """Keep ``trial``, log it, report progress; its score."""
        self.trials.append(trial)
        logger.info(
            "lambda trial %d: %s score %.6g", len(self.trials), trial["params"], trial["score"]
        )
        if self.progress is not None:
            self.progress(len(self.trials), self.total, trial)
        return trial["score"]

    def evaluate(self, values: dict[str, float], stage: str) -> float:
        """Fit and record one trial; its score."""
        return self.record(self.fit(values, stage))

    def run(self, values: list[dict], stage: str, team: _Team | None) -> None:
        """Fit and record the trials ``values`` in order (in parallel on a team)."""
        if team is None:
            for v in values:
                self.evaluate(v, stage)
        else:
            for trial in team.run(values, stage, self.fit):
                self.record(trial)

    def best(self) -> dict:
        """The trial of the lowest score so far."""
        return min(self.trials, key=lambda t: t["score"])


def _run_stages(
    search: _Search,
    stages: list[list[str]],
    ranges: dict[str, tuple[float, float]],
    method: str,
    n_trials: int,
    team: _Team | None,
) -> None:
    """The unregularized baseline, then each stage with the best strengths of the stages
    before it fixed."""
    seed = search.data.seed
    fixed: dict[str, float] = {p: 0.0 for p in search.names}
    rng = np.random.default_rng([seed, 3])
    search.run([dict(fixed)], "baseline", team)
    for si, stage in enumerate(stages):
        label = "+".join(stage)
        cands = _candidates(
            stage, ranges, method, n_trials, rng, seed + si, fixed, search.evaluate, label
        )
        search.run([{**fixed, **v} for v in cands], label, team)
        best = search.best()["params"]
        fixed.update({p: best[p] for p in stage})
    if team is not None:
        team.groups.close()


def _candidates(stage, ranges, method, n_trials, rng, seed, fixed, evaluate, label):
    """Strengths to try in one stage (for Bayesian search the trials run in here)."""
    logr = {p: (math.log10(ranges[p][0]), math.log10(ranges[p][1])) for p in stage}
    if method == "grid":
        axes = [np.logspace(*logr[p], n_trials) for p in stage]
        mesh = np.meshgrid(*axes, indexing="ij")
        return [
            {p: float(v[idx]) for p, v in zip(stage, mesh, strict=True)}
            for idx in np.ndindex(mesh[0].shape)
        ]
    if method == "random":
        return [{p: float(10 ** rng.uniform(*logr[p])) for p in stage} for _ in range(n_trials)]
    import optuna

    study = optuna.create_study(
        direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed % (2**31))
    )

    def objective(trial: Any) -> float:
        vals = {p: trial.suggest_float(p, *ranges[p], log=True) for p in stage}
        return evaluate({**fixed, **vals}, label)

    study.optimize(objective, n_trials=n_trials)
    return []


class _Team:
    """The trials of one stage dealt over groups of MPI ranks (see
    :class:`unmix.executors.groups.Groups`)."""

    def __init__(self, executor: Any, groups: int | None) -> None:
        self.groups = Groups(executor, groups, task="select_lambdas")
        self.sub = self.groups.sub

    @classmethod
    def make(cls, executor: Any, groups: int | None, method: str) -> _Team | None:
        """A team of the executor's ranks (checked by :func:`check_executor`), or None."""
        if executor is None:
            return None
        if method == "bayes":
            raise ValueError(
                "method='bayes' draws each trial from the ones before it, so its trials "
                "cannot run in parallel; use method='grid' or 'random' with executor=."
            )
        return cls(executor, groups)

    def run(self, values: list[dict], stage: str, trial_of: Callable) -> list[dict]:
        """Every trial of ``values``, in order, on every rank."""
        sub = self.sub if self.sub.size > 1 else None
        work = [Work(i, 1.0) for i in range(len(values))]

        def fit(mine: list) -> list:
            return [(w.key, trial_of(values[w.key], stage, sub)) for w in mine]

        trials = dict(self.groups.run(work, fit))
        return [trials[i] for i in range(len(values))]
