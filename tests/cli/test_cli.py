"""The command line: demo, run, compare, inspect, config files, exit codes, resume."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import unmix
import unmix.cli._common
import unmix.cli._demo
from conftest import kill_after_checkpoint, shared_path
from unmix.cli import EXIT_EXISTS, EXIT_INPUT, entry

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEMO_FILES = ("result.h5", "report.html", "comparison.png")
DEMO_PNGS = ("01_nmf-hals_endmembers.png", "01_nmf-hals_maps.png", "01_nmf-hals_loss.png")


def _snapshot(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def fast_factorize(monkeypatch):
    """Make fits short; ``calls`` records the max_iter of every fit."""
    real = unmix.cli._common.factorize
    calls: list[int] = []
    state = {"max_iter": 3}

    @functools.wraps(real)
    def short(*args, **kwargs):
        kwargs["max_iter"] = state["max_iter"]
        calls.append(state["max_iter"])
        return real(*args, **kwargs)

    for module in (unmix.cli._common, unmix.cli._demo):  # the modules that fit
        monkeypatch.setattr(module, "factorize", short)
    return state, calls


@pytest.mark.slow
def test_demo(tmp_path, capsys):
    out = tmp_path / "out"
    assert entry(["demo", "-o", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert set(DEMO_FILES) | set(DEMO_PNGS) <= names
    for name in DEMO_PNGS:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000, name
    printed = capsys.readouterr().out
    for name in ("background", "Cu L2,3 edge", "Zn L2,3 edge", "report.html"):
        assert name in printed
    result = unmix.load_result(out / "result.h5")
    assert result.k == 3 and result.maps().shape == (50, 40, 3)
    assert result.context["signal_axes"][0]["units"] == "eV"

    before = _snapshot(out)
    assert entry(["demo", "-o", str(out)]) == EXIT_EXISTS
    assert "--force" in capsys.readouterr().err
    assert _snapshot(out) == before


@pytest.mark.slow
def test_demo_force_and_quiet(tmp_path, capsys, fast_factorize):
    _, calls = fast_factorize
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.h5").write_bytes(b"stale")
    assert entry(["demo", "-o", str(out)]) == EXIT_EXISTS
    assert calls == []  # refused before fitting
    assert entry(["demo", "--quiet", "--force", "-o", str(out)]) == 0
    assert capsys.readouterr().out == ""
    assert unmix.load_result(out / "result.h5").n_iter == 3


@pytest.mark.slow
def test_run_eels_writes_result_report_and_provenance(tmp_path, capsys):
    path = shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy")
    out = tmp_path / "run"
    code = entry(["run", path, "-k", "3", "--seed", "0", "--max-iter", "50", "-o", str(out)])
    assert code == 0
    result = unmix.load_result(out / "result.h5")
    assert result.k == 3 and result.maps().shape == (50, 40, 3)
    ctx = result.context
    assert len(ctx["sha256"]) == 64 and ctx["source"].endswith(".hspy")
    assert ctx["signal_axes"][0]["units"] == "eV"
    html = (out / "report.html").read_text()
    assert "CuZn_EELS_mapping_tutorial" in html
    assert not (out / "checkpoint.h5").exists()
    assert "stopped by" in capsys.readouterr().out


@pytest.mark.slow
def test_run_on_a_compute_device_gives_the_host_answer(tmp_path):
    pytest.importorskip("torch")
    path = shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy")
    base = ["run", path, "-k", "3", "--seed", "0", "--max-iter", "30", "--init", "random"]
    base += ["--tol", "0", "--no-report", "-q"]  # float32 objectives: no early stop by noise
    assert entry([*base, "-o", str(tmp_path / "host")]) == 0
    assert entry([*base, "--device", "torch", "-o", str(tmp_path / "torch")]) == 0
    host = unmix.load_result(tmp_path / "host" / "result.h5")
    dev = unmix.load_result(tmp_path / "torch" / "result.h5")
    assert dev.spec.get("device", "cpu") == "cpu"
    assert dev.S.dtype == host.S.dtype == np.float32  # float32 data: float32 on both
    np.testing.assert_allclose(dev.S, host.S, rtol=0, atol=1e-3 * np.abs(host.S).max())
    assert dev.objective == pytest.approx(host.objective, rel=1e-5)


def test_run_out_of_core_streams_the_file_and_gives_the_in_memory_answer(tmp_path, capsys):
    pytest.importorskip("dask.array")
    mx = unmix.datasets.make_mixture(3, spatial_shape=(20, 25), n_channels=40, random_state=2)
    path = tmp_path / "cube.h5"
    unmix.io.save(unmix.SpectralImage(np.clip(mx.X, 0, None).reshape(20, 25, 40)), path)
    base = ["run", str(path), "-k", "3", "--seed", "0", "--max-iter", "30", "--tol", "0", "-q"]
    assert entry([*base, "-o", str(tmp_path / "mem")]) == 0
    assert entry([*base, "--out-of-core", "-o", str(tmp_path / "ooc")]) == 0
    mem = unmix.load_result(tmp_path / "mem" / "result.h5")
    ooc = unmix.load_result(tmp_path / "ooc" / "result.h5")
    np.testing.assert_allclose(ooc.S, mem.S, rtol=1e-6, atol=1e-9 * np.abs(mem.S).max())
    assert ooc.maps().shape == (20, 25, 3)
    assert "Relative residual map" in (tmp_path / "ooc" / "report.html").read_text()  # streamed
    assert "Relative residual map" in (tmp_path / "mem" / "report.html").read_text()
    crop = ["--step", '{op="crop", signal=[2, 30]}', "--step", '{op="clip", lower=0.0}']
    assert entry([*base, "--out-of-core", *crop, "-o", str(tmp_path / "crop")]) == 0
    assert entry([*base, *crop, "-o", str(tmp_path / "crop_mem")]) == 0
    a = unmix.load_result(tmp_path / "crop" / "result.h5")
    b = unmix.load_result(tmp_path / "crop_mem" / "result.h5")
    assert a.S.shape == (3, 29)  # the steps ran line by line on the file
    np.testing.assert_allclose(a.S, b.S, rtol=1e-6, atol=1e-9 * np.abs(b.S).max())
    capsys.readouterr()
    image = tmp_path / "image.h5"  # one 2-D image: a sliding-window FFT reads it whole
    unmix.io.save(unmix.SpectralImage(np.random.default_rng(0).random((64, 64))), image)
    whole = ["--step", '{op="sliding_window_fft", window=16, step=8}', "--out-of-core"]
    assert entry(["run", str(image), "-k", "2", *whole, "-o", str(tmp_path / "bad")]) != 0
    assert "the step 'sliding_window_fft' needs the whole image" in capsys.readouterr().err


@pytest.mark.slow
def test_config_file_maps_one_to_one(tmp_path):
    path = shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy")
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(
        f"""
