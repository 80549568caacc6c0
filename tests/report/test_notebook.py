"""Notebook display of results, trees and rank selections; HyperSpy export."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
from matplotlib.figure import Figure

import unmix
from unmix.datasets import load_cuzn_eels
from unmix.spectral_image import Axis, SpectralImage


@pytest.fixture(scope="module")
def eels():
    d = load_cuzn_eels()
    data = d["data"].astype(float)
    scale = d["scale_nm"]
    image = SpectralImage(
        data,
        [Axis("y", 50, scale, 0.0, "nm"), Axis("x", 40, scale, 0.0, "nm")],
        [Axis.from_values("Energy loss", d["axis"], "eV")],
        {"signal_type": "EELS", "title": "CuZn"},
    )
    result = unmix.factorize(
        image.unfold(), k=3, max_iter=30, spatial_shape=(50, 40), random_state=0
    )
    return image, result


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_result_repr_html_is_a_compact_summary_with_thumbnails(eels):
    _, res = eels
    res.context = {"component_names": ["<b>bg</b>", "Cu", "Zn"]}
    try:
        page = res._repr_html_()
    finally:
        res.context = {}
    assert "(k = 3)" in page and "<th" in page
    for word in ("loss", "solver", "iterations", "stop reason", "relative error"):
        assert word in page
    assert res.stop_reason in page and str(res.n_iter) in page
    pngs = _images(page)
    assert len(pngs) == 6  # an endmember and a map thumbnail per component
    assert all(p.startswith(b"\x89PNG") for p in pngs)
    assert "&lt;b&gt;bg&lt;/b&gt;" in page and "<b>bg</b>" not in page
    assert len(page) < 300_000


def test_result_plot_returns_figures_on_calibrated_axes(eels):
    image, res = eels
    for kind in ("overview", "endmembers", "maps", "loss"):
        assert isinstance(res.plot(kind=kind, image=image), Figure)
    ends = res.plot(kind="endmembers", image=image)
    assert ends.axes[0].get_xlabel() == "Energy loss (eV)"
    maps = res.plot(kind="maps", image=image)
    bars = [a for ax in maps.axes for a in ax.artists if "AnchoredSizeBar" in type(a).__name__]
    assert len(bars) == 3 and bars[0].txt_label.get_text().endswith("nm")
    assert res.plot(kind="endmembers").axes[0].get_xlabel() == "channel"
    with pytest.raises(ValueError, match="use one of overview, endmembers, maps, loss"):
        res.plot(kind="spectra")


def test_result_axes_saved_in_the_context_are_used(eels):
    image, res = eels
    res.context = image.provenance()  # what the CLI saves with the result
    try:
        assert res.plot(kind="endmembers").axes[0].get_xlabel() == "Energy loss (eV)"
        maps, ends = res.to_hyperspy()
    finally:
        res.context = {}
    assert maps.axes_manager.signal_axes[0].units == "nm"
    assert ends.axes_manager.signal_axes[0].offset == pytest.approx(image.signal_axes[0].offset)


def test_to_hyperspy_shapes_and_calibration(eels):
    image, res = eels
    maps, ends = res.to_hyperspy(image=image)
    assert type(maps).__name__ == "Signal2D" and maps.data.shape == (3, 50, 40)
    assert maps.axes_manager.navigation_shape == (3,)
    x, y = maps.axes_manager.signal_axes
    assert (x.size, y.size) == (40, 50) and x.scale == pytest.approx(image.spatial_axes[1].scale)
    assert x.units == "nm" and y.name == "y"
    np.testing.assert_allclose(maps.data[1], res.maps()[..., 1])
    assert ends.data.shape == (3, 162) and ends.axes_manager.navigation_shape == (3,)
    e = ends.axes_manager.signal_axes[0]
    assert (e.offset, e.scale, e.units) == (
        pytest.approx(image.signal_axes[0].offset),
        pytest.approx(image.signal_axes[0].scale),
        "eV",
    )
    np.testing.assert_allclose(ends.data, res.endmembers())


def test_to_hyperspy_eels_type_without_exspy(eels):
    try:
        import exspy  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("exspy is installed")
    image, res = eels
    _, ends = res.to_hyperspy(image=image)
    assert type(ends).__name__ == "Signal1D"
    assert ends.metadata.get_item("General.unmix_signal_type") == "EELS"


def test_to_hyperspy_eels_type_with_exspy(eels):
    pytest.importorskip("exspy")
    image, res = eels
    _, ends = res.to_hyperspy(image=image)
    assert type(ends).__name__ == "EELSSpectrum"


def test_tree_display_and_plot():
    from unmix.hierarchy import hierarchical_nmf
    from unmix.synthetic import make_hierarchy

    h = make_hierarchy(random_state=4, spatial_shape=(10, 10), n_channels=60)
    tree = hierarchical_nmf(h.X, 3, spatial_shape=h.spatial_shape)
    page = tree._repr_html_()
    assert f"({tree.n_leaves} leaves)" in page and tree.stop_reason in page
    assert len(_images(page)) == 2 * tree.n_leaves and len(page) < 300_000
    for kind in ("tree", "levels", "dendrogram"):
        assert isinstance(tree.plot(kind=kind), Figure)
    with pytest.raises(ValueError, match="use one of tree, levels, dendrogram"):
        tree.plot(kind="maps")


def test_rank_selection_display_and_plot(tmp_path):
    from unmix.selection import RankSelection

    table = [
        {"k": k, "rel_error": 0.5 / k, "silhouette_min": 1.0 - 0.1 * k, "bic": 10.0 - k}
        for k in (2, 3, 4)
    ]
    sel = RankSelection(
        ks=[2, 3, 4], table=table, picks={"knee": 3, "bic": 4}, recommended=3, settings={}
    )
    page = sel._repr_html_()
    assert "recommended k = 3" in page and "knee: 3" in page and len(_images(page)) == 1
    assert len(page) < 300_000
    assert isinstance(sel.plot(), Figure)
    assert isinstance(sel.plot(kind="stability"), Figure)
    with pytest.raises(ValueError, match="use one of criteria, consensus, stability"):
        sel.plot(kind="maps")
    assert "criteria" in sel.plot(tmp_path)  # with a folder: the PNG files, as before


def test_repr_html_stays_small_for_many_noisy_components():
    rng = np.random.default_rng(0)
    k = 30
    res = unmix.Result(
        A=rng.random((128 * 128, k)),
        S=rng.random((k, 400)),
        objective=1.0,
        history={"objective": np.ones(3)},
        n_iter=2,
        converged=True,
        stop_reason="tol",
        timings={},
        spec={"k": k},
        spatial_shape=(128, 128),
    )
    page = res._repr_html_()
    assert len(page) < 300_000 and "... and 6 more components" in page
    assert len(_images(page)) == 2 * 24
