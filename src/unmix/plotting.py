"""Figures of a result: endmembers on their physical axis, abundance maps, loss curve.

Uses matplotlib's non-interactive Agg backend; every function writes a PNG and returns
its path.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from .result import Result

__all__ = ["plot_endmembers", "plot_loss", "plot_maps"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_endmembers(
    result: Result,
    path: str | os.PathLike,
    *,
    axis: Any = None,
    axis_label: str = "channel",
    names: list[str] | None = None,
) -> str:
    """Endmember spectra against ``axis`` (or 2-D patterns as images when signal is 2-D)."""
    plt = _pyplot()
    S = result.endmembers()
    k = S.shape[0]
    names = names or [f"component {j}" for j in range(k)]
    if S.ndim == 3:
        cols = min(k, 4)
        rows = math.ceil(k / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
        for j, ax in enumerate(axes.flat):
            ax.axis("off")
            if j < k:
                ax.imshow(S[j], cmap="inferno")
                ax.set_title(names[j])
    else:
        fig, ax = plt.subplots(figsize=(7, 4))
        x = np.arange(S.shape[1]) if axis is None else np.asarray(axis)
        for j in range(k):
            ax.plot(x, S[j], label=names[j], lw=1.4)
        ax.set_xlabel(axis_label)
        ax.set_ylabel("intensity")
        ax.legend(frameon=False)
        ax.set_title("Endmembers")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return os.fspath(path)


def plot_maps(
    result: Result,
    path: str | os.PathLike,
    *,
    pixel_size: float | None = None,
    units: str = "nm",
    names: list[str] | None = None,
) -> str:
    """Abundance maps on the scan grid, with a scale bar when ``pixel_size`` is given."""
    plt = _pyplot()
    M = result.maps()
    if M.ndim != 3:
        raise ValueError("plot_maps needs a 2-D scan: pass spatial_shape to factorize.")
    k = M.shape[2]
    names = names or [f"component {j}" for j in range(k)]
    cols = min(k, 4)
    rows = math.ceil(k / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for j, ax in enumerate(axes.flat):
        ax.axis("off")
        if j >= k:
            continue
        im = ax.imshow(M[:, :, j], cmap="viridis")
        ax.set_title(names[j])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        if pixel_size:
            _scale_bar(ax, M.shape[1], pixel_size, units)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return os.fspath(path)


def _scale_bar(ax: Any, width_px: int, pixel_size: float, units: str) -> None:
    target = width_px * pixel_size / 4
    nice = 10 ** math.floor(math.log10(target))
    for f in (5, 2, 1):
        if f * nice <= target:
            nice *= f
            break
    length = nice / pixel_size
    h = ax.get_images()[0].get_array().shape[0]
    x0, y0 = width_px * 0.05, h * 0.92
    ax.plot([x0, x0 + length], [y0, y0], color="white", lw=3)
    ax.text(
        x0 + length / 2,
        y0 - h * 0.04,
        f"{nice:g} {units}",
        color="white",
        ha="center",
        va="bottom",
        fontsize=8,
    )


def plot_loss(result: Result, path: str | os.PathLike) -> str:
    """Objective (and each penalty) per iteration, log scale."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, values in result.history.items():
        if key == "time":
            continue
        v = np.asarray(values)
        if np.all(v > 0):
            ax.semilogy(v, label=key)
    ax.set_xlabel("iteration")
    ax.set_ylabel("value")
    ax.legend(frameon=False)
    ax.set_title(f"{result.spec.get('solver')} - {result.stop_reason} after {result.n_iter} it.")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return os.fspath(path)