[input]
file = "{path}"

[preprocess]
steps = [{{op = "crop", signal = [850, 1400]}}]

[factorize]
k = 3
solver = "hals"
random_state = 1
max_iter = 40
constraints = [{{type = "NonNegative"}}]
regularizers = [{{type = "L1", lam = 0.5}}]

[output]
dir = "{tmp_path / "a"}"
report = false
"""
    )
    assert entry(["run", "--config", str(cfg), "-q"]) == 0
    via_config = unmix.load_result(tmp_path / "a" / "result.h5")
    assert via_config.spec["penalties"][0] == {"type": "L1", "target": "A", "lam": 0.5}
    assert via_config.context["preprocess"][0]["op"] == "crop"
    image = unmix.load(path)
    X = image.unfold()[
        :, (image.signal_axes[0].values >= 850) & (image.signal_axes[0].values <= 1400)
    ]
    direct = unmix.factorize(
        X,
        3,
        solver="hals",
        random_state=1,
        max_iter=40,
        regularizers=[unmix.L1(0.5)],
        spatial_shape=(50, 40),
    )
    np.testing.assert_allclose(via_config.S, direct.S, rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[factorize]\nk = 3\nbogus = 1\n", "unknown key"),
        ("[fit]\nk = 3\n", "unknown table"),
        ("[factorize]\nk = 3\nregularizers = [{type = 'L7'}]\n", "unknown type"),
        ("[factorize]\nk = 3\nregularizers = [{type = 'L1', lamda = 1}]\n", "no field"),
        ("[factorize\n", "not valid TOML"),
    ],
)
def test_bad_config_is_a_usage_error(tmp_path, capsys, text, match):
    path = shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy")
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(text)
    assert entry(["run", path, "--config", str(cfg), "-o", str(tmp_path / "o")]) == 2
    assert match in capsys.readouterr().err


def test_exit_codes(tmp_path, capsys):
    assert entry(["run", str(tmp_path / "missing.hspy"), "-k", "2"]) == EXIT_INPUT
    assert "cannot read" in capsys.readouterr().err
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5 at all")
    assert entry(["run", str(bad), "-k", "2", "-o", str(tmp_path / "o")]) == EXIT_INPUT
    assert entry(["run", str(bad)]) == 2  # -k missing: usage error
    assert "number of components" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_pca_has_negative_lobes_nmf_none(tmp_path, capsys):
    path = shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy")
    out = tmp_path / "cmp"
    assert (
        entry(["compare", path, "-k", "3", "--seed", "0", "--max-iter", "60", "-o", str(out)]) == 0
    )
    pca = unmix.load_result(out / "result_PCA.h5")
    nmf = unmix.load_result(out / "result_NMF.h5")
    cnmf = unmix.load_result(out / "result_constrained_NMF.h5")
    assert (pca.S < 0).any() and (nmf.S >= 0).all() and (cnmf.S >= 0).all()
    assert "comparison" in (out / "report.html").read_text().lower()


@pytest.mark.slow
def test_inspect_suggests(capsys):
    assert entry(["inspect", shared_path("stm", "Bias_spectroscopy.3ds")]) == 0
    out = capsys.readouterr().out
    assert "Bias" in out and "negative values" in out
    assert entry(["inspect", shared_path("eds", "eds_tem_bruker_64x64.npz")]) == 0
    assert "--loss kl" in capsys.readouterr().out


@pytest.mark.slow
def test_inspect_shows_the_data_after_the_steps_it_suggests(capsys):
    """``inspect`` takes the ``--step`` and ``--shape`` flags of run and tree (it refused
    them: "No such option '--step'"), so a suggestion can be checked by adding it."""
    stm = shared_path("stm", "Bias_spectroscopy.3ds")
    steps = ["--step", '{op="derivative"}', "--step", '{op="clip", lower=0.0}']
    assert entry(["inspect", stm, *steps]) == 0
    out = capsys.readouterr().out
    assert "values  min 0 " in out and "negative values" not in out, out
    xrd = shared_path("xrd", "xrd_aps34ide_143x2000.npz")
    assert entry(["inspect", xrd]) == 0
    assert "give --shape ROWSxCOLS" in capsys.readouterr().out
    assert entry(["inspect", xrd, "--shape", "11x13"]) == 0
    out = capsys.readouterr().out
    assert "spatial y                    11 points" in out and "--shape" not in out, out


@pytest.mark.slow
def test_kill_and_resume_gives_uninterrupted_answer(tmp_path):
    """SIGKILL an `unmix run` mid-fit; `--resume` finishes with the same factors."""
    path = shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy")
    common = ["run", path, "-k", "3", "--seed", "4", "--tol", "0", "--max-iter", "600"]
    common += ["--no-report", "-q"]
    out = tmp_path / "killed"
    kill_after_checkpoint(common, out, 0.3)  # a few more iterations, then kill -9
    ckpt = out / "checkpoint.h5"
    assert ckpt.exists(), "no checkpoint before the kill"
    assert not (out / "result.h5").exists()
    assert entry([*common, "-o", str(out), "--resume"]) == 0
    assert entry([*common, "-o", str(tmp_path / "straight")]) == 0
    resumed = unmix.load_result(out / "result.h5")
    straight = unmix.load_result(tmp_path / "straight" / "result.h5")
    np.testing.assert_array_equal(resumed.S, straight.S)
    assert resumed.n_iter == straight.n_iter == 600
    # no stale temporaries: the result and the list of this run's files
    assert sorted(p.name for p in out.iterdir()) == [".unmix-files", "result.h5"]


def test_version_and_missing_command(capsys):
    assert entry(["--version"]) == 0
    assert unmix.__version__ in capsys.readouterr().out
    assert entry([]) != 0
