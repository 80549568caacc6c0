"""A generated corpus of command-line mistakes: each ends as one clear ``Error:`` line and
its documented exit code (2 usage, 3 unreadable input, 4 output folder), never a
traceback, and never a silent success.

The cases are built here (not stored): every command x the ordinary mistakes a user
makes (bad numbers, bad ``--step`` tables, wrong ``--shape``, a config with wrong types,
an output path that is a file), on a small count image written to ``tmp_path``.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import poisson_scan
from unmix.cli import entry

USAGE, INPUT, EXISTS = 2, 3, 4


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 6 x 5 scan of 40-channel Poisson counts (3 planted components), as ``.npy``."""
    folder = tmp_path_factory.mktemp("bad_input")
    return folder, poisson_scan(folder, 6, 5, 40, seed=0)


# --------------------------------------------------------------- the cases
#: flags of the fitting commands (run, compare) with values no fit can take
FIT_FLAG_MISTAKES = [
    ("-k", "0"),
    ("-k", "-2"),
    ("-k", "1000"),
    ("-k", "three"),
    ("--max-iter", "0"),
    ("--max-iter", "-5"),
    ("--max-iter", "1.5"),
    ("--tol", "-1"),
    ("--tol", "nan"),
    ("--loss", "nan"),
    ("--loss", "1e30"),
    ("--loss", "banana"),
    ("--solver", "banana"),
    ("--init", "banana"),
    ("--sparsity", "-1"),
    ("--sparsity", "nan"),
    ("--smooth", "-1"),
    ("--smooth", "inf"),
    ("--laplacian", "-1"),
    ("--min-volume", "-0.5"),
    ("--max-active", "3"),  # with -k 3: restricts nothing (and ran a slower solver)
    ("--step", "{op='nope'}"),
    ("--step", "{op=crop}"),
    ("--step", "[1, 2]"),
    ("--step", "{op='crop', signal=[5]}"),
    ("--step", "{op='crop', signal=['a', 'b']}"),
    ("--step", "{op='bin', spatial=0}"),
    ("--step", "{op='bin'}"),  # bins by 1: changed nothing, silently
    ("--step", "{op='crop'}"),  # no range: kept everything, silently
    ("--step", "{op='crop', banana=1}"),
    ("--shape", "7x7"),
    ("--shape", "0x30"),
    ("--shape", "axb"),
    ("--shape", "5x6"),
    ("--shape", "-6x-5"),
    ("--checkpoint-every", "-1"),
    ("--device", "banana"),
]


def _devices_missing_here() -> list[str]:
    """``--device`` values this machine cannot serve (a GPU the user does not have)."""
    import importlib.util

    out = ["cuda:7"]  # no test machine has 8 GPUs
    try:
        import torch

        if not torch.cuda.is_available():
            out.append("cuda")
        if not torch.backends.mps.is_available():
            out.append("mps")
    except ImportError:
        out.append("cuda")
    if importlib.util.find_spec("cupy") is None:
        out.append("cupy")
    return out


@pytest.mark.parametrize("device", _devices_missing_here())
def test_device_this_machine_lacks_is_a_usage_error(small, tmp_path, capsys, device):
    """Not an "unexpected error, report it": the device is missing, the fix is named."""
    _, path = small
    args = ["run", path, "-k", "3", "-o", str(tmp_path / "out"), "-q", "--device", device]
    code, err = _call(capsys, args)
    _assert_clear(code, err, {USAGE})
    assert "report it" not in err and "unexpected" not in err, err
    assert "run on the CPU" in err or "pip install" in err, err
    assert not (tmp_path / "out" / "result.h5").exists()


#: [factorize] / [output] / [input] tables with values of the wrong type or range
CONFIG_MISTAKES = [
    "[factorize]\nk = '3'",
    "[factorize]\nk = 3\nmax_iter = 'many'",
    "[factorize]\nk = 3\ntol = -1.0",
    "[factorize]\nk = 3\nconstraints = 'NonNegative'",
    "[factorize]\nk = 3\nconstraints = [{type = 'Banana'}]",
    "[factorize]\nk = 3\nregularizers = [{type = 'L1', lam = 'big'}]",
    "[factorize]\nk = 3\nregularizers = [{type = 'L1', lam = -1.0}]",
    "[factorize]\nk = 3\nsolver_options = {banana = 1}",
    "[factorize]\nk = 3\n[output]\nforce = 'no'",
    "[factorize]\nk = 3\n[output]\ndir = 3",
    "[factorize]\nk = 3\n[output]\nreport = 'yes'",
    "[factorize]\nk = 3\n[input]\nspatial_shape = '6x5'",
    "[factorize]\nk = 3\n[input]\nfile = 3",
    "[factorize]\nk = 3\n[banana]\nx = 1",
    "[factorize]\nk = 3\n[preprocess]\nsteps = 'crop'",
    "[factorize\nk = 3",
]


