"""Run under ``mpiexec -n N``: a tree grown over groups of MPI ranks vs a serial run.

Usage: ``mpi_tree.py OUT_DIR CASES...`` where each case is ``GROUPS:MODE``: ``GROUPS`` an
integer or ``none`` (one group per rank), ``MODE`` one of ``greedy``, ``breadth`` (every
leaf of a level split at once, levels refined by a joint refit) or ``stability``
(per-node rank by stability).  Rank 0 first writes the serial tree of every mode used
(``serial-MODE.npz``); every rank writes the tree it got to ``CASE-rank<r>.npz`` (the
colon as ``_``): endmembers, leaf of every pixel, every level's maps and the nodes as JSON.
"""

import json
import logging
import os
import sys

import numpy as np

from unmix.executors.mpi import MPIExecutor
from unmix.hierarchy import hierarchical_nmf
from unmix.synthetic import make_hierarchy

MODES = {
    "greedy": {},
    "breadth": {"strategy": "breadth", "refit": "joint", "refit_iter": 50},
    "stability": {
        "node_rank": "stability",
        "max_rank": 3,
        "stability": {"n_runs": 3, "max_iter": 60},
    },
}


def save(path: str, tree) -> None:
    nodes = [
        [nd.id, nd.parent, nd.children, nd.size, nd.score, nd.rank, nd.reason] for nd in tree.nodes
    ]
    levels = {f"level{lv.depth}": np.asarray(lv.A) for lv in tree.levels}
    np.savez(
        path,
        S=np.asarray(tree.S),
        assignment=tree.assignment,
        nodes=json.dumps(nodes),
        history=json.dumps(tree.history),
        **levels,
    )


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    out_dir, cases = sys.argv[1], sys.argv[2:]
    h = make_hierarchy(spatial_shape=(30, 30), random_state=0)
    ex = MPIExecutor()
    if ex.rank == 0:
        for mode in sorted({c.partition(":")[2] for c in cases}):
            save(
                os.path.join(out_dir, f"serial-{mode}.npz"),
                hierarchical_nmf(h.X, 6, **MODES[mode]),
            )
    for case in cases:
        spec, _, mode = case.partition(":")
        groups = None if spec == "none" else int(spec)
        tree = hierarchical_nmf(h.X, 6, executor=ex, groups=groups, **MODES[mode])
        save(os.path.join(out_dir, f"{spec}_{mode}-rank{ex.rank}.npz"), tree)


if __name__ == "__main__":
    main()
