"""The interactive viewer of report.html: payload, binning, size, and clicks in Chromium."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from cuzn_image import cuzn_eels

import unmix
from chrome import HAVE_CHROME, NO_CHROME, chrome, needs_chrome
from unmix.preprocessing import NormalizePixels
from unmix.report import write_report
from unmix.report._interactive import Viewer, affine_model, bin_mean


def payload(path) -> dict:
    text = path.read_text(encoding="utf-8")
    m = re.search(r'id="unmix-viewer-data">(.*?)</script>', text, re.S)
    assert m, "no viewer payload"
    return json.loads(m.group(1))


class Refs(HTMLParser):
    """Every src / href attribute of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.refs += [v or "" for k, v in attrs if k in ("src", "href")]


# ------------------------------------------------------------------------------ data
@pytest.fixture(scope="module")
def eels(tmp_path_factory):
    """NMF and PCA of the bundled EELS map, saved to HDF5; a full and a binned report."""
    d, X, axes = cuzn_eels()
    h, w = d["data"].shape[:2]
    image = unmix.SpectralImage(d["data"], *axes, {"title": "EELS"})
    out = tmp_path_factory.mktemp("viewer")
    fits = {
        "NMF": unmix.factorize(X, 3, spatial_shape=(h, w), max_iter=60, random_state=0),
        "PCA": unmix.factorize(X, 3, preset="pca", spatial_shape=(h, w)),
    }
    saved = {name: res.save(out / f"{name}.h5") for name, res in fits.items()}
    full = write_report(out / "full", fits, X=X, image=image)
    binned = write_report(out / "binned", fits, X=X, image=image, viewer=150_000)
    return {"data": d["data"], "saved": saved, "full": full, "binned": binned}


def expected(eels, name, rows):
    """Model rows of the saved result (unmix.load_result), in float64."""
    res = unmix.load_result(eels["saved"][name])
    return np.asarray(res.reconstruct(rows=rows), dtype=float), res


def block_mean(a3, fy, fx, fc, r, c):
    """The mean of block (r, c) of a (h, w, m) array, channels binned by fc (loops)."""
    blk = a3[r * fy : (r + 1) * fy, c * fx : (c + 1) * fx].reshape(-1, a3.shape[2]).mean(0)
    return np.array([blk[i : i + fc].mean() for i in range(0, blk.size, fc)])


# ------------------------------------------------------------------------- no browser
def test_bin_mean_ragged_and_plan_fits_budget():
    a = np.arange(10.0).reshape(1, 10)
    assert np.allclose(bin_mean(a, 1, 4), [[1.5, 5.5, 8.5]])  # the last bin is shorter
    assert np.allclose(bin_mean(a, 1, 1), a)
    big = Viewer((512, 512), (2048,))
    big.plan(n_full=1, n_maps=3, budget=24_000_000)
    _, _, m = big.shown
    assert big.n_bytes(m + 3) <= 24_000_000 < Viewer((512, 512), (2048,)).n_bytes(2048 + 3)
    assert (big.fy, big.fx) == (4, 4) and m == 256  # channels to 512, scan to 128, then more
    assert "4 x 4 in space and 8x in channels" in big.note()
    line = Viewer((1, 3000), (1000,))
    line.plan(n_full=1, n_maps=2, budget=400_000)
    assert line.fy == 1 and line.n_bytes(line.shown[2] + 2) <= 400_000
    small = Viewer((50, 40), (162,))
    small.plan(n_full=1, n_maps=6, budget=24_000_000)
    assert (small.fy, small.fx, small.fc) == (1, 1, 1) and "full resolution" in small.note()


