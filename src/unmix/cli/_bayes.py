"""``unmix bayes FILE [-k K]``: Bayesian Poisson NMF of counts, with credible bands.

Fits :func:`unmix.bayes.bayes_nmf` (Gamma-Poisson model, mean-field variational Bayes,
automatic relevance determination of the rank from ``K`` components, then the evidence
check) to the counts ``X`` (pixels, channels) of FILE, and writes into OUTDIR
``result.h5`` - posterior means as the maps and endmembers, the credible interval of
every endmember channel and map pixel as its ``bands`` group - and, unless
``--no-report``, the run report, which draws the bands and says that they are
model-based; ``--bootstrap N`` adds the bootstrap bands of KL-NMF point fits beside
them (:func:`unmix.bayes.bootstrap_bands`).  The data are read into memory (dense
counts with at most half nonzeros are fitted as CSR, at ``O(nnz k)`` an iteration).
Exit codes as for ``unmix run``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import click
import numpy as np

from ..report import default_pixels
from ._common import (
    EXIT_USAGE,
    IMAGE_OPTIONS,
    Fail,
    attach_context,
    image_input,
    with_options,
    write_html_report,
)
from ._load import open_image
from ._numbers import FiniteRange
from ._outdir import output_folder

__all__ = ["bayes"]

#: the rank ARD starts from when -k is not given: the largest of ``unmix select``'s default
#: ranks (``unmix.selection.DEFAULT_KS``, 2..11)
DEFAULT_K = 11


def _draws(value: int) -> int:
    """``--bootstrap N``: 0 (none) or at least 2 draws, checked before anything is read."""
    if value == 1:
        raise click.BadParameter("needs at least 2 draws (20 is typical), or 0 for none.")
    return value


@click.command("bayes")
@click.argument("file")
@click.option(
    "-k",
    "k",
    type=click.IntRange(min=1),
    help="Components to start from: the largest rank (ARD and the evidence keep fewer; "
    f"default {DEFAULT_K}, cut to min(pixels, channels) - 1; required with --no-ard).",
)
@click.option(
    "--level",
    type=FiniteRange(0.0, 1.0, min_open=True, max_open=True),
    default=0.9,
    show_default=True,
    help="Probability of the central credible intervals.",
)
@click.option("--no-ard", is_flag=True, help="Keep all K components (no rank selection).")
@click.option(
    "--prune",
    type=click.Choice(["evidence", "counts"]),
    default="evidence",
    show_default=True,
    help="After ARD: also remove components while the refitted bound rises (evidence), "
    "or stop after ARD (counts).",
)
@click.option(
    "--bootstrap",
    "n_boot",
    type=click.IntRange(min=0),
    callback=lambda ctx, param, value: _draws(value),
    default=0,
    show_default=True,
    help="Also draw bootstrap bands (KL-NMF on N draws of the pixels) beside the "
    "model-based ones, to compare (0: none; 20 is typical).",
)
@click.option(
    "--bands",
    "bands",
    type=click.Choice(["vb", "gibbs"]),
    default="vb",
    show_default=True,
    help="Credible bands from the variational posterior (counting noise only), or from a "
    "Gibbs chain started at it (also how the counts split between components; whole "
    "counts, slower).",
)
@click.option(
    "--sweeps",
    type=click.IntRange(min=10),
    default=500,
    show_default=True,
    help="Gibbs sweeps (--bands gibbs; the first fifth is dropped).",
)
@click.option(
    "--n-init",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Starts of the variational fit (the others random); the highest bound is kept.",
)
@click.option(
    "--max-iter",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Most iterations of each variational fit.",
)
@click.option("--seed", "random_state", type=int, default=0, show_default=True)
@with_options(IMAGE_OPTIONS)
@click.option("-o", "--outdir", default="unmix_bayes", show_default=True, help="Output directory.")
@click.option("--force", is_flag=True, help="Overwrite a non-empty output directory.")
@click.option("--no-report", is_flag=True, help="Skip the HTML report.")
@click.option("-q", "--quiet", is_flag=True, help="No summary.")
def bayes(file: str, **kw: Any) -> None:
    """Bayesian Poisson NMF of the counts in FILE: posterior means, the rank ARD keeps
    (from K), and model-based credible bands of every endmember channel and map pixel."""
    if kw["k"] is None and kw["no_ard"]:
        raise click.UsageError(
            "--no-ard keeps all K components: give -k K (e.g. the rank `unmix select FILE` "
            "recommends), or drop --no-ard to let ARD choose from the default."
        )
    steps, inp = image_input(file, kw)
    cfg = {"input": inp, "preprocess": {"steps": steps}}
    with output_folder(kw["outdir"], force=kw["force"], resume=False) as where:
        image = open_image(cfg, quiet=kw["quiet"], blockers=["unmix bayes"])
        X = _counts(image)
        if kw["k"] is None:
            kw["k"] = max(1, min(DEFAULT_K, min(X.shape) - 1))
        result = _fit(X, image, kw)
        if kw["n_boot"]:
            result.compared_bands = [_bootstrap(X, result, kw)]
        names = _write(where.stage, result, X, image, kw)
        image.close()
    if not kw["quiet"]:
        path = [r for r, _ in result.spec["rank_path"]]
        click.echo(
            f"bayes-vb: {result.k} of {kw['k']} components kept (evidence path "
            f"{' -> '.join(map(str, path))}), {result.n_iter} iterations, stopped by "
            f"{result.stop_reason}, ELBO {-result.objective:.6g}, seed {kw['random_state']}"
        )
        for name in names:
            click.echo(f"  {os.path.abspath(os.path.join(where.dir, name))}")


def _counts(image: Any) -> Any:
    """The image's ``X`` (pixels, channels): SciPy CSR when it is sparse or at most half
    nonzeros, else dense (``bayes_nmf`` warns when the values are not whole counts)."""
    import scipy.sparse as sp

    from ..blocks import is_sparse

    X = image.unfold()
    if not is_sparse(X):
        X = np.asarray(X)
        if X.size and np.count_nonzero(X) <= X.size // 2:
            X = sp.csr_array(X)
    return X


def _fit(X: Any, image: Any, kw: dict) -> Any:
    from ..bayes import bayes_nmf

    try:
        res = bayes_nmf(
            X,
            kw["k"],
            ard=not kw["no_ard"],
            level=kw["level"],
            random_state=kw["random_state"],
            n_init=kw["n_init"],
            max_iter=kw["max_iter"],
            prune=kw["prune"],
            bands=kw["bands"],
            sweeps=kw["sweeps"],
        )
    except (ValueError, TypeError) as err:
        raise Fail(f"unmix bayes: {err}", EXIT_USAGE) from err
    spec = {
        "ard": not kw["no_ard"],
        "prune": kw["prune"],
        "n_init": kw["n_init"],
        "max_iter": kw["max_iter"],
        "random_state": kw["random_state"],
        "spatial_shape": list(image.spatial_shape),
        "signal_shape": list(image.signal_shape),
    }
    result = res.to_result(
        spatial_shape=tuple(image.spatial_shape),
        signal_shape=tuple(image.signal_shape),
        spec=spec,
    )
    # the pixels the report's pixel figure shows get bands of the model A @ S (their
    # pass over X is kept with this result for the report)
    shown = [i for _, i in default_pixels(result, X)]
    result.bands = dataclasses.replace(result.bands, **res.model_band_fields(shown))
    return result


def _bootstrap(X: Any, result: Any, kw: dict) -> Any:
    from ..bayes import bootstrap_bands

    return bootstrap_bands(
        X, result.S, n_boot=kw["n_boot"], level=kw["level"], random_state=kw["random_state"]
    )


def _write(stage: str, result: Any, X: Any, image: Any, kw: dict) -> list[str]:
    attach_context(result, image)
    names = [os.path.basename(result.save(os.path.join(stage, "result.h5")))]
    if not kw["no_report"]:
        report = write_html_report(
            stage, {"Bayesian NMF": result}, X, image, f"unmix bayes: {image.title}"
        )
        if report:
            names.append(os.path.basename(report))
    return names