def _call(capsys, args):
    code = entry(args)
    err = capsys.readouterr().err
    return code, err


def _assert_clear(code, err, allowed):
    assert "Traceback" not in err, err
    assert code in allowed, (code, err)
    assert err.strip().splitlines()[-1].startswith("Error:"), err


@pytest.mark.parametrize("command", ["run", "compare"])
@pytest.mark.parametrize(("flag", "value"), FIT_FLAG_MISTAKES)
def test_fit_flag_mistake(small, tmp_path, capsys, command, flag, value):
    _, path = small
    args = [command, path, "-o", str(tmp_path / "out"), "-q", "--max-iter", "3"]
    if flag != "-k":
        args += ["-k", "3"]
    code, err = _call(capsys, [*args, flag, value])
    _assert_clear(code, err, {USAGE})
    assert not (tmp_path / "out").exists()  # a mistake leaves no (empty) output folder
    assert not (tmp_path / "out" / "result.h5").exists()


STRENGTH_FLAGS = ["--sparsity", "--smooth", "--laplacian", "--tv", "--graph-smooth"]
STRENGTH_FLAGS += ["--min-volume"]


@pytest.mark.parametrize("flag", STRENGTH_FLAGS)
@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_strength_mistake_names_the_flag_and_the_value_typed(small, tmp_path, capsys, flag, value):
    """Refused as typed, before the file is read: ``--sparsity -1`` was refused by the
    model as ``L1: lam ... got -63022.87`` (the strength times the data's pixel norm)."""
    _, path = small
    args = ["run", path, "-k", "3", "-o", str(tmp_path / "out"), "-q", flag, value]
    code, err = _call(capsys, args)
    _assert_clear(code, err, {USAGE})
    last = err.strip().splitlines()[-1]
    assert f"'{flag}'" in last and f"{value} is not a finite number >= 0" in last, last


#: ``unmix target``'s own numbers: the method's error named neither the flag nor, for
#: ``--targets 0``, the option at all ("k=0 is out of range")
TARGET_MISTAKES = [
    ("--threshold", "-1"),
    ("--threshold", "nan"),
    ("--threshold", "0"),
    ("--rounds", "0"),
    ("--targets", "0"),
    ("--smooth", "-1"),
    ("--max-iter", "0"),
    ("--seed", "-1"),
]


@pytest.mark.parametrize(("flag", "value"), TARGET_MISTAKES)
def test_target_flag_mistake_names_the_flag(small, tmp_path, capsys, flag, value):
    _, path = small
    args = ["target", path, "-k", "2", "-o", str(tmp_path / "out"), "-q", flag, value]
    code, err = _call(capsys, args)
    _assert_clear(code, err, {USAGE})
    assert f"'{flag}'" in err.strip().splitlines()[-1], err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["run", "compare"])
@pytest.mark.parametrize("text", CONFIG_MISTAKES)
def test_config_mistake(small, tmp_path, capsys, command, text):
    _, path = small
    config = tmp_path / "c.toml"
    config.write_text(text + "\n", encoding="utf-8")
    args = [command, path, "--config", str(config), "-o", str(tmp_path / "out"), "-q"]
    code, err = _call(capsys, args)
    _assert_clear(code, err, {USAGE})


#: options of ``select`` and ``tree`` with values they cannot take
SELECT_MISTAKES = [
    ("--max-iter", "0"),
    ("--max-iter", "-1"),
    ("--ks", "5:2"),
    ("--ks", "a:b"),
    ("--ks", "0:3"),
    ("--ks", "2:100"),
    ("--restarts", "0"),
    ("--cv-repeats", "-1"),
    ("--jobs", "0"),
    ("--criteria", "banana"),
    ("--lambdas", "banana"),
    ("--lambda-trials", "0 --lambdas sparsity"),
    ("--step", "{op='nope'}"),
    ("--shape", "7x7"),
    ("--seed", "-1"),
]
TREE_MISTAKES = [
    ("--max-iter", "0"),
    ("--min-size", "-1"),
    ("--max-depth", "-1"),
    ("--max-rank", "0"),
    ("--max-rank", "1"),
    ("--min-score", "nan"),
    ("--step", "{op='nope'}"),
    ("--shape", "7x7"),
    ("--seed", "-1"),
    ("--dataset", "nope"),
]