def test_payload_full_and_binned(eels):
    p = payload(eels["full"])
    assert p["bins"] == {"space": [1, 1], "channels": 1}
    assert "full resolution" in p["note"] and (p["grid"]["h"], p["grid"]["w"]) == (50, 40)
    assert [m["name"] for m in p["methods"]] == ["NMF", "PCA"]
    pca = p["methods"][1]
    assert pca["base"] and pca["mean"] and pca["model"] is None  # mean added back in the page
    b = payload(eels["binned"])
    fy, fx = b["bins"]["space"]
    fc = b["bins"]["channels"]
    assert fy * fx * fc > 1
    hb, wb, m = b["grid"]["h"], b["grid"]["w"], b["axis"]["n"]
    assert (hb, wb, m) == (-(-50 // fy), -(-40 // fx), -(-162 // fc))
    assert 4 * hb * wb * (m + 6) <= 150_000  # data + two maps of k = 3 in the budget
    text = eels["binned"].read_text(encoding="utf-8")
    assert f"binned {fy} x {fx} in space" in text and f"{fc}x in channels" in text
    assert "Data shown binned" in text


def test_affine_model_probe():
    mx = unmix.datasets.make_mixture(3, spatial_shape=(6, 7), n_channels=20, snr_db=40)
    X = np.clip(mx.X, 0, None) + 0.1
    pca = unmix.factorize(X, 2, preset="pca", spatial_shape=(6, 7))
    eff, base = affine_model(pca)
    assert np.allclose(eff, np.asarray(pca.S)) and np.allclose(base, np.asarray(pca.mean))
    kw = {"spatial_shape": (6, 7), "max_iter": 5, "random_state": 0}
    scaled = unmix.factorize(X, 2, preprocessing=[NormalizePixels()], **kw)
    assert affine_model(scaled) is None  # per-pixel scale: the page gets the model rows


def test_report_is_offline_and_escapes_names(eels, tmp_path):
    for key in ("full", "binned"):
        text = eels[key].read_text(encoding="utf-8")
        parser = Refs()
        parser.feed(text)
        assert all(r.startswith(("data:", "#")) for r in parser.refs), parser.refs
        assert "http://" not in text and "https://" not in text
        assert "<script src" not in text.lower()
    mx = unmix.datasets.make_mixture(2, spatial_shape=(4, 5), n_channels=8, snr_db=40)
    res = unmix.factorize(np.clip(mx.X, 0, None), 2, spatial_shape=(4, 5), max_iter=3)
    page = write_report(tmp_path, {"</script><b>x": res}).read_text(encoding="utf-8")
    assert "</script><b>x" not in page
    assert payload(tmp_path / "report.html")["methods"][0]["name"] == "</script><b>x"


def test_demo_report_under_5_mb(tmp_path):
    from click.testing import CliRunner

    from unmix.cli import main

    out = tmp_path / "demo"
    run = CliRunner().invoke(main, ["demo", "-o", str(out), "-q"])
    assert run.exit_code == 0, run.output
    page = out / "report.html"
    assert page.stat().st_size < 5e6
    assert payload(page)["data"] and 'id="unmix-viewer"' in page.read_text(encoding="utf-8")


@pytest.mark.slow  # a 2 GB float32 map (the figures and the viewer pass over it in blocks)
def test_512x512x2048_report_under_50_mb(tmp_path):
    h = w = 512
    m, k = 2048, 3
    yy, xx = np.mgrid[0:h, 0:w] / h
    A = np.stack([xx, yy, 1 - xx * yy], -1).reshape(-1, k).astype(np.float32)
    S = np.abs(np.random.default_rng(0).normal(size=(k, m))).astype(np.float32)
    X = A @ S
    res = unmix.Result(
        A=A,
        S=S,
        objective=1.0,
        history={"objective": np.array([2.0, 1.0])},
        n_iter=1,
        converged=True,
        stop_reason="tol",
        timings={"total": 1.0},
        spec={"k": k, "solver": "hals", "loss": "frobenius"},
        spatial_shape=(h, w),
    )
    page = write_report(tmp_path, res, X=X)
    assert page.stat().st_size < 50e6
    p = payload(page)
    fy, fx = p["bins"]["space"]
    fc = p["bins"]["channels"]
    assert fy * fx * fc > 1 and "Data shown binned" in p["note"]
    data = np.frombuffer(base64.b64decode(p["data"]), "<f4")
    hb, wb, mb = p["grid"]["h"], p["grid"]["w"], p["axis"]["n"]
    assert data.size == hb * wb * mb
    want = block_mean(X[: fy * w * 1].reshape(fy, w, m), fy, fx, fc, 0, 1)
    assert np.allclose(data[mb : 2 * mb], want, rtol=1e-5)


# ---------------------------------------------------------------------------- browser
@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    if not HAVE_CHROME:
        pytest.skip(NO_CHROME)
    d = chrome(tmp_path_factory.mktemp("chrome-profile"))
    yield d
    d.quit()


def click_pixel(driver, canvas, row, col):
    """Click the centre of map pixel (row, col) of ``canvas``; return the state shown."""
    from selenium.webdriver.common.action_chains import ActionChains

    g = driver.execute_script(
        "arguments[0].scrollIntoView({block: 'center'});"
        "var r = arguments[0].getBoundingClientRect(); return [r.width, r.height];",
        canvas,
    )
    p = json.loads(driver.find_element("id", "unmix-viewer-data").get_attribute("textContent"))
    w, h = p["grid"]["w"], p["grid"]["h"]
    dx = (col + 0.5) * g[0] / w - g[0] / 2
    dy = (row + 0.5) * g[1] / h - g[1] / 2
    ActionChains(driver).move_to_element_with_offset(canvas, dx, dy).click().perform()
    pre = driver.find_element("id", "unmix-viewer-state").get_attribute("textContent")
    assert json.loads(pre) == driver.execute_script("return window.unmixViewer.state();")
    return json.loads(pre)


def close(got, want, scale):
    return np.allclose(np.asarray(got, dtype=float), want, rtol=1e-5, atol=1e-5 * scale)


@needs_chrome
def test_clicked_pixels_show_data_model_residual(eels, driver):
    driver.get(eels["full"].resolve().as_uri())
    cube = eels["data"].astype(float)
    maps = driver.find_elements("css selector", "#unmix-viewer .uv-map canvas")
    assert len(maps) == 6  # 3 NMF + 3 PCA maps
    for i, (r, c) in enumerate([(0, 0), (17, 29), (49, 39)]):
        st = click_pixel(driver, maps[2 * i], r, c)  # any map drives every panel
        assert st["pixel"] == [r, c] and st["pinned"] and st["index"] == r * 40 + c
        x = cube[r, c]
        scale = np.abs(x).max()
        for meth in st["methods"]:
            model, res = expected(eels, meth["name"], slice(r * 40 + c, r * 40 + c + 1))
            assert close(meth["data"], x, scale), meth["name"]
            assert close(meth["model"], model[0], scale), meth["name"]
            assert close(meth["residual"], x - model[0], scale), meth["name"]
            parts = np.asarray(meth["contributions"])
            A = np.asarray(res.A)[r * 40 + c]
            assert close(parts, A[:, None] * np.asarray(res.S), scale)
            base = np.asarray(meth["base"] if meth["base"] else 0.0)
            assert close(parts.sum(0) + base, model[0], scale)
    box = driver.find_element("css selector", "input[data-method='1'][data-component='2']")
    box.click()
    driver.find_element("id", "uv-log").click()
    st = driver.execute_script("return window.unmixViewer.state();")
    assert st["methods"][1]["shown"] == [True, True, False]
    assert st["methods"][0]["shown"] == [True, True, True]
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


@needs_chrome
def test_binned_report_shows_binned_values(eels, driver):
    driver.get(eels["binned"].resolve().as_uri())
    p = payload(eels["binned"])
    fy, fx = p["bins"]["space"]
    fc = p["bins"]["channels"]
    cube = eels["data"].astype(float)
    maps = driver.find_elements("css selector", "#unmix-viewer .uv-map canvas")
    hb, wb = p["grid"]["h"], p["grid"]["w"]
    for r, c in [(0, 0), (hb // 2, wb // 3), (hb - 1, wb - 1)]:
        st = click_pixel(driver, maps[0], r, c)
        x = block_mean(cube, fy, fx, fc, r, c)
        scale = np.abs(x).max()
        for meth in st["methods"]:
            model, _ = expected(eels, meth["name"], slice(None))
            want = block_mean(model.reshape(50, 40, -1), fy, fx, fc, r, c)
            assert close(meth["data"], x, scale)
            assert close(meth["model"], want, scale), meth["name"]
            assert close(meth["residual"], x - want, scale)
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


@pytest.mark.parametrize(
    ("grid", "fy", "fx"), [((1, 1000), 1, 4), ((6, 50), 4, 3), ((5, 40), 1, 1)]
)
def test_large_bands_are_read_in_runs_of_columns_with_the_same_bins(grid, fy, fx, monkeypatch):
    """A band of scan rows above the limit (a long line scan: the whole scan) is read a
    run of whole column bins of one row at a time, and bins to the same values."""
    from unmix.report import _interactive

    X = np.random.default_rng(0).random((grid[0] * grid[1], 7))
    viewer = _interactive.Viewer(grid=grid, signal=(7,), fy=fy, fx=fx)
    whole = viewer.pixels(lambda a, b: X[a:b], 7)
    monkeypatch.setattr(_interactive, "BAND_VALUES", 7 * 2 * fx + 5)  # 2 bins a run
    widest = []
    runs = viewer.pixels(lambda a, b: widest.append(b - a) or X[a:b], 7)
    np.testing.assert_allclose(runs, whole, rtol=1e-6)
    assert max(widest) <= 2 * fx
