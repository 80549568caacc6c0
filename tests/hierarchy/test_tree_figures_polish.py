"""Axis labels and scale bars in every figure of the tree report."""

from __future__ import annotations

import numpy as np
import pytest

from unmix.hierarchy import hierarchical_nmf, plot_levels, plot_tree
from unmix.hierarchy._figures import levels_figure, tree_figure, tree_plot
from unmix.spectral_image import Axis
from unmix.synthetic import make_hierarchy

AXES = [Axis("y", 10, 2.5, 0.0, "nm"), Axis("x", 10, 2.5, 0.0, "nm")]


@pytest.fixture(scope="module")
def tree():
    h = make_hierarchy(random_state=4, spatial_shape=(10, 10), n_channels=60)
    return hierarchical_nmf(h.X, 3, spatial_shape=h.spatial_shape)


def _bars(ax) -> list:
    return [a for a in ax.artists if type(a).__name__ == "AnchoredSizeBar"]


def _images(fig) -> list:
    return [ax for ax in fig.axes if ax.get_images()]


def test_tree_figure_labels_every_spectrum_and_puts_a_scale_bar_on_every_map(tree):
    fig = tree_figure(tree, axis_label="Energy (eV)", spatial_axes=AXES)
    maps = _images(fig)
    spectra = [ax for ax in fig.axes if ax.get_lines() and ax not in maps and ax.get_xlabel()]
    assert len(maps) == len(tree.nodes) and len(spectra) == len(tree.nodes)
    assert all(ax.get_xlabel() == "Energy (eV)" for ax in spectra)
    assert all(ax.get_ylabel() == "intensity" for ax in spectra)
    for ax in maps:
        (bar,) = _bars(ax)
        assert bar.txt_label.get_text().endswith(" nm")
        x0, x1 = ax.get_xlim()
        assert abs(x1 - x0) == pytest.approx(25.0)  # the map on its calibrated extent


def test_levels_figure_has_scale_bars_and_labels(tree):
    fig = levels_figure(tree, spatial_axes=AXES)
    maps = _images(fig)
    assert len(maps) == sum(len(lv.nodes) for lv in tree.levels)
    assert all(len(_bars(ax)) == 1 for ax in maps)
    assert {ax.get_xlabel() for ax in maps if ax.get_xlabel()} == {"x (nm)"}
    assert {ax.get_ylabel() for ax in maps if ax.get_ylabel()} == {
        f"depth {lv.depth}" for lv in tree.levels
    }
    plain = levels_figure(tree)  # uncalibrated: the scale bar in pixels
    assert _bars(_images(plain)[0])[0].txt_label.get_text().endswith(" px")


def test_dendrogram_figure_has_axis_labels(tree):
    fig = tree_plot(tree, kind="dendrogram")
    assert fig.axes[0].get_xlabel() == "component"
    assert fig.axes[0].get_ylabel().endswith("distance (deg)")


def test_plot_functions_still_write_pngs(tree, tmp_path):
    for path in (
        plot_tree(tree, tmp_path / "t.png", spatial_axes=AXES),
        plot_levels(tree, tmp_path / "l.png", spatial_axes=AXES),
    ):
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert np.isfinite(tree.levels[-1].error)
