"""Report figures and the self-contained HTML report (rendered in headless Chromium)."""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import struct
from html.parser import HTMLParser
from typing import ClassVar

import numpy as np
import pytest
from cuzn_image import cuzn_eels

import unmix
from chrome import chrome, needs_chrome
from unmix.report import _figures as figures
from unmix.report import _model, _panels, write_report

PNG = b"\x89PNG\r\n\x1a\n"
EVIL = "scan <b>01</b> & co.h5"  # a file name that must be escaped


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG)
    return struct.unpack(">II", data[16:24])


def check_png(path, min_bytes: int = 5000) -> None:
    data = open(path, "rb").read()
    w, h = png_size(data)
    assert len(data) > min_bytes and w > 200 and h > 150, (path, len(data), w, h)


@pytest.fixture
def captured(monkeypatch):
    """The matplotlib Figure objects the figure functions save (to inspect their axes)."""
    figs = []
    real = _panels.save

    def save(fig, path):
        figs.append(fig)
        return real(fig, path)

    monkeypatch.setattr(figures, "save", save)  # the name the figure functions call
    return figs


# ------------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def small():
    """NMF and PCA of the 20 x 25 x 40 planted mixture (1-D signal, 2-D scan)."""
    mx = unmix.datasets.make_mixture(3, spatial_shape=(20, 25), n_channels=40, snr_db=40)
    X = np.clip(mx.X, 0, None)
    nmf = unmix.factorize(X, 3, spatial_shape=(20, 25), max_iter=40, random_state=0)
    pca = unmix.factorize(X, 3, preset="pca", spatial_shape=(20, 25))
    return X, nmf, pca


def calibrated_image(X: np.ndarray, *, signal_axis: unmix.Axis) -> unmix.SpectralImage:
    scan = [unmix.Axis("y", 20, 2.5, 0.0, "µm"), unmix.Axis("x", 25, 2.5, 10.0, "µm")]
    meta = {
        "title": "planted <mixture>",
        "source": f"/data/{EVIL}",
        "sha256": "0f" * 32,
        "reader": "numpy",
        "quantity": "Intensity",
        "units": "counts",
    }
    return unmix.SpectralImage(X.reshape(20, 25, -1), scan, [signal_axis], meta)


@pytest.fixture(scope="module")
def patterns():
    """A 4-D cube: 10 x 12 scan of 8 x 8 patterns, factorized with signal_shape=(8, 8)."""
    mx = unmix.datasets.make_mixture(3, spatial_shape=(10, 12), n_channels=64, snr_db=40)
    X = np.clip(mx.X, 0, None)
    res = unmix.factorize(
        X, 3, spatial_shape=(10, 12), signal_shape=(8, 8), max_iter=30, random_state=0
    )
    pca = unmix.factorize(X, 3, preset="pca", spatial_shape=(10, 12), signal_shape=(8, 8))
    scan = [unmix.Axis("y", 10, 0.5, 0, "nm"), unmix.Axis("x", 12, 0.5, 0, "nm")]
    det = [unmix.Axis("ky", 8, 0.1, -0.4, "1/Å"), unmix.Axis("kx", 8, -0.1, 0.4, "1/Å")]
    image = unmix.SpectralImage(X.reshape(10, 12, 8, 8), scan, det)
    return X, res, pca, image


# ---------------------------------------------------------------------------- figures
def test_all_figures_1d_signal(tmp_path, small):
    X, nmf, pca = small
    paths = [
        figures.plot_endmembers(nmf, tmp_path / "e.png"),
        figures.plot_maps(pca, tmp_path / "m.png"),
        figures.plot_loss(nmf, tmp_path / "l.png"),
        figures.plot_residual_map(nmf, X, tmp_path / "r.png"),
        figures.plot_pixel_fits(nmf, X, tmp_path / "p.png"),
        figures.plot_comparison({"PCA": pca, "NMF": nmf}, tmp_path / "c.png"),
    ]
    for path in paths:
        assert os.path.dirname(path) == str(tmp_path)
        check_png(path)
    with pytest.raises(ValueError, match="names"):
        figures.plot_endmembers(nmf, tmp_path / "x.png", names=["only one"])
    with pytest.raises(ValueError, match="shape"):
        figures.plot_residual_map(nmf, X[:, :10], tmp_path / "x.png")


