"""The MPI executor: ``mpiexec -n 2`` and ``-n 3`` give the serial answer.

Each case runs a helper under ``mpiexec`` (stdin from /dev/null, one BLAS thread) that
fits with :class:`unmix.mpi.MPIExecutor` and compares with a serial fit on rank 0.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import unmix
from mpi_launch import HELPERS, mpiexec, needs_mpiexec
from unmix import UnsupportedError
from unmix.cli import entry
from unmix.executors.base import SerialExecutor

pytestmark = pytest.mark.slow  # MPI / Dask processes

pytest.importorskip("mpi4py")
_mpiexec = mpiexec


@needs_mpiexec
@pytest.mark.parametrize(
    ("ranks", "rows", "cols"),
    [(2, 6, 7), (3, 2, 7)],  # -n 3 on 2 scan lines: rank 2 owns no rows
    ids=["n2", "n3-empty-rank"],
)
def test_mpi_gives_the_serial_answer(ranks, rows, cols):
    run = _mpiexec(ranks, str(HELPERS / "mpi_fit.py"), str(rows), str(cols))
    assert run.returncode == 0, run.stderr[-3000:]
    cases = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(cases) == 10, run.stdout
    k, m = 3, 30
    for case in cases:
        what = f"{case['solver']} {case['extra']}"
        assert case["dS"] < 1e-6 and case["dA"] < 1e-6 and case["dobj"] < 1e-6, what
        if case["solver"] in ("hals", "mu", "bpp", "admm") and not case["extra"]:
            # one all-reduce of A^T X and A^T A per iteration, in float64
            assert case["bytes_per_iter"] == k * (m + k) * 8, what
        elif case["solver"] != "svd":
            assert 0 < case["bytes_per_iter"] <= k * (m + k) * 8 + 16, what
    if ranks == 3:
        assert {tuple(c["rows"]) for c in cases} == {(0, 7)}  # rank 0: one scan line


@needs_mpiexec
@pytest.mark.parametrize("ranks", [2, 3])
def test_mpi_restarts_dead_components_as_the_serial_fit_does(ranks):
    """The restart of dead components from a group of badly fitted pixels: the worst
    pixels of every rank are gathered, and every rank picks the same groups."""
    run = _mpiexec(ranks, str(HELPERS / "mpi_revive.py"))
    assert run.returncode == 0, run.stderr[-3000:]
    case = next(json.loads(x) for x in run.stdout.splitlines() if x.startswith("{"))
    assert case["revived"][0] == case["revived"][1] and len(case["revived"][0]) == 2, case
    assert case["n_iter"][0] == case["n_iter"][1], case
    assert case["dS"] < 1e-6 and case["dA"] < 1e-6 and case["dobj"] < 1e-9, case


@needs_mpiexec
def test_killed_rank_leaves_a_checkpoint_to_resume_from(tmp_path):
    helper, ckpt = str(HELPERS / "mpi_resume.py"), str(tmp_path / "fit.h5")
    full = _mpiexec(3, helper, "full", ckpt, str(tmp_path / "full.npz"))
    assert full.returncode == 0, full.stderr[-3000:]
    killed = _mpiexec(3, helper, "kill", ckpt, str(tmp_path / "killed.npz"))
    assert killed.returncode != 0
    assert not (tmp_path / "killed.npz").exists()
    left = sorted(p.name for p in tmp_path.glob("fit.h5.rank*"))
    assert {name.split(".")[2] for name in left} == {"rank0of3", "rank1of3", "rank2of3"}
    resumed = _mpiexec(3, helper, "resume", ckpt, str(tmp_path / "resumed.npz"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = np.load(tmp_path / "full.npz"), np.load(tmp_path / "resumed.npz")
    assert int(a["n_iter"]) == int(b["n_iter"]) == 60
    np.testing.assert_array_equal(a["S"], b["S"])
    np.testing.assert_array_equal(a["A"], b["A"])
    np.testing.assert_array_equal(a["history"], b["history"])
    assert not list(tmp_path.glob("fit.h5.rank*"))  # a completed fit removes its files


@needs_mpiexec
@pytest.mark.parametrize("out_of_core", [False, True])
def test_cli_run_under_mpiexec_matches_serial(tmp_path, out_of_core):
    mx = unmix.datasets.make_mixture(3, spatial_shape=(8, 6), n_channels=40, random_state=1)
    cube = np.clip(mx.X, 0, None).reshape(8, 6, 40)
    path = tmp_path / ("x.h5" if out_of_core else "x.npy")
    unmix.io.save(unmix.SpectralImage(cube), path)
    common = ["run", str(path), "-k", "3", "--seed", "0", "--no-report", "-q"]
    common += ["--max-iter", "50", "--tol", "0"]
    lazy = ["--out-of-core"] if out_of_core else []  # each rank reads only its rows
    par = _mpiexec(2, "-m", "unmix", *common, *lazy, "--mpi", "-o", str(tmp_path / "par"))
    assert par.returncode == 0, par.stderr[-3000:]
    assert entry([*common, "-o", str(tmp_path / "ser")]) == 0
    p = unmix.load_result(tmp_path / "par" / "result.h5")
    s = unmix.load_result(tmp_path / "ser" / "result.h5")
    assert p.A.shape == s.A.shape == (48, 3)
    np.testing.assert_allclose(p.S, s.S, rtol=1e-6, atol=1e-9 * np.abs(s.S).max())
    np.testing.assert_allclose(p.A, s.A, rtol=1e-6, atol=1e-9 * np.abs(s.A).max())


class _FakeDistributed(SerialExecutor):
    distributed = True


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"regularizers": [unmix.SpatialSmoothness(0.1)]}, "couple neighbouring pixels"),
        ({"init": "vca"}, "not available with a distributed executor"),
    ],
)
def test_distributed_rejects_what_it_cannot_do(kw, match):
    mx = unmix.datasets.make_mixture(3, spatial_shape=(6, 6), n_channels=20, random_state=0)
    with pytest.raises(UnsupportedError, match=match):
        unmix.factorize(
            mx.X, 3, executor=_FakeDistributed(), spatial_shape=(6, 6), max_iter=2, **kw
        )
