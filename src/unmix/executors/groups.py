"""Many independent pieces of work over groups of MPI ranks (private, shared).

Rank selection, the lambda search and the hierarchical tree all run independent fits;
under ``mpiexec`` they deal them over groups of ranks
(:meth:`unmix.mpi.MPIExecutor.split`) and share every result with every rank
(:meth:`~unmix.mpi.MPIExecutor.allgather_items`), so that every rank returns what a
serial run returns.  A piece of work's seed belongs to the piece, never to the group that
runs it.  Nothing here imports mpi4py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._params import Interval, IsNone, Param, Rule

logger = logging.getLogger("unmix")

__all__ = ["EXECUTOR", "GROUPS", "Groups", "MPIRanks", "Work", "check_executor", "deal"]


@dataclass(frozen=True)
class MPIRanks(Rule):
    """An MPI executor: an object (not a string) whose ranks can ``split`` into groups."""

    def accepts(self, value: Any) -> bool:
        return not isinstance(value, str) and callable(getattr(value, "split", None))

    def describe(self) -> str:
        return "an MPI executor (unmix.mpi.MPIExecutor)"

    def invalid(self) -> Any:
        return 3.5


#: The ``executor`` row of a function that deals independent fits over groups of MPI
#: ranks (tables of :mod:`unmix._params`; checked in full by :func:`check_executor`).
EXECUTOR = Param(
    "executor",
    (IsNone(), MPIRanks()),
    None,
    "MPI ranks that run the independent fits",
    "unmix.mpi.MPIExecutor, optional",
    """Run the independent fits over MPI ranks (every rank calls the function with the
        same arguments under ``mpiexec``): they are dealt over ``groups`` groups of ranks,
        and every rank returns what a serial run returns (the seeds belong to the fits,
        not to the ranks that run them).""",
    toml=False,
    estimator=False,
)

#: The ``groups`` row that goes with :data:`EXECUTOR`.
GROUPS = Param(
    "groups",
    (IsNone(), Interval(int, 1)),
    None,
    "number of groups the executor's ranks form",
    "int, optional",
    """Number of groups the executor's ranks form (:meth:`unmix.mpi.MPIExecutor.split`),
        from 1 to the number of ranks; default one group per rank.  Needs ``executor``.""",
    toml=False,
    estimator=False,
)


@dataclass(frozen=True)
class Work:
    """One independent piece of work: a key (picklable, unique) and its relative cost."""

    key: Any
    cost: float


def deal(work: Sequence[Work], sizes: Sequence[int]) -> list[list[Work]]:
    """The work of each group of ranks: largest first, each to the group that would finish
    it first (work / ranks).  Depends only on ``work`` and ``sizes``, so every rank
    computes the same deal; the order of ``work`` is kept within a group."""
    load = [0.0] * len(sizes)
    owner: dict[Any, int] = {}
    for i in sorted(range(len(work)), key=lambda i: (-work[i].cost, i)):
        g = min(range(len(sizes)), key=lambda j: ((load[j] + work[i].cost) / sizes[j], j))
        load[g] += work[i].cost
        owner[work[i].key] = g
    return [[w for w in work if owner[w.key] == g] for g in range(len(sizes))]


def check_executor(executor: Any, groups: Any, *, task: str = "run its fits") -> None:
    """An MPI executor (or none) and a group count that fits its ranks, or a clear error."""
    if executor is None:
        if groups is not None:
            raise ValueError(
                f"groups={groups!r} needs executor=unmix.mpi.MPIExecutor() (groups of MPI "
                "ranks, under mpiexec); leave groups=None for a serial run."
            )
        return
    if not callable(getattr(executor, "split", None)):
        raise TypeError(
            f"executor={executor!r} cannot {task} over processes; pass "
            "executor=unmix.mpi.MPIExecutor() under mpiexec (or None for a serial run)."
        )
    if groups is not None:
        from .mpi import check_groups

        check_groups(groups, executor.size)


class Groups:
    """The executor's ranks in groups, and the dealing of work items over them.

    Parameters
    ----------
    executor : unmix.mpi.MPIExecutor
    groups : int, optional
        Number of groups (default: one per rank).

    Notes
    -----
    Collective: every rank makes it, calls :meth:`run` with the same work in the same
    order, and calls :meth:`close`.
    """

    def __init__(self, executor: Any, groups: int | None, *, task: str = "fits") -> None:
        self.ex, self.task = executor, task
        n_groups = executor.size if groups is None else int(groups)
        self.group, self.sub = executor.split(n_groups)
        owners = executor.allgather(self.group)
        self.sizes = [owners.count(g) for g in range(n_groups)]
        logger.info(
            "MPI %s: %d rank(s) in %d group(s) %s; this rank in group %d",
            task,
            executor.size,
            n_groups,
            self.sizes,
            self.group,
        )

    def run(self, work: Sequence[Work], fn: Callable[[list[Work]], list]) -> list:
        """``fn(items)`` on this group's share of ``work``; every group's results, on
        every rank (each group's list in its order, the groups in rank order).

        ``fn`` returns a list of picklable (host) values.  An exception in ``fn`` on any
        rank is raised on every rank (as a RuntimeError naming it), not left as a hang.
        """
        mine = deal(work, self.sizes)[self.group]
        sent: list = []
        try:
            got = fn(mine) if mine else []
            if self.sub.rank == 0:
                sent = [("ok", value) for value in got]
        except Exception as err:  # shared so that no rank waits for a dead one
            sent = [("error", f"rank {self.ex.rank}: {type(err).__name__}: {err}")]
        shared = self.ex.allgather_items(sent)
        errors = [value for status, value in shared if status == "error"]
        if errors:
            raise RuntimeError(f"{self.task} failed on an MPI rank: " + "; ".join(errors))
        return [value for _, value in shared]

    def close(self) -> None:
        """Release the groups' sub-communicators (collective)."""
        self.sub.free()
