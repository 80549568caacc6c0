"""HierNMF2: a tree of endmembers by recursive rank-2 NMF splits (Kuang & Park 2013).

``X`` is (pixels, channels).  The root holds every pixel.  A leaf is split by a rank-2
NMF of its own pixels (:func:`~unmix.hierarchy.rank2_nmf`),

    min_{A_b >= 0, S_b >= 0} 1/2 ||X_b - A_b S_b||_F^2,   A_b (n_b, 2), S_b (2, channels),

its pixels go to the child whose component dominates them, and the two rows of ``S_b``
(scaled so that a pure pixel has abundance 1) become the children's endmembers.  The
next leaf to split is the one whose candidate split scores highest
(:mod:`~unmix.hierarchy._scores`).  Growth stops at ``n_leaves`` leaves, or when no leaf
can be split: too few pixels, pixels identical (rank one), a split leaving fewer than
``min_size`` pixels on one side, a score below ``min_score`` or ``max_depth``.

Every level (the cut of the tree at a depth) then gets full abundance maps of all pixels
by refitting that level's endmembers with the engine's constraints
(``A >= 0``, optionally ``sum(A, axis=1) == 1``).

With ``loss``, ``constraints``, ``regularizers`` or ``solver`` every split is instead one
rank-2 :func:`unmix.factorize` fit with those terms (:mod:`unmix.hierarchy._terms`: on
the node's pixels, or on the whole grid weighted by membership for terms that couple
pixels), and ``Tree.splits`` keeps every split's maps and components.

``X`` may be sparse (SciPy CSR / CSC / COO, pydata/sparse): the tree is then grown on CSR
rows of it (:mod:`unmix.hierarchy._sparse`): node subsets, products with endmembers,
pixel norms and means, all from the stored entries, never a dense copy of ``X``.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._backend import Backend, backend_of
from .._params import document_parameters
from .._validation import check_nonnegative, check_shapes, ensure_2d_float, finite_report
from ..executors.groups import Groups, check_executor
from ._maps import nested_maps, refit_level
from ._model import Level, Node, Tree
from ._parallel import propose_mpi, refit_levels_mpi
from ._params import TREE_PARAMETERS, check_tree
from ._sparse import checked_sparse, col_mean, is_sparse, unit_rows
from ._split import Candidate, Options, propose
from ._terms import check_split_model, fit_iterations, split_model

logger = logging.getLogger("unmix")

__all__ = ["hierarchical_nmf"]


@document_parameters(TREE_PARAMETERS)
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
    max_iter: int | None = None,
    tol: float = 1e-7,
    refit_iter: int | None = None,
    stability: dict | None = None,
    endmember: str = "core",
    core_fraction: float = 0.4,
    internal: str = "mean",
    normalize: bool = False,
    random_state: int | None = 0,
    spatial_shape: tuple[int, ...] | None = None,
    signal_shape: tuple[int, ...] | None = None,
    loss: Any = None,
    constraints: Sequence[Any] | None = None,
    regularizers: Sequence[Any] = (),
    solver: Any = "auto",
    executor: Any = None,
    groups: int | None = None,
    callback: Callable[[int], Any] | None = None,
) -> Tree:
    """Grow a tree of endmembers by rank-2 NMF splits and map every level.

    Parameters
    ----------
    X : array or sparse matrix (pixels, channels)
        Non-negative data, one spectrum a row (NumPy, PyTorch or CuPy; all arrays of the
        tree follow its dtype and device), or a SciPy / pydata sparse matrix (grown on CSR
        rows on the host, never densified; the tree's arrays are NumPy in its dtype).
    {parameters}

    Returns
    -------
    Tree
        Nodes with endmembers, the leaf of every pixel, nested maps and one
        :class:`~unmix.hierarchy.Level` a depth.  If growth stops before
        ``n_leaves`` a ``UserWarning`` says why and the partial tree is returned.

    Raises
    ------
    ValueError
        Bad options (the message names the option and what it allows), no stopping rule,
        too few pixels, or ``groups`` without an MPI executor or beyond its number of ranks.
    TypeError
        An option of the wrong type (e.g. ``executor`` not an MPI executor).
    """
    given = dict(locals())  # the parameters as passed (checked against the table)
    del given["X"]
    t0 = time.perf_counter()
    check_executor(executor, groups, task="grow a tree")  # first: groups against the ranks
    p = check_tree(given)
    X, be = _checked_data(X, normalize)
    check_shapes(X.shape, p["spatial_shape"], p["signal_shape"])
    opts = _options(int(X.shape[0]), p)
    ranks = None if executor is None else Groups(executor, groups, task="hierarchical_nmf")
    try:
        tree = _build(X, be, opts, p, ranks)
        t_grow = time.perf_counter() - t0
        tree.node_maps = nested_maps(X, tree)
        t1 = time.perf_counter()
        tree.levels = _refit_levels(X, be, tree, ranks, p)
    finally:
        if ranks is not None:
            ranks.close()
    t2 = time.perf_counter()
    tree.timings = {"grow": t_grow, "levels": t2 - t1, "total": t2 - t0}
    _warn_if_partial(tree, n_leaves)
    return tree


def _checked_data(X: Any, normalize: bool) -> tuple[Any, Backend]:
    """``X`` as a finite, non-negative 2-D float array (rows of unit norm if ``normalize``);
    sparse ``X`` as such CSR rows."""
    why = "hierarchical NMF (A >= 0 and S >= 0)"
    if is_sparse(X):
        X = checked_sparse(X, why)
        be = backend_of(np.empty(0, dtype=X.dtype))
        return (unit_rows(X, be) if normalize else X), be
    X = ensure_2d_float(X)
    finite_report(X)
    check_nonnegative(X, why=why)
    be = backend_of(X)
    if normalize:
        norms = be.xp.linalg.vector_norm(X, axis=1, keepdims=True)
        X = X / be.xp.where(norms > 0, norms, 1.0)
    return X, be


def _refit_levels(
    X: Any, be: Backend, tree: Tree, ranks: Groups | None, p: dict[str, Any]
) -> list[Level]:
    """Maps of every level of ``tree``, one refit a depth (dealt over ``ranks`` if given);
    ``p``: the checked parameters."""

    def refit_one(d: int) -> Level:
        return refit_level(
            X,
            tree,
            d,
            mode=p["refit"],
            sum_to_one=p["sum_to_one"],
            max_iter=fit_iterations(p["refit_iter"], split_model(p), 300),
            random_state=p["random_state"],
            model=split_model(p),
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


def _build(X: Any, be: Backend, opts: Options, p: dict[str, Any], ranks: Groups | None) -> Tree:
    """The grown tree: nodes, endmembers, leaf of every pixel (no maps yet)."""
    n, n_leaves, strategy, internal = int(X.shape[0]), p["n_leaves"], p["strategy"], p["internal"]
    xp = be.xp
    grown = _grow(X, be, opts, n_leaves, strategy, ranks, p["callback"])
    nodes, spectra, sets, cands, history, stop = grown
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
    splits = {
        nd.id: {"pixels": c.pixels, "A": c.A, "S": c.S_split}
        for nd in nodes
        if nd.children and (c := cands.get(nd.id)) is not None
    }
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
        "refit": p["refit"],
        "sum_to_one": bool(p["sum_to_one"]),
        "endmember": opts.endmember,
        "core_fraction": opts.core_fraction,
        "internal": internal,
        "normalize": bool(p["normalize"]),
        "max_iter": opts.max_iter,
        "tol": opts.tol,
        "backend": be.name,
        "dtype": str(be.dtype),
        "model": None if opts.model is None else opts.model.describe(),
    }
    return Tree(
        splits=splits,
        nodes=nodes,
        S=S,
        assignment=assignment,
        params=params,
        stop_reason=stop,
        history=history,
        spatial_shape=tuple(p["spatial_shape"]) if p["spatial_shape"] else None,
        signal_shape=tuple(p["signal_shape"]) if p["signal_shape"] else None,
    )


def _grow(
    X: Any,
    be: Backend,
    opts: Options,
    n_leaves: int | None,
    strategy: str,
    ranks: Any = None,
    callback: Callable[[int], Any] | None = None,
) -> tuple:
    """Split leaves best score first until a stopping rule holds (the HierNMF2 loop).

    With ``ranks`` (:class:`~unmix.hierarchy._parallel.Groups`) the candidate splits of
    each round's new leaves are fitted over groups of MPI ranks.  ``callback(leaves)``
    follows every round's candidate fits.
    """

    def candidates(items: list[tuple[int, np.ndarray]]) -> dict:
        found = (
            propose(X, be, items, opts)
            if ranks is None
            else propose_mpi(X, be, items, opts, ranks)
        )
        if callback is not None:
            callback(sum(1 for nd in nodes if nd.is_leaf))
        return found

    n = int(X.shape[0])
    root_S = col_mean(X, be)[None, :]
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
    leaves_of: dict[int, list[int]] = {}
    for nd in sorted(nodes, key=lambda d: -d.depth):
        leaves_of[nd.id] = (
            [nd.id] if nd.is_leaf else [x for c in nd.children for x in leaves_of[c]]
        )
        if not nd.is_leaf:
            idx = np.flatnonzero(np.isin(assignment, leaves_of[nd.id]))
            spectra[nd.id] = col_mean(X, be, idx)


# ------------------------------------------------------------------ options
def _options(n: int, p: dict[str, Any]) -> Options:
    """The options of the splits, from the checked parameters ``p`` and the pixel count ``n``
    (the checks that need the data, or several parameters)."""
    if p["n_leaves"] is None and p["min_score"] is None and p["max_depth"] is None:
        raise ValueError("give a stopping rule: n_leaves=, min_score= or max_depth=.")
    if p["n_leaves"] is not None and p["n_leaves"] > n:
        raise ValueError(
            f"n_leaves={p['n_leaves']} exceeds the number of pixels of X ({n}); every leaf "
            "needs pixels of its own. Ask for fewer leaves."
        )
    min_size = max(2, n // 500) if p["min_size"] is None else int(p["min_size"])
    if n < 2 * min_size:
        raise ValueError(
            f"X has {n} pixel(s): splitting needs at least 2 * min_size = {2 * min_size}. "
            "Pass more pixels or a smaller min_size."
        )
    model = split_model(p)
    check_split_model(model, p, n)
    return Options(
        model=model,
        min_size=min_size,
        min_score=-np.inf if p["min_score"] is None else float(p["min_score"]),
        min_angle=float(p["min_angle"]),
        max_depth=None if p["max_depth"] is None else int(p["max_depth"]),
        score=p["score"],
        node_rank=p["node_rank"] if p["node_rank"] == "stability" else 2,
        max_rank=int(p["max_rank"]),
        max_iter=fit_iterations(p["max_iter"], model, 300),
        tol=float(p["tol"]),
        stability=dict(p["stability"] or {}),
        seed=0 if p["random_state"] is None else p["random_state"],
        endmember=p["endmember"],
        core_fraction=float(p["core_fraction"]),
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
