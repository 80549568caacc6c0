"""Bayesian Poisson NMF as a :class:`unmix.Result` with credible bands (issue 13, item 3):
the bands saved in ``result.h5``, read back checked, drawn in the report and explained
as model-based; on the TEM EDS map they narrow as the map is binned.

``X`` is (pixels, channels); the planted generator is the one of ``test_vb.py``.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

import unmix
from conftest import bayes_planted as planted
from conftest import shared_path
from unmix.bayes import bayes_nmf
from unmix.report import write_report


@pytest.fixture(scope="module")
def fitted():
    X, _, _ = planted(3, 50.0)
    return X, bayes_nmf(X, 5, random_state=0)


def test_result_holds_the_posterior_means_and_their_bands(fitted):
    _, res = fitted
    r = res.to_result(spatial_shape=(32, 32))
    assert r.k == res.k_effective == 3
    np.testing.assert_array_equal(r.A, res.A_mean)
    np.testing.assert_array_equal(r.S, res.S_mean)
    assert r.objective == pytest.approx(-res.elbo[-1])
    assert r.history["objective"].shape == (len(res.elbo),)
    assert r.spec["solver"] == "bayes-vb" and r.spec["k_max"] == 5
    assert r.spec["rank_path"][-1][0] == 3
    b = r.bands
    assert b.level == 0.9 and b.method.startswith("model-based")
    assert np.all(b.S_lower <= r.S) and np.all(r.S <= b.S_upper)
    assert np.all(b.A_lower <= r.A) and np.all(r.A <= b.A_upper)
    assert r.maps().shape == (32, 32, 3)


def test_bands_survive_the_result_file(fitted, tmp_path):
    X, res = fitted
    r = res.to_result(spatial_shape=(32, 32))
    back = unmix.load_result(r.save(tmp_path / "result.h5"))
    for name in ("S_lower", "S_upper", "A_lower", "A_upper"):
        np.testing.assert_array_equal(getattr(back.bands, name), getattr(r.bands, name))
    assert back.bands.level == 0.9 and back.bands.note == r.bands.note
    assert back.spec["rank_path"] == [list(p) for p in r.spec["rank_path"]]
    plain = unmix.factorize(X, 3, random_state=0)
    assert unmix.load_result(plain.save(tmp_path / "plain.h5")).bands is None


def test_float32_bands_stay_float32(tmp_path):
    X, _, _ = planted(3, 50.0)
    r = bayes_nmf(X.astype(np.float32), 3, ard=False, random_state=0).to_result()
    assert r.A.dtype == r.bands.A_lower.dtype == r.bands.S_upper.dtype == np.float32
    back = unmix.load_result(r.save(tmp_path / "r.h5"))
    assert back.bands.S_lower.dtype == np.float32


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda g: g.__delitem__("A_upper"), "A_lower and A_upper together or neither"),
        (lambda g: g.__delitem__("S_lower"), "no dataset 'S_lower'"),
        (lambda g: g.attrs.__setitem__("level", 1.5), "level must be in"),
        (lambda g: _replace(g, "S_lower", lambda v: v[:, :-1]), r"S_lower is \(3, 63\)"),
        (lambda g: _replace(g, "S_upper", lambda v: v - 1.0), "lower bounds above"),
        (lambda g: _replace(g, "A_lower", lambda v: v * np.nan), "non-finite"),
    ],
)
def test_damaged_bands_are_refused(fitted, tmp_path, damage, message):
    _, res = fitted
    path = res.to_result().save(tmp_path / "result.h5")
    with h5py.File(path, "r+") as f:
        damage(f["bands"])
    with pytest.raises(ValueError, match=message):
        unmix.load_result(path)


def test_model_bands_at_chosen_pixels_survive_the_result_file(fitted, tmp_path):
    """``to_result(model_pixels=...)``: the bands of the model ``A @ S`` at those pixels
    (:meth:`BayesResult.model_intervals`) are saved, read back and looked up by pixel."""
    _, res = fitted
    r = res.to_result(spatial_shape=(32, 32), model_pixels=[700, 3, 700])
    b = r.bands
    np.testing.assert_array_equal(b.model_pixels, [3, 700])
    _, lo, hi = res.model_intervals([3, 700])
    np.testing.assert_array_equal(b.model_lower, lo)
    np.testing.assert_array_equal(b.model_band(700)[1], hi[1])
    assert b.model_band(5) is None and res.to_result().bands.model_band(3) is None
    back = unmix.load_result(r.save(tmp_path / "result.h5")).bands
    for name in ("model_pixels", "model_lower", "model_upper"):
        np.testing.assert_array_equal(getattr(back, name), getattr(b, name))


def test_report_shades_the_model_band_at_the_pixels_it_shows(fitted, tmp_path):
    from matplotlib.figure import Figure

    from unmix.report import default_pixels
    from unmix.report._figures import _model_band

    X, res = fitted
    plain = res.to_result(spatial_shape=(32, 32))
    shown = [i for _, i in default_pixels(plain, X)]
    r = res.to_result(spatial_shape=(32, 32), model_pixels=shown)
    text = write_report(tmp_path, {"Bayesian NMF": r}, X=X).read_text()
    assert "Shaded: the 90 % band of the model" in text
    assert "Shaded: the" not in write_report(tmp_path / "p", {"B": plain}, X=X).read_text()
    ax = Figure().subplots()
    xs = np.arange(X.shape[1])
    _model_band(ax, r, shown[0], xs)
    assert len(ax.collections) == 1 and "band of the model" in ax.collections[0].get_label()
    _model_band(ax, r, next(i for i in range(X.shape[0]) if i not in shown), xs)
    _model_band(ax, plain, shown[0], xs)
    assert len(ax.collections) == 1


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda g: g.__delitem__("model_upper"), "model_pixels, model_lower and model_upper"),
        (lambda g: _replace(g, "model_pixels", lambda v: v + 5000), "flat pixel indices"),
        (lambda g: _replace(g, "model_lower", lambda v: v[:, :-1]), r"model_lower is \(2, 63\)"),
        (lambda g: _replace(g, "model_upper", lambda v: v - 1e6), "model lower bounds above"),
    ],
)
def test_damaged_model_bands_are_refused(fitted, tmp_path, damage, message):
    _, res = fitted
    path = res.to_result(model_pixels=[3, 700]).save(tmp_path / "result.h5")
    with h5py.File(path, "r+") as f:
        damage(f["bands"])
    with pytest.raises(ValueError, match=message):
        unmix.load_result(path)


def _replace(group, name, change):
    v = change(group[name][()])
    del group[name]
    group.create_dataset(name, data=v)


def test_report_draws_the_bands_and_says_they_are_model_based(fitted, tmp_path):
    X, res = fitted
    r = res.to_result(spatial_shape=(32, 32))
    path = write_report(tmp_path, {"Bayesian NMF": r}, X=X, title="bands")
    text = path.read_text()
    assert "Uncertainty bands" in text and "Model-based credible intervals" in text
    assert "90 % intervals of every channel, model-based" in text
    assert "Map band widths of Bayesian NMF" in text
    assert "Endmember band widths of Bayesian NMF" in text
    assert (tmp_path / "01_bayesian-nmf_band_widths.png").stat().st_size > 1000
    plain = unmix.factorize(X, 3, random_state=0)
    text = write_report(tmp_path / "plain", {"NMF": plain}, X=X).read_text()
    assert "Uncertainty bands" not in text


# ------------------------------------------------------------ the TEM EDS map
def test_map_bands_narrow_as_the_tem_eds_map_is_binned():
    """~6 counts a pixel (64 x 64 x 2048, > 99 % zeros, fitted as CSR): the median
    relative width of the 90 % map bands measured 2.19, 0.80 and 0.39 at bin 1, 2 and 4
    (4x and 16x the counts a pixel); the endmember bands do not narrow (the map's total
    counts, which they rest on, are the same)."""
    d = np.load(shared_path("eds", "eds_tem_bruker_64x64.npz"))
    X = np.asarray(d["data"], dtype=np.float64)
    widths = []
    for b in (1, 2, 4):
        Y = X.reshape(64 // b, b, 64 // b, b, -1).sum(axis=(1, 3)).reshape(-1, X.shape[-1])
        res = bayes_nmf(sp.csr_array(Y), 8, random_state=0)
        widths.append(float(np.median((res.A_upper - res.A_lower) / res.A_mean)))
    assert widths[0] > 1.8 * widths[1] > 3.2 * widths[2], widths


def test_bootstrap_band_holds_the_draws_and_follows_the_dtype():
    from unmix.bayes import bootstrap_bands

    X, _, _ = planted(3, 50.0)
    res = bayes_nmf(X, 3, ard=False, random_state=0)
    b = bootstrap_bands(X, res.S_mean, n_boot=6, level=0.8, random_state=1)
    assert b.S_lower.shape == (3, 64) and b.level == 0.8 and b.A_lower is None
    assert np.all(b.S_lower <= b.S_upper)
    # the draws are scaled onto the reference: the band brackets most of its entries
    inside = (b.S_lower <= res.S_mean) & (res.S_mean <= b.S_upper)
    assert inside.mean() > 0.5
    b32 = bootstrap_bands(X, res.S_mean.astype(np.float32), n_boot=2)
    assert b32.S_upper.dtype == np.float32
    with pytest.raises(ValueError, match="n_boot must be an integer >= 2"):
        bootstrap_bands(X, res.S_mean, n_boot=1)
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        bootstrap_bands(X, res.S_mean, level=1.0)


def test_compared_bands_survive_the_result_file(fitted, tmp_path):
    from unmix.bayes import bootstrap_bands

    X, res = fitted
    r = res.to_result()
    r.compared_bands = [bootstrap_bands(X, r.S, n_boot=3)]
    back = unmix.load_result(r.save(tmp_path / "r.h5"))
    (b,) = back.compared_bands
    np.testing.assert_array_equal(b.S_lower, r.compared_bands[0].S_lower)
    assert b.A_upper is None and b.method == r.compared_bands[0].method