@pytest.mark.parametrize(("flag", "value"), SELECT_MISTAKES)
def test_select_mistake(small, tmp_path, capsys, flag, value):
    _, path = small
    args = ["select", path, "-o", str(tmp_path / "out"), "-q", "--ks", "2:3"]
    args += ["--restarts", "3", "--cv-repeats", "1", "--max-iter", "5", flag, *value.split()]
    code, err = _call(capsys, args)
    _assert_clear(code, err, {USAGE})
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("flag", "value"), TREE_MISTAKES)
def test_tree_mistake(small, tmp_path, capsys, flag, value):
    _, path = small
    code, err = _call(capsys, ["tree", path, "-o", str(tmp_path / "out"), "-q", flag, value])
    _assert_clear(code, err, {USAGE, INPUT} if flag == "--dataset" else {USAGE})
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------- files and folders
def _bad_files(folder):
    """Inputs no reader can take: missing, a folder, empty, random bytes, wrong suffix."""
    rng = np.random.default_rng(1)
    out = {"missing": folder / "missing.npy", "folder": folder}
    for name, data in (
        ("empty.npy", b""),
        ("empty.h5", b""),
        ("random.npy", rng.bytes(2048)),
        ("random.h5", rng.bytes(2048)),
        ("random.hspy", rng.bytes(2048)),
        ("random.npz", rng.bytes(2048)),
        ("random.3ds", rng.bytes(2048)),
        ("random.imzML", rng.bytes(2048)),
        ("text.npy", b"hello, world\n" * 20),
        ("unknown.xyz", b"1 2 3\n"),
    ):
        out[name] = folder / name
        out[name].write_bytes(data)
    return out


BAD_FILE_NAMES = [
    "missing",
    "folder",
    "empty.npy",
    "empty.h5",
    "random.npy",
    "random.h5",
    "random.hspy",
    "random.npz",
    "random.3ds",
    "random.imzML",
    "text.npy",
    "unknown.xyz",
]


