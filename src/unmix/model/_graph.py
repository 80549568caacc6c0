"""A graph of the pixels built from the data (the "data graph") and its Laplacian penalty.

:class:`unmix.SpatialSmoothness` links each pixel to its neighbours on the scan grid.
Pixels of one phase may lie far apart on the grid yet alike in their spectra; the *data
graph* of graph-regularized NMF (Cai et al. 2011, eq. 6) links each pixel to its
``n_neighbors`` nearest pixels in spectral similarity, wherever they are:

- :func:`knn_graph` builds it from ``X`` (pixels, channels; NumPy or SciPy CSR): a
  symmetric, non-negative ``scipy.sparse.csr_array`` (pixels x pixels, zero diagonal).
  Its neighbours are exact (blockwise brute force, bounded memory) or, for large maps,
  approximate (spectra reduced by a randomized SVD, then a nearest-neighbour search).
- :class:`GraphSmoothness` penalizes ``lam / 2 * tr(A^T L A)`` for the maps ``A``
  (pixels, k; ``S`` is k x channels), ``L`` the Laplacian of that graph (built from the
  data when the fit starts) or of one the user gives.
"""

from __future__ import annotations

import functools
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._backend import to_numpy
from .._validation import UnsupportedError, ensure_2d_float, finite_report
from ._terms import BindContext, Penalty, PenaltyModel

__all__ = ["AUTO_APPROXIMATE", "GraphSmoothness", "check_graph", "grid_graph", "knn_graph"]

_logger = logging.getLogger("unmix")

METRICS = ("cosine", "euclidean")
WEIGHTS = ("binary", "heat")
NORMALIZE = ("auto", "l2", "none")
#: pixels darker than this fraction of the root-mean-square pixel norm count as this dark
#: in the per-pixel scales of ``GraphSmoothness(normalize="l2")``
DARK = 0.1
#: ``approximate="auto"`` reduces the spectra first above this many pixels
AUTO_APPROXIMATE = 5000
#: entries of one block of the exact search's distances (32 MiB in float64)
BLOCK_ENTRIES = 1 << 22
#: above this many pixels the reduced spectra are searched by a ball tree, not brute force
BRUTE_MAX_PIXELS = 1 << 17
#: the randomized SVD's extra columns and power iterations
N_OVERSAMPLES = 10
N_POWER_ITER = 4
#: relative asymmetry a user's graph may have (rounding)
SYMMETRY_RTOL = 1e-10


