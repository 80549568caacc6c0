"""Figures of a rank or lambda selection (PNG files, matplotlib without pyplot).

- :func:`plot_criteria`: every criterion against ``k``, each pick marked;
- :func:`plot_consensus`: the consensus matrices, pixels ordered by their average-linkage
  tree;
- :func:`plot_stability`: stability (worst cluster silhouette) against error, per ``k``;
- :func:`plot_uncertainty`: endmembers with confidence bands and the per-pixel spread
  of the maps;
- :func:`plot_lambda_search`: score of every tried regularization strength.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "consensus_figure",
    "criteria_figure",
    "plot_consensus",
    "plot_criteria",
    "plot_lambda_search",
    "plot_selection",
    "plot_stability",
    "plot_uncertainty",
    "stability_figure",
]

_SAVE = {"dpi": 110, "metadata": {"Software": None}}
_PANELS = (
    ("rel_error", "relative error ||X - AS|| / ||X||", "knee", True),
    ("cv_error", "held-out relative error", "cv", True),
    ("silhouette_min", "worst cluster silhouette", "silhouette", False),
    ("cophenetic", "cophenetic correlation", "cophenetic", False),
    ("dispersion", "dispersion", "dispersion", False),
    ("aic", "AIC", "aic", False),
    ("bic", "BIC", "bic", False),
    ("laplace_pca", "Laplace-PCA log evidence", "laplace_pca", False),
    ("new_component_angle", "new component: angle to nearest (deg)", "similarity", False),
)


def _save(fig: Figure, path: str | os.PathLike) -> str:
    fig.savefig(path, **_SAVE)
    return os.fspath(path)


def _col(table: list[dict], key: str) -> np.ndarray:
    return np.array([float(r.get(key, np.nan)) for r in table], dtype=float)


def plot_criteria(sel: Any, path: str | os.PathLike) -> str:
    """Write :func:`criteria_figure` as a PNG; returns ``path``."""
    return _save(criteria_figure(sel), path)


def criteria_figure(sel: Any) -> Figure:
    """Every criterion against ``k`` (one panel each); the rank it picks is circled and
    the recommendation is a dashed vertical line."""
    ks = np.asarray(sel.ks)
    panels = [p for p in _PANELS if np.isfinite(_col(sel.table, p[0])).any()]
    ncol = 4
    nrow = max(1, -(-len(panels) // ncol))
    fig = Figure(figsize=(3.4 * ncol, 2.7 * nrow), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    for ax, (key, label, crit, logy) in zip(axes, panels, strict=False):
        y = _col(sel.table, key)
        ax.plot(ks, y, "o-", color="C0", ms=4)
        if logy and np.all(y[np.isfinite(y)] > 0):
            ax.set_yscale("log")
        if key == "new_component_angle":
            bad = np.array([bool(r.get("too_large")) for r in sel.table])
            ax.plot(ks[bad], y[bad], "x", color="C3", ms=8, label="repeat / noise-like")
            ax.legend(fontsize=7)
        pick = sel.picks.get(crit)
        if pick is not None and pick in sel.ks:
            i = sel.ks.index(pick)
            ax.plot([pick], [y[i]], "o", mfc="none", mec="C3", ms=11, mew=2)
        ax.axvline(sel.recommended, ls="--", color="0.5", lw=1)
        ax.set_title(f"{label}\n{crit}: k = {pick}", fontsize=8)
        ax.set_xlabel("k", fontsize=8)
        ax.set_xticks(ks)
        ax.tick_params(labelsize=7)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    noise = (sel.settings or {}).get("noise")
    model = " (fits on Poisson-scaled counts)" if noise == "poisson" else ""
    fig.suptitle(f"Rank selection: recommended k = {sel.recommended}{model}", fontsize=10)
    return fig


def _tree_order(C: np.ndarray) -> np.ndarray:
    from scipy.cluster.hierarchy import leaves_list, linkage

    if C.shape[0] < 3:
        return np.arange(C.shape[0])
    i, j = np.triu_indices(C.shape[0], k=1)
    return leaves_list(linkage(1.0 - C[i, j], method="average"))


def plot_consensus(sel: Any, path: str | os.PathLike) -> str:
    """Write :func:`consensus_figure` as a PNG; returns ``path``."""
    return _save(consensus_figure(sel), path)


def consensus_figure(sel: Any) -> Figure:
    """Consensus matrices per ``k`` (pixels ordered by their tree; 1 = always together)."""
    ks = [k for k in sel.ks if k in sel.consensus]
    if not ks:
        raise ValueError("no consensus matrices (use n_restarts >= 3).")
    ncol = min(5, len(ks))
    nrow = -(-len(ks) // ncol)
    fig = Figure(figsize=(2.6 * ncol, 2.7 * nrow), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    im = None
    for ax, k in zip(axes, ks, strict=False):
        C = np.asarray(sel.consensus[k])
        o = _tree_order(C)
        im = ax.imshow(C[np.ix_(o, o)], vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
        coph = sel.row(k).get("cophenetic", np.nan)
        ax.set_title(f"k = {k}, coph. {coph:.3f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(ks) :]:
        ax.set_visible(False)
    if im is not None:
        fig.colorbar(im, ax=list(axes[: len(ks)]), shrink=0.8, label="consensus")
    return fig


def plot_stability(sel: Any, path: str | os.PathLike) -> str:
    """Write :func:`stability_figure` as a PNG; returns ``path``."""
    return _save(stability_figure(sel), path)


def stability_figure(sel: Any) -> Figure:
    """NMFk's picture: worst cluster silhouette and relative error against ``k``."""
    ks = np.asarray(sel.ks)
    fig = Figure(figsize=(5.5, 3.4), layout="constrained")
    ax = fig.subplots()
    ax.plot(ks, _col(sel.table, "silhouette_min"), "o-", color="C0", label="worst silhouette")
    ax.plot(ks, _col(sel.table, "silhouette_mean"), "s:", color="C0", ms=3, label="mean")
    thr = sel.settings.get("silhouette_threshold")
    if thr is not None:
        ax.axhline(thr, color="C0", lw=0.8, ls="--")
    ax.set_ylabel("silhouette", color="C0")
    ax.set_xlabel("k")
    ax.set_xticks(ks)
    ax.set_ylim(min(-0.1, np.nanmin(_col(sel.table, "silhouette_min")) - 0.05), 1.05)
    ax2 = ax.twinx()
    ax2.plot(ks, _col(sel.table, "rel_error"), "^-", color="C3", label="relative error")
    if np.isfinite(_col(sel.table, "cv_error")).any():
        ax2.plot(ks, _col(sel.table, "cv_error"), "v--", color="C1", label="held-out error")
    ax2.set_yscale("log")
    ax2.set_ylabel("relative error", color="C3")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower left")
    ax.set_title("Stability vs error (NMFk)", fontsize=9)
    return fig


