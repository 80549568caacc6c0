"""Trees over groups of MPI ranks: ``mpiexec -n 2`` and ``-n 3`` grow the serial tree.

Each MPI case runs ``helpers/mpi_tree.py`` under ``mpiexec`` (stdin from /dev/null, one
BLAS thread): rank 0 saves the serial trees, then every rank saves the tree it grew with
:class:`unmix.mpi.MPIExecutor` (one ``.npz`` file per rank and case).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mpi_launch import HELPERS, mpiexec, needs_mpiexec
from unmix.executors.groups import Work, deal
from unmix.hierarchy import hierarchical_nmf
from unmix.synthetic import make_hierarchy

pytestmark = pytest.mark.slow  # MPI / Dask processes

pytest.importorskip("mpi4py")
_mpiexec = mpiexec


def _same_tree(got: dict, ref: dict, what: str, rel: float = 1e-8) -> None:
    """Same nodes, splits, sizes and leaves; numbers to ``rel`` (the candidate splits of a
    round are fitted in other batches, so the scores differ in the last digits)."""
    g_nodes, r_nodes = json.loads(str(got["nodes"])), json.loads(str(ref["nodes"]))
    assert [n[:4] + n[5:] for n in g_nodes] == [n[:4] + n[5:] for n in r_nodes], what
    scores = [[n[4] for n in nodes] for nodes in (g_nodes, r_nodes)]
    assert scores[0] == pytest.approx(scores[1], rel=rel, abs=1e-12), what
    g_hist, r_hist = json.loads(str(got["history"])), json.loads(str(ref["history"]))
    assert [h["node"] for h in g_hist] == [h["node"] for h in r_hist], what
    np.testing.assert_array_equal(got["assignment"], ref["assignment"], err_msg=what)
    for key in [k for k in ref.files if k == "S" or k.startswith("level")]:
        scale = max(float(np.abs(ref[key]).max()), 1e-300)
        np.testing.assert_allclose(got[key], ref[key], rtol=0, atol=rel * scale, err_msg=what)


@needs_mpiexec
@pytest.mark.parametrize(
    ("ranks", "cases"),
    [
        # 2 groups of 1 (greedy, breadth + joint refit, stability ranks), 1 group of 2
        (2, ["none:greedy", "none:breadth", "none:stability", "1:greedy"]),
        # groups of 2 and 1 ranks (uneven), 3 groups of 1
        (3, ["2:stability", "none:greedy"]),
    ],
    ids=["n2", "n3-uneven"],
)
def test_groups_of_ranks_grow_the_serial_tree(ranks, cases, tmp_path):
    run = _mpiexec(ranks, str(HELPERS / "mpi_tree.py"), str(tmp_path), *cases)
    assert run.returncode == 0, run.stderr[-3000:]
    for case in cases:
        spec, _, mode = case.partition(":")
        ref = np.load(tmp_path / f"serial-{mode}.npz")
        for rank in range(ranks):
            got = np.load(tmp_path / f"{spec}_{mode}-rank{rank}.npz")
            _same_tree(got, ref, f"case {case} rank {rank}")


def test_work_is_dealt_by_cost_over_groups_of_any_size():
    work = [Work(key, cost) for key, cost in [(1, 450), (2, 450), (3, 292), (4, 158), (5, 5)]]
    for sizes in ([1], [1, 1], [2, 1], [1, 1, 1]):
        dealt = deal(work, sizes)
        assert len(dealt) == len(sizes)
        assert sorted(w.key for part in dealt for w in part) == [1, 2, 3, 4, 5]
        for part in dealt:  # the given order within a group
            assert part == [w for w in work if w in part]
        assert dealt == deal(list(work), sizes)  # the same on every rank
    assert [[w.key for w in part] for part in deal(work, [1, 1])] == [[1, 3], [2, 4, 5]]


class _FakeMPI:
    """What hierarchical_nmf checks of an MPI executor, without MPI."""

    def __init__(self, size: int) -> None:
        self.rank, self.size = 0, size

    def split(self, n_groups: int):  # pragma: no cover - never reached in these tests
        raise AssertionError


def test_bad_group_counts_and_executors_are_named():
    X = make_hierarchy(spatial_shape=(10, 10), random_state=0).X
    with pytest.raises(ValueError, match=r"groups=2 needs executor=unmix.mpi.MPIExecutor"):
        hierarchical_nmf(X, 3, groups=2)
    with pytest.raises(ValueError, match=r"groups=3 does not fit the 2 MPI rank\(s\)"):
        hierarchical_nmf(X, 3, executor=_FakeMPI(2), groups=3)
    with pytest.raises(ValueError, match=r"groups=0 does not fit .* from 1 .* to 2"):
        hierarchical_nmf(X, 3, executor=_FakeMPI(2), groups=0)
    with pytest.raises(TypeError, match="cannot grow a tree over processes"):
        hierarchical_nmf(X, 3, executor=object())