def test_all_figures_2d_signal(tmp_path, patterns, captured):
    X, res, pca, image = patterns
    assert res.endmembers().shape == (3, 8, 8)
    check_png(figures.plot_endmembers(res, tmp_path / "e.png", image=image, shared_scale=True))
    limits = {tuple(ax.images[0].get_clim()) for ax in captured[-1].axes if ax.images}
    assert len(limits) == 1  # one shared colour scale
    check_png(figures.plot_maps(res, tmp_path / "m.png", image=image))
    check_png(figures.plot_loss(res, tmp_path / "l.png"))
    check_png(figures.plot_residual_map(res, X, tmp_path / "r.png", image=image))
    check_png(figures.plot_pixel_fits(res, X, tmp_path / "p.png", image=image))
    check_png(figures.plot_comparison({"PCA": pca, "NMF": res}, tmp_path / "c.png", image=image))
    pattern_axes = [ax for ax in captured[0].axes if ax.images]
    ax = pattern_axes[0]
    assert ax.get_xlabel() == "kx (1/Å)" and ax.get_ylabel() == "ky (1/Å)"
    left, right = ax.get_xlim()
    assert left > right  # kx runs from +0.4 down: the image keeps its orientation
    assert ax.images[0].get_extent() == pytest.approx((0.45, -0.35, 0.35, -0.45))
    np.testing.assert_allclose(ax.images[0].get_array(), res.endmembers()[0])
    data, model = (a.images[0] for a in captured[4].axes[:2])  # pixel fits: row 1
    assert data.get_clim() == model.get_clim()  # data and model on one colour scale
    cmaps = {a.images[0].get_cmap().name for a in captured[-1].axes if a.images}
    assert "RdBu_r" in cmaps  # PCA components with negative lobes: diverging, centred
    for a in captured[-1].axes:
        if a.images and a.images[0].get_cmap().name == "RdBu_r":
            lo, hi = a.images[0].get_clim()
            assert lo == pytest.approx(-hi)


def test_calibrated_nonuniform_and_reversed_axes(tmp_path, small, captured):
    X, nmf, _ = small
    raman = unmix.Axis.from_values("Raman shift", 200 + 3.0 * np.arange(40) ** 1.5, "cm⁻¹")
    assert not raman.is_uniform
    image = calibrated_image(X, signal_axis=raman)
    figures.plot_endmembers(nmf, tmp_path / "e.png", image=image)
    ax = captured[-1].axes[-1]
    assert ax.get_xlabel() == "Raman shift (cm⁻¹)"
    np.testing.assert_allclose(ax.lines[0].get_xdata(), raman.values)
    # a bias sweep from +0.2 V down to -0.1 V: each point at its own bias, axis ascending
    bias = unmix.Axis("Bias", 40, -0.3 / 39, 0.2, "V", navigate=False)
    image = calibrated_image(X, signal_axis=bias)
    figures.plot_endmembers(nmf, tmp_path / "b.png", image=image, overlay=True)
    ax = captured[-1].axes[0]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), bias.values)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.asarray(nmf.S)[0])
    assert ax.get_xlim() == pytest.approx((-0.1, 0.2)) and ax.get_xlabel() == "Bias (V)"
    figures.plot_pixel_fits(nmf, X, tmp_path / "p.png", image=image, pixels=[(3, 4), 17])
    ax = captured[-1].axes[0]
    assert "(row 3, col 4)" in ax.get_title() and ax.get_ylabel() == "Intensity (counts)"
    np.testing.assert_allclose(ax.lines[-2].get_ydata(), X[3 * 25 + 4])  # the data
    # maps: physical extent and a scale bar in µm instead of ticks
    figures.plot_maps(nmf, tmp_path / "m.png", image=image)
    ax = captured[-1].axes[0]
    x0, x1, y1, y0 = ax.images[0].get_extent()
    assert (x0, x1, y0, y1) == pytest.approx((8.75, 71.25, -1.25, 48.75))
    bars = [t.get_text() for a in ax.artists for t in a.findobj(lambda o: hasattr(o, "get_text"))]
    assert any(re.fullmatch(r"\d+ µm", t) for t in bars), bars
    assert list(ax.get_xticks()) == []


