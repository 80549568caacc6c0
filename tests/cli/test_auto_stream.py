"""Every command streams a file that does not fit the memory budget, without a flag."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import unmix
from unmix.cli import EXIT_USAGE, entry
from unmix.cli._load import STREAM_FACTOR, choose_streaming

STREAMED = "data: streamed block by block"


def _cube(path, shape=(64, 64, 256), seed=0):
    """Counts of 3 planted components, float32, chunked by scan lines."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape[:2]))
    X = rng.poisson(rng.gamma(1.0, size=(n, 3)) @ rng.gamma(2.0, size=(3, np.prod(shape[2:]))))
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=X.reshape(shape).astype(np.float32), chunks=(1, *shape[1:]))
    return str(path)


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    return _cube(tmp_path_factory.mktemp("auto") / "cube.h5")


def test_the_choice_is_by_size_against_the_budget():
    assert choose_streaming(100, STREAM_FACTOR * 100, [])[0] is False
    stream, why = choose_streaming(101, STREAM_FACTOR * 100, [])
    assert stream is True and "--in-memory" in why
    stream, why = choose_streaming(10**9, 10, ["--step"])
    assert stream is False and "--step need it" in why


@pytest.mark.parametrize("command", ["inspect", "run", "compare", "tree", "select"])
def test_every_command_streams_above_the_budget_and_loads_below(cube, tmp_path, capsys, command):
    fast = {
        "inspect": [],
        "run": ["-k", "2", "--max-iter", "2", "--no-report"],
        "compare": ["-k", "2", "--max-iter", "2"],
        "tree": ["--leaves", "2", "--no-report"],
        "select": ["--ks", "2:2", "--restarts", "3", "--cv-repeats", "1", "--max-iter", "2"],
    }[command]
    out = [] if command == "inspect" else ["-o", str(tmp_path / "small")]
    assert entry([command, cube, *fast, *out]) == 0
    assert "data: in memory (4.0 MiB of data" in capsys.readouterr().err
    out = [] if command == "inspect" else ["-o", str(tmp_path / "big")]
    assert entry([command, cube, "--max-memory", "1M", *fast, *out]) == 0
    assert STREAMED in capsys.readouterr().err


def test_flags_force_the_choice_and_contradict_each_other(cube, capsys):
    assert entry(["inspect", cube, "--out-of-core"]) == 0
    text = capsys.readouterr()
    assert "streamed (--out-of-core)" in text.err and ", lazy>" in text.out
    assert entry(["inspect", cube, "--max-memory", "1M", "--in-memory"]) != 0  # refused
    assert "budget is 1.0 MiB" in capsys.readouterr().err
    assert entry(["inspect", cube, "--max-memory", "1G", "--in-memory"]) == 0
    assert "in memory (--in-memory)" in capsys.readouterr().err
    assert entry(["inspect", cube, "--out-of-core", "--in-memory"]) == EXIT_USAGE
    assert "contradict" in capsys.readouterr().err


def _image(path):
    """One 1024 x 1024 float32 image (4 MiB), the input of a sliding-window FFT."""
    with h5py.File(path, "w") as f:
        data = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
        f.create_dataset("data", data=data, chunks=(1, 1024))
    return str(path)


def test_a_step_that_needs_the_whole_image_keeps_it_in_memory_and_says_why(tmp_path, capsys):
    step = ["--step", '{op="sliding_window_fft", window=32, step=16}']
    image = _image(tmp_path / "image.h5")
    out = tmp_path / "out"
    args = ["run", image, "-k", "2", "--max-memory", "3M", "--max-iter", "1", "-o", str(out)]
    code = entry([*args, *step])
    assert code != 0  # too large to load, and this step cannot stream
    assert not out.exists()  # the folder the run created is gone again
    err = capsys.readouterr().err
    assert "--step sliding_window_fft need it" in err
    assert "needs 4.0 MiB in memory but the budget is 3.0 MiB" in err


def test_steps_that_run_line_by_line_stream_with_the_file(cube, tmp_path, capsys):
    steps = ["--step", '{op="crop", signal=[2, 200]}', "--step", '{op="despike"}']
    steps += ["--step", '{op="normalize", per="channel"}']  # scales from one streamed pass
    base = ["run", cube, "-k", "2", "--max-iter", "3", "--seed", "0", "--no-report", *steps]
    out = tmp_path / "streamed"
    assert entry([*base, "--max-memory", "3M", "-o", str(out)]) == 0
    assert STREAMED in capsys.readouterr().err
    assert entry([*base, "-o", str(tmp_path / "memory")]) == 0
    a = unmix.load_result(out / "result.h5")
    b = unmix.load_result(tmp_path / "memory" / "result.h5")
    assert a.S.shape == (2, 199)
    np.testing.assert_allclose(a.S, b.S, rtol=1e-5, atol=1e-7 * np.abs(b.S).max())


