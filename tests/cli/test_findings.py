"""Regression tests of the command-line findings of the trust issue (one test each; the
readers' findings are in tests/io/test_hostile.py, the engine's in
tests/engine/test_trust.py, the generated corpus in tests/cli/test_bad_input.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tomllib

import unmix
from conftest import CLI, kill_after_checkpoint, shared_path
from unmix.cli import EXIT_EXISTS, EXIT_INTERRUPTED, EXIT_USAGE, entry


@pytest.fixture
def scan(tmp_path):
    """A 6 x 5 scan of 40-channel counts (3 planted components), as ``.npy``."""
    rng = np.random.default_rng(0)
    X = rng.poisson(rng.gamma(1.0, size=(30, 3)) @ rng.gamma(2.0, size=(3, 40)) * 5)
    path = tmp_path / "scan.npy"
    np.save(path, X.reshape(6, 5, 40).astype(float))
    return str(path)


def _run(args, capsys):
    code = entry(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_finding_1_default_run_prints_its_seed_and_resumes_without_one(scan, tmp_path, capsys):
    """Without --seed the run records and prints the seed it drew; rerunning with it gives
    the same answer, and --resume works without --seed."""
    common = ["run", scan, "-k", "3", "--no-report", "--max-iter", "40", "--tol", "0"]
    code, out, _ = _run([*common, "-o", str(tmp_path / "a")], capsys)
    assert code == 0
    first = unmix.load_result(tmp_path / "a" / "result.h5")
    seed = first.spec["random_state"]
    assert isinstance(seed, int) and f"seed {seed}" in out
    code, _, _ = _run([*common, "--seed", str(seed), "-o", str(tmp_path / "b")], capsys)
    again = unmix.load_result(tmp_path / "b" / "result.h5")
    np.testing.assert_array_equal(first.S, again.S)


#: kill points (seconds after the first checkpoint): one in the quick suite, 20 in all
KILL_DELAYS = [0.2] + [pytest.param(d, marks=pytest.mark.slow) for d in np.arange(19) * 0.05]


@pytest.mark.parametrize("delay", KILL_DELAYS)
def test_finding_1_kill_and_resume_without_seed(tmp_path, delay):
    """kill -9 a run started without --seed; --resume (also without --seed) gives the
    answer of an uninterrupted run with the recorded seed (at 20 kill points)."""
    path = shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy")
    common = ["run", path, "-k", "3", "--tol", "0", "--max-iter", "400", "--no-report", "-q"]
    out = tmp_path / "killed"
    kill_after_checkpoint(common, out, float(delay))
    ckpt = out / "checkpoint.h5"
    if not ckpt.exists():  # the run finished before the kill: nothing to resume
        assert (out / "result.h5").exists()
        return
    assert entry([*common, "-o", str(out), "--resume"]) == 0
    resumed = unmix.load_result(out / "result.h5")
    seed = resumed.spec["random_state"]
    assert entry([*common, "--seed", str(seed), "-o", str(tmp_path / "straight")]) == 0
    straight = unmix.load_result(tmp_path / "straight" / "result.h5")
    np.testing.assert_array_equal(resumed.S, straight.S)


def test_finding_2_two_runs_into_one_folder(scan, tmp_path):
    """Two concurrent runs into one folder: one is refused (exit 4); the folder holds the
    result and report of the other, consistent with each other."""
    out = tmp_path / "out"
    common = [scan, "-k", "3", "--max-iter", "300", "--tol", "0", "-o", str(out), "-q"]
    first = subprocess.Popen([sys.executable, "-c", CLI, "run", *common, "--seed", "1"])
    lock = out / ".unmix.lock"
    deadline = time.monotonic() + 60
    while not lock.exists() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.02)
    second = subprocess.run(
        [sys.executable, "-c", CLI, "run", *common, "-k", "4", "--seed", "2", "--force"],
        capture_output=True,
        text=True,
    )
    assert first.wait(120) == 0
    assert second.returncode == EXIT_EXISTS, second.stderr
    assert "in use by another unmix run" in second.stderr
    result = unmix.load_result(out / "result.h5")
    assert result.k == 3 and result.spec["random_state"] == 1
    assert "report.html" in os.listdir(out) and not lock.exists()


def test_finding_7_shape_against_the_files_scan(scan, tmp_path, capsys):
    """--shape 5x6 on a 6 x 5 scan would scramble the maps: refused."""
    code, _, err = _run(
        ["run", scan, "-k", "2", "--shape", "5x6", "-o", str(tmp_path / "o")], capsys
    )
    assert code == EXIT_USAGE and "already 6x5" in err


def test_finding_7_force_no_is_not_true(scan, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.h5").write_bytes(b"an earlier result")
    config = tmp_path / "c.toml"
    config.write_text('[factorize]\nk = 2\n[output]\nforce = "no"\n')
    code, _, err = _run(["run", scan, "--config", str(config), "-o", str(out)], capsys)
    assert code == EXIT_USAGE and "true or false" in err
    assert (out / "result.h5").read_bytes() == b"an earlier result"


def test_finding_8_mask_nonfinite_fits_around_nan(tmp_path, capsys):
    """A grid stopped early (NaN rows): refused with advice naming --mask-nonfinite, and
    fitted with it."""
    rng = np.random.default_rng(1)
    X = rng.poisson(20.0, size=(6, 5, 30)).astype(float)
    X[5, 2:, :] = np.nan
    path = tmp_path / "grid.npy"
    np.save(path, X)
    code, _, err = _run(["run", str(path), "-k", "2", "-o", str(tmp_path / "a")], capsys)
    assert code == EXIT_USAGE and "--mask-nonfinite" in err
    args = ["run", str(path), "-k", "2", "--mask-nonfinite", "-o", str(tmp_path / "b")]
    code, _, _ = _run(args, capsys)
    assert code == 0
    result = unmix.load_result(tmp_path / "b" / "result.h5")
    assert np.all(np.isfinite(result.A)) and np.all(np.isfinite(result.S))


@pytest.mark.slow
def test_finding_8_signal_by_index(capsys):
    path = shared_path("stm", "Bias_spectroscopy.3ds")
    first = unmix.load(path, signal=0).unfold()
    second = unmix.load(path, signal=1).unfold()
    assert not np.array_equal(first, second)
    code, out, _ = _run(["inspect", path, "--signal", "1"], capsys)
    assert code == 0 and "Bias" in out


def test_finding_8_loss_beta_from_the_cli(scan, tmp_path, capsys):
    code, _, err = _run(
        ["run", scan, "-k", "2", "--loss", "1.5", "-o", str(tmp_path / "o")], capsys
    )
    assert code == 0, err
    assert "1.5" in str(unmix.load_result(tmp_path / "o" / "result.h5").spec["loss"])


def test_finding_8_selected_toml_with_non_ascii_names(tmp_path, capsys):
    rng = np.random.default_rng(2)
    X = rng.poisson(rng.gamma(1.0, size=(30, 3)) @ rng.gamma(2.0, size=(3, 25)) * 5)
    path = tmp_path / "carte é 😀.npy"
    np.save(path, X.reshape(6, 5, 25).astype(float))
    args = ["select", str(path), "--ks", "2:3", "--restarts", "3", "--cv-repeats", "1"]
    code, _, err = _run([*args, "--max-iter", "20", "-o", str(tmp_path / "sel"), "-q"], capsys)
    assert code == 0, err
    with open(tmp_path / "sel" / "selected.toml", "rb") as f:
        assert tomllib.load(f)["input"]["file"] == str(path)


def test_finding_10_ctrl_c_exits_130(tmp_path):
    """SIGINT during the fit: exit 130 within 2 s, a checkpoint to resume from, and the
    temporaries of killed runs are cleaned by the next run."""
    path = shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy")
    out = tmp_path / "out"
    args = [path, "-k", "3", "--tol", "0", "--max-iter", "100000", "-o", str(out), "-q"]
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "run", *args, "--checkpoint-every", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    ckpt = out / "checkpoint.h5"
    deadline = time.monotonic() + 60
    while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code = proc.wait(30)
    assert code == EXIT_INTERRUPTED and time.monotonic() - t0 < 2.0
    assert "--resume" in proc.stderr.read() and ckpt.exists()
    (out / "tmpdead.h5.tmp").write_bytes(b"left by a kill")
    assert entry(["run", *args[:-3], "--max-iter", "2", "-o", str(out), "-q", "--force"]) == 0
    assert not (out / "tmpdead.h5.tmp").exists()


def test_finding_4_max_memory_is_one_budget(tmp_path, capsys):
    """A file beyond --max-memory is refused before it is read, with advice; the budget
    holds for that command only."""
    path = tmp_path / "big.npy"
    np.save(path, np.zeros((40, 50, 100)))  # 1.5 MiB
    code, _, err = _run(["--max-memory", "1M", "inspect", str(path), "--in-memory"], capsys)
    assert code == 3 and "--out-of-core" in err and "budget is 1.0 MiB" in err
    code, _, err = _run(["--max-memory", "1M", "inspect", str(path)], capsys)
    assert code == 0 and "streamed block by block" in err  # without --in-memory: streamed
    assert "UNMIX_MEMORY_BUDGET" not in os.environ or os.environ["UNMIX_MEMORY_BUDGET"] != "1M"
    code, _, err = _run(["--max-memory", "lots", "inspect", str(path)], capsys)
    assert code == EXIT_USAGE and "512M" in err
    assert _run(["inspect", str(path)], capsys)[0] == 0


@pytest.mark.parametrize("where", ["load", "write_html_report"])
def test_finding_10_ctrl_c_while_loading_or_writing(scan, tmp_path, capsys, monkeypatch, where):
    """Ctrl-C while the file is read or the report written: exit 130, no partial files,
    the folder unlocked (and, created by the run and left empty, removed)."""
    import unmix.cli._load as loading
    import unmix.cli._run as run_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loading if where == "load" else run_module, where, interrupted)
    out = tmp_path / "out"
    code, _, err = _run(["run", scan, "-k", "2", "--max-iter", "3", "-o", str(out)], capsys)
    assert code == EXIT_INTERRUPTED and "interrupted" in err
    assert not out.exists()
    out.mkdir()  # a folder that was there stays, unlocked and empty
    code, _, err = _run(["run", scan, "-k", "2", "--max-iter", "3", "-o", str(out)], capsys)
    assert code == EXIT_INTERRUPTED and out.is_dir() and not list(out.iterdir())


def test_finding_8_single_image_makes_its_spectra(tmp_path, capsys):
    """A STEM image (no navigation axes) is read as one 2-D pattern: refused for a fit with
    advice, and unmixed after the sliding-window FFT the advice names."""
    path = shared_path("eels", "CuZn_HAADF.hspy")
    code, _, err = _run(["run", path, "-k", "3", "-o", str(tmp_path / "a")], capsys)
    assert code == EXIT_USAGE and "sliding_window_fft" in err
    step = '{op="sliding_window_fft", window=16, step=4}'
    args = ["run", path, "-k", "3", "--step", step, "--no-report", "-o", str(tmp_path / "b")]
    code, _, err = _run(args, capsys)
    assert code == 0, err
    result = unmix.load_result(tmp_path / "b" / "result.h5")
    assert result.k == 3 and result.A.shape[0] > 1


def test_finding_10_a_dropped_ctrl_c_still_stops_the_fit(scan, tmp_path, capsys, monkeypatch):
    """Python drops a KeyboardInterrupt raised while a weakref callback runs (the fit went
    on); the CLI remembers the Ctrl-C and stops after the iteration, with a checkpoint."""
    import unmix.cli._common as common

    real = common.factorize

    def dropped(*args, **kwargs):
        common._Interrupt.seen = True  # the handler ran; its exception was swallowed
        return real(*args, **kwargs)

    monkeypatch.setattr(common, "factorize", dropped)
    out = tmp_path / "out"
    args = ["run", scan, "-k", "2", "--tol", "0", "-o", str(out), "-q", "--checkpoint-every", "0"]
    code, _, err = _run([*args, "--max-iter", "100000"], capsys)
    assert code == EXIT_INTERRUPTED and "--resume" in err
    assert (out / "checkpoint.h5").exists()
    monkeypatch.setattr(common, "factorize", real)
    code, _, err = _run([*args, "--max-iter", "30", "--resume"], capsys)
    assert code == 0, err


def test_mask_nonfinite_report_of_a_dead_band_in_every_pixel(tmp_path, capsys):
    """Counts with a dead band (NaN in every pixel) fitted by KL with --mask-nonfinite:
    the report's residuals leave the band out, where every pixel's residual was NaN
    (an empty residual map, "All-NaN slice encountered" printed)."""
    rng = np.random.default_rng(4)
    A = rng.gamma(1.0, size=(48, 2))
    X = rng.poisson(A @ rng.gamma(2.0, size=(2, 30)) * 4).astype(float).reshape(8, 6, 30)
    X[..., 12:15] = np.nan
    path = tmp_path / "band.npy"
    np.save(path, X)
    out = tmp_path / "o"
    args = ["run", str(path), "-k", "2", "--loss", "kl", "--mask-nonfinite", "-o", str(out)]
    code, printed, err = _run(args, capsys)
    assert code == 0, err
    assert "All-NaN" not in err and "klcd" in printed + err  # KL-CD takes the mask
    assert (out / "report.html").exists()
