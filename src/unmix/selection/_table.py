"""The criteria table of a rank selection: every criterion's value per rank, and each
criterion's pick (the rules are :data:`unmix.selection.RULES`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._backend import backend_of, to_numpy
from ._criteria import (
    component_similarity,
    consensus_matrix,
    cophenetic_correlation,
    dispersion,
    information_criteria,
    knee_point,
    laplace_pca_evidence,
    pixel_labels,
)
from ._plan import FitRecord
from ._sparse import is_sparse, laplace_gram
from ._stability import cluster_silhouettes

__all__ = ["criteria_table", "pick"]


def criteria_table(
    X: Any,
    ks: Sequence[int],
    recs: dict[str, FitRecord],
    chosen: Sequence[str],
    opt: dict,
    spatial_shape: Sequence[int] | None,
    seed: int,
) -> tuple[list[dict], dict[int, np.ndarray], dict[int, list[FitRecord]]]:
    """One row per rank of every criterion's value, the consensus matrices and the
    restarts per rank, from the fits ``recs`` (keyed ``k{k}/r{r}`` and ``k{k}/cv{f}``)."""
    n = int(X.shape[0])
    norm2 = _norm2(X)
    sub = np.sort(
        np.random.default_rng([seed, 5]).choice(n, min(n, opt["consensus_pixels"]), False)
    )
    evidence = [np.nan] * len(ks)
    if "laplace_pca" in chosen:
        evidence = laplace_pca_evidence(laplace_gram(X) if is_sparse(X) else to_numpy(X), ks)
    table, consensus, runs, prev_S = [], {}, {}, None
    for i, k in enumerate(ks):
        rr = [recs[f"k{k}/r{r}"] for r in range(opt["n_restarts"])]
        runs[k] = rr
        row, best = _error_columns(rr, k, X.shape, norm2, float(evidence[i]))
        if opt["n_restarts"] >= 3:
            consensus[k] = _consensus_columns(row, rr, best, sub)
        if opt["cv_repeats"]:
            _cv_columns(row, [recs[f"k{k}/cv{f}"] for f in range(opt["cv_repeats"])])
        prev_S = _similarity_columns(row, rr[best], prev_S, spatial_shape, opt)
        table.append(row)
    return table, consensus, runs


def _norm2(X: Any) -> float:
    """``||X||_F^2`` (float64; from the stored entries of sparse ``X``)."""
    if is_sparse(X):
        v = np.asarray(X.data, dtype=np.float64)
        return float(v @ v)
    be = backend_of(X)
    return float(be.xp.sum(be.acc(X) * be.acc(X)))


def _error_columns(
    rr: list[FitRecord], k: int, shape: Any, norm2: float, evidence: float
) -> tuple[dict, int]:
    """The row's fit error, information criteria and convergence; the best restart."""
    n, m = (int(s) for s in shape)
    sse = np.array([r.sse for r in rr])
    best = int(np.argmin(sse))
    ic = information_criteria(sse[best], k, n, m)
    row = {
        "k": k,
        "rel_error": float(np.sqrt(sse[best] / norm2)),
        "sse": float(sse[best]),
        "rel_error_spread": float(np.sqrt(np.max(sse) / norm2) - np.sqrt(sse[best] / norm2)),
        "aic": ic["aic"],
        "bic": ic["bic"],
        "n_params": ic["n_params"],
        "laplace_pca": evidence,
        "iterations": float(np.mean([r.n_iter for r in rr])),
        "not_converged": int(sum(r.stop_reason != "tol" for r in rr)),
    }
    return row, best


def _consensus_columns(row: dict, rr: list[FitRecord], best: int, sub: np.ndarray) -> np.ndarray:
    """Adds consensus and stability over the restarts to ``row``; the consensus matrix."""
    labels = np.stack([pixel_labels(to_numpy(r.A)[sub], to_numpy(r.S)) for r in rr])
    Cm = consensus_matrix(labels)
    st = cluster_silhouettes([to_numpy(r.S) for r in rr], reference=best)
    row.update(
        cophenetic=cophenetic_correlation(Cm),
        dispersion=dispersion(Cm),
        silhouette_min=st["min_cluster"],
        silhouette_mean=st["mean"],
    )
    return Cm


def _cv_columns(row: dict, cv: list[FitRecord]) -> None:
    """Adds the held-out error of the masked fits ``cv`` to ``row``."""
    h_sse = sum(c.heldout_sse for c in cv)
    row["cv_error"] = float(np.sqrt(h_sse / max(sum(c.heldout_ss for c in cv), 1e-300)))
    row["cv_mse"] = float(h_sse / max(sum(c.heldout_n for c in cv), 1))


def _similarity_columns(
    row: dict, bestrec: FitRecord, prev_S: Any, spatial_shape: Any, opt: dict
) -> np.ndarray:
    """Adds Kannan et al.'s repeat / noise test of the best restart against the
    previous rank's endmembers ``prev_S`` to ``row``; the best restart's endmembers."""
    sim = component_similarity(
        prev_S,
        to_numpy(bestrec.S),
        A=to_numpy(bestrec.A) if bestrec.A is not None else None,
        spatial_shape=spatial_shape,
        repeat_deg=opt["repeat_deg"],
        noise_roughness=opt["noise_roughness"],
    )
    row.update(
        new_component_angle=sim["repeat_angle"],
        spectrum_roughness=sim["roughness"],
        map_roughness=sim["map_roughness"],
        repeats=sim["repeats"],
        noise_like=sim["noise_like"],
        too_large=sim["too_large"],
    )
    return to_numpy(bestrec.S)


def _first_drop(ks: list[int], v: np.ndarray, drop: float) -> int | None:
    ok = np.isfinite(v)
    if not ok.any():
        return None
    for i in range(len(ks) - 1):
        if ok[i] and ok[i + 1] and v[i] - v[i + 1] > drop:
            return ks[i]
    return ks[int(np.nanargmax(v))]


def pick(name: str, table: list[dict], opt: dict) -> int | None:
    """The rank criterion ``name`` picks from the ``table`` by its rule, with the
    rules' parameters in ``opt``."""
    ks = [r["k"] for r in table]

    def col(key: str) -> np.ndarray:
        return np.array([r.get(key, np.nan) for r in table], dtype=float)

    if name in ("cophenetic", "dispersion"):
        return _first_drop(ks, col(name), opt["consensus_drop"])
    if name == "silhouette":
        s = col("silhouette_min")
        good = [
            k
            for k, v in zip(ks, s, strict=True)
            if np.isfinite(v) and v >= opt["silhouette_threshold"]
        ]
        return max(good) if good else (ks[int(np.nanargmax(s))] if np.isfinite(s).any() else None)
    if name == "cv":
        e = col("cv_mse")
        if not np.isfinite(e).any():
            return None
        lim = np.nanmin(e) * (1.0 + opt["cv_tolerance"])
        return min(k for k, v in zip(ks, e, strict=True) if np.isfinite(v) and v <= lim)
    if name in ("aic", "bic"):
        v = col(name)
        return ks[int(np.nanargmin(v))] if np.isfinite(v).any() else None
    if name == "laplace_pca":
        v = col("laplace_pca")
        return ks[int(np.nanargmax(v))] if np.isfinite(v).any() else None
    if name == "knee":
        return knee_point(ks, col("rel_error"))
    if name == "similarity":
        for i, r in enumerate(table):
            if i > 0 and r["too_large"]:
                return table[i - 1]["k"]
        return None if table[0]["too_large"] else ks[-1]
    raise ValueError(name)  # pragma: no cover
