"""Issue 12's models from the command line and from TOML: data graph and robust loss."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import unmix
from conftest import poisson_scan
from unmix.cli import entry


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model_flags")
    return folder, poisson_scan(folder, 8, 9, 30, seed=1)


def _spec_terms(out):
    res = unmix.load_result(str(out / "result.h5"))
    return res, [t["type"] for t in res.spec["penalties"]]


def test_graph_smooth_flag_adds_the_data_graph_term(scan):
    folder, path = scan
    out = folder / "graph"
    args = ["run", path, "-k", "3", "--graph-smooth", "0.1", "--seed", "0"]
    assert entry([*args, "-o", str(out), "-q", "--no-report"]) == 0
    _, types = _spec_terms(out)
    assert "GraphSmoothness" in types


def test_toml_names_graph_smoothness_and_the_l21_loss(scan):
    folder, path = scan
    cfg = folder / "run.toml"
    cfg.write_text(
        f'[input]\nfile = "{path}"\n[factorize]\nk = 3\nloss = "l21"\nsolver = "hals"\n'
        'regularizers = [{type = "GraphSmoothness", lam = 0.05, n_neighbors = 5}]\n'
        f'[output]\ndir = "{folder / "toml"}"\nreport = false\n'
    )
    assert entry(["run", "--config", str(cfg), "-q"]) == 0
    res, types = _spec_terms(folder / "toml")
    assert types == ["GraphSmoothness"] and res.spec["loss"] == "l21"
    obj = np.asarray(res.history["objective"])
    assert np.all(np.diff(obj) <= 1e-9 * abs(obj[0]))  # the l2,1 objective never rises


def test_sum_to_one_gives_no_component_to_a_few_bright_pixels(tmp_path):
    """--sum-to-one fits fractions of each pixel: 2 % of pixels 30x brighter than the rest
    (hot pixels) get no component of their own, and the saved abundances sum to one."""
    rng = np.random.default_rng(3)
    A = rng.dirichlet(np.ones(3) * 0.5, size=30 * 30)
    S = rng.gamma(2.0, size=(3, 40))
    X = A @ S
    bright = rng.choice(X.shape[0], size=18, replace=False)
    X[bright] *= 30.0
    path = tmp_path / "bright.npy"
    np.save(path, X.reshape(30, 30, 40))
    out = tmp_path / "sto"
    args = ["run", str(path), "-k", "3", "--sum-to-one", "--seed", "0"]
    assert entry([*args, "-o", str(out), "-q", "--no-report"]) == 0
    res = unmix.load_result(str(out / "result.h5"))
    A_fit = np.asarray(res.A)
    np.testing.assert_allclose(A_fit.sum(axis=1), 1.0, atol=1e-6)
    share = A_fit.mean(axis=0) / A_fit.mean(axis=0).mean()
    assert share.min() > 0.5, share  # every component holds a real part of the map


def _poisson_deviance(X: np.ndarray, Y: np.ndarray) -> float:
    """``sum x log(x / y) - x + y`` (KL of the counts ``X`` from the model ``Y``)."""
    Y = np.maximum(Y, 1e-300)
    return float(np.sum(np.where(X > 0, X * np.log(np.where(X > 0, X, 1.0) / Y), 0.0) - X + Y))


def test_kl_sum_to_one_fits_fractions_of_each_pixels_counts(tmp_path):
    """``--loss kl --sum-to-one`` on the EELS map (4x brighter over its first 12 lines):
    the abundances are fractions of each pixel's counts, ``E[x_i] = n_i (A S)_i`` (pixels
    divided by their sums and weighted by them, undone in the result).  Before, the
    simplex's vertices carried the brightness: two endmembers were the dim and the bright
    background, 4.3 deg apart, at a 2.8 % higher divergence."""
    from conftest import shared_path

    path = shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy")
    X = np.asarray(unmix.load(path).unfold(), dtype=np.float64)
    out = tmp_path / "kl_s2o"
    args = ["run", path, "-k", "3", "--loss", "kl", "--sum-to-one", "--seed", "0"]
    assert entry([*args, "-o", str(out), "-q", "--no-report"]) == 0
    res = unmix.load_result(str(out / "result.h5"))
    assert res.spec["preprocessing"] == [
        {"type": "NormalizePixels", "norm": "l1", "weights": True}
    ]
    np.testing.assert_allclose(np.asarray(res.A).sum(axis=1), 1.0, atol=1e-5)
    S = np.asarray(res.S, dtype=float)
    U = S / np.linalg.norm(S, axis=1, keepdims=True)
    angles = np.degrees(np.arccos(np.clip(U @ U.T, -1.0, 1.0)))[np.triu_indices(3, 1)]
    assert angles.min() > 10.0, angles  # measured 19.1 (was 4.3)
    Y = np.asarray(res.reconstruct(), dtype=float)
    np.testing.assert_allclose(Y.sum(axis=1), X.sum(axis=1), rtol=1e-3)  # n_i counts each
    assert _poisson_deviance(X, Y) < 0.99 * 704_445  # measured 684,676 (was 704,445)


# ------------------------------------------------ --sparsity / --tv with the KL loss
def test_penalty_unit_follows_the_loss():
    """``mean_row_scale``: the mean pixel norm for Frobenius, ``||x||_1 / ||x||_2`` for KL
    (scale free: KL is linear in the data's unit, so is its gradient per unit of map)."""
    from unmix.blocks import mean_row_norm, mean_row_scale

    X = np.random.default_rng(0).poisson(3.0, size=(50, 40)).astype(float)
    assert mean_row_scale(X, 2.0) == pytest.approx(mean_row_norm(X), rel=1e-12)
    l1_l2 = np.mean(X.sum(axis=1) / np.linalg.norm(X, axis=1))
    assert mean_row_scale(X, 1.0) == pytest.approx(l1_l2, rel=1e-12)
    assert mean_row_scale(1e6 * X, 1.0) == pytest.approx(l1_l2, rel=1e-9)
    assert mean_row_scale(np.zeros((3, 4)), 1.0) == 0.0


def test_kl_sparsity_from_the_command_line_keeps_every_eels_component(tmp_path):
    """``--loss kl --sparsity 0.05`` on the EELS map: the L1 weight was 0.05 x the mean
    pixel norm (~5,000 counts) against KL gradients of order 1-10, and 2 of the 3
    components died (the same on the Raman and XRD maps)."""
    from conftest import shared_path

    path = shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy")
    out = tmp_path / "kl_l1"
    args = ["run", path, "-k", "3", "--loss", "kl", "--sparsity", "0.05", "--seed", "0"]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert entry([*args, "-o", str(out), "-q", "--no-report"]) == 0
    assert not [w for w in record if "collapsed" in str(w.message)]
    res = unmix.load_result(str(out / "result.h5"))
    assert res.spec["diagnostics"]["collapsed"] == []
    lam = next(t["lam"] for t in res.spec["penalties"] if t["type"] == "L1")
    assert lam < 1.0  # 0.05 x ||x||_1 / ||x||_2, not 0.05 x ||x||_2


@pytest.mark.parametrize("flag", ["--laplacian", "--graph-smooth"])
def test_smoothness_flags_mean_the_same_on_any_scale_of_the_data(tmp_path, flag):
    """``--laplacian`` / ``--graph-smooth`` take a strength free of the data's units (the
    spectra get unit norm, as for --sparsity and --tv: the penalty is then quadratic in
    the data's scale, as the fit is).  They were absolute: ``--laplacian 0.1`` on the STM
    grid (dI/dV ~ 1e-9 A/V) left 1 of 3 components ("try k=1") and did nothing to counts.
    Here ``X`` and ``1e-9 X`` give the same fit, and the maps come out smoother than
    without the flag."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:20, 0:20] / 19.0
    centres = [(0.1, 0.2), (0.5, 0.9), (0.9, 0.3)]
    fields = np.stack([np.exp(-((xx - a) ** 2 + (yy - b) ** 2) / 0.1) for a, b in centres], -1)
    A = fields.reshape(-1, 3)
    S = rng.gamma(2.0, size=(3, 40))
    X = A @ S + 0.2 * rng.standard_normal((400, 40))
    fits = {}
    for name, scale, extra in [
        ("raw", 1.0, [flag, "1"]),
        ("tiny", 1e-9, [flag, "1"]),
        ("off", 1.0, []),
    ]:
        path = tmp_path / f"{name}.npy"
        np.save(path, np.clip(scale * X, 0, None).reshape(20, 20, 40))
        args = ["run", str(path), "-k", "3", "--seed", "0", *extra, "-q", "--no-report"]
        assert entry([*args, "-o", str(tmp_path / name)]) == 0
        fits[name] = unmix.load_result(str(tmp_path / name))
    raw, tiny, off = fits["raw"], fits["tiny"], fits["off"]
    assert raw.n_iter == tiny.n_iter and raw.spec["diagnostics"]["collapsed"] == []
    np.testing.assert_allclose(np.asarray(tiny.S), np.asarray(raw.S), rtol=1e-3, atol=1e-6)

    def roughness(r):
        M = np.asarray(r.A, dtype=float).reshape(20, 20, 3)
        M = M / np.linalg.norm(M.reshape(-1, 3), axis=0)
        return float(np.sum(np.diff(M, axis=0) ** 2) + np.sum(np.diff(M, axis=1) ** 2))

    # the data graph joins pixels alike anywhere: smoother on the grid too, less so
    assert roughness(raw) < (0.8 if flag == "--laplacian" else 0.95) * roughness(off)


@pytest.mark.parametrize("preset", ["blind-unmixing", "pca", "counts", "nmf"])
def test_a_preset_from_the_cli_is_the_presets_fit(tmp_path, preset):
    """``unmix run --preset blind-unmixing`` dropped the preset's MinVolume term (the
    CLI passed an empty regularizer list, which counts as given): Samson, Jasper Ridge and
    Moffett ended 6.4 / 20.7 / 8.0 deg from their ground truth instead of 1.75 / 3.0 / 1.1."""
    rng = np.random.default_rng(0)
    cube = rng.poisson(20 * rng.random((6, 7, 3)) @ rng.random((3, 24))).astype("f8")
    path = tmp_path / "x.npy"
    np.save(path, cube)
    out = tmp_path / "out"
    args = ["run", str(path), "-k", "3", "--preset", preset, "--seed", "0", "-q"]
    assert entry([*args, "--no-report", "-o", str(out)]) == 0
    cli = unmix.load_result(str(out / "result.h5"))
    api = unmix.factorize(
        cube.reshape(-1, 24), 3, preset=preset, random_state=0, spatial_shape=(6, 7)
    )
    for key in ("solver", "loss", "constraints", "penalties", "preprocessing", "init"):
        assert cli.spec[key] == api.spec[key], key
    assert cli.objective == pytest.approx(api.objective, rel=1e-5)


@pytest.mark.parametrize("flag", ["--laplacian", "--graph-smooth"])
def test_smoothness_flags_with_kl_mean_the_same_on_any_scale_of_the_data(tmp_path, flag):
    """With ``--loss kl`` the quadratic penalty on the maps grew as ``c^2`` with the
    data's unit while KL grows as ``c``: on the Raman map (thousands of counts)
    ``--loss kl --laplacian 0.01`` ran to ``max_iter`` with two of three components
    copies.  Against the divergence's curvature per unit of map, ``X`` and ``1e3 X`` give
    the same fit."""
    path = poisson_scan(tmp_path, 16, 16, 30, seed=1)
    X = np.load(path)
    fits = []
    for name, scale in (("one", 1.0), ("big", 1e3)):
        scaled = tmp_path / f"{name}.npy"
        np.save(scaled, scale * X)
        args = ["run", str(scaled), "-k", "3", "--loss", "kl", flag, "0.1", "--seed", "0"]
        assert entry([*args, "-q", "--no-report", "-o", str(tmp_path / name)]) == 0
        fits.append(unmix.load_result(str(tmp_path / name)))
    one, big = fits
    assert one.n_iter == big.n_iter
    np.testing.assert_allclose(np.asarray(big.S), np.asarray(one.S), rtol=1e-3, atol=1e-6)


def test_kl_laplacian_keeps_every_raman_component(tmp_path):
    from conftest import shared_path

    path = shared_path("raman", "raman_renishaw_streamline_49x45.npz")
    args = ["run", path, "-k", "3", "--loss", "kl", "--laplacian", "0.01", "--seed", "0"]
    assert entry([*args, "-q", "--no-report", "-o", str(tmp_path / "r")]) == 0
    res = unmix.load_result(str(tmp_path / "r"))
    assert res.spec["diagnostics"]["collapsed"] == [] and res.stop_reason == "tol"
