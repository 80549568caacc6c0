"""``unmix target FILE -k K``: thresholded NMF - a smooth background and the rare pixels it
does not explain (:func:`unmix.thresholded_nmf`).

Writes into OUTDIR: ``result.h5`` (background and target components as one result:
``A = [A_background, A_target]``, ``S = [S_background; S_target]``, every pixel's maps
fitted to them), ``background.h5`` and ``target.h5`` (the two fits as the method returns
them), ``target.npz`` (``mask``: the target pixels, ``score``: every pixel's robust
z-score, on the scan grid; ``rounds``: target pixels after each round), ``target.png`` (mask
and score maps) and, unless ``--no-report``, the run report of ``result.h5``.  The data
are read into memory (the method scores every pixel against every background fit).
Exit codes as for ``unmix run``.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import click
import numpy as np

from ._common import (
    EXIT_USAGE,
    IMAGE_OPTIONS,
    Fail,
    attach_context,
    dense_only,
    image_input,
    table_option,
    with_options,
    write_html_report,
)
from ._load import open_image
from ._numbers import STRENGTH, FiniteRange
from ._outdir import output_folder

__all__ = ["target"]


@click.command("target")
@click.argument("file")
@click.option("-k", "k", type=click.IntRange(min=1), required=True, help="Background components.")
@click.option(
    "--threshold",
    type=FiniteRange(0.0, min_open=True),
    default=5.0,
    show_default=True,
    help="Robust z-score of a pixel's residual norm above which it is a target pixel.",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Background fits, each without the previous one's target pixels.",
)
@click.option(
    "--smooth",
    type=STRENGTH,
    default=1.5,
    show_default=True,
    help="Gaussian width (channels) on the background endmembers between iterations; 0: none.",
)
@click.option("--targets", "n_targets", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--max-iter", type=click.IntRange(min=1), default=300, show_default=True)
@with_options(IMAGE_OPTIONS)
@click.option("--seed", "random_state", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "-o", "--outdir", default="unmix_target", show_default=True, help="Output directory."
)
@click.option("--force", is_flag=True, help="Overwrite a non-empty output directory.")
@click.option("--no-report", is_flag=True, help="Skip the HTML report.")
@click.option("-q", "--quiet", is_flag=True, help="No summary.")
@table_option("loss")
def target(file: str, **kw: Any) -> None:
    """Find a rare target in FILE: a smooth K-component background (robust l2,1 loss), the
    pixels its residual does not explain, and the target's spectrum from their residual."""
    steps, inp = image_input(file, kw)
    cfg = {"input": inp, "preprocess": {"steps": steps}}
    with output_folder(kw["outdir"], force=kw["force"], resume=False) as where:
        image = open_image(cfg, quiet=kw["quiet"], blockers=["unmix target"])
        dense_only(image, "target")
        found = _fit(image, kw)
        names = _write(where.stage, found, image, kw)
        image.close()
    if not kw["quiet"]:
        n = int(found.mask.sum())
        click.echo(
            f"{n} target pixels of {found.mask.size} (threshold {kw['threshold']}; "
            f"after each round: {found.rounds})"
        )
        for name in names:
            click.echo(f"  {os.path.abspath(os.path.join(where.dir, name))}")


def _fit(image: Any, kw: dict) -> Any:
    from ..thresholded import thresholded_nmf

    extra = {"loss": kw["loss"]} if kw.get("loss") is not None else {}
    try:
        return thresholded_nmf(
            image.unfold(),
            kw["k"],
            threshold=kw["threshold"],
            rounds=kw["rounds"],
            smooth=kw["smooth"],
            n_targets=kw["n_targets"],
            random_state=kw["random_state"],
            max_iter=kw["max_iter"],
            spatial_shape=image.spatial_shape,
            **extra,
        )
    except (ValueError, TypeError) as err:
        raise Fail(str(err), EXIT_USAGE) from err


def combined(found: Any, X: Any) -> Any:
    """Background and target components as one result: every pixel's maps for the
    background endmembers (non-negative least squares), and the target maps the method
    fitted to the positive residual."""
    from ..engine import fit_maps

    bg = found.background
    A, S = [np.asarray(fit_maps(X, bg))], [np.asarray(bg.S)]
    if found.target is not None:
        A.append(np.asarray(found.target.A))
        S.append(np.asarray(found.target.S))
    A, S = np.concatenate(A, axis=1), np.concatenate(S, axis=0)
    info = {
        "background": int(bg.k),
        "targets": 0 if found.target is None else int(found.target.k),
        "target_pixels": int(found.mask.sum()),
        "rounds": list(found.rounds),
    }
    R = np.asarray(X, dtype=float) - A @ S
    spec = dict(bg.spec, k=int(S.shape[0]), thresholded=info)
    return replace(bg, A=A, S=S, spec=spec, objective=float(0.5 * np.sum(R * R)))


def _write(stage: str, found: Any, image: Any, kw: dict) -> list[str]:
    """The result files, ``target.npz``, ``target.png`` and the report; their names."""
    X = image.unfold()
    shape = tuple(image.spatial_shape)
    result = combined(found, X)
    names = []
    for name, res in (("result", result), ("background", found.background)):
        attach_context(res, image)
        names.append(os.path.basename(res.save(os.path.join(stage, f"{name}.h5"))))
    if found.target is not None:
        attach_context(found.target, image)
        names.append(os.path.basename(found.target.save(os.path.join(stage, "target.h5"))))
    np.savez(
        os.path.join(stage, "target.npz"),
        mask=found.mask.reshape(shape),
        score=found.score.reshape(shape),
        rounds=np.asarray(found.rounds),
    )
    names.append("target.npz")
    names.append(_figure(stage, found, shape, kw["threshold"]))
    if not kw["no_report"]:
        report = write_html_report(
            stage, {"background + target": result}, X, image, f"unmix target: {image.title}"
        )
        if report:
            names.append(os.path.basename(report))
    return names


def _figure(stage: str, found: Any, shape: tuple, threshold: float) -> str:
    """``target.png``: the target pixels and every pixel's score."""
    from matplotlib.figure import Figure

    grid = shape if len(shape) == 2 else (1, int(np.prod(shape)))
    fig = Figure(figsize=(9.0, 4.0), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.imshow(found.mask.reshape(grid), cmap="gray_r", interpolation="nearest")
    ax1.set_title(f"Target pixels ({int(found.mask.sum())})", fontsize=10)
    im = ax2.imshow(found.score.reshape(grid), cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax2, label="robust z-score of the residual norm")
    ax2.set_title(f"Score (threshold {threshold:g})", fontsize=10)
    for ax in (ax1, ax2):
        ax.set_xlabel("x (px)")
        ax.set_ylabel("y (px)")
    fig.savefig(os.path.join(stage, "target.png"), dpi=110)
    return "target.png"