def knn_graph(
    X: Any,
    n_neighbors: int = 10,
    *,
    metric: str = "cosine",
    weights: str = "binary",
    approximate: bool | str = "auto",
    n_components: int = 32,
    random_state: int | np.random.Generator | None = None,
) -> sp.csr_array:
    """The k-nearest-neighbour graph of the pixels by spectral similarity.

    Pixel ``i`` is joined to its ``n_neighbors`` most similar pixels (not itself); the
    graph is symmetrized by the maximum, ``W = max(W, W^T)`` (the union of the lists: a
    row has ``n_neighbors`` entries or more).

    Parameters
    ----------
    X : array or scipy.sparse matrix, shape (pixels, channels)
        The spectra, one row a pixel (scikit-learn's orientation).  Sparse ``X`` is
        never densified whole (one block of rows at a time).
    n_neighbors : int
        Neighbours of each pixel, ``1 <= n_neighbors < pixels``.
    metric : {"cosine", "euclidean"}
        ``"cosine"`` (default): the spectral angle, blind to intensity (thickness,
        counts); an all-zero pixel is equally far from every pixel with signal (and at
        0 from another all-zero one).  ``"euclidean"``: ``||x_i - x_j||``.
    weights : {"binary", "heat"}
        Eq. 6 of Cai et al. (2011): ``"binary"`` (default) 1 on each edge; ``"heat"``
        ``exp(-|u_i - u_j|^2 / t)`` of the vectors compared (``u = x / |x|`` for cosine,
        ``|u_i - u_j|^2 = 2 (1 - cos)``), ``t`` the mean of ``|u_i - u_j|^2`` over the edges.
    approximate : {"auto", True, False}
        True: a randomized SVD reduces ``X`` (rows first scaled to unit norm for cosine;
        not centred) to ``n_components`` dimensions, searched by
        :class:`sklearn.neighbors.NearestNeighbors`: a kd tree up to 15 dimensions, else
        brute force (chunked; quadratic but blind to the data, where noisy spectra slow a
        ball tree several-fold) up to :data:`BRUTE_MAX_PIXELS` pixels, a ball tree beyond.
        False: exact, blockwise on the full spectra (:data:`BLOCK_ENTRIES` distances at a
        time; quadratic time).  ``"auto"``: True above :data:`AUTO_APPROXIMATE` pixels.
    n_components : int
        Dimensions of the reduced spectra (approximate search).
    random_state : int, Generator or None
        Seed of the randomized SVD.

    Returns
    -------
    scipy.sparse.csr_array, shape (pixels, pixels)
        Symmetric, non-negative (positive on the edges), zero diagonal, float64.

    Raises
    ------
    ValueError
        ``n_neighbors`` outside ``[1, pixels)``, a bad ``metric``, ``weights``,
        ``approximate`` or ``n_components``; ``X`` not 2-D or not finite.
    """
    X = _as_data(X)
    n = X.shape[0]
    k = _check_int(n_neighbors, "n_neighbors", "knn_graph", n_pixels=n)
    _check_int(n_components, "n_components", "knn_graph")
    _check_choice(metric, METRICS, "metric", "knn_graph")
    _check_choice(weights, WEIGHTS, "weights", "knn_graph")
    approx = _resolve_approximate(approximate, n, "knn_graph")
    scale = _cosine_scale(X) if metric == "cosine" else None
    if approx:
        Y = _reduce(X, scale, int(n_components), np.random.default_rng(random_state))
        idx, d2 = _reduced_neighbors(Y, k, unit=scale is not None)
    else:
        idx, d2 = _exact_neighbors(X, scale, k)
    return _adjacency(idx, d2, weights)


def grid_graph(spatial_shape: tuple[int, ...], neighbors: int = 4) -> sp.csr_array:
    """The adjacency of the scan grid that :class:`unmix.SpatialSmoothness` uses.

    Axis neighbours (4 in 2-D, ``2 * ndim`` in N-D); ``neighbors=8`` adds the diagonals
    of a 2-D grid.  Pixels are numbered in C order (the rows of ``X``); 0/1 weights.
    ``GraphSmoothness(lam, grid_graph(shape))`` is ``SpatialSmoothness(lam)``.
    """
    shape = tuple(int(s) for s in spatial_shape)
    if neighbors not in (4, 8) or isinstance(neighbors, bool):
        raise ValueError(f"grid_graph: neighbors must be 4 or 8; got {neighbors!r}.")
    if neighbors == 8 and len(shape) != 2:
        raise ValueError("grid_graph: neighbors=8 needs a 2-D spatial_shape.")
    eyes = [sp.identity(s, format="csr") for s in shape]
    paths = [sp.diags([1.0, 1.0], [-1, 1], shape=(s, s), format="csr") for s in shape]
    W = sp.csr_matrix((math.prod(shape),) * 2)
    for axis in range(len(shape)):
        factors = [paths[a] if a == axis else eyes[a] for a in range(len(shape))]
        W = W + functools.reduce(lambda u, v: sp.kron(u, v, format="csr"), factors)
    if neighbors == 8:
        W = W + sp.kron(paths[0], paths[1], format="csr")
    W = sp.csr_array(W)
    W.sort_indices()
    return W