def plot_uncertainty(
    unc: Any,
    path: str | os.PathLike,
    *,
    axis: Any = None,
    names: Sequence[str] | None = None,
) -> str:
    """Endmembers (median) with their band (top) and per-pixel spread maps (bottom)."""
    k, m = unc.S_median.shape
    x = np.arange(m) if axis is None else np.asarray(axis, dtype=float)
    names = list(names) if names is not None else [f"component {j}" for j in range(k)]
    maps = unc.spatial_shape is not None and len(unc.spatial_shape) == 2
    fig = Figure(figsize=(3.0 * k, 5.4 if maps else 2.8), layout="constrained")
    axes = fig.subplots(2 if maps else 1, k, squeeze=False)
    pct = round(100 * unc.level)
    for j in range(k):
        ax = axes[0, j]
        ax.fill_between(
            x,
            unc.S_lower[j],
            unc.S_upper[j],
            color=f"C{j % 10}",
            alpha=0.3,
            lw=0,
            label=f"{pct} % band",
        )
        ax.plot(x, unc.S_median[j], color=f"C{j % 10}", lw=1, label="median")
        ax.set_title(names[j], fontsize=8)
        ax.tick_params(labelsize=7)
        if j == 0:
            ax.legend(fontsize=7)
        if maps:
            ax = axes[1, j]
            im = ax.imshow(unc.maps("std")[..., j], cmap="magma", interpolation="nearest")
            ax.set_title(f"map std, {names[j]}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(f"Uncertainty over {unc.n_runs} runs", fontsize=9)
    return _save(fig, path)


def plot_lambda_search(search: Any, path: str | os.PathLike) -> str:
    """Score of every trial against each regularization strength (log axes)."""
    names = list(search.names)
    fig = Figure(figsize=(3.6 * max(1, len(names)), 3.0), layout="constrained")
    axes = fig.subplots(1, max(1, len(names)), squeeze=False)[0]
    score = np.array([t["score"] for t in search.trials], dtype=float)
    for ax, name in zip(axes, names, strict=False):
        v = np.array([t["params"][name] for t in search.trials], dtype=float)
        ax.scatter(np.maximum(v, 1e-12), score, s=14, c=np.arange(len(v)), cmap="viridis")
        ax.plot([search.best[name]], [search.best_score], "*", color="C3", ms=12)
        ax.set_xscale("log")
        ax.set_xlabel(name, fontsize=8)
        ax.set_ylabel("score (lower is better)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"Lambda search ({search.method}): best {search.best}", fontsize=9)
    return _save(fig, path)


def plot_selection(sel: Any, outdir: str | os.PathLike) -> dict[str, str]:
    """Write every figure of a rank selection into ``outdir``; paths by name."""
    outdir = os.fspath(outdir)
    os.makedirs(outdir, exist_ok=True)
    out = {"criteria": plot_criteria(sel, os.path.join(outdir, "selection_criteria.png"))}
    if sel.consensus:
        out["consensus"] = plot_consensus(sel, os.path.join(outdir, "selection_consensus.png"))
    if np.isfinite(_col(sel.table, "silhouette_min")).any():
        out["stability"] = plot_stability(sel, os.path.join(outdir, "selection_stability.png"))
    if sel.runs.get(sel.recommended):
        try:
            unc = sel.uncertainty()
        except ValueError:
            unc = None
        if unc is not None:
            out["uncertainty"] = plot_uncertainty(
                unc, os.path.join(outdir, "selection_uncertainty.png")
            )
    return out
