"""``unmix inspect FILE``: axes, counts, negative values and suggested preprocessing."""

from __future__ import annotations

from typing import Any

import click
import numpy as np

from ..preprocessing import is_counts
from ._common import load_image

__all__ = ["inspect"]


@click.command()
@click.argument("file")
@click.option("--dataset", help="HDF5 dataset path.")
@click.option("--signal", help="Which signal/channel in multi-signal files.")
def inspect(file: str, dataset: str | None, signal: str | None) -> None:
    """Axes, shape, counts and suggested preprocessing of FILE."""
    image = load_image({"input": {"file": file, "dataset": dataset, "signal": signal}})
    click.echo(repr(image))
    for ax in image.spatial_axes + image.signal_axes:
        v = ax.values
        kind = "spatial" if ax.navigate else "signal"
        click.echo(
            f"  {kind:<7} {ax.name:<16} {ax.size:>6} points  {v[0]:.6g} .. {v[-1]:.6g} "
            f"{ax.units}{'' if ax.is_uniform else ' (non-uniform)'}"
        )
    X = np.asarray(image.unfold(), dtype=float)
    per_pixel = X.sum(axis=1)
    integer = is_counts(X)
    click.echo(
        f"  values  min {X.min():.4g}  max {X.max():.4g}  mean {X.mean():.4g}  "
        f"zeros {100 * np.mean(X == 0):.1f}%  {'integer counts' if integer else 'real'}"
    )
    click.echo(f"  per pixel total: mean {per_pixel.mean():.4g}, min {per_pixel.min():.4g}")
    for line in _suggestions(image, X, integer, per_pixel):
        click.echo(f"  suggestion: {line}")


def _suggestions(image: Any, X: np.ndarray, integer: bool, per_pixel: np.ndarray) -> list[str]:
    out = []
    kind = str(image.metadata.get("signal_type", ""))
    if X.min() < 0:
        out.append(
            f'{int(np.sum(X < 0))} negative values: use an offset ({{op="offset"}}), '
            "|I| or dI/dV for NMF, or compare with PCA."
        )
    if integer and per_pixel.mean() < 1000:
        out.append(
            f"low counts ({per_pixel.mean():.0f}/pixel): --loss kl or "
            "PoissonScaling preprocessing."
        )
    elif integer:
        out.append("counts: --loss kl (Poisson) or PoissonScaling before Frobenius NMF.")
    if kind == "EELS":
        out.append('EELS: a power-law background fit before the edges (op="powerlaw").')
    if kind == "Raman" or X.min() > 0.2 * X.mean():
        out.append('a large baseline: asymmetric least squares (op="baseline_als").')
    if len(image.spatial_shape) == 1 and image.n_pixels > 16:
        out.append("a 1-D scan: if it is a raster, set [input] spatial_shape = [rows, cols].")
    return out