def check_graph(graph: Any, owner: str = "GraphSmoothness") -> sp.csr_array:
    """A user's adjacency checked (square, finite, non-negative, symmetric) as float64 CSR;
    a dense array is converted, the diagonal (which a Laplacian ignores) dropped."""
    if sp.issparse(graph):
        W = sp.csr_array(graph, dtype=np.float64)
    elif isinstance(graph, np.ndarray) or hasattr(graph, "__array__"):
        W = sp.csr_array(np.asarray(to_numpy(graph), dtype=np.float64))
    else:
        raise TypeError(
            f"{owner}: graph must be a scipy.sparse adjacency (pixels x pixels), e.g. from "
            f"unmix.knn_graph; got {type(graph).__name__}."
        )
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"{owner}: graph must be square (pixels x pixels); got {W.shape}.")
    if not np.all(np.isfinite(W.data)):
        raise ValueError(f"{owner}: graph has non-finite (NaN or Inf) weights.")
    if W.nnz and float(W.data.min()) < 0:
        raise ValueError(f"{owner}: graph has negative weights (min {W.data.min():.3g}).")
    gap = abs(W - W.T)
    if gap.nnz and float(gap.max()) > SYMMETRY_RTOL * float(abs(W).max()):
        raise ValueError(
            f"{owner}: graph is not symmetric (max |W - W^T| = {gap.max():.3g}); symmetrize "
            "it, e.g. W.maximum(W.T) or (W + W.T) / 2."
        )
    C = W.tocoo()
    off = C.row != C.col
    W = sp.csr_array((C.data[off], (C.row[off], C.col[off])), shape=W.shape)
    W.eliminate_zeros()
    W.sort_indices()
    return W


# ------------------------------------------------------------------- checks
def _as_data(X: Any) -> Any:
    """``X`` as float CSR (sparse) or a float NumPy array, checked 2-D and finite."""
    if sp.issparse(X):
        X = sp.csr_array(X)
        if X.ndim != 2:
            raise ValueError(f"knn_graph: X must be 2-D (pixels, channels); got {X.shape}.")
        if X.dtype.kind != "f":
            X = X.astype(np.float64)
        if not np.all(np.isfinite(X.data)):
            raise ValueError("knn_graph: X has non-finite (NaN or Inf) entries; clean them.")
        return X
    X = np.asarray(to_numpy(ensure_2d_float(X)))
    finite_report(X, name="knn_graph: X")
    return X


def _check_int(value: Any, name: str, owner: str, n_pixels: int | None = None) -> int:
    """An int >= 1 (and < ``n_pixels`` when given), or a ValueError naming ``name``."""
    below = "" if n_pixels is None else f" and < the number of pixels ({n_pixels})"
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < 1 or (n_pixels is not None and value >= n_pixels):
        raise ValueError(f"{owner}: {name} must be an int >= 1{below}; got {value!r}.")
    return int(value)


def _check_choice(value: Any, allowed: tuple, name: str, owner: str) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{owner}: {name} must be one of {allowed}; got {value!r}.")


def _resolve_approximate(approximate: Any, n: int, owner: str) -> bool:
    if approximate == "auto" and isinstance(approximate, str):
        return n > AUTO_APPROXIMATE
    if isinstance(approximate, (bool, np.bool_)):
        return bool(approximate)
    raise ValueError(f"{owner}: approximate must be 'auto', True or False; got {approximate!r}.")


# ------------------------------------------------------------------ search
def _row_sq(X: Any) -> np.ndarray:
    """Squared norm of each row, in float64 (a block of rows at a time)."""
    if sp.issparse(X):
        return np.asarray(X.multiply(X).sum(axis=1), dtype=np.float64).ravel()
    out = np.empty(X.shape[0])
    step = max(1, BLOCK_ENTRIES // max(1, X.shape[1]))
    for start in range(0, X.shape[0], step):
        Xb = X[start : start + step]
        out[start : start + step] = np.einsum("ij,ij->i", Xb, Xb)
    return out


def _cosine_scale(X: Any) -> np.ndarray:
    """``1 / ||x_i||`` (0 for an empty row): scaling the rows by it gives unit rows."""
    norm = np.sqrt(_row_sq(X))
    return np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 0)