def test_streamed_run_of_a_4d_file_gives_the_in_memory_answer(tmp_path, capsys):
    rng = np.random.default_rng(1)
    pats = rng.gamma(2.0, size=(12, 10, 3)) @ rng.gamma(2.0, size=(3, 8 * 8))
    path = tmp_path / "pats.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("d", data=pats.reshape(12, 10, 8, 8).astype(np.float32), chunks=True)
    base = ["run", str(path), "-k", "3", "--seed", "0", "--max-iter", "20", "--tol", "0"]
    assert entry([*base, "-q", "--no-report", "-o", str(tmp_path / "mem")]) == 0
    assert entry([*base, "--max-memory", "10K", "-o", str(tmp_path / "ooc")]) == 0
    assert STREAMED in capsys.readouterr().err
    mem = unmix.load_result(tmp_path / "mem" / "result.h5")
    ooc = unmix.load_result(tmp_path / "ooc" / "result.h5")
    assert ooc.maps().shape == (12, 10, 3) and ooc.S.shape == (3, 64)
    np.testing.assert_allclose(ooc.S, mem.S, rtol=1e-3, atol=1e-4 * np.abs(mem.S).max())
    html = (tmp_path / "ooc" / "report.html").read_text()
    assert "Relative residual map" in html and "Data and model at selected pixels" in html


def test_tree_and_select_on_a_streamed_file_fit_a_seeded_subsample(cube, tmp_path, capsys):
    args = ["tree", cube, "--max-memory", "1M", "--leaves", "3", "--no-report", "-q"]
    assert entry([*args, "-o", str(tmp_path / "t1")]) == 0
    assert entry([*args, "-o", str(tmp_path / "t2")]) == 0
    assert entry([*args, "--seed", "4", "-o", str(tmp_path / "t3")]) == 0
    t1, t2, t3 = (json.loads((tmp_path / t / "tree.json").read_text()) for t in ("t1", "t2", "t3"))
    sub = t1["params"]["subsample"]
    assert sub == {"pixels": 256, "of": 4096, "seed": 0}  # the floor under a 1 MiB budget
    assert t1["nodes"] == t2["nodes"] and t1["nodes"] != t3["nodes"]
    result = unmix.load_result(tmp_path / "t1" / "result.h5")
    assert result.maps().shape == (64, 64, 3)  # every pixel mapped, not only the sample
    assert np.all(np.isfinite(result.A)) and np.all(result.A.sum(axis=1) > 0)
    capsys.readouterr()
    sel = ["select", cube, "--max-memory", "1M", "--ks", "2:3", "--restarts", "3"]
    sel += ["--cv-repeats", "1", "--max-iter", "3"]
    assert entry([*sel, "-o", str(tmp_path / "s1")]) == 0
    assert "selecting on 256 of 4096 pixels (seed 0)" in capsys.readouterr().err


def test_the_default_budget_sees_the_address_space_limit(monkeypatch):
    import resource

    import unmix.io._common as common
    from unmix.io import memory_budget

    monkeypatch.delenv("UNMIX_MEMORY_BUDGET", raising=False)
    # the free memory read once: other processes move /proc/meminfo between two reads
    for name in ("_meminfo_available", "_cgroup_available"):
        value = getattr(common, name)()
        monkeypatch.setattr(common, name, lambda value=value: value)
    free = memory_budget()
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1 << 40, resource.RLIM_INFINITY))
    assert memory_budget() <= free
    with open("/proc/self/status", encoding="ascii") as f:
        used = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    limit = used + (256 << 20)  # ``prlimit --as``: 256 MiB left to this process
    monkeypatch.setattr(resource, "getrlimit", lambda which: (limit, resource.RLIM_INFINITY))
    assert memory_budget() <= 0.8 * (256 << 20) + (8 << 20)  # VmSize moves a little


def test_a_rosettasciio_lazy_format_is_streamed_above_the_budget(tmp_path, capsys):
    from conftest import shared_path

    path = shared_path("formats", "EELS_SI.dm4")  # Digital Micrograph: a Dask array
    assert entry(["inspect", str(path), "--max-memory", "1K"]) == 0
    assert STREAMED in capsys.readouterr().err
    args = ["run", str(path), "-k", "2", "--step", '{op="clip"}', "--max-iter", "5"]
    assert entry([*args, "--max-memory", "1K", "-o", str(tmp_path / "out"), "-q"]) == 0
    assert unmix.load_result(str(tmp_path / "out" / "result.h5")).A.shape == (4, 2)
