"""Warnings on the command line: one ``Warning: ...`` line, not Python's file, line
number and source line of the library."""

from __future__ import annotations

import sys

import pytest

from conftest import shared_path
from unmix.cli import entry


def _run(monkeypatch, capsys, args: list[str]) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["unmix", *args])
    code = entry()  # as the ``unmix`` command calls it: the arguments from sys.argv
    return code, capsys.readouterr().err


def test_a_collapse_warning_is_one_line(tmp_path, monkeypatch, capsys):
    """XRD at k 6 with MU keeps a collapsed component (the default solver's other starts
    keep all six, ``unmix.engine._other_starts``); the warning printed
    ``.../cli/_common.py:151: RuntimeWarning: Components [4] collapsed ...`` and then the
    library's source line ``return factorize(X, k, ...)``."""
    path = shared_path("xrd", "xrd_aps34ide_143x2000.npz")
    args = ["run", path, "-k", "6", "--shape", "11x13", "--seed", "0", "-q", "--no-report"]
    args += ["--solver", "mu"]
    code, err = _run(monkeypatch, capsys, [*args, "-o", str(tmp_path / "out")])
    assert code == 0
    lines = [line for line in err.splitlines() if "collapsed" in line]
    assert lines and all(line.startswith("Warning: Components [") for line in lines)
    assert "try k=5" in lines[0]
    assert "_common.py" not in err and "return factorize" not in err


def test_debug_leaves_warnings_to_python(tmp_path, monkeypatch, capsys):
    """With ``--debug`` the warning is Python's (its category, file and line)."""
    path = shared_path("xrd", "xrd_aps34ide_143x2000.npz")
    args = ["--debug", "run", path, "-k", "6", "--shape", "11x13", "--seed", "0", "-q"]
    args += ["--solver", "mu"]
    with pytest.warns(RuntimeWarning, match=r"Components \[\d\] collapsed"):
        code, err = _run(monkeypatch, capsys, [*args, "--no-report", "-o", str(tmp_path / "d")])
    assert code == 0
    assert "Warning: Components" not in err


def test_a_logged_warning_reads_like_a_warned_one(tmp_path):
    """bayes_nmf logs its non-count warning; the command printed it as
    ``WARNING unmix.bayes._vb: ...`` beside the ``Warning: ...`` lines of warnings."""
    import subprocess

    import numpy as np

    path = tmp_path / "x.npy"
    rng = np.random.default_rng(0)
    np.save(path, (rng.random((6, 5, 3)) @ rng.random((3, 30))).astype("f8"))
    args = [sys.executable, "-m", "unmix", "bayes", str(path), "-k", "2", "-q"]
    out = subprocess.run(
        [*args, "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if "not whole counts" in line]
    assert lines and all(line.startswith("Warning: bayes_nmf: X holds") for line in lines)
    assert "WARNING" not in out.stderr