def _reduce(X: Any, scale: np.ndarray | None, n_components: int, rng: Any) -> np.ndarray:
    """``diag(scale) X`` projected on its leading right singular vectors (n x c): a
    randomized SVD (Halko et al. 2011) through products with ``X`` alone, the scaling
    applied to the thin products (no scaled copy of ``X``, no dense copy of sparse ``X``).
    """
    n, m = X.shape
    s = np.ones(n) if scale is None else scale
    dtype = X.dtype
    if n_components >= m:  # nothing to reduce: the (scaled) spectra themselves
        dense = X.toarray() if sp.issparse(X) else np.array(X, dtype=np.float64)
        return dense * s[:, None]
    ell = min(n_components + N_OVERSAMPLES, n, m)
    sw = s.astype(dtype)[:, None]

    def right(M: np.ndarray) -> np.ndarray:  # diag(s) X M: (n, ell)
        return np.linalg.qr(sw * np.asarray(X @ M))[0]

    def left(Q: np.ndarray) -> np.ndarray:  # (diag(s) X)^T Q: (m, ell)
        return np.asarray(X.T @ (sw * Q))

    Q = right(rng.standard_normal((m, ell)).astype(dtype))
    for _ in range(N_POWER_ITER):
        Q = right(np.linalg.qr(left(Q))[0])
    Ub, sv, _ = np.linalg.svd(left(Q).T, full_matrices=False)
    c = min(n_components, sv.size)
    return np.asarray(Q @ (Ub[:, :c] * sv[:c]), dtype=np.float64)