def test_line_scan_and_volume(tmp_path, small, captured):
    X, _, _ = small
    line = unmix.factorize(X, 3, spatial_shape=(500,), max_iter=20, random_state=0)
    figures.plot_maps(line, tmp_path / "line.png")
    assert all(ax.lines for ax in captured[-1].axes)  # profiles, one panel per component
    figures.plot_residual_map(line, X, tmp_path / "line_r.png")
    vol = unmix.factorize(X, 3, spatial_shape=(5, 10, 10), max_iter=20, random_state=0)
    figures.plot_maps(vol, tmp_path / "vol.png")
    assert "middle slice" in captured[-1].get_suptitle()
    assert captured[-1].axes[0].images[0].get_array().shape == (10, 10)
    np.testing.assert_allclose(captured[-1].axes[0].images[0].get_array(), vol.maps()[2, :, :, 0])
    figures.plot_residual_map(vol, X, tmp_path / "vol_r.png")
    assert "middle slice" in captured[-1].get_suptitle()
    for name in ("line.png", "line_r.png", "vol.png", "vol_r.png"):
        check_png(tmp_path / name)


def test_loss_shades_the_compressed_phase(tmp_path, small, captured):
    X, _, _ = small
    res = unmix.factorize(X, 3, spatial_shape=(20, 25), compress=5, max_iter=60, random_state=0)
    assert np.any(res.history["phase"] == 1)
    figures.plot_loss(res, tmp_path / "l.png")
    ax = captured[-1].axes[0]
    assert ax.get_yscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "compressed phase" in labels and "objective" in labels
    first = int(np.argmax(res.history["phase"] == 1))
    assert ax.patches[0].get_x() == pytest.approx(first - 0.5)


def test_relative_residuals_blockwise(small, monkeypatch):
    X, nmf, pca = small
    norm = unmix.factorize(
        X, 3, preprocessing=[unmix.NormalizePixels("l2")], max_iter=20, random_state=0
    )
    monkeypatch.setattr(_model, "BLOCK_VALUES", 7 * X.shape[1])  # blocks of 7 pixels
    for res in (nmf, pca, norm):
        rel, total = figures.relative_residuals(res, X)
        R = X - np.asarray(res.reconstruct())
        expect = np.linalg.norm(R, axis=1) / np.linalg.norm(X, axis=1)
        np.testing.assert_allclose(rel, expect, rtol=1e-10)
        assert total == pytest.approx(np.linalg.norm(R) / np.linalg.norm(X), rel=1e-10)
    torch = pytest.importorskip("torch")
    Xt = torch.from_numpy(X)
    pca_t = unmix.factorize(Xt, 3, preset="pca", spatial_shape=(20, 25))
    rel_t, _ = figures.relative_residuals(pca_t, Xt)  # the model stays on torch
    np.testing.assert_allclose(rel_t, figures.relative_residuals(pca, X)[0], rtol=1e-6)
    parts, base = _model.contributions(pca_t, 17)  # what each PC and the mean add
    np.testing.assert_allclose(parts.sum(0) + base, np.asarray(pca.reconstruct())[17], rtol=1e-6)


