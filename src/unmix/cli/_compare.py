"""``unmix compare FILE -k K``: PCA vs NMF vs constrained NMF in one report.

A file larger than half the memory budget is streamed (:mod:`unmix.cli._load`): every
fit and the report read it block by block, and the PCA column is then an uncentered
truncated SVD (column "SVD"; centering would need the data in memory).
"""

from __future__ import annotations

import os
from typing import Any

import click
import numpy as np

from ..report import relative_residuals
from ._common import (
    attach_context,
    command_config,
    fit_command,
    fit_with_progress,
    write_html_report,
)
from ._load import is_streamed, open_image, stream_mode, unfolded
from ._outdir import output_folder
from ._terms import flag_terms, given_flags

__all__ = ["CONSTRAINED", "compare"]

#: the constrained column's terms when no term flag is given: maps smoothed at the probe's
#: resolution (a Gaussian of 1 pixel), which holds for every family of data.  L1-sparse
#: maps (the earlier default) are the wrong physics where every pixel holds a shared
#: background (EELS, EDS: three near-copies of the background on the Cu/ZnO map), and
#: minimum volume needs the scale fixed by sum-to-one abundances, which additive edges on
#: a background are not.  Any term flag (--sparsity, --smooth, --laplacian, --graph-smooth,
#: --min-volume, --sum-to-one) replaces this default, and so does --preset (the column
#: is then the preset's fit, from its own start; the NMF column stays plain NMF).  The
#: column starts from the NMF column's factors (:func:`_from_nmf`).
CONSTRAINED = {"smooth": 1.0}


@fit_command
def compare(file: str | None, **kw: Any) -> None:
    """PCA vs NMF vs constrained NMF on FILE, side by side in one report."""
    cfg = command_config(file, kw)
    force = kw["force"] or cfg["output"].get("force", False)
    with output_folder(cfg["output"]["dir"], force=force, resume=False) as where:
        results, report, residuals = _fit_all(cfg, kw, where.stage)
    if not kw["quiet"]:
        for name, r in results.items():
            neg = float(np.mean(np.asarray(r.S) < 0))
            click.echo(
                f"{name:>16}: {r.n_iter} it., {_fit_text(r, residuals.get(name))}, "
                f"negative entries in spectra {100 * neg:.0f}%"
            )
        note = _cost_note(results, residuals)
        if note:
            click.echo(note, err=True)
        if report:
            click.echo(f"  report  {os.path.abspath(os.path.join(where.dir, report))}")


def _from_nmf(opts: dict, nmf: Any) -> dict:
    """The constrained column starts from the NMF column's factors (unless the config
    names a start, a preset or preprocessing): both columns then share their start and differ by
    what the constraint changes, not by which of the many near-equal NMF minima each
    start falls into (on the Cu/ZnO EELS map, NMF fits from different starts end 18-49
    deg apart at the same objective)."""
    own = opts.get("init") is not None or opts.get("preset") is not None  # a preset's too
    if own or opts.get("preprocessing") or nmf.preprocessing:
        return opts
    return dict(opts, init=(np.array(nmf.A, copy=True), np.array(nmf.S, copy=True)))


def _fit_all(cfg: dict, kw: dict, stage: str) -> tuple[dict, str | None, dict]:
    """PCA, NMF and constrained NMF, each saved into ``stage``; the results, the
    report's file name and (not quiet; from the report's passes over X, or one pass each
    for data in memory) each column's relative residual ``||X - Y||_F / ||X||_F``."""
    blockers = ["--mask-nonfinite"] if kw["mask_nonfinite"] else []
    image = open_image(cfg, mode=stream_mode(kw), quiet=kw["quiet"], blockers=blockers)
    X = unfolded(image)  # streamed: the fits and the report read it block by block
    fac = cfg["factorize"]
    base = {k: v for k, v in fac.items() if k in ("k", "random_state", "max_iter", "tol")}
    given = given_flags(kw)
    pca = ("PCA", dict(base, preset="pca"))
    held = "streamed" if is_streamed(image) else "sparse" if image.is_sparse else None
    if held:  # centering needs X dense in memory: the column is a plain (uncentered) SVD
        pca = ("SVD", dict(base, preset="pca", preprocessing=[]))
        if not kw["quiet"]:
            click.echo(f"{held}: the PCA column is an uncentered SVD (SVD).", err=True)
    # --preset names the constrained column's model; the NMF column stays plain NMF
    plain = {k: v for k, v in fac.items() if k != "preset"}
    default_terms = {} if fac.get("preset") else CONSTRAINED
    runs = {
        pca[0]: pca[1],
        "NMF": flag_terms(plain, {}, X),
        "constrained NMF": flag_terms(dict(fac), given or default_terms, X),
    }
    results = {}
    for name, opts in runs.items():
        if name == "constrained NMF":
            opts = _from_nmf(opts, results["NMF"])
        results[name] = fit_with_progress(
            X, image, opts, outdir=None, resume=False, quiet=kw["quiet"], label=name
        )
        attach_context(results[name], image)
        results[name].save(os.path.join(stage, f"result_{name.replace(' ', '_')}.h5"))
    report = write_html_report(stage, results, X, image, f"unmix compare: {image.title}")
    residuals = {}
    if not kw["quiet"] and (report or not held):  # the report's passes, kept: no new one
        residuals = {name: relative_residuals(r, X)[1] for name, r in results.items()}
    image.close()
    return results, (os.path.basename(report) if report else None), residuals


def _fit_text(r: Any, residual: float | None) -> str:
    """The fit of one column for the summary, comparable across the columns: the relative
    residual on X (in memory), and the objective, which is of the preprocessed data
    when the column preprocesses (``--sum-to-one`` fits unit-norm pixels: its objective
    was printed as 0.05 beside NMF's 79,512 on the XRD map)."""
    steps = [type(step).__name__ for step in r.preprocessing]
    objective = f"objective {r.objective:.6g}" + (
        f" (of X after {', '.join(steps)})" if steps else ""
    )
    if residual is None:
        return objective
    return f"relative residual {residual:.4g}, {objective}"


#: the constrained column is said to cost structure when its relative residual is this
#: many times NMF's and above it by this much (the Raman map with the default map
#: smoothing: 0.50 against 0.0126; noise-dominated EDS maps: 0.94 against 0.85, no note)
COST_RATIO, COST_GAP = 3.0, 0.05


def _cost_note(results: dict, residuals: dict) -> str:
    """A note when the constrained column fits ``X`` far worse than NMF: its terms then
    remove structure of the map, not only noise (the default map smoothing on a map of
    pixel-sized features), and a user should know before reading its factors."""
    nmf, con = residuals.get("NMF"), residuals.get("constrained NMF")
    if nmf is None or con is None or not (con > COST_RATIO * nmf and con - nmf > COST_GAP):
        return ""
    spec = results["constrained NMF"].spec
    terms = [t["type"] for t in spec.get("penalties", []) + spec.get("filters", [])]
    named = f" ({', '.join(terms)})" if terms else ""
    why = " (map smoothing blurs features one pixel wide)" if "GaussianMapFilter" in terms else ""
    return (
        f"Note: the constrained column fits X {con / nmf:.0f}x worse than NMF (relative "
        f"residual {con:.3g} against {nmf:.3g}): its terms{named} remove structure of this "
        f"map, not only noise{why}. Read its factors with that in mind, or try a weaker "
        "or another term (e.g. a smaller --smooth, --sparsity, --sum-to-one)."
    )