def _reduced_neighbors(Y: np.ndarray, k: int, *, unit: bool) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of ``Y`` to each (itself excluded) and squared distances."""
    from sklearn.neighbors import NearestNeighbors

    if unit:  # cosine: the reduced rows renormalized
        norm = np.linalg.norm(Y, axis=1, keepdims=True)
        Y = np.divide(Y, norm, out=np.zeros_like(Y), where=norm > 0)
    algorithm = "kd_tree" if Y.shape[1] <= 15 else "brute"
    if algorithm == "brute" and Y.shape[0] > BRUTE_MAX_PIXELS:
        algorithm = "ball_tree"
    nn = NearestNeighbors(n_neighbors=k, algorithm=algorithm).fit(Y)
    dist, idx = nn.kneighbors()  # no query: each point's neighbours without itself
    return idx, dist**2


def _exact_neighbors(X: Any, scale: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force by blocks of rows: ``|u_i - u_j|^2`` from the Gram block, ``u`` the
    (scaled) rows; at most :data:`BLOCK_ENTRIES` distances held at a time."""
    n, sq = X.shape[0], _row_sq(X) * (1.0 if scale is None else scale**2)
    idx = np.empty((n, k), dtype=np.int64)
    d2 = np.empty((n, k))
    step = max(1, BLOCK_ENTRIES // n)
    for start in range(0, n, step):
        stop = min(n, start + step)
        D = _gram_rows(X, start, stop).astype(np.float64, copy=False)  # (b, n)
        if scale is not None:
            D *= scale[start:stop, None]
            D *= scale[None, :]
        D *= -2.0
        D += sq[start:stop, None]
        D += sq[None, :]
        D[np.arange(stop - start), np.arange(start, stop)] = np.inf  # not itself
        part = np.argpartition(D, k - 1, axis=1)[:, :k]
        idx[start:stop] = part
        d2[start:stop] = np.maximum(np.take_along_axis(D, part, axis=1), 0.0)
    return idx, d2


def _gram_rows(X: Any, start: int, stop: int) -> np.ndarray:
    """``X[start:stop] @ X^T`` as a dense C-ordered array (sparse ``X``: CSR @ dense)."""
    if sp.issparse(X):
        Xb = X[start:stop].toarray()
        return np.ascontiguousarray(np.asarray(X @ Xb.T).T)
    return X[start:stop] @ X.T


def _adjacency(idx: np.ndarray, d2: np.ndarray, weights: str) -> sp.csr_array:
    """The symmetrized (max) adjacency of the neighbour lists ``idx`` (n, k), ``d2`` the
    squared distances of the vectors compared (unit rows for cosine)."""
    n, k = idx.shape
    if weights == "heat":
        t = float(np.mean(d2))
        w = np.exp(-d2 / t) if t > 0 else np.ones_like(d2)
        w = np.maximum(w, np.finfo(np.float64).tiny)  # an edge keeps a positive weight
    else:
        w = np.ones((n, k))
    rows = np.repeat(np.arange(n), k)
    W = sp.csr_array((w.ravel(), (rows, idx.ravel())), shape=(n, n))
    W = sp.csr_array(W.maximum(W.T))
    W.sort_indices()
    return W


# ----------------------------------------------------------------- penalty
@dataclass(frozen=True)
class GraphSmoothness(Penalty):
    """Smoothness of the maps on a graph of the pixels (by default, the data graph).

    ``lam / 2 * tr(B^T L B) = lam / 2 * sum_(i<j) w_ij ||b_i - b_j||^2`` (each pair of
    pixels counted once; ``lam / 4`` over the ordered pairs), with ``B = diag(c) A``:
    ``A`` (pixels, k) the maps, each pixel's row scaled by ``c_i`` (below), ``W`` the
    graph's symmetric adjacency (pixels x pixels), ``D = diag(W 1)`` its degrees and
    ``L = D - W`` its Laplacian.  With ``c = 1`` it is the convention of
    :class:`unmix.SpatialSmoothness`, which is this penalty on the scan grid's graph.
    Its gradient is ``lam diag(c) L B``; solvers see the diagonal majorizer
    ``2 lam c^2 D`` (``L <= 2 D``).

    The default data graph joins pixels of similar spectral *shape* (cosine metric),
    whatever their brightness, so by default (``normalize="auto"``) it compares their
    maps relative to brightness: ``c_i = r / max(||x_i||, 0.1 r)``, ``r`` the
    root-mean-square pixel norm (``c`` is about 1 on an evenly bright map).  Compared
    as they are (``c = 1``), the maps of a map whose brightness varies (thickness in
    EELS, focus in Raman) made the penalty 1.3-9x the data fit at the CLI's
    ``--graph-smooth 0.01``, and the fits split the bright component into near-copies
    (EELS 4.3 and 7.6 deg apart, Raman 5.4-7.6 deg): halving one map into two copies
    halves a quadratic penalty.

    Parameters
    ----------
    lam : float
        Strength.
    graph : scipy.sparse matrix (pixels x pixels) or None
        The adjacency: square, symmetric, non-negative, finite, one row per pixel of
        ``X`` (the diagonal is ignored).  None (default): the k-nearest-neighbour graph of
        the spectra, :func:`knn_graph` with the parameters below, built from ``X`` as the
        fit sees it (after preprocessing; missing entries read as 0) when the fit starts.
    n_neighbors, metric, weights, approximate
        Passed to :func:`knn_graph` (``random_state=0``) when ``graph`` is None.
    normalize : {"auto", "l2", "none"}
        The pixel scales ``c``: ``"l2"`` relative to each pixel's norm (of ``X`` as the
        fit sees it), ``"none"`` 1; ``"auto"`` (default) is ``"l2"`` for the data graph
        by the cosine metric and ``"none"`` otherwise (a Euclidean graph joins pixels of
        similar brightness too; a user's graph is used as given).

    The bound term's :attr:`adjacency` is the graph in use.  It couples pixels anywhere
    on the map: refused with the pixels split over processes (fit serially).  Runs on the
    NumPy (SciPy sparse products) and torch (torch sparse CSR) backends.
    """

    graph: Any = field(default=None, compare=False)  # terms compare by their knobs
    n_neighbors: int = field(default=10, kw_only=True)
    metric: str = field(default="cosine", kw_only=True)
    weights: str = field(default="binary", kw_only=True)
    approximate: bool | str = field(default="auto", kw_only=True)
    normalize: str = field(default="auto", kw_only=True)
    target: str = field(default="A", kw_only=True)
    _allowed_targets = ("A",)
    couples_pixels = True  # its model majorizes by a diagonal (not exact: quadratic False)
    couples_distant_pixels = True  # graph edges join pixels anywhere on the map

    @property
    def label(self) -> str:
        return "GraphSmooth(A)"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self.n_neighbors, "n_neighbors", "GraphSmoothness")
        _check_choice(self.metric, METRICS, "metric", "GraphSmoothness")
        _check_choice(self.weights, WEIGHTS, "weights", "GraphSmoothness")
        _check_choice(self.normalize, NORMALIZE, "normalize", "GraphSmoothness")
        _resolve_approximate(self.approximate, 0, "GraphSmoothness")
        if self.graph is not None:
            object.__setattr__(self, "graph", check_graph(self.graph))

    def _prepare(self, ctx: BindContext) -> None:
        if ctx.distributed:
            raise ValueError(
                "GraphSmoothness couples pixels anywhere on the map, not only neighbouring "
                "scan lines; it cannot run with the pixels split over processes - fit "
                "serially (no MPIExecutor), or use SpatialSmoothness."
            )
        if ctx.backend.name not in ("numpy", "torch"):
            raise UnsupportedError(
                f"GraphSmoothness runs on the NumPy and torch backends (device='cpu', "
                f"'torch' or 'cuda'), not on {ctx.backend.name}."
            )
        object.__setattr__(self, "_state", {})
        if self.graph is None:
            if ctx.n_pixels < 2:
                raise ValueError("GraphSmoothness: a data graph needs at least 2 pixels.")
            _check_int(self.n_neighbors, "n_neighbors", "GraphSmoothness")
            return
        if self.graph.shape[0] != ctx.n_pixels:
            raise ValueError(
                f"GraphSmoothness: graph is {self.graph.shape[0]} x {self.graph.shape[1]} but "
                f"X has {ctx.n_pixels} pixels (one graph row per row of X)."
            )
        self._use(self.graph)

    @property
    def by_brightness(self) -> bool:
        """Whether the maps are compared relative to each pixel's norm (``normalize``)."""
        if self.normalize == "auto":
            return self.graph is None and self.metric == "cosine"
        return self.normalize == "l2"

    def on_data(self, problem: Any) -> None:
        rows = None
        if self.graph is None:
            rows = _data_rows(problem.data)
            self._build(rows, int(problem.data.n_pixels))
        if self.by_brightness:
            self._use_scales(_pixel_norms(_data_rows(problem.data) if rows is None else rows))

    def _build(self, rows: Any, n_pixels: int) -> None:
        tic = time.perf_counter()
        k = min(int(self.n_neighbors), n_pixels - 1)  # a small map: every other pixel
        if k < self.n_neighbors:
            _logger.info("GraphSmoothness: %d pixels, %d neighbours each", n_pixels, k)
        W = knn_graph(
            rows,
            k,
            metric=self.metric,
            weights=self.weights,
            approximate=self.approximate,
            random_state=0,
        )
        self._use(W)
        _logger.info(
            "GraphSmoothness: data graph of %d pixels, %d edges (%d neighbours, %s) in %.2f s",
            W.shape[0], W.nnz // 2, self.n_neighbors, self.metric, time.perf_counter() - tic,
        )  # fmt: skip

    def _use(self, W: sp.csr_array) -> None:  # keep W; W and its degrees on the backend
        be = self.ctx.backend
        deg = np.asarray(W.sum(axis=1), dtype=np.float64).reshape(-1, 1)
        self._state.update(adjacency=W, W=_on_backend(W, be), deg_host=deg, scale=1.0)
        self._state["deg"] = be.asarray(deg)
        self._state["max_curv"] = float(deg.max()) if deg.size else 0.0

    def _use_scales(self, norms: np.ndarray) -> None:
        """The pixel scales ``c`` (see the class) from the pixels' norms."""
        rms = float(np.sqrt(np.mean(norms**2))) if norms.size else 0.0
        c = rms / np.maximum(norms, DARK * rms) if rms > 0 else np.ones_like(norms)
        c = c.reshape(-1, 1)
        self._state["scale"] = self.ctx.backend.asarray(c)
        curv = self._state["deg_host"] * c * c
        self._state["max_curv"] = float(curv.max()) if curv.size else 0.0

    @property
    def adjacency(self) -> sp.csr_array:
        """The graph in use (pixels x pixels, float64 CSR); after ``on_data`` when built."""
        return self._operators()["adjacency"]

    @property
    def pixel_scales(self) -> np.ndarray | None:
        """The pixel scales ``c`` (pixels,) in use (host copy); None when the maps are
        compared as they are (``c = 1``)."""
        c = self._operators()["scale"]
        return None if isinstance(c, float) else np.asarray(to_numpy(c)).ravel()

    def _operators(self) -> dict:
        state = getattr(self, "_state", {})
        if "W" not in state:
            raise RuntimeError(
                "GraphSmoothness: no graph yet - bind the term to a problem and call "
                "on_data(problem), which builds the data graph (a fit does both)."
            )
        return state

    def value(self, M: Any) -> float:
        op = self._operators()
        xp = self.ctx.backend.xp
        B = op["scale"] * M
        LB = op["deg"] * B - op["W"] @ B
        return 0.5 * self.lam * float(xp.sum(B * LB))

    def model(self, M: Any) -> PenaltyModel:
        # L = D - W and L <= 2 D, so the diagonal 2 lam c^2 D majorizes the quadratic.
        op = self._operators()
        c = op["scale"]
        B = c * M
        WB = op["W"] @ B
        DB = op["deg"] * B
        lam = self.lam
        return PenaltyModel(
            grad=lam * c * (DB - WB),
            curv=2.0 * lam * op["deg"] * (c * c),
            lipschitz=2.0 * lam * op["max_curv"],
            mu_pos=lam * c * DB,
            mu_neg=lam * c * WB,
        )


