"""``unmix bayes``: Bayesian Poisson NMF from the command line (issue 13, item 3): the
result file with its credible bands, the report that draws them and calls them
model-based, and the errors a user meets."""

from __future__ import annotations

import numpy as np
import pytest

import unmix
from conftest import bayes_planted, shared_path
from unmix.cli import EXIT_USAGE, entry


@pytest.fixture(scope="module")
def counts_file(tmp_path_factory):
    X, _, _ = bayes_planted(3, 50.0)
    path = tmp_path_factory.mktemp("bayes") / "counts.npy"
    np.save(path, X.reshape(32, 32, 64))
    return str(path), X


def test_bayes_command_writes_the_bands_and_the_report(counts_file, tmp_path, capsys):
    path, X = counts_file
    out = tmp_path / "out"
    assert entry(["bayes", path, "-k", "6", "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "bayes-vb: 3 of 6 components kept" in said
    res = unmix.load_result(str(out / "result.h5"))
    assert res.k == 3 and res.spec["solver"] == "bayes-vb" and res.spatial_shape == (32, 32)
    assert res.bands.level == 0.9 and res.bands.A_lower.shape == (1024, 3)
    assert np.all(res.bands.S_lower <= res.S) and np.all(res.S <= res.bands.S_upper)
    assert res.context["source"].endswith("counts.npy") and res.context["sha256"]
    # the same fit as the library's
    lib = unmix.bayes.bayes_nmf(X, 6, random_state=0)
    np.testing.assert_allclose(np.asarray(res.S), lib.S_mean, rtol=1e-10)
    report = (out / "report.html").read_text()
    assert "Uncertainty bands" in report and "Model-based credible intervals" in report


def test_bayes_options_reach_the_fit(counts_file, tmp_path):
    path, _ = counts_file
    out = tmp_path / "out"
    args = ["bayes", path, "-k", "4", "--no-ard", "--level", "0.5", "--no-report"]
    assert entry([*args, "-o", str(out), "-q"]) == 0
    res = unmix.load_result(str(out / "result.h5"))
    assert res.k == 4 and res.bands.level == 0.5 and not res.spec["ard"]
    assert not (out / "report.html").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-k", "0"], "0 is not in the range x>=1"),
        (["-k", "3", "--level", "1"], "--level"),
        (["-k", "3", "--prune", "bic"], "'bic' is not one of"),
    ],
)
def test_bayes_usage_errors(counts_file, tmp_path, capsys, args, message):
    path, _ = counts_file
    assert entry(["bayes", path, *args, "-o", str(tmp_path / "o")]) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_negative_data_are_refused_with_the_fix(tmp_path, capsys):
    X = np.ones((4, 5, 6))
    X[0, 0, :2] = -3.0
    path = tmp_path / "neg.npy"
    np.save(path, X)
    assert entry(["bayes", str(path), "-k", "2", "-o", str(tmp_path / "o")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "2 negative entries" in err and "np.clip" in err
    assert not (tmp_path / "o" / "result.h5").exists()


def test_values_that_are_not_counts_are_named(tmp_path, caplog):
    X, _, _ = bayes_planted(2, 50.0, side=8)
    path = tmp_path / "scaled.npy"
    np.save(path, (0.37 * X).reshape(8, 8, 64))
    with caplog.at_level("WARNING", logger="unmix"):
        code = entry(
            ["bayes", str(path), "-k", "2", "--no-report", "-q", "-o", str(tmp_path / "o")]
        )
    assert code == 0
    assert "not whole counts" in caplog.text


def test_tem_eds_map_from_the_command_line(tmp_path):
    """The real sparse case (~6 counts a pixel, > 99 % zeros): fitted as CSR."""
    path = shared_path("eds", "eds_tem_bruker_64x64.npz")
    out = tmp_path / "eds"
    assert entry(["bayes", path, "-k", "6", "-o", str(out), "-q"]) == 0
    res = unmix.load_result(str(out / "result.h5"))
    assert 1 <= res.k <= 6 and res.bands.S_lower.shape == (res.k, 2048)
    assert "model-based" in (out / "report.html").read_text()


def test_sparse_file_gives_the_dense_answer_in_its_dtype(counts_file, tmp_path):
    import scipy.sparse as sp

    _, X = counts_file
    sparse = tmp_path / "counts_csr.npz"
    sp.save_npz(sparse, sp.csr_matrix(X.astype(np.float32)))
    out = tmp_path / "sp"
    args = ["bayes", str(sparse), "-k", "5", "--shape", "32x32", "--no-report", "-q"]
    assert entry([*args, "-o", str(out)]) == 0
    res = unmix.load_result(str(out / "result.h5"))
    lib = unmix.bayes.bayes_nmf(X.astype(np.float32), 5, random_state=0)
    assert res.S.dtype == res.bands.S_lower.dtype == np.float32
    np.testing.assert_allclose(np.asarray(res.S), lib.S_mean, rtol=1e-5)


def test_bootstrap_bands_are_drawn_beside_the_model_based_ones(counts_file, tmp_path):
    path, X = counts_file
    out = tmp_path / "boot"
    args = ["bayes", path, "-k", "3", "--no-ard", "--bootstrap", "5", "-q"]
    assert entry([*args, "-o", str(out)]) == 0
    res = unmix.load_result(str(out / "result.h5"))
    (boot,) = res.compared_bands
    assert boot.method.startswith("bootstrap") and boot.A_lower is None
    assert boot.S_lower.shape == res.S.shape and np.all(boot.S_lower <= boot.S_upper)
    again = unmix.bayes.bootstrap_bands(X, np.asarray(res.S), n_boot=5, level=0.9)
    np.testing.assert_allclose(boot.S_upper, again.S_upper, rtol=1e-10)
    report = (out / "report.html").read_text()
    assert "compared (dashed): bootstrap" in report and "Not a credible interval" in report
    assert entry(["bayes", path, "-k", "3", "--bootstrap", "1", "-o", str(tmp_path / "b1")]) == 2


def test_gibbs_bands_from_the_command_line(counts_file, tmp_path):
    path, X = counts_file
    out = tmp_path / "gibbs"
    args = ["bayes", path, "-k", "3", "--no-ard", "--bands", "gibbs", "--sweeps", "60", "-q"]
    assert entry([*args, "-o", str(out)]) == 0
    res = unmix.load_result(str(out / "result.h5"))
    assert res.spec["bands"] == "gibbs"
    assert res.bands.method.startswith("model-based: Gibbs sampling") and "60 sweeps" in (
        res.bands.method
    )
    lib = unmix.bayes.bayes_nmf(X, 3, ard=False, random_state=0, bands="gibbs", sweeps=60)
    np.testing.assert_allclose(res.bands.S_upper, lib.S_upper, rtol=1e-10)
    assert "Gibbs chain started at the variational fit" in (out / "report.html").read_text()
    # the pixels the report shows carry bands of the model A @ S, from the same chain
    shown = [i for _, i in unmix.report.default_pixels(res, X)]
    np.testing.assert_array_equal(res.bands.model_pixels, np.unique(shown))
    _, lo, hi = lib.model_intervals(res.bands.model_pixels)
    np.testing.assert_allclose(res.bands.model_lower, lo, rtol=1e-10)
    np.testing.assert_allclose(res.bands.model_upper, hi, rtol=1e-10)


def test_without_k_ard_starts_from_the_selection_default(counts_file, tmp_path, capsys):
    """``unmix bayes FILE`` said "Missing option '-k'": ARD chooses the rank, so it now
    starts from the largest rank ``unmix select`` scans by default (11)."""
    from unmix.cli._bayes import DEFAULT_K
    from unmix.selection._rank import DEFAULT_KS

    assert DEFAULT_K == max(DEFAULT_KS)
    path, X = counts_file
    assert entry(["bayes", path, "-o", str(tmp_path / "out"), "--no-report"]) == 0
    said = capsys.readouterr().out
    assert f"of {DEFAULT_K} components kept" in said
    res = unmix.load_result(str(tmp_path / "out" / "result.h5"))
    lib = unmix.bayes.bayes_nmf(X, DEFAULT_K, random_state=0)
    assert res.k == lib.k_effective == 3


def test_no_ard_without_k_is_a_usage_error(counts_file, tmp_path, capsys):
    path, _ = counts_file
    code = entry(["bayes", path, "--no-ard", "-o", str(tmp_path / "o")])
    assert code == EXIT_USAGE
    assert "--no-ard keeps all K components: give -k K" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_tiny_map_caps_the_default_rank(tmp_path, capsys):
    X, _, _ = bayes_planted(2, 50.0, side=8)
    path = tmp_path / "small.npy"
    np.save(path, X[:, :6].reshape(8, 8, 6))  # 6 channels: at most 5 components
    assert entry(["bayes", str(path), "-o", str(tmp_path / "o"), "--no-report"]) == 0
    assert "of 5 components kept" in capsys.readouterr().out