@pytest.mark.parametrize("command", ["run", "compare", "inspect", "select", "tree"])
@pytest.mark.parametrize("name", BAD_FILE_NAMES)
def test_unreadable_input(tmp_path, capsys, command, name):
    files = _bad_files(tmp_path / "in" if (tmp_path / "in").mkdir() is None else None)
    args = [command, str(files[name])]
    if command in ("run", "compare"):
        args += ["-k", "2"]
    if command != "inspect":
        args += ["-o", str(tmp_path / "out"), "-q"]
    code, err = _call(capsys, args)
    _assert_clear(code, err, {USAGE, INPUT})
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["run", "compare", "select", "tree", "demo"])
@pytest.mark.parametrize("target", ["a file", "read-only", "not empty"])
def test_output_folder_mistake(small, tmp_path, capsys, command, target):
    _, path = small
    out = tmp_path / "out"
    if target == "a file":
        out.write_text("not a folder")
    elif target == "read-only":
        out = tmp_path / "ro" / "out"
        out.parent.mkdir()
        out.parent.chmod(0o500)
    else:
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    args = [command] + ([] if command == "demo" else [path]) + ["-o", str(out), "-q"]
    if command in ("run", "compare"):
        args += ["-k", "2", "--max-iter", "2"]
    try:
        code, err = _call(capsys, args)
    finally:
        if target == "read-only":
            out.parent.chmod(0o700)
    if target == "read-only" and code == 0:  # running as root: the folder is writable
        pytest.skip("running as root: nothing is read-only")
    _assert_clear(code, err, {EXISTS})
    if target == "not empty":
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("command", ["run", "select"])
def test_resume_on_a_finished_folder_keeps_its_result(small, tmp_path, capsys, command):
    """--resume on a finished folder must not replace its result with a new fit of other
    options: ``run`` leaves no checkpoint (exit 4), ``select`` keeps the checkpoint of
    its fits, which refuses other options (exit 2); the files stay untouched."""
    import unmix

    _, path = small
    out = tmp_path / "out"
    first = ["-k", "3"] if command == "run" else ["--ks", "2:3", "--restarts", "3"]
    assert entry([command, path, "-o", str(out), "-q", *first]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    again = ["-k", "2"] if command == "run" else ["--ks", "2:4", "--restarts", "3"]
    code, err = _call(capsys, [command, path, "-o", str(out), "-q", "--resume", *again])
    if command == "run":
        _assert_clear(code, err, {EXISTS})
        assert "no checkpoint to resume from" in err and "--force" in err, err
    else:  # select keeps its fits' checkpoint, which refuses other options
        _assert_clear(code, err, {USAGE})
        assert "belongs to other" in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    if command == "run":
        assert unmix.load_result(str(out / "result.h5")).k == 3


def test_resume_without_a_checkpoint_says_it_starts_anew(small, tmp_path, capsys):
    _, path = small
    out = tmp_path / "new"
    code, err = _call(capsys, ["run", path, "-k", "2", "-o", str(out), "-q", "--resume"])
    assert code == 0
    assert "Warning: --resume: no checkpoint in" in err and "starting a new run" in err
    assert (out / "result.h5").exists()


def test_busy_folder_is_refused(small, tmp_path, capsys):
    """A live lock (another run's pid) refuses the folder with exit 4; a stale one is
    taken over."""
    import json
    import os
    import socket
    import subprocess
    import sys

    _, path = small
    out = tmp_path / "out"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock = {"pid": other.pid, "host": socket.gethostname()}
        (out / ".unmix.lock").write_text(json.dumps(lock))
        code, err = _call(capsys, ["run", path, "-k", "2", "-o", str(out), "-q"])
        _assert_clear(code, err, {EXISTS})
        assert f"pid {other.pid}" in err and not (out / "result.h5").exists()
    finally:
        other.kill()
        other.wait()
    assert entry(["run", path, "-k", "2", "--max-iter", "2", "-o", str(out), "-q"]) == 0
    assert (out / "result.h5").exists() and not (out / ".unmix.lock").exists()
    assert not [p for p in os.listdir(out) if p.startswith(".unmix-stage")]


# ------------------------------------------------------------ inspect advice
def _images():
    """Small images that draw every suggestion inspect can print."""
    import unmix

    rng = np.random.default_rng(2)
    counts = rng.poisson(3.0, size=(4, 5, 30)).astype(float)
    energy = unmix.Axis("Energy loss", 40, scale=5.0, offset=700.0, units="eV")
    eels = unmix.SpectralImage(
        rng.poisson(500.0 * np.linspace(1, 0.2, 40), size=(4, 5, 40)).astype(float),
        signal_axes=[energy],
        metadata={"signal_type": "EELS"},
    )
    signed = rng.normal(size=(4, 5, 30))
    signed[0, 0, 0] = np.nan
    baseline = 10.0 + rng.random((4, 5, 30))
    line = rng.poisson(50.0, size=(20, 30)).astype(float)
    return {
        "counts": unmix.SpectralImage(counts),
        "eels": eels,
        "signed+nan": unmix.SpectralImage(signed),
        "baseline": unmix.SpectralImage(baseline, metadata={"signal_type": "Raman"}),
        "line": unmix.SpectralImage(line),
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("counts", "--loss kl"),
        ("eels", "power_law_background"),
        ("signed+nan", "offset"),
        ("signed+nan", "--mask-nonfinite"),
        ("baseline", "baseline_als"),
        ("line", "--shape"),
    ],
)
def test_every_inspect_suggestion_runs(name, expected):
    """Each step inspect suggests is a real operation whose arguments work on the data."""
    from unmix.cli._inspect import suggestions
    from unmix.preprocessing import is_counts, pipeline_from_config

    image = _images()[name]
    X = np.asarray(image.unfold(), dtype=float)
    advice = suggestions(image, X, is_counts(X[np.isfinite(X)]), np.nansum(X, axis=1))
    assert expected in " ".join(text + str(steps) for text, steps in advice)
    for _, steps in advice:
        if steps:
            out = pipeline_from_config(steps).apply(image)
            assert out.n_pixels == image.n_pixels


@pytest.mark.parametrize("command", ["run", "compare"])
def test_missing_k_points_to_select(small, tmp_path, capsys, command):
    _, path = small
    code, err = _call(capsys, [command, path, "-o", str(tmp_path / "out"), "-q"])
    _assert_clear(code, err, {USAGE})
    assert "-k N" in err and "`unmix select FILE` recommends one" in err