def _on_backend(W: sp.csr_array, be: Any) -> Any:
    """``W`` as the backend's sparse matrix (SciPy CSR or torch sparse CSR)."""
    if be.name == "numpy":
        return sp.csr_array(W, dtype=be.dtype)
    import torch

    index = {"dtype": torch.int64, "device": be.device}
    with warnings.catch_warnings():  # "sparse CSR support is in beta": CSR @ dense is not
        warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support")
        return torch.sparse_csr_tensor(
            torch.as_tensor(W.indptr.astype(np.int64), **index),
            torch.as_tensor(W.indices.astype(np.int64), **index),
            be.asarray(W.data),
            size=W.shape,
            check_invariants=False,
        )


def _pixel_norms(rows: Any) -> np.ndarray:
    """The Euclidean norm of each row of ``rows`` (NumPy array or SciPy CSR)."""
    if sp.issparse(rows):
        return np.sqrt(np.asarray(rows.multiply(rows).sum(axis=1), dtype=np.float64).ravel())
    return np.linalg.norm(np.asarray(rows, dtype=np.float64), axis=1)


def _data_rows(data: Any) -> Any:
    """The problem's ``X`` (pixels, channels) on the host: CSR for sparse data, else a
    NumPy array (the in-memory array itself when it has no mask; else block by block)."""
    if getattr(data, "sparse", False):
        if data.mask is None:
            return sp.vstack([data.csr(b) for b in data.blocks], format="csr")
        return sp.vstack([sp.csr_array(to_numpy(data.x(b))) for b in data.blocks], format="csr")
    if data.mask is None and data.in_memory:
        return np.asarray(to_numpy(data.X))
    return np.concatenate([np.asarray(to_numpy(data.x(b))) for b in data.blocks], axis=0)
