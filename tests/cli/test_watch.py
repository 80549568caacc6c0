"""``unmix watch``: files taken as they are written, refreshed outputs, stop rules."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import unmix
from conftest import matched_angles
from unmix.cli import EXIT_INPUT, EXIT_INTERRUPTED, entry
from unmix.cli._watch import Stream
from unmix.datasets import load_cuzn_eels


def _rel(X, A, S) -> float:
    return float(np.linalg.norm(X - A @ S) / np.linalg.norm(X))


def _write_chunks(folder, cube, n, pause) -> None:
    """Write ``n`` chunks of scan lines one at a time (``.part`` then a rename)."""
    step = cube.shape[0] // n
    for i in range(n):
        part = folder / f"chunk_{i:03d}.npy.part"
        with open(part, "wb") as f:
            np.save(f, cube[i * step : (i + 1) * step])
        os.replace(part, folder / f"chunk_{i:03d}.npy")
        time.sleep(pause)


def test_watch_matches_a_batch_run(tmp_path, capsys):
    """Acceptance (b): 10 files written while watching; the result equals a batch run."""
    cube = load_cuzn_eels()["data"].astype(np.float32)
    X = cube.reshape(-1, cube.shape[-1]).astype(np.float64)
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    (inbox / "notes.txt").write_text("not a frame")  # not matched by the pattern
    writer = threading.Thread(target=_write_chunks, args=(inbox, cube, 10, 0.05))
    writer.start()
    args = ["watch", str(inbox), "-k", "2", "-o", str(out), "--interval", "0.05"]
    rc = entry([*args, "--max-files", "10", "--timeout", "30"])
    writer.join()
    assert rc == 0, capsys.readouterr().err
    assert (out / "report.html").stat().st_size > 0
    online = unmix.load_result(out / "result.h5")
    assert online.maps().shape == (50, 40, 2) and online.spec["solver"] == "online"
    np.save(tmp_path / "all.npy", cube)
    assert entry(["run", str(tmp_path / "all.npy"), "-k", "2", "--seed", "0",
                  "-o", str(tmp_path / "batch"), "--no-report"]) == 0  # fmt: skip
    batch = unmix.load_result(tmp_path / "batch" / "result.h5")
    A, S = online.A.astype(float), online.S.astype(float)
    assert _rel(X, A, S) <= 1.02 * _rel(X, batch.A.astype(float), batch.S)
    assert np.max(matched_angles(S, batch.S)) < 3.0
    assert "10 files, 2000 pixels" in capsys.readouterr().out


def test_files_being_written_wait_for_a_quiet_poll(tmp_path):
    stream = Stream()
    (tmp_path / "a.npy").write_bytes(b"12")
    (tmp_path / "b.npy.part").write_bytes(b"12")
    assert stream.ready(str(tmp_path), "*.npy") == []  # first sight: maybe still growing
    (tmp_path / "a.npy").write_bytes(b"1234")
    assert stream.ready(str(tmp_path), "*.npy") == []  # it grew
    assert stream.ready(str(tmp_path), "*.npy") == ["a.npy"]  # unchanged: complete
    assert stream.ready(str(tmp_path), "*.npy*") == ["a.npy"]  # .part is never taken


def test_timeout_without_files_is_an_input_error(tmp_path, capsys):
    inbox = tmp_path / "in"
    inbox.mkdir()
    args = ["watch", str(inbox), "-k", "2", "-o", str(tmp_path / "o"), "--interval", "0.02"]
    assert entry([*args, "--timeout", "0.1"]) == EXIT_INPUT
    assert "Error: no file matching '*.npy' came in" in capsys.readouterr().err


def test_missing_folder_and_bad_file(tmp_path, capsys):
    args = ["-k", "2", "-o", str(tmp_path / "o"), "--interval", "0.02", "--timeout", "1"]
    assert entry(["watch", str(tmp_path / "nowhere"), *args]) == EXIT_INPUT
    assert "Error: FOLDER" in capsys.readouterr().err
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    assert entry(["watch", str(tmp_path), *args, "--force"]) == EXIT_INPUT
    assert "bad.npy: cannot read it" in capsys.readouterr().err


def test_ctrl_c_saves_the_result_and_exits_130(tmp_path):
    cube = load_cuzn_eels()["data"].astype(np.float32)
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    _write_chunks(inbox, cube, 5, 0.0)
    cmd = [sys.executable, "-m", "unmix", "watch", str(inbox), "-k", "2", "-o", str(out),
           "--interval", "0.05", "--no-report"]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the live result holds all 5 files
        try:
            if unmix.load_result(out / "result.h5").A.shape[0] == 2000:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "interrupted after 5 files" in err
    assert unmix.load_result(out / "result.h5").A.shape == (2000, 2)


@pytest.mark.parametrize("chunk", [1, 10])
def test_lines_and_chunks_give_the_scan_grid(tmp_path, chunk):
    cube = np.random.default_rng(0).random((10, 6, 8))
    inbox = tmp_path / "in"
    inbox.mkdir()
    for i in range(0, 10, chunk):
        block = cube[i] if chunk == 1 else cube[i : i + chunk]
        np.save(inbox / f"f{i:02d}.npy", block)
    out = tmp_path / "out"
    args = ["watch", str(inbox), "-k", "2", "-o", str(out), "--interval", "0.02"]
    assert entry([*args, "--max-files", str(10 // chunk), "--no-report", "-q"]) == 0
    assert unmix.load_result(out / "result.h5").maps().shape == (10, 6, 2)


def test_hdf5_files_and_sum_to_one(tmp_path):
    h5py = pytest.importorskip("h5py")
    cube = np.random.default_rng(1).random((6, 5, 7))
    inbox = tmp_path / "in"
    inbox.mkdir()
    for i in range(0, 6, 2):
        with h5py.File(inbox / f"f{i}.h5", "w") as f:
            f.create_dataset("frame", data=cube[i : i + 2])
    out = tmp_path / "out"
    args = ["watch", str(inbox), "-k", "2", "-o", str(out), "--interval", "0.02"]
    opts = ["--pattern", "*.h5", "--dataset", "frame", "--sum-to-one", "--max-files", "3"]
    assert entry([*args, *opts, "--no-report", "-q"]) == 0
    res = unmix.load_result(out / "result.h5")
    assert res.maps().shape == (6, 5, 2)
    np.testing.assert_allclose(res.A.sum(axis=1), 1.0, atol=1e-6)
