"""HierNMF2: a tree of endmembers by recursive rank-2 NMF splits (Kuang & Park 2013).

``X`` is (pixels, channels).  The root holds every pixel.  A leaf is split by a rank-2
NMF of its own pixels (:func:`~unmix.hierarchy.rank2.rank2_nmf`),

    min_{A_b >= 0, S_b >= 0} 1/2 ||X_b - A_b S_b||_F^2,   A_b (n_b, 2), S_b (2, channels),

its pixels go to the child whose component dominates them, and the two rows of ``S_b``
(scaled so that a pure pixel has abundance 1) become the children's endmembers.  The
next leaf to split is the one whose candidate split scores highest
(:mod:`~unmix.hierarchy.scores`).  Growth stops at ``n_leaves`` leaves, or when no leaf
can be split: too few pixels, pixels identical (rank one), a split leaving fewer than
``min_size`` pixels on one side, a score below ``min_score`` or ``max_depth``.

Every level (the cut of the tree at a depth) then gets full abundance maps of all pixels
by refitting that level's endmembers with the engine's constraints
(``A >= 0``, optionally ``sum(A, axis=1) == 1``).
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import numpy as np

from .._backend import Backend, backend_of
from .._validation import check_nonnegative, ensure_2d_float, finite_report
from ..executors.groups import Groups, check_executor
from ._maps import nested_maps, refit_level
from ._model import Level, Node, Tree
from ._parallel import propose_mpi, refit_levels_mpi
from ._scores import SCORES
from ._split import Candidate, Options, propose

logger = logging.getLogger("unmix")

__all__ = ["hierarchical_nmf"]

REFITS = ("none", "maps", "joint")
STRATEGIES = ("greedy", "breadth")
ENDMEMBERS = ("core", "split")


def hierarchical_nmf(
    X: Any,
    n_leaves: int | None = None,
    *,
    min_size: int | None = None,
    min_score: float | None = None,
    max_depth: int | None = None,
    min_angle: float = 0.5,
    score: str = "gain",
    node_rank: int | str = 2,
    max_rank: int = 4,
    strategy: str = "greedy",
    refit: str | bool = "maps",
    sum_to_one: bool = False,
    max_iter: int = 300,
    tol: float = 1e-7,
    refit_iter: int = 300,
    stability: dict | None = None,
    endmember: str = "core",
    core_fraction: float = 0.4,
    internal: str = "mean",
    normalize: bool = False,
    random_state: int | None = 0,
    spatial_shape: tuple[int, ...] | None = None,
    signal_shape: tuple[int, ...] | None = None,
    executor: Any = None,
    groups: int | None = None,
) -> Tree:
    """Grow a tree of endmembers by rank-2 NMF splits and map every level.

    Parameters
    ----------
    X : array (n_pixels, n_channels)
        Non-negative data, one spectrum a row (NumPy, PyTorch or CuPy; all arrays of the
        tree follow its dtype and device).
    n_leaves : int, optional
        Stop when the tree has this many leaves.  At least one of ``n_leaves``,
        ``min_score`` or ``max_depth`` must be given.
    min_size : int, optional
        Fewest pixels a child may have (default ``max(2, n_pixels // 500)``).
    min_score : float, optional
        Leaves whose candidate split scores below this are not split.
    max_depth : int, optional
        Deepest level of the tree (the root is depth 0).
    min_angle : float
        A split whose children's endmembers are closer than this spectral angle
        (degrees) is not made: the node holds no distinguishable spectra (e.g. one
        material and noise, or a short stretch of a mixing line).
    score : {"gain", "ndcg"}
        Priority of a candidate split (see :mod:`unmix.hierarchy.scores`).
    node_rank : 2 or "stability"
        Children a split: 2 (HierNMF2), or chosen per node among ``2..max_rank`` by the
        stability of the components over perturbed restarts (as HNMFk does).
    max_rank : int
        Largest rank tried with ``node_rank="stability"``.
    strategy : {"greedy", "breadth"}
        ``"greedy"``: split the best-scoring leaf, one split at a time (Kuang & Park).
        ``"breadth"``: split every eligible leaf of the frontier at once (best first
        when ``n_leaves`` limits), so that all candidate splits of a level are fitted in
        one batch.
    refit : {"maps", "joint", "none"} or bool
        Maps of every level: ``"maps"`` (True) refits the level's endmembers to all
        pixels (exact NNLS; fully constrained least squares when ``sum_to_one``);
        ``"joint"`` then refines the level's maps and endmembers together by NMF started
        from the tree's values; ``"none"`` (False) keeps the tree's nested maps.
    sum_to_one : bool
        Abundances of every level non-negative and summing to one per pixel.
    max_iter, tol : int, float
        ANLS iterations and tolerance of every rank-2 NMF.
    refit_iter : int
        Iterations of the engine's refits (``sum_to_one`` or ``"joint"``).
    endmember : {"core", "split"}
        The endmember of a new child: ``"split"`` the split's NMF component (scaled so
        that a pure pixel has abundance 1; the paper's choice), ``"core"`` the mean of
        the ``core_fraction`` of the child's pixels closest in spectral angle to it,
        iterated from the NMF component (a mean shift to the child's densest direction;
        robust to the tilt of rank-2 components when a node holds more than two
        materials).
    core_fraction : float
        Fraction of a child's pixels averaged by ``endmember="core"``.
    internal : {"mean", "split"}
        The endmember of a node that was split: the mean spectrum of its pixels (the
        group's average, as for the root; default) or the one it got as a new child.
    normalize : bool
        Divide every pixel by its Euclidean norm first, so that splits follow the shape
        of the spectra, not their brightness (illumination, thickness); the endmembers,
        maps and errors then describe the normalized pixels.
    stability : dict, optional
        Options of :func:`~unmix.hierarchy.stability.rank_stability` (``n_runs``,
        ``noise``, ``threshold``, ``max_iter``).
    random_state : int, optional
        Seed of the stability restarts and the joint refit.
    spatial_shape, signal_shape : tuple of int, optional
        Scan grid and pattern shape, kept for maps and figures.
    executor : unmix.mpi.MPIExecutor, optional
        Grow the tree over MPI ranks (every rank calls :func:`hierarchical_nmf` with the
        same arguments under ``mpiexec``).  The independent work - the candidate splits
        of the leaves each round creates, with ``node_rank="stability"`` every perturbed
        restart and then every leaf's split, and the refits of the levels - is dealt over
        ``groups`` groups of ranks, and every rank returns the tree of a serial run.
    groups : int, optional
        Number of groups the executor's ranks form (:meth:`unmix.mpi.MPIExecutor.split`),
        from 1 to the number of ranks; default one group per rank (the fastest: the
        ranks of a group all compute the group's splits, a split's pixels are not divided
        among them).  Needs ``executor``.

    Returns
    -------
    Tree
        Nodes with endmembers, the leaf of every pixel, nested maps and one
        :class:`~unmix.hierarchy.model.Level` a depth.  If growth stops before
        ``n_leaves`` a ``UserWarning`` says why and the partial tree is returned.

    Raises
    ------
    ValueError
        Bad options, too few pixels, or ``groups`` without an MPI executor or beyond its
        number of ranks.
    TypeError
        ``executor`` is not an MPI executor.
    """
    t0 = time.perf_counter()
    check_executor(executor, groups, task="grow a tree")
    X, be = _checked_data(X, normalize)
    n = int(X.shape[0])
    opts = _check_options(
        n,
        n_leaves,
        min_size,
        min_score,
        max_depth,
        score,
        node_rank,
        max_rank,
        strategy,
        min_angle,
    )
    _set_fit_options(opts, max_iter, tol, stability, random_state, endmember, core_fraction)
    refit_mode = _check_refit(internal, refit)
    _check_enough_pixels(n, opts.min_size)
    ranks = None if executor is None else Groups(executor, groups, task="hierarchical_nmf")
    try:
        tree = _build(X, be, opts, n_leaves, strategy, internal, ranks)
        tree.params.update(
            refit=refit_mode, sum_to_one=bool(sum_to_one), normalize=bool(normalize)
        )
        tree.spatial_shape = tuple(spatial_shape) if spatial_shape else None
        tree.signal_shape = tuple(signal_shape) if signal_shape else None
        t_grow = time.perf_counter() - t0
        tree.node_maps = nested_maps(X, tree)
        t1 = time.perf_counter()
        tree.levels = _refit_levels(
            X, be, tree, ranks, refit_mode, sum_to_one, refit_iter, random_state
        )
    finally:
        if ranks is not None:
            ranks.close()
    tree.timings = {
        "grow": t_grow,
        "levels": time.perf_counter() - t1,
        "total": time.perf_counter() - t0,
    }
    _warn_if_partial(tree, n_leaves)
    return tree


def _checked_data(X: Any, normalize: bool) -> tuple[Any, Backend]:
    """``X`` as a finite, non-negative 2-D float array (rows of unit norm if ``normalize``)."""
    X = ensure_2d_float(X)
    finite_report(X)
    check_nonnegative(X, why="hierarchical NMF (A >= 0 and S >= 0)")
    be = backend_of(X)
    if normalize:
        norms = be.xp.linalg.vector_norm(X, axis=1, keepdims=True)
        X = X / be.xp.where(norms > 0, norms, 1.0)
    return X, be


def _refit_levels(
    X: Any,
    be: Backend,
    tree: Tree,
    ranks: Groups | None,
    mode: str,
    sum_to_one: bool,
    max_iter: int,
    random_state: int | None,
) -> list[Level]:
    """Maps of every level of ``tree``, one refit a depth (dealt over ``ranks`` if given)."""

    def refit_one(d: int) -> Level:
        return refit_level(
            X,
            tree,
            d,
            mode=mode,
            sum_to_one=sum_to_one,
            max_iter=max_iter,
            random_state=random_state,
        )

    depths = list(range(tree.depth + 1))
    if ranks is None:
        return [refit_one(d) for d in depths]
    return refit_levels_mpi(X, be, depths, refit_one, ranks)


def _warn_if_partial(tree: Tree, n_leaves: int | None) -> None:
    """Warn (at the caller of :func:`hierarchical_nmf`) when growth stopped short."""
    if n_leaves is None or tree.n_leaves >= n_leaves:
        return
    why = "; ".join(f"leaf {nd.id}: {nd.reason}" for nd in tree.nodes if nd.is_leaf)
    warnings.warn(
        f"hierarchical_nmf stopped at {tree.n_leaves} leaves of the {n_leaves} requested "
        f"({why}); the partial tree is returned. The data may support no more leaves; "
        "a smaller min_size, min_score or min_angle allows more splits.",
        UserWarning,
        stacklevel=3,
    )


def _build(
    X: Any,
    be: Backend,
    opts: Options,
    n_leaves: int | None,
    strategy: str,
    internal: str,
    ranks: Groups | None,
) -> Tree:
    """The grown tree: nodes, endmembers, leaf of every pixel (no maps yet)."""
    n = int(X.shape[0])
    xp = be.xp
    nodes, spectra, sets, cands, history, stop = _grow(X, be, opts, n_leaves, strategy, ranks)
    for nd in nodes:
        c = cands.get(nd.id)
        if c is not None:
            nd.score = c.score if np.isfinite(c.score) else None
            nd.gain, nd.rank, nd.angle = c.gain, c.rank, c.angle
        if nd.is_leaf:
            nd.reason = _leaf_reason(nd, c, nodes, opts, stop)
    assignment = np.zeros(n, dtype=np.int64)
    for nid, idx in sets.items():
        assignment[idx] = nid
    if internal == "mean":
        _internal_means(X, nodes, spectra, assignment, be)
    S = xp.stack(spectra, axis=0)
    params = {
        "n_leaves": n_leaves,
        "min_size": opts.min_size,
        "min_score": opts.min_score,
        "min_angle": opts.min_angle,
        "max_depth": opts.max_depth,
        "score": opts.score,
        "node_rank": opts.node_rank,
        "max_rank": opts.max_rank,
        "strategy": strategy,
        "refit": None,  # the caller's (here for the order of the keys)
        "sum_to_one": None,
        "endmember": opts.endmember,
        "core_fraction": opts.core_fraction,
        "internal": internal,
        "normalize": None,
        "max_iter": opts.max_iter,
        "tol": opts.tol,
        "backend": be.name,
        "dtype": str(be.dtype),
    }
    return Tree(
        nodes=nodes, S=S, assignment=assignment, params=params, stop_reason=stop, history=history
    )


def _grow(
    X: Any, be: Backend, opts: Options, n_leaves: int | None, strategy: str, ranks: Any = None
) -> tuple:
    """Split leaves best score first until a stopping rule holds (the HierNMF2 loop).

    With ``ranks`` (:class:`~unmix.hierarchy._parallel.Groups`) the candidate splits of
    each round's new leaves are fitted over groups of MPI ranks.
    """

    def candidates(items: list[tuple[int, np.ndarray]]) -> dict:
        if ranks is None:
            return propose(X, be, items, opts)
        return propose_mpi(X, be, items, opts, ranks)

    n = int(X.shape[0])
    xp = be.xp
    root_S = xp.mean(X, axis=0)[None, :]
    nodes = [Node(id=0, parent=None, depth=0, size=n)]
    spectra = [root_S[0]]
    sets = {0: np.arange(n)}
    cands = candidates([(0, sets[0])])
    history: list[dict] = []
    stop = ""
    while True:
        leaves = [nd for nd in nodes if nd.is_leaf]
        if n_leaves is not None and len(leaves) >= n_leaves:
            stop = "n_leaves reached"
            break
        eligible = _eligible(leaves, cands, nodes, opts)
        if not eligible:
            stop = "no leaf can be split"
            break
        if strategy == "greedy":
            eligible = eligible[:1]
        new: list[tuple[int, np.ndarray]] = []
        budget = np.inf if n_leaves is None else n_leaves - len(leaves)
        for c in eligible:
            if c.rank - 1 > budget:
                continue
            budget -= c.rank - 1
            new += _split(c, nodes, spectra, sets, history)
        if not new:
            stop = "n_leaves reached"
            break
        cands.update(candidates(new))
    return nodes, spectra, sets, cands, history, stop


def _eligible(
    leaves: list[Node], cands: dict[int, Candidate], nodes: list[Node], opts: Options
) -> list[Candidate]:
    """The candidate splits of ``leaves`` that may be made, best score first."""
    return sorted(
        (c for c in (cands.get(nd.id) for nd in leaves) if c is not None and _ok(c, nodes, opts)),
        key=lambda c: -c.score,
    )


def _split(
    c: Candidate, nodes: list[Node], spectra: list, sets: dict, history: list[dict]
) -> list[tuple[int, np.ndarray]]:
    """Make the split ``c``: its children join the tree; their ``(id, pixel indices)``."""
    new = []
    parent = nodes[c.node]
    parent.order = len(history)
    for j, part in enumerate(c.parts):
        nid = len(nodes)
        nodes.append(Node(id=nid, parent=parent.id, depth=parent.depth + 1, size=part.size))
        parent.children.append(nid)
        spectra.append(c.S[j])
        sets[nid] = part
        new.append((nid, part))
    sets.pop(parent.id, None)
    history.append(
        {
            "node": parent.id,
            "score": c.score,
            "gain": c.gain,
            "rank": c.rank,
            "n_leaves": sum(1 for nd in nodes if nd.is_leaf),
        }
    )
    logger.info("hierarchy: split node %d (score %.4g) -> %s", parent.id, c.score, parent.children)
    return new


def _internal_means(
    X: Any, nodes: list[Node], spectra: list, assignment: np.ndarray, be: Backend
) -> None:
    """Replace the endmember of every split node by the mean spectrum of its pixels."""
    xp = be.xp
    leaves_of: dict[int, list[int]] = {}
    for nd in sorted(nodes, key=lambda d: -d.depth):
        leaves_of[nd.id] = (
            [nd.id] if nd.is_leaf else [x for c in nd.children for x in leaves_of[c]]
        )
        if not nd.is_leaf:
            idx = np.flatnonzero(np.isin(assignment, leaves_of[nd.id]))
            spectra[nd.id] = xp.mean(xp.take(X, xp.asarray(idx, device=be.device), axis=0), axis=0)


# ------------------------------------------------------------------ options
def _check_options(
    n, n_leaves, min_size, min_score, max_depth, score, node_rank, max_rank, strategy, min_angle
) -> Options:
    if n_leaves is None and min_score is None and max_depth is None:
        raise ValueError("give a stopping rule: n_leaves=, min_score= or max_depth=.")
    if n_leaves is not None:
        if isinstance(n_leaves, bool) or not isinstance(n_leaves, (int, np.integer)):
            raise TypeError(f"n_leaves must be an int; got {n_leaves!r}.")
        if n_leaves < 1:
            raise ValueError(f"n_leaves must be >= 1; got {n_leaves}.")
        if n_leaves > n:
            raise ValueError(
                f"n_leaves={n_leaves} exceeds the number of pixels of X ({n}); every leaf "
                "needs pixels of its own. Ask for fewer leaves."
            )
    min_size = max(2, n // 500) if min_size is None else int(min_size)
    if min_size < 1:
        raise ValueError(f"min_size must be >= 1; got {min_size}.")
    if not float(min_angle) >= 0:
        raise ValueError(f"min_angle must be >= 0 degrees; got {min_angle!r}.")
    if max_depth is not None and int(max_depth) < 0:
        raise ValueError(f"max_depth must be >= 0; got {max_depth}.")
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}; got {score!r}.")
    if node_rank not in (2, "stability"):
        raise ValueError(f"node_rank must be 2 or 'stability'; got {node_rank!r}.")
    if int(max_rank) < 2:
        raise ValueError(f"max_rank must be >= 2; got {max_rank}.")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}; got {strategy!r}.")
    return Options(
        min_size=min_size,
        min_score=-np.inf if min_score is None else float(min_score),
        min_angle=float(min_angle),
        max_depth=None if max_depth is None else int(max_depth),
        score=score,
        node_rank=node_rank,
        max_rank=int(max_rank),
        max_iter=300,
        tol=1e-7,
        stability={},
        seed=0,
    )


def _set_fit_options(
    opts: Options,
    max_iter: int,
    tol: float,
    stability: dict | None,
    random_state: int | None,
    endmember: str,
    core_fraction: float,
) -> None:
    """The options of every split's fit and of the new children's endmembers, checked."""
    opts.max_iter, opts.tol = int(max_iter), float(tol)
    opts.stability, opts.seed = dict(stability or {}), 0 if random_state is None else random_state
    if endmember not in ENDMEMBERS:
        raise ValueError(f"endmember must be one of {ENDMEMBERS}; got {endmember!r}.")
    if not 0 < core_fraction <= 1:
        raise ValueError(f"core_fraction must be in (0, 1]; got {core_fraction!r}.")
    opts.endmember, opts.core_fraction = endmember, float(core_fraction)


def _check_refit(internal: str, refit: str | bool) -> str:
    """``internal`` checked; the refit mode (``True``/``False`` read as "maps"/"none")."""
    if internal not in ("mean", "split"):
        raise ValueError(f"internal must be 'mean' or 'split'; got {internal!r}.")
    refit_mode = {True: "maps", False: "none"}.get(refit, refit)  # type: ignore[call-overload]
    if refit_mode not in REFITS:
        raise ValueError(f"refit must be one of {REFITS} (or True/False); got {refit!r}.")
    return refit_mode


def _check_enough_pixels(n: int, min_size: int) -> None:
    if n < 2 * min_size:
        raise ValueError(
            f"X has {n} pixel(s): splitting needs at least 2 * min_size = {2 * min_size}. "
            "Pass more pixels or a smaller min_size."
        )


def _ok(c: Candidate, nodes: list[Node], opts: Options) -> bool:
    if c.reason is not None or c.score < opts.min_score:
        return False
    return opts.max_depth is None or nodes[c.node].depth < opts.max_depth


def _leaf_reason(
    nd: Node, c: Candidate | None, nodes: list[Node], opts: Options, stop: str
) -> str:
    if c is None:
        return "not evaluated"
    if c.reason is not None:
        return c.reason
    if opts.max_depth is not None and nd.depth >= opts.max_depth:
        return "max_depth reached"
    if c.score < opts.min_score:
        return f"score {c.score:.3g} below min_score {opts.min_score:g}"
    return stop
