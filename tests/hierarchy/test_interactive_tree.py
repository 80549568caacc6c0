"""The interactive viewer of tree.html: node maps and endmembers, pixel spectra (Chromium)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from chrome import chrome, needs_chrome
from unmix.hierarchy import hierarchical_nmf, write_tree_report
from unmix.synthetic import make_hierarchy


@pytest.fixture(scope="module")
def tree_page(tmp_path_factory):
    h = make_hierarchy(random_state=4, spatial_shape=(10, 12), n_channels=60)
    t = hierarchical_nmf(h.X, 3, spatial_shape=h.spatial_shape)
    out = tmp_path_factory.mktemp("tree")
    axis = np.linspace(100.0, 159.0, 60)
    page = write_tree_report(out, t, X=h.X, axis=axis, axis_label="Energy (eV)")
    return h.X, t, page


def test_tree_page_payload(tree_page, tmp_path):
    X, t, page = tree_page
    text = page.read_text(encoding="utf-8")
    m = re.search(r'id="unmix-viewer-data">(.*?)</script>', text, re.S)
    p = json.loads(m.group(1))
    assert [nd["id"] for nd in p["tree"]["nodes"]] == t.preorder()
    assert p["axis"]["label"] == "Energy (eV)" and p["axis"]["values"][-1] == 159.0
    assert p["methods"][0]["names"] == [f"n{i}" for i in t.levels[-1].nodes]
    assert "http://" not in text and "https://" not in text
    # without the data the page stays static, as before
    bare = write_tree_report(tmp_path, t).read_text(encoding="utf-8")
    assert "<script" not in bare and "unmix-viewer" not in bare
    with pytest.raises(ValueError, match="X has shape"):
        write_tree_report(tmp_path, t, X=X[:, :-1])


@needs_chrome
def test_click_node_then_pixel(tree_page, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    X, t, page = tree_page
    driver = chrome(tmp_path / "profile")
    try:
        driver.get(page.resolve().as_uri())
        S = np.asarray(t.S, dtype=float)
        for node in (t.nodes[0].children[1], t.leaves[0]):
            driver.find_element("css selector", f"button[data-node='{node}']").click()
            shown = driver.execute_script("return window.unmixViewer.state().node;")
            assert shown["id"] == node
            want = np.asarray(t.node_map(node), dtype=float).reshape(-1)
            assert np.allclose(shown["map"], want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
            assert np.allclose(shown["endmember"], S[node], rtol=1e-5, atol=1e-7)
        canvas = driver.find_element("css selector", "#unmix-viewer .uv-method .uv-map canvas")
        size = driver.execute_script(
            "arguments[0].scrollIntoView({block: 'center'});"
            "var r = arguments[0].getBoundingClientRect(); return [r.width, r.height];",
            canvas,
        )
        r, c = 7, 2
        dx, dy = (c + 0.5) * size[0] / 12 - size[0] / 2, (r + 0.5) * size[1] / 10 - size[1] / 2
        ActionChains(driver).move_to_element_with_offset(canvas, dx, dy).click().perform()
        st = json.loads(
            driver.find_element("id", "unmix-viewer-state").get_attribute("textContent")
        )
        assert st["pixel"] == [r, c] and st["node"]["id"] == t.leaves[0]
        p, lev = r * 12 + c, t.levels[-1]
        model = np.asarray(lev.A, dtype=float)[p] @ np.asarray(lev.S, dtype=float)
        meth = st["methods"][0]
        scale = np.abs(X[p]).max()
        assert np.allclose(meth["data"], X[p], rtol=1e-5, atol=1e-5 * scale)
        assert np.allclose(meth["model"], model, rtol=1e-5, atol=1e-5 * scale)
        assert np.allclose(meth["residual"], X[p] - model, rtol=1e-5, atol=1e-5 * scale)
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        driver.quit()
