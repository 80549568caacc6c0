"""Rank selection over groups of MPI ranks: ``mpiexec -n 2`` and ``-n 3`` give the serial answer.

Each MPI case runs ``helpers/mpi_select.py`` under ``mpiexec`` (stdin from /dev/null, one
BLAS thread): rank 0 prints a serial selection, then every rank prints the selection it
got with :class:`unmix.mpi.MPIExecutor` for several group counts (one JSON file per rank).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mpi_launch import HELPERS, mpiexec, needs_mpiexec
from unmix.datasets import make_mixture
from unmix.executors.mpi import check_groups
from unmix.selection import select_lambdas, select_rank
from unmix.selection._runner import deal_fits, plan_fits

pytestmark = pytest.mark.slow  # MPI / Dask processes

pytest.importorskip("mpi4py")
_mpiexec = mpiexec


def _same(got: dict, ref: dict, rel: float) -> None:
    what = f"case {got['case']} rank {got['rank']}"
    assert got["picks"] == ref["picks"], what
    assert got["recommended"] == ref["recommended"], what
    for key in ("sse", "cv_error", "silhouette"):
        assert got[key] == pytest.approx(ref[key], rel=rel, abs=rel), f"{what}: {key}"
    assert got["maps"] == [[256, 3]] * 3, what  # every rank holds the whole maps


@needs_mpiexec
@pytest.mark.parametrize(
    ("ranks", "cases"),
    [
        # 2 groups of 1, 1 group of 2, engine fits on single ranks, a resumed checkpoint
        (2, ["none", "1", "none:engine", "none:resume"]),
        # groups of 2 and 1 ranks (uneven), 3 groups of 1
        (3, ["2", "none"]),
    ],
    ids=["n2", "n3-uneven"],
)
def test_groups_of_ranks_give_the_serial_selection(ranks, cases, tmp_path):
    run = _mpiexec(ranks, str(HELPERS / "mpi_select.py"), str(tmp_path), *cases)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [
        json.loads(line)
        for path in sorted(tmp_path.glob("rank*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    refs = {d["case"]: d for d in lines if d["case"].startswith("serial")}
    got = [d for d in lines if not d["case"].startswith("serial")]
    assert sorted((d["case"], d["rank"]) for d in got) == sorted(
        (c, r) for c in cases for r in range(ranks)
    )
    for d in got:
        ref = refs["serial:engine" if d["case"].endswith(":engine") else "serial"]
        # single-rank groups run the serial arithmetic; split pixels sum in another order
        single = d["case"].startswith("none")
        _same(d, ref, rel=1e-9 if single else 1e-8)
        if d["case"].endswith(":resume"):
            assert d["n_fits_resumed"] == d["n_fits"] == 15
    if ranks == 2:
        assert len(list((tmp_path / "ck-none" / "fits").glob("*.npz"))) == 15


def test_fits_are_dealt_by_cost_over_groups_of_any_size():
    specs = plan_fits([2, 3, 4, 5], 4, 2, "entries", 0.1, seed=0)
    for sizes in ([1], [1, 1], [2, 1], [3, 3, 2]):
        dealt = deal_fits(specs, sizes)
        assert len(dealt) == len(sizes)
        assert sorted(s.key for part in dealt for s in part) == sorted(s.key for s in specs)
        for part in dealt:  # the serial order within a group
            assert part == [s for s in specs if s in part]
        assert dealt == deal_fits(list(specs), sizes)  # the same on every rank
    work = [sum(s.k * (2 if s.holdout else 1) for s in part) for part in deal_fits(specs, [2, 1])]
    assert work[0] == pytest.approx(2 * work[1], rel=0.15)  # twice the ranks, twice the work


class _FakeMPI:
    """What select_rank checks of an MPI executor, without MPI."""

    def __init__(self, size: int) -> None:
        self.rank, self.size = 0, size

    def split(self, n_groups: int):  # pragma: no cover - never reached in these tests
        raise AssertionError


def test_bad_group_counts_and_executors_are_named():
    X = np.asarray(
        make_mixture(3, spatial_shape=(8, 8), n_channels=20, random_state=0).X, dtype=float
    )
    with pytest.raises(ValueError, match=r"groups=3 does not fit the 2 MPI rank\(s\)"):
        select_rank(X, [2, 3], executor=_FakeMPI(2), groups=3)
    with pytest.raises(ValueError, match=r"groups=0 does not fit .* from 1 .* to 2"):
        select_rank(X, [2, 3], executor=_FakeMPI(2), groups=0)
    with pytest.raises(ValueError, match=r"groups=2 needs executor=unmix.mpi.MPIExecutor"):
        select_rank(X, [2, 3], groups=2)
    with pytest.raises(ValueError, match="leave n_jobs=1"):
        select_rank(X, [2, 3], executor=_FakeMPI(2), n_jobs=2)
    with pytest.raises(TypeError, match="cannot run a selection's fits"):
        select_rank(X, [2, 3], executor=object())
    with pytest.raises(ValueError, match=r"groups=1.5 does not fit"):
        check_groups(1.5, 4)
    assert check_groups(4, 4) == 4


def _lambda_runs(tmp_path, n: int, cases: list[str]) -> tuple[dict, list[dict]]:
    run = _mpiexec(n, str(HELPERS / "mpi_lambdas.py"), str(tmp_path), *cases)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [
        json.loads(line)
        for r in range(n)
        for line in (tmp_path / f"rank{r}.jsonl").read_text().splitlines()
    ]
    serial = next(x for x in lines if x["case"] == "serial")
    return serial, [x for x in lines if x["case"] != "serial"]


@needs_mpiexec
@pytest.mark.parametrize(("n", "cases"), [(2, ["none", "1"]), (3, ["2"])])
def test_lambda_search_on_rank_groups_gives_the_serial_search(tmp_path, n, cases):
    serial, runs = _lambda_runs(tmp_path, n, cases)
    assert len(runs) == n * len(cases)  # every rank returns the whole search
    assert len(serial["params"]) == 1 + 3 + 3  # baseline, then two staged grids of 3
    for got in runs:
        rel = 0.0 if got["case"] == "none" else 1e-5  # split fits sum in another order
        assert got["params"] == serial["params"] and got["stages"] == serial["stages"]
        assert got["best"] == serial["best"], got["case"]
        np.testing.assert_allclose(got["scores"], serial["scores"], rtol=rel, atol=0)


def test_lambda_search_groups_need_an_mpi_executor():
    X = np.ones((16, 5))
    with pytest.raises(ValueError, match=r"groups=2 needs executor=unmix\.mpi\.MPIExecutor"):
        select_lambdas(X, 2, groups=2)
    with pytest.raises(TypeError, match="cannot split its trials into groups of ranks"):
        select_lambdas(X, 2, executor=object())


@needs_mpiexec
def test_cli_select_under_mpiexec_matches_serial(tmp_path):
    from unmix.cli import entry

    mix = make_mixture(3, spatial_shape=(12, 12), n_channels=30, snr_db=30, random_state=6)
    path = tmp_path / "x.npy"
    np.save(path, np.clip(mix.X, 0, None).reshape(12, 12, 30))
    common = ["select", str(path), "--ks", "2:4", "--restarts", "3", "--cv-repeats", "1"]
    common += ["--max-iter", "80", "-q"]
    run = _mpiexec(2, "-m", "unmix", *common, "--mpi", "-o", str(tmp_path / "par"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert entry([*common, "-o", str(tmp_path / "ser")]) == 0
    par = json.loads((tmp_path / "par" / "selection.json").read_text())
    ser = json.loads((tmp_path / "ser" / "selection.json").read_text())
    assert par["recommended"] == ser["recommended"]
    assert [r["sse"] for r in par["table"]] == [r["sse"] for r in ser["table"]]
    assert entry([*common, "--groups", "2", "-o", str(tmp_path / "bad")]) != 0