# ------------------------------------------------------------------------------- HTML
class _Checker(HTMLParser):
    """Collects images and checks that every non-void element is closed in order."""

    VOID: ClassVar[set[str]] = set(
        "area base br col embed hr img input link meta source track wbr".split()
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.imgs: list[dict] = []
        self.refs: list[str] = []
        self.errors: list[str] = []
        self.doctype = ""
        self.html_attrs: dict = {}
        self.charset = False
        self.title = ""
        self._in_title = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        self.refs += [v for k, v in attrs if k in ("src", "href") and v is not None]
        if tag == "html":
            self.html_attrs = a
        if tag == "meta" and a.get("charset", "").lower() == "utf-8":
            self.charset = True
        if tag == "img":
            self.imgs.append(a)
        self._in_title = tag == "title"
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unexpected </{tag}>")
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def check_html(path, n_figures: int) -> _Checker:
    text = path.read_text(encoding="utf-8")
    c = _Checker()
    c.feed(text)
    c.close()
    assert c.doctype.lower() == "doctype html"
    assert c.html_attrs.get("lang") == "en" and c.charset
    assert not c.errors and not c.stack, (c.errors, c.stack)
    assert len(c.imgs) == n_figures
    for img in c.imgs:
        assert img["src"].startswith("data:image/png;base64,")
        assert img.get("alt", "").strip()
        png = base64.b64decode(img["src"].split(",", 1)[1])
        assert png_size(png) == (int(img["width"]), int(img["height"]))
    assert all(ref.startswith(("data:", "#")) for ref in c.refs), c.refs
    assert "http://" not in text and "https://" not in text
    assert "<script src" not in text.lower()  # the viewer's script is inline
    return c


def test_report_single_result_escapes_metadata(tmp_path, small):
    X, nmf, _ = small
    image = calibrated_image(X, signal_axis=unmix.Axis("Energy", 40, 0.5, 100.0, "eV"))
    out = tmp_path / "single"
    path = write_report(out, nmf, image=image, extra={"operator": "A & <B>"})
    assert path == out / "report.html"
    pngs = sorted(out.glob("*.png"))
    # endmembers, maps, loss, residual, pixel fits (X from the image), overview, label map
    assert len(pngs) == 7
    c = check_html(path, len(pngs))
    text = path.read_text(encoding="utf-8")
    assert "scan &lt;b&gt;01&lt;/b&gt; &amp; co.h5" in text and EVIL not in text
    assert c.title == "planted <mixture>"  # the parser unescapes what the page escaped
    assert "A &amp; &lt;B&gt;" in text and "0f" * 32 in text
    for needle in (
        "NonNegative on A",
        "nndsvda",
        "hals",
        "Energy",
        "eV",
        "max_iter",
        "stop reason",
        "Axes",
    ):
        assert needle in text, needle
    assert 'id="comparison"' not in text
    # without data the report still has the figures of the factors
    if "context" in {f.name for f in dataclasses.fields(nmf)}:  # provenance kept in the result
        nmf = dataclasses.replace(nmf, context={"source": EVIL, "reader": "numpy"})
    bare = write_report(tmp_path / "bare", {"<NMF>": nmf}, title="T")
    assert len(check_html(bare, 4).imgs) == 4  # endmembers, maps, loss, label map
    text = bare.read_text(encoding="utf-8")
    assert "&lt;NMF&gt;" in text and EVIL not in text


@pytest.fixture(scope="module")
def eels_report(tmp_path_factory):
    """PCA, NMF and NMF + L1 of the bundled Cu/ZnO EELS map, reported together."""
    d, X, axes = cuzn_eels()
    h, w = d["data"].shape[:2]
    meta = {
        "title": "Cu/ZnO EELS",
        "signal_type": "EELS",
        "source": d["source"],
        "quantity": "Intensity",
        "units": "counts",
        "reader": "unmix.datasets",
    }
    image = unmix.SpectralImage(d["data"], *axes, meta)
    kw = {"spatial_shape": (h, w), "max_iter": 150, "random_state": 0}
    results = {
        "PCA": unmix.factorize(X, 3, preset="pca", spatial_shape=(h, w)),
        "NMF": unmix.factorize(X, 3, **kw),
        "NMF + L1": unmix.factorize(X, 3, regularizers=[unmix.L1(2e3)], **kw),
    }
    out = tmp_path_factory.mktemp("eels")
    path = write_report(out, results, X=X, image=image, extra={"dataset": d["source"]})
    return path, len(list(out.glob("*.png")))


@pytest.mark.slow  # the bundled real EELS map, three fits
def test_report_eels_end_to_end(eels_report):
    path, n_png = eels_report
    assert n_png == 3 * 6 + 2  # per result 5 figures and a label map; comparison, overview
    check_html(path, n_png)
    text = path.read_text(encoding="utf-8")
    assert 'id="comparison"' in text and "<h2>Comparison</h2>" in text
    for needle in (
        "Energy loss",
        "svd",
        "Orthogonal on S",
        "Center",
        "L1 on A: lam = 2000",
        "relative residual",
        'href="#result-3"',
    ):
        assert needle in text, needle
    for png in path.parent.glob("*.png"):
        check_png(png)


@pytest.mark.slow
@needs_chrome
def test_report_renders_in_chromium(eels_report, tmp_path):
    path, n_png = eels_report
    driver = chrome(tmp_path / "chrome-profile")
    try:
        driver.get(path.resolve().as_uri())
        assert driver.title == "Cu/ZnO EELS"
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt]);"
        )
        assert len(images) == n_png
        assert all(done and width > 0 and alt for done, width, alt in images), images
        fetched = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
            ".filter(n => !n.startsWith('data:'));"
        )
        assert fetched == []
        height = driver.execute_script("return document.documentElement.scrollHeight;")
        driver.set_window_size(1280, min(int(height), 16000))
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot))
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []
    finally:
        driver.quit()
    data = shot.read_bytes()
    w, h = png_size(data)
    assert w >= 1000 and h >= 900 and len(data) > 100_000
