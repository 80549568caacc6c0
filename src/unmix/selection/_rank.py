"""Rank selection: :func:`select_rank` and its result, :class:`RankSelection`.

For every candidate rank ``k`` the same set of fits feeds every criterion: ``n_restarts``
restarts (the first on ``X``, the others on bootstrap draws of the pixels, each started by
SPA on the pixels it kept) and ``cv_repeats`` fits with held-out entries.  From them:

- ``cophenetic``, ``dispersion``: consensus of the pixel clusterings over the restarts
  (Brunet et al. 2004; Kim & Park 2007);
- ``silhouette``: stability of the endmembers over the perturbed restarts (NMFk);
- ``cv``: held-out error of the masked fits (Wold / Owen & Perry entry hold-out);
- ``aic``, ``bic``: information criteria with the model's dimension ``k (n + m - k) + 1``;
- ``laplace_pca``: Minka's Laplace evidence for PCA of ``X`` (no fit needed);
- ``knee``: the knee of the log error curve;
- ``similarity``: Kannan et al.'s rule (a new component repeats an old one or is noise).

Each criterion picks a rank by its own rule (see :data:`RULES`); all are reported.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._backend import backend_of, to_numpy
from .._params import document_parameters
from .._validation import check_nonnegative, ensure_2d_float, finite_report
from ..engine import fingerprint
from ..executors.groups import check_executor
from ..preprocessing import PoissonScaling, is_counts
from ._notebook import selection_html, selection_plot
from ._params import RANK_PARAMETERS, check_selection_params
from ._persist import read_selection, save_selection, selection_markdown
from ._plan import FitRecord
from ._runner import Settings, open_store, plan_fits, run_fits
from ._sparse import (
    as_sparse_input,
    is_sparse,
    sparse_is_counts,
    sparse_signature,
)
from ._store import Store
from ._table import criteria_table, pick

logger = logging.getLogger("unmix")

__all__ = ["CRITERIA", "RULES", "RankSelection", "recommend", "select_rank", "voters"]

CRITERIA = (
    "cophenetic",
    "dispersion",
    "silhouette",
    "cv",
    "aic",
    "bic",
    "laplace_pca",
    "knee",
    "similarity",
)
RULES = {
    "cophenetic": "the rank just before the cophenetic correlation first falls by more than "
    "`consensus_drop` (Brunet et al.: 'where it begins to fall'); the largest value if it "
    "never does",
    "dispersion": "as for cophenetic, on the dispersion",
    "silhouette": "the largest rank whose worst endmember cluster has a mean silhouette >= "
    "`silhouette_threshold` (NMFk)",
    "cv": "the smallest rank whose held-out error is within `cv_tolerance` of the minimum",
    "aic": "the minimum",
    "bic": "the minimum",
    "laplace_pca": "the maximum of the evidence",
    "knee": "the point of the log relative error curve farthest below its chord",
    "similarity": "the rank before the first one whose new component repeats an old one "
    "(angle < `repeat_deg`) or whose components look like noise (roughness > "
    "`noise_roughness`)",
}
VOTE_ORDER = ("cv", "bic", "silhouette", "similarity", "knee", "aic", "laplace_pca")


@dataclass
class RankSelection:
    """What :func:`select_rank` returns.

    Attributes
    ----------
    ks : list of int
        Candidate ranks.
    table : list of dict
        One row per rank with every criterion's value (``rel_error`` =
        ``||X - A S||_F / ||X||_F`` of the best restart, ``cv_error`` = relative held-out
        error, ``silhouette_min``, ``cophenetic``, ``aic``, ``bic``, ...).
    picks : dict of str -> int or None
        The rank each criterion chooses (rules in :data:`RULES`).
    recommended : int
        The recommendation: the rank most criteria pick, ties broken in the order
        ``cv, bic, silhouette, similarity, knee, aic, laplace_pca``; a pick at the
        largest candidate rank does not vote (the criterion may improve beyond it).
    settings : dict
        Every option of the selection (for provenance).
    consensus : dict of int -> ndarray
        Consensus matrices over the pixel subsample, per rank.
    runs : dict of int -> list of FitRecord
        The restarts per rank (factors ``A`` (pixels, k) and ``S`` (k, channels)); empty
        after :meth:`load`.
    timings : dict
        Wall and CPU seconds of the fits and of the criteria.
    """

    ks: list[int]
    table: list[dict]
    picks: dict[str, int | None]
    recommended: int
    settings: dict
    consensus: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    runs: dict[int, list[FitRecord]] = field(default_factory=dict, repr=False)
    timings: dict[str, float] = field(default_factory=dict)
    spatial_shape: tuple[int, ...] | None = None

    def row(self, k: int) -> dict:
        """The table row of rank ``k``."""
        for r in self.table:
            if r["k"] == k:
                return r
        raise KeyError(f"k={k} is not among the candidate ranks {self.ks}.")

    def best_fit(self, k: int | None = None) -> FitRecord:
        """The restart with the lowest error at rank ``k`` (default: the recommended)."""
        k = self.recommended if k is None else int(k)
        if k not in self.runs:
            raise KeyError(f"no fits kept for k={k} (a loaded selection keeps none).")
        return min(self.runs[k], key=lambda r: r.sse)

    def uncertainty(self, k: int | None = None, **kw: Any) -> Any:
        """Bands on endmembers and spread of maps over the restarts at rank ``k``."""
        from ._uncertainty import uncertainty_from_runs

        k = self.recommended if k is None else int(k)
        if k not in self.runs:
            raise KeyError(f"no fits kept for k={k} (a loaded selection keeps none).")
        return uncertainty_from_runs(self.runs[k], spatial_shape=self.spatial_shape, **kw)

    def run_args(self, k: int | None = None) -> str:
        """The ``unmix run`` options that fit the chosen model, e.g. ``-k 3``."""
        return f"-k {self.recommended if k is None else int(k)}"

    def to_markdown(self) -> str:
        """The table and the picks as Markdown."""
        return selection_markdown(self)

    def save(self, path: str | os.PathLike) -> str:
        """Write ``.json`` (table, picks, settings) or ``.h5`` (plus consensus matrices and
        the best endmembers per rank); returns the path."""
        return save_selection(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> RankSelection:
        """Read a selection written by :meth:`save` (without the fits)."""
        return cls(**read_selection(path))

    def plot(self, outdir: str | os.PathLike | None = None, *, kind: str = "criteria") -> Any:
        """Without ``outdir``: the matplotlib figure ``kind`` (``"criteria"``,
        ``"consensus"`` or ``"stability"``), for notebooks. With ``outdir``: write every
        figure there as PNG files and return their paths by name."""
        if outdir is None:
            return selection_plot(self, kind=kind)
        from ._figures import plot_selection

        return plot_selection(self, outdir)

    def _repr_html_(self) -> str:
        return selection_html(self)


#: the ranks tried when none are given (cut to what X allows)
DEFAULT_KS = range(2, 12)


def _check_ks(ks: Iterable[int] | None, n: int, m: int) -> list[int]:
    """The sorted candidate ranks; None: :data:`DEFAULT_KS` within ``[2, min(n, m) - 1]``."""
    hi = min(n, m) - 1
    example = f"range(2, {min(DEFAULT_KS.stop, hi + 1)})" if hi >= 2 else "none fits"
    if ks is None:
        ks = [k for k in DEFAULT_KS if k <= hi]
        if not ks:
            raise ValueError(
                f"X of shape ({n}, {m}) is too small to choose a rank: comparing ranks "
                "needs k >= 2 and k <= min(n_pixels, n_channels) - 1, so at least 3 "
                "pixels and 3 channels."
            )
    try:
        out = sorted({int(k) for k in ks})
    except (TypeError, ValueError):
        raise TypeError(f"ks must be integers, e.g. {example}; got {ks!r}.") from None
    bad = [k for k in out if k < 2 or k > hi]
    if not out or bad:
        raise ValueError(
            f"ks out of range: {bad or 'no ranks given'}; every k must lie in "
            f"[2, min(n_pixels, n_channels) - 1] = [2, {hi}] for X of shape ({n}, {m}) "
            f"(k = 1 has no clustering to compare); e.g. ks={example}."
        )
    return out


def _check_criteria(criteria: Sequence[str] | None, n_restarts: int, cv_repeats: int) -> list:
    chosen = list(CRITERIA if criteria is None else criteria)
    unknown = [c for c in chosen if c not in CRITERIA]
    if unknown:
        raise ValueError(f"unknown criteria {unknown}; choose from {list(CRITERIA)}.")
    needs = [c for c in chosen if c in ("cophenetic", "dispersion", "silhouette")]
    if needs and n_restarts < 3:
        raise ValueError(
            f"n_restarts={n_restarts} is too few restarts for consensus and stability "
            f"({', '.join(needs)}): use n_restarts >= 3 (10 recommended), or leave these "
            "criteria out with criteria=[...]."
        )
    if "cv" in chosen and cv_repeats < 1:
        raise ValueError("criterion 'cv' needs cv_repeats >= 1 held-out fits per rank.")
    return chosen


@document_parameters(RANK_PARAMETERS)
def select_rank(
    X: Any,
    ks: Iterable[int] | None = None,
    *,
    n_restarts: int = 10,
    criteria: Sequence[str] | None = None,
    cv_repeats: int = 2,
    holdout: str = "entries",
    cv_fraction: float = 0.1,
    spatial_shape: Sequence[int] | None = None,
    random_state: int | None = 0,
    n_jobs: int = 1,
    executor: Any = None,
    groups: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = True,
    progress: Any = False,
    max_iter: int = 1000,
    tol: float = 1e-4,
    fit_options: dict | None = None,
    consensus_pixels: int = 1000,
    silhouette_threshold: float = 0.7,
    cv_tolerance: float = 0.005,
    consensus_drop: float = 0.005,
    repeat_deg: float = 10.0,
    noise_roughness: float = 0.5,
    noise: str = "auto",
) -> RankSelection:
    r"""Choose the number of components ``k`` of ``X ~= A @ S`` with several criteria.

    Every fit minimizes ``1/2 sum_ij w_i M_ij (X_ij - (A S)_ij)^2`` over ``A >= 0``
    (pixels, k) and ``S >= 0`` (k, channels), with pixel weights ``w`` (a bootstrap draw,
    or ones) and an entry mask ``M`` (0 on held-out entries, or ones); see the module
    for the criteria and :data:`RULES` for how each picks a rank.

    Parameters
    ----------
    X : array or sparse matrix (pixels, channels)
        Non-negative data, one spectrum per row (NumPy, PyTorch or CuPy; float32 stays
        float32).  On a GPU all fits of the selection run as one batch.  Sparse ``X``
        (SciPy, pydata/sparse) is used as CSR and never made dense; its held-out
        entries are a Latin pattern of blocks (:mod:`unmix.selection._sparse`), and
        with ``fit_options`` the ``cv`` criterion needs dense ``X``.
    {parameters}

    Returns
    -------
    RankSelection

    Raises
    ------
    ValueError, TypeError
        A parameter outside its values (the message names it and what it accepts), bad
        ``ks`` (out of range), too few restarts for the chosen criteria, negative or
        non-finite ``X``, a checkpoint that belongs to other data or settings,
        ``groups`` without an MPI executor or beyond its number of ranks, or sparse
        ``X`` with ``fit_options`` and the ``cv`` criterion.
    """
    given = {name: value for name, value in locals().items() if name != "X"}
    t0, c0 = time.perf_counter(), time.process_time()
    _check_executor(executor, groups, n_jobs)  # first: its messages name the MPI setup
    opt = check_selection_params(given, RANK_PARAMETERS, where="select_rank")
    if is_sparse(X):
        X = as_sparse_input(X)  # CSR, never densified
    else:
        X = ensure_2d_float(X)
        finite_report(X)
    _check_sign(X, engine=fit_options is not None)
    X, opt["noise"] = _noise_model(X, opt["noise"])
    n, m = (int(s) for s in X.shape)
    ks = _check_ks(ks, n, m)
    chosen = _check_criteria(criteria, n_restarts, cv_repeats)
    _check_grid(spatial_shape, n)
    seed = int(np.random.default_rng(random_state).integers(2**31 - 1))
    options = _record(opt, X, ks, chosen)
    reps, holdout = options["cv_repeats"], options.get("holdout_pattern", options["holdout"])
    _check_sparse_engine(X, opt["fit_options"], reps)
    specs = plan_fits(ks, n_restarts, reps, holdout, cv_fraction, seed)
    store, done = _open_checkpoint(checkpoint, X, options, specs, resume, executor)
    return _run(X, specs, opt, options, (store, done), seed, (t0, c0))


def _noise_model(X: Any, noise: str) -> tuple[Any, str]:
    """``X`` as the fits see it under the noise model (``"auto"`` decided by the data;
    for sparse ``X`` from its stored entries, and the scaling keeps it sparse)."""
    sparse_x = is_sparse(X)
    if noise == "auto":
        counts = sparse_is_counts(X) if sparse_x else is_counts(X)
        noise = "poisson" if counts else "gaussian"
    if noise == "poisson":
        logger.info("select_rank: counts - fits on Poisson-scaled X (Keenan & Kotula)")
        step = PoissonScaling()  # sparse X: rows and columns scaled, X stays CSR
        X = step.fit_transform_sparse(X) if sparse_x else step.fit_transform(X)
    return X, noise


def _check_sparse_engine(X: Any, fit_options: dict | None, cv_repeats: int) -> None:
    """Held-out fits through :func:`unmix.factorize` need a dense entry mask."""
    if fit_options is not None and cv_repeats and is_sparse(X):
        raise ValueError(
            "fit_options with sparse X: the held-out fits of the 'cv' criterion run "
            "through unmix.factorize with an entry mask of X's shape, which sparse X does "
            "not get; leave fit_options out (the batched Frobenius fits hold out entries "
            "of sparse X from its nonzeros), or leave 'cv' out (criteria=[...] without "
            "'cv'), or pass dense X (X.toarray())."
        )


def _record(opt: dict[str, Any], X: Any, ks: list[int], chosen: list[str]) -> dict[str, Any]:
    """Every option of the selection, as its settings and its checkpoint record them."""
    fit_options, grid = opt["fit_options"], opt["spatial_shape"]
    return {
        "ks": ks,
        "n_restarts": opt["n_restarts"],
        "criteria": chosen,
        "cv_repeats": opt["cv_repeats"] if "cv" in chosen else 0,
        **{name: opt[name] for name in ("holdout", "cv_fraction", "random_state")},
        "max_iter": opt["max_iter"],
        "tol": opt["tol"],
        "fit_options": None
        if fit_options is None
        else {k: repr(v) for k, v in fit_options.items()},
        **{name: opt[name] for name in _RULE_OPTIONS},
        "spatial_shape": None if grid is None else list(grid),
        "noise": opt["noise"],
        "shape": [int(s) for s in X.shape],
        "dtype": str(X.dtype),
        **_sparse_record(X, opt["holdout"]),
    }


def _sparse_record(X: Any, holdout: str) -> dict[str, Any]:
    """For sparse ``X``: its stored entries and the hold-out pattern its fits use."""
    if not is_sparse(X):
        return {}
    pattern = "latin" if holdout == "entries" else holdout
    return {"sparse": True, "nnz": int(X.nnz), "holdout_pattern": pattern}


_RULE_OPTIONS = (
    "consensus_pixels",
    "silhouette_threshold",
    "cv_tolerance",
    "consensus_drop",
    "repeat_deg",
    "noise_roughness",
)


def _run(X, specs, opt, options, checkpoint, seed, start) -> RankSelection:
    """Run the fits the checkpoint does not hold, then the criteria; with the timings."""
    (store, done), (t0, c0) = checkpoint, start
    settings = Settings(
        max_iter=int(opt["max_iter"]), tol=float(opt["tol"]), fit_options=opt["fit_options"]
    )
    t_fit, c_fit = time.perf_counter(), time.process_time()
    recs = run_fits(
        X,
        specs,
        settings,
        n_jobs=opt["n_jobs"],
        store=store,
        done=done,
        progress=opt["progress"],
        executor=opt["executor"],
        groups=opt["groups"],
    )
    t_fit, c_fit = time.perf_counter() - t_fit, time.process_time() - c_fit
    t_crit = time.perf_counter()
    ks, chosen = options["ks"], options["criteria"]
    sel = _assemble(X, ks, recs, chosen, options, opt["spatial_shape"], seed)
    sel.timings = {
        "fits_wall": t_fit,
        "fits_cpu_parent": c_fit,
        "criteria_wall": time.perf_counter() - t_crit,
        "total_wall": time.perf_counter() - t0,
        "total_cpu_parent": time.process_time() - c0,
        "n_fits": len(specs),
        "n_fits_resumed": len(done),
    }
    logger.info(
        "select_rank: recommended k=%d (picks %s) in %.1f s",
        sel.recommended,
        sel.picks,
        sel.timings["total_wall"],
    )
    return sel


def _check_grid(spatial_shape: Sequence[int] | None, n: int) -> None:
    """The scan grid holds the ``n`` pixels of ``X``."""
    if spatial_shape is not None and int(np.prod(spatial_shape)) != n:
        raise ValueError(
            f"spatial_shape {tuple(spatial_shape)} has {int(np.prod(spatial_shape))} pixels; "
            f"X has {n} rows."
        )


def _open_checkpoint(
    checkpoint: str | os.PathLike | None,
    X: Any,
    options: dict,
    specs: list,
    resume: bool,
    executor: Any,
) -> tuple[Store | None, dict[str, FitRecord]]:
    """The checkpoint store (or None) and the fits of ``specs`` it already holds."""
    if checkpoint is None:
        return None, {}
    fp_keys = ("ks", "n_restarts", "criteria", "cv_repeats", "holdout", "cv_fraction")
    fp = fingerprint(
        {k: options[k] for k in (*fp_keys, "random_state", "max_iter", "tol", "fit_options")},
        _signature(X),
    )
    store = Store(checkpoint, fp, options)
    done = open_store(store, resume=resume, executor=executor)
    return store, {k: v for k, v in done.items() if k in {s.key for s in specs}}


def _check_executor(executor: Any, groups: int | None, n_jobs: int) -> None:
    """An MPI executor (or none), a group count that fits its ranks, not both n_jobs."""
    check_executor(executor, groups, task="run a selection's fits")
    if executor is not None and n_jobs != 1:
        raise ValueError(
            f"n_jobs={n_jobs} and an MPI executor: the ranks already run the fits in "
            "parallel; leave n_jobs=1 (set groups= to choose how the ranks share them)."
        )


def _check_sign(X: Any, *, engine: bool) -> None:
    """Negative noise is fine for Frobenius NMF; a mostly negative or centred X is not.
    (Sparse ``X``: its stored entries.)"""
    V = np.asarray(X.data) if is_sparse(X) else X
    be = backend_of(V)
    xp = be.xp
    if engine or V.size == 0 or bool(xp.min(V) >= 0):
        if engine:
            check_nonnegative(X, why="rank selection by NMF")
        return
    Xd = be.acc(V)
    neg = float(xp.sum(xp.clip(-Xd, 0.0, None)))
    pos = float(xp.sum(xp.clip(Xd, 0.0, None)))
    if neg > 0.1 * pos:
        check_nonnegative(X, why="rank selection by NMF (more than 10% negative mass)")
    logger.info("X has negative entries (%.2g%% of the mass): kept as noise.", 100 * neg / pos)


def _signature(X: Any) -> str:
    if is_sparse(X):
        return sparse_signature(X)
    Xn = to_numpy(X)
    step = max(1, Xn.shape[0] // 64)
    return f"{Xn.shape}:{Xn.dtype}:{float(np.sum(Xn, dtype=float)):.17g}:" + ",".join(
        f"{float(v):.12g}" for v in np.sum(Xn[::step], axis=1, dtype=float)
    )


def _assemble(X, ks, recs, chosen, opt, spatial_shape, seed) -> RankSelection:
    """Every criterion's value per rank, the picks and the recommendation."""
    table, consensus, runs = criteria_table(X, ks, recs, chosen, opt, spatial_shape, seed)
    picks = {c: pick(c, table, opt) for c in chosen}
    return RankSelection(
        ks=list(ks),
        table=table,
        picks=picks,
        recommended=recommend(picks, ks),
        settings=opt,
        consensus=consensus,
        runs=runs,
        spatial_shape=None if spatial_shape is None else tuple(spatial_shape),
    )


def voters(picks: dict[str, int | None], ks: Sequence[int]) -> dict[str, int]:
    """The picks that vote: a pick at the largest candidate rank does not (the
    criterion may still improve beyond the range; extend ``ks`` to see)."""
    top = max(ks)
    return {c: int(k) for c, k in picks.items() if k is not None and (k < top or len(ks) < 3)}


def recommend(picks: dict[str, int | None], ks: Sequence[int]) -> int:
    """The rank most voting criteria pick (:func:`voters`); ties broken by
    :data:`VOTE_ORDER`, then the smaller rank.  Without any vote, the largest pick, else
    the smallest candidate."""
    votes = Counter(voters(picks, ks).values())
    if not votes:
        given = [k for k in picks.values() if k is not None]
        return int(max(given)) if given else int(min(ks))
    top = max(votes.values())
    tied = [k for k, v in votes.items() if v == top]
    for c in VOTE_ORDER:
        if picks.get(c) in tied:
            return int(picks[c])
    return int(min(tied))
