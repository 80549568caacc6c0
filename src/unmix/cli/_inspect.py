"""``unmix inspect FILE``: axes, counts, negative values and suggested preprocessing.

The statistics come from one pass over the data in blocks of whole scan lines
(:func:`unmix.blocks.data_stats`), the file streamed when it does not fit the memory
budget (see :mod:`unmix.cli._load`), so the peak memory is a few blocks, not the file.
"""

from __future__ import annotations

import json
from typing import Any

import click
import numpy as np

from ..blocks import DataStats, data_stats
from ..preprocessing import is_counts
from ._common import IMAGE_OPTIONS, image_input, with_options
from ._load import block_bytes, is_streamed, open_image, read_progress, stream_mode, unfolded

__all__ = ["inspect", "suggestions"]


@click.command()
@click.argument("file")
@with_options(IMAGE_OPTIONS)
def inspect(file: str, **kw: Any) -> None:
    """Axes, shape, counts and suggested preprocessing of FILE (after the --step ops and
    --shape given, as run and tree would fit it: check a suggestion by adding it)."""
    steps, inp = image_input(file, kw)
    image = open_image({"input": inp, "preprocess": {"steps": steps}}, mode=stream_mode(kw))
    click.echo(repr(image))
    for ax in image.spatial_axes + image.signal_axes:
        v = ax.values
        kind = "spatial" if ax.navigate else "signal"
        click.echo(
            f"  {kind:<7} {ax.name:<16} {ax.size:>6} points  {v[0]:.6g} .. {v[-1]:.6g} "
            f"{ax.units}{'' if ax.is_uniform else ' (non-uniform)'}"
        )
    if image.is_sparse:
        _sparse_summary(image)
        return
    X = unfolded(image)
    with read_progress(int(X.shape[0]), "reading", not is_streamed(image)) as bar:
        stats = data_stats(X, block_bytes=block_bytes(), progress=bar.update)
    image.close()
    per_pixel = stats.pixel_sums
    click.echo(
        f"  values  min {stats.min:.4g}  max {stats.max:.4g}  mean {stats.mean:.4g}  "
        f"zeros {100 * stats.n_zero / max(1, stats.n_values):.1f}%  "
        f"{'integer counts' if stats.counts else 'real'}"
    )
    click.echo(f"  per pixel total: mean {per_pixel.mean():.4g}, min {per_pixel.min():.4g}")
    for text, steps in suggestions(image, stats):
        tables = " ".join(f"--step '{_toml(st)}'" for st in steps)
        click.echo(f"  suggestion: {text}" + (f"  {tables}" if tables else ""))


def _sparse_summary(image: Any) -> None:
    """The values line and advice of a sparse image, from its stored entries alone."""
    X = image.unfold()
    v = np.asarray(X.data, dtype=float)
    size = X.shape[0] * X.shape[1]
    zeros = 1.0 - np.count_nonzero(v) / size
    lo = min(float(v.min()), 0.0) if v.size else 0.0
    hi = max(float(v.max()), 0.0) if v.size else 0.0
    integer = bool(v.size) and is_counts(v)
    per_pixel = np.asarray(X.sum(axis=1), dtype=float).ravel()
    click.echo(
        f"  values  min {lo:.4g}  max {hi:.4g}  mean {v.sum() / size:.4g}  "
        f"zeros {100 * zeros:.1f}%  {'integer counts' if integer else 'real'}  "
        f"(sparse: {X.nnz:,} stored values)"
    )
    click.echo(f"  per pixel total: mean {per_pixel.mean():.4g}, min {per_pixel.min():.4g}")
    advice = [
        "held sparse: unmix run fits it on its nonzeros (--loss kl for counts); "
        "--step operations, compare, tree and select need dense data."
    ]
    if lo < 0:
        advice.append(f"{int(np.sum(v < 0))} negative values: NMF needs X >= 0.")
    if len(image.spatial_shape) == 1 and image.n_pixels > 16:
        advice.append("a 1-D scan: if it is a raster, give --shape ROWSxCOLS.")
    for text in advice:
        click.echo(f"  suggestion: {text}")


def _toml(step: dict) -> str:
    """A step as the ``--step`` inline table a user can paste."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)

    return "{" + ", ".join(f"{k}={value(v)}" for k, v in step.items()) + "}"


def suggestions(
    image: Any,
    stats: DataStats | np.ndarray,
    integer: bool | None = None,
    per_pixel: np.ndarray | None = None,
) -> list[tuple[str, list[dict]]]:
    """What to do with this data: (advice, the preprocessing steps it names).  Every
    step is a real operation of :data:`unmix.preprocessing.OPS` with valid arguments (a
    test applies each one); the advice prints them as ``--step`` tables.

    ``stats`` is :func:`unmix.blocks.data_stats` of ``X`` (pixels, channels), or ``X``
    itself (its statistics are then computed); ``integer`` and ``per_pixel`` override the
    statistics' count rule and pixel sums."""
    if not isinstance(stats, DataStats):
        stats = data_stats(stats)
    integer = stats.counts if integer is None else integer
    per_pixel = stats.pixel_sums if per_pixel is None else per_pixel
    out: list[tuple[str, list[dict]]] = []
    kind = str(image.metadata.get("signal_type", ""))
    if stats.n_nonfinite:
        out.append(
            (f"{stats.n_nonfinite} NaN/Inf values: fit around them with --mask-nonfinite.", [])
        )
    finite = stats.n_values - stats.n_nonfinite
    if finite and stats.min < 0:
        out.append(
            (
                f"{stats.n_negative} negative values: NMF needs X >= 0 - shift them "
                "(offset), or take dI/dV of I(V) curves (derivative, then clip), or compare "
                "with PCA (unmix compare).",
                [{"op": "offset"}],
            )
        )
    if integer and per_pixel.mean() < 1000:
        out.append(
            (
                f"low counts ({per_pixel.mean():.0f}/pixel): --loss kl or "
                "PoissonScaling preprocessing.",
                [],
            )
        )
    elif integer:
        out.append(("counts: --loss kl (Poisson) or PoissonScaling before Frobenius NMF.", []))
    ax = image.signal_axes[0] if len(image.signal_axes) == 1 else None
    if kind == "EELS" and ax is not None and ax.values[0] > 0:
        lo, hi = float(ax.values[0]), float(ax.values[min(len(ax.values) - 1, 19)])
        window = [round(lo, 6), round(hi, 6)]
        out.append(
            (
                "EELS: remove the power-law background before the edges (fit_range = a "
                "pre-edge window, here the first 20 channels).",
                [{"op": "power_law_background", "fit_range": window, "clip": True}],
            )
        )
    if ax is not None and (kind == "Raman" or (finite and stats.min > 0.2 * stats.mean)):
        out.append(
            ("a large baseline: asymmetric least squares.", [{"op": "baseline_als", "clip": True}])
        )
    if len(image.spatial_shape) == 1 and image.n_pixels > 16:
        out.append(("a 1-D scan: if it is a raster, give --shape ROWSxCOLS.", []))
    return out
