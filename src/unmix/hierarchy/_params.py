"""The parameter table of :func:`unmix.hierarchy.hierarchical_nmf`: one row a keyword.

The rows check the arguments and write their numpydoc entries (see :mod:`unmix._params`).
Checks that need the data (``n_leaves`` and ``min_size`` against the pixels) or several
parameters at once (a stopping rule) stay with :mod:`~unmix.hierarchy._tree`; the
executor's ranks are checked by :func:`unmix.executors.groups.check_executor`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .._params import (
    Callback,
    Instance,
    Interval,
    IsNone,
    Options,
    Param,
    Shape,
    check_params,
    lower,
    table,
)
from ..engine import PARAMETERS
from ..executors.groups import EXECUTOR, GROUPS
from ._scores import SCORES

__all__ = ["ENDMEMBERS", "INTERNALS", "REFITS", "STRATEGIES", "TREE_PARAMETERS", "check_tree"]

REFITS = ("none", "maps", "joint")
STRATEGIES = ("greedy", "breadth")
ENDMEMBERS = ("core", "split")
INTERNALS = ("mean", "split")

WHERE = "hierarchical_nmf"


@dataclass(frozen=True)
class Exactly(Interval):
    """The one int ``lo`` (== ``hi``)."""

    def describe(self) -> str:
        return f"{self.lo:g}"


_NONE = IsNone()
_COUNT = Interval(int, 1)
_BOOL = Instance((bool, np.bool_), "a bool")
_SEED = Interval(int, 0)

TREE_PARAMETERS: dict[str, Param] = table(
    Param(
        "n_leaves",
        (_NONE, _COUNT),
        None,
        "leaves at which growth stops",
        "int, optional",
        """Stop when the tree has this many leaves.  At least one of ``n_leaves``,
            ``min_score`` or ``max_depth`` must be given.""",
    ),
    Param(
        "min_size",
        (_NONE, _COUNT),
        None,
        "fewest pixels of a child",
        "int, optional",
        "Fewest pixels a child may have (default ``max(2, n_pixels // 500)``).",
    ),
    Param(
        "min_score",
        (_NONE, Interval(float)),
        None,
        "lowest score of a split",
        "float, optional",
        "Leaves whose candidate split scores below this are not split.",
    ),
    Param(
        "max_depth",
        (_NONE, Interval(int, 0)),
        None,
        "deepest level",
        "int, optional",
        "Deepest level of the tree (the root is depth 0).",
    ),
    Param(
        "min_angle",
        (Interval(float, 0.0),),
        0.5,
        "smallest spectral angle (degrees) between the children of a split",
        "float",
        """A split whose children's endmembers are closer than this spectral angle
            (degrees) is not made: the node holds no distinguishable spectra (e.g. one
            material and noise, or a short stretch of a mixing line).""",
    ),
    Param(
        "score",
        (Options(lower(SCORES)),),
        "gain",
        "priority of a candidate split",
        '{"gain", "ndcg"}',
        "Priority of a candidate split (see :mod:`unmix.hierarchy._scores`).",
    ),
    Param(
        "node_rank",
        (Exactly(int, 2, 2), Options(frozenset({"stability"}))),
        2,
        "children a split",
        '2 or "stability"',
        """Children a split: 2 (HierNMF2), or chosen per node among ``2..max_rank`` by the
            stability of the components over perturbed restarts (as HNMFk does).""",
    ),
    Param(
        "max_rank",
        (Interval(int, 2),),
        4,
        'largest rank tried with node_rank="stability"',
        "int",
        'Largest rank tried with ``node_rank="stability"``.',
    ),
    Param(
        "strategy",
        (Options(lower(STRATEGIES)),),
        "greedy",
        "which leaves a round splits",
        '{"greedy", "breadth"}',
        """``"greedy"``: split the best-scoring leaf, one split at a time (Kuang & Park).
            ``"breadth"``: split every eligible leaf of the frontier at once (best first
            when ``n_leaves`` limits), so that all candidate splits of a level are fitted in
            one batch.""",
    ),
    Param(
        "refit",
        (Options(lower(REFITS)), _BOOL),
        "maps",
        "maps of every level",
        '{"maps", "joint", "none"} or bool',
        """Maps of every level: ``"maps"`` (True) refits the level's endmembers to all
            pixels (exact NNLS; fully constrained least squares when ``sum_to_one``);
            ``"joint"`` then refines the level's maps and endmembers together by NMF started
            from the tree's values; ``"none"`` (False) keeps the tree's nested maps.""",
    ),
    Param(
        "sum_to_one",
        (_BOOL,),
        False,
        "abundances summing to one",
        "bool",
        "Abundances of every level non-negative and summing to one per pixel.",
    ),
    Param(
        "max_iter",
        (_NONE, _COUNT),
        None,
        "iterations of every rank-2 NMF",
        "int, optional",
        """Iterations of every rank-2 NMF (default 300; with a term that tightens a bound,
            ``Orthogonality``, the engine's default, 5000: each strength's fit converges
            before the next).""",
    ),
    Param(
        "tol",
        (Interval(float, 0.0),),
        1e-7,
        "ANLS tolerance of every rank-2 NMF",
        "float",
        "ANLS tolerance of every rank-2 NMF.",
    ),
    Param(
        "refit_iter",
        (_NONE, _COUNT),
        None,
        "iterations of the engine's refits",
        "int, optional",
        """Iterations of the engine's refits (``sum_to_one`` or ``"joint"``; default 300,
            or the engine's default for a term that tightens a bound, as ``max_iter``).""",
    ),
    Param(
        "stability",
        (_NONE, Instance((Mapping,), "a dict")),
        None,
        "options of the rank stability",
        "dict, optional",
        """Options of :func:`~unmix.hierarchy._stability.rank_stability` (``n_runs``,
            ``noise``, ``threshold``, ``max_iter``).""",
    ),
    Param(
        "endmember",
        (Options(lower(ENDMEMBERS)),),
        "core",
        "the endmember of a new child",
        '{"core", "split"}',
        """The endmember of a new child: ``"split"`` the split's NMF component (scaled so
            that a pure pixel has abundance 1; the paper's choice), ``"core"`` the mean of
            the ``core_fraction`` of the child's pixels closest in spectral angle to it,
            iterated from the NMF component (a mean shift to the child's densest direction;
            robust to the tilt of rank-2 components when a node holds more than two
            materials).""",
    ),
    Param(
        "core_fraction",
        (Interval(float, 0.0, 1.0, closed="right"),),
        0.4,
        'fraction of a child\'s pixels averaged by endmember="core"',
        "float",
        """Fraction of a child's pixels averaged by ``endmember="core"``.""",
    ),
    Param(
        "internal",
        (Options(lower(INTERNALS)),),
        "mean",
        "the endmember of a node that was split",
        '{"mean", "split"}',
        """The endmember of a node that was split: the mean spectrum of its pixels (the
            group's average, as for the root; default) or the one it got as a new child.""",
    ),
    Param(
        "normalize",
        (_BOOL,),
        False,
        "divide every pixel by its Euclidean norm first",
        "bool",
        """Divide every pixel by its Euclidean norm first, so that splits follow the shape
            of the spectra, not their brightness (illumination, thickness); the endmembers,
            maps and errors then describe the normalized pixels.""",
    ),
    Param(
        "random_state",
        (_NONE, _SEED),
        0,
        "the seed",
        "int, optional",
        "Seed of the stability restarts and the joint refit.",
    ),
    Param(
        "spatial_shape",
        (_NONE, Shape()),
        None,
        "the scan grid",
        "tuple of int, optional",
        "Scan grid, kept for maps and figures.",
    ),
    Param(
        "signal_shape",
        (_NONE, Shape()),
        None,
        "the shape of one spectrum",
        "tuple of int, optional",
        "Pattern shape, kept for maps and figures.",
    ),
    replace(
        PARAMETERS["loss"],
        details=PARAMETERS["loss"].details
        + """
        The loss of every split.  Giving ``loss``, ``constraints``, ``regularizers`` or
        ``solver`` makes every node's split one :func:`unmix.factorize` fit of rank 2
        with these terms (see :mod:`unmix.hierarchy._terms`); without them the split is
        the exact rank-2 ANLS of :func:`~unmix.hierarchy.rank2_nmf` (Frobenius,
        non-negative), which solves the same problem as the default ``factorize`` model
        by its own algorithm.  The split's score stays the Frobenius gain.""",
    ),
    replace(
        PARAMETERS["constraints"],
        details=PARAMETERS["constraints"].details
        + """
        Of every split (and of the joint refit of the levels, ``refit="joint"``).""",
    ),
    replace(
        PARAMETERS["regularizers"],
        details=PARAMETERS["regularizers"].details
        + """
        Of every split (and of the joint refit of the levels).  Terms that couple
        pixels (``GaussianMapFilter``, ``SpatialSmoothness``, ``GraphSmoothness``) fit a
        node's split on the whole scan grid with the loss weighted by membership (the
        other pixels together a thousandth of the node; needs ``spatial_shape``), so
        that the node's pixels keep their neighbours.""",
    ),
    replace(
        PARAMETERS["solver"],
        details=PARAMETERS["solver"].details
        + """
        The solver of every split (``"auto"`` with no other term: the rank-2 ANLS).""",
    ),
    Param(
        "callback",
        (_NONE, Callback()),
        None,
        "called as the tree grows",
        "callable, optional",
        """``callback(n_leaves)`` once the root's candidate split is fitted, then after every
            split once the new leaves' candidate splits are fitted, with the number of
            leaves so far (e.g. a progress bar's position).""",
    ),
    replace(
        EXECUTOR,
        details=EXECUTOR.details
        + """
        Here the independent work is the candidate splits of the leaves each round
        creates (with ``node_rank="stability"`` every perturbed restart, then every
        leaf's split) and the refits of the levels.""",
    ),
    replace(
        GROUPS,
        details=GROUPS.details
        + """
        One group per rank is the fastest: the ranks of a group all compute the group's
        splits (a split's pixels are not divided among them).""",
    ),
)


def check_tree(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` checked against :data:`TREE_PARAMETERS`; choices lower-cased, ``refit``
    as a mode (True/False read as ``"maps"``/``"none"``)."""
    check_params(values, TREE_PARAMETERS, where=WHERE)
    out = {k: v.strip().lower() if isinstance(v, str) else v for k, v in values.items()}
    out["refit"] = {True: "maps", False: "none"}.get(out["refit"], out["refit"])
    return out
