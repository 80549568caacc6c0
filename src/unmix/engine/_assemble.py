"""From options to a bound :class:`Problem` and a solver that can run it.

The model's terms are split by family and factor, bound to the problem (shapes checked,
grid operators precomputed) and handed with the pixel blocks to a solver chosen by what
it declares it supports.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import (
    UnsupportedError,
    check_nonnegative,
    check_positive,
    check_shapes,
    observed_range,
)
from ..blocks import (
    DeviceSparsePixelData,
    PixelData,
    SparsePixelData,
    StreamedData,
    check_streamed,
    default_block_size,
    is_device_sparse,
    is_sparse,
)
from ..executors import SerialExecutor
from ..model import (
    BindContext,
    Constraint,
    Filter,
    Link,
    Loss,
    NonNegative,
    Orthogonal,
    Penalty,
    make_link,
    make_loss,
)
from ._inputs import Input, rows_of
from ._problem import Problem
from ._robust import Reweighted
from .solvers import Solver, get_solver, solvers_supporting

__all__ = [
    "Model",
    "build_model",
    "build_problem",
    "check_compress",
    "check_data",
    "check_data_sign",
    "check_distributed",
    "choose_solver",
    "fit_link",
    "split_terms",
    "warn_useless",
]


@dataclass
class Model:
    """The knobs of one fit, resolved: loss, link and the terms by family and factor."""

    loss: Loss
    link: Link
    constraints: list  # as given (NonNegative not yet split by factor)
    regularizers: list
    terms: dict
    nonneg: dict

    @property
    def needs_nonnegative_data(self) -> bool:
        nmf = self.nonneg["A"] and self.nonneg["S"]
        return (nmf and self.link.is_identity) or self.loss.needs_nonnegative_data


def build_model(opts: dict, link: Any, solver: Any, constraints_given: Any) -> Model:
    """Resolve the loss, link and terms (``constraints=None`` means the solver's default)."""
    loss_obj, link_obj = make_loss(opts["loss"]), make_link(link)
    if constraints_given is None and opts["constraints"] is None:
        base = [Orthogonal()] if solver == "svd" else [NonNegative()]
    else:
        base = list(opts["constraints"] if constraints_given is None else constraints_given)
    regs = list(opts["regularizers"])
    terms = split_terms(base, regs)
    # one rule for "is this factor non-negative", the same the bound problem uses
    nonneg = {t: any(c.implies_nonneg for c in terms["constraints"][t]) for t in ("A", "S")}
    return Model(loss_obj, link_obj, base, regs, terms, nonneg)


def check_data_sign(inp: Input, model: Model) -> None:
    """An NMF model or a divergence other than Frobenius needs ``X >= 0``; Itakura-Saito
    (beta <= 0) needs ``X > 0``."""
    if not model.needs_nonnegative_data or inp.streamed:
        return
    nmf = model.nonneg["A"] and model.nonneg["S"] and model.link.is_identity
    why = "an NMF model (A >= 0 and S >= 0)" if nmf else f"loss={model.loss.name!r}"
    check_nonnegative(inp.X, observed=inp.mask, why=why)
    if model.loss.needs_positive_data:
        check_positive(inp.X, observed=inp.mask, why=f"loss={model.loss.name!r}")


def check_data(inp: Input, model: Model) -> None:
    """``X`` against the model: its sign (NMF, divergences) and its range for the link
    (whose data-driven parameters are set here, :func:`fit_link`)."""
    check_data_sign(inp, model)
    fit_link(inp, model)


def fit_link(inp: Input, model: Model) -> None:
    """Set the link's data-driven parameters from ``X``'s observed range (checked by the
    link: the logistic one needs ``0 <= X <= 1``). A streamed ``X`` is sampled from its
    first rows (a full pass is not made for it)."""
    if model.link.is_identity:
        return
    X, mask = inp.X, inp.mask
    if inp.streamed:
        rows = min(inp.shape[0], 4096)
        X = np.asarray(X[0:rows], dtype=float)
        mask = None if mask is None else np.asarray(mask[0:rows])
    model.link = model.link.for_data(*observed_range(X, observed=mask))


def build_problem(inp: Input, model: Model, k: int, given: dict, *, init: Any) -> Problem:
    """Cut ``X`` into this process's pixel blocks and bind the model's terms to them.

    ``given`` holds factorize's ``executor``, ``block_size``, ``spatial_shape`` and
    ``signal_shape``.
    """
    n, m = inp.shape
    executor, block_size = given["executor"], given["block_size"]
    spatial_shape, signal_shape = given["spatial_shape"], given["signal_shape"]
    check_shapes((n, m), spatial_shape, signal_shape)
    ex = executor or SerialExecutor()
    row = spatial_shape[-1] if spatial_shape else 1
    if block_size is None:
        block_size = default_block_size(n, m, inp.be, row=row, streamed=inp.streamed)
    if ex.distributed and is_sparse(inp.X):  # sparse rows: balance the nonzeros
        start, stop = ex.partition(n, block_size, weights=_block_nnz(inp.X, block_size))
    else:
        start, stop = ex.partition(n, block_size)  # whole blocks: the serial block grid
    if ex.distributed:
        check_distributed(model.terms, init, ex)
    data = _blocks(inp, model, ex, block_size, (start, stop))
    ctx = BindContext(
        n_pixels=stop - start,
        n_channels=m,
        k=k,
        backend=inp.be,
        spatial_shape=tuple(spatial_shape) if spatial_shape else None,
        signal_shape=tuple(signal_shape) if signal_shape else None,
        nonneg_A=model.nonneg["A"],
        nonneg_S=model.nonneg["S"],
        executor=ex,
        rows=(start, stop),
        n_total=n,
    )
    groups = model.terms
    problem = Problem(
        k=k,
        loss=model.loss,
        link=model.link,
        be=inp.be,
        data=data,
        constraints={t: [c.bind(ctx) for c in groups["constraints"][t]] for t in "AS"},
        penalties={t: [c.bind(ctx) for c in groups["penalties"][t]] for t in "AS"},
        filters={t: [c.bind(ctx) for c in groups["filters"][t]] for t in "AS"},
        spatial_shape=ctx.spatial_shape,
        signal_shape=ctx.signal_shape,
        rows=(start, stop),
        block_size=block_size,
    )
    warn_useless(problem)
    for term in problem.penalties["A"] + problem.penalties["S"]:
        term.on_data(problem)
    return problem


def _block_nnz(X: Any, block_size: int) -> np.ndarray:
    """Nonzeros of each block of CSR ``X`` (the serial block grid)."""
    edges = np.minimum(np.arange(0, X.shape[0] + block_size, block_size), X.shape[0])
    return np.diff(np.asarray(X.indptr)[np.unique(edges)])


def _blocks(inp: Input, model: Model, ex: Any, block_size: int, rows: tuple) -> PixelData:
    start, stop = rows
    sl = slice(start, stop)
    mask = None if inp.mask is None else inp.mask[sl, :]
    if inp.streamed:
        data = StreamedData(
            inp.X,
            inp.be,
            block_size=block_size,
            dtype=inp.be.dtype,
            rows=rows,
            executor=ex,
            weights=rows_of(inp.weights, sl),
            mask=mask,
        )
        positive = f"loss={model.loss.name!r}" if model.loss.needs_positive_data else None
        check_streamed(data, nonneg=model.needs_nonnegative_data, positive=positive)
        return data
    cls = PixelData
    if is_sparse(inp.X):
        cls = SparsePixelData
    elif is_device_sparse(inp.X):
        cls = DeviceSparsePixelData
    return cls(
        inp.X[sl, :],
        inp.be,
        block_size=block_size,
        weights=rows_of(inp.weights, sl),
        mask=mask,
        executor=ex,
        n_total=inp.shape[0],
    )


AUTO_COMPRESS_ENTRIES = 1 << 22


def check_compress(compress: Any, p: Problem, slv: Solver) -> int | None:
    if compress is None or compress is False:
        return None
    if compress == "auto":  # not when every endmember is pinned: the maps of X itself are
        # one exact solve (fit_maps: max_iter=1), which a rank-(k + 10) stand-in of X spoils
        if not p.free_rows():
            return None
        big = p.data.n_total * p.data.n_channels >= AUTO_COMPRESS_ENTRIES
        small_k = p.k + 10 <= min(p.data.n_total, p.data.n_channels) // 4
        fits = slv.name in ("hals", "mu", "bpp", "admm") and p.loss.is_frobenius
        ok = big and small_k and fits and p.link.is_identity and not p.data.weighted
        return min(p.k + 10, p.data.n_total, p.data.n_channels) if ok else None
    if compress is not True and (
        isinstance(compress, bool) or not isinstance(compress, (int, np.integer))
    ):
        raise TypeError(f"compress must be an int rank, True or None; got {compress!r}.")
    if p.loss.reweights_pixels:
        raise ValueError(
            f"compress= is not available with loss={p.loss.name!r}: its pixel weights follow "
            "each pixel's residual on X itself, which a truncated SVD does not hold; drop "
            "compress=."
        )
    ok = (
        slv.name in ("hals", "mu", "bpp", "admm")
        and p.loss.is_frobenius
        and p.link.is_identity
        and not p.data.weighted
    )
    if not ok:
        raise ValueError(
            "compress= needs a Frobenius solver ('hals', 'mu', 'bpp' or 'admm') on unweighted "
            "data without a mask; drop compress= or the weights/mask."
        )
    if compress is True:
        return min(p.k + 10, p.data.n_total, p.data.n_channels)
    if compress < p.k:
        raise ValueError(f"compress={compress} must be >= k={p.k} (the rank of the SVD).")
    return int(compress)


def check_distributed(terms: dict, init: Any, executor: Any) -> None:
    """What the distributed executors do not support yet (a clear error, not a hang).

    Terms that couple neighbouring pixels need the executor's halo exchange of boundary
    scan lines (:meth:`unmix.mpi.MPIExecutor.halo`).
    """
    on_A = [t for group in ("penalties", "filters") for t in terms[group]["A"]]
    distant = [type(t).__name__ for t in on_A if t.couples_distant_pixels]
    if distant:
        raise UnsupportedError(
            f"{distant} couple pixels anywhere on the map (graph edges), which no split of "
            "the pixels over processes can serve: fit serially (no executor)."
        )
    coupled = [type(t).__name__ for t in on_A if t.couples_pixels]
    if coupled and not callable(getattr(executor, "halo", None)):
        raise UnsupportedError(
            f"{coupled} couple neighbouring pixels; with pixels split over processes they "
            f"need a halo exchange of boundary scan lines that {type(executor).__name__} "
            "does not do - use unmix.mpi.MPIExecutor or run them serially."
        )
    if init in ("vca", "nndsvdar"):
        raise UnsupportedError(
            f"init={init!r} is not available with a distributed executor yet; use "
            "'spa', 'nndsvda', 'nndsvd', 'random' or (A0, S0)."
        )


def split_terms(constraints: list, regularizers: list) -> dict:
    out: dict[str, dict[str, list]] = {
        "constraints": {"A": [], "S": []},
        "penalties": {"A": [], "S": []},
        "filters": {"A": [], "S": []},
    }
    for c in constraints:
        if not isinstance(c, Constraint):
            raise TypeError(
                f"constraints must hold Constraint objects (e.g. unmix.NonNegative()); got {c!r}."
            )
        for part in c.parts():
            out["constraints"][part.target].append(part)
    for r in regularizers:
        if isinstance(r, Penalty):
            out["penalties"][r.target].append(r)
        elif isinstance(r, Filter):
            out["filters"][r.target].append(r)
        elif isinstance(r, Constraint):
            raise TypeError(f"{type(r).__name__} is a hard constraint: pass it in constraints=.")
        else:
            raise TypeError(
                f"regularizers must hold Penalty or Filter objects (e.g. unmix.L1(1e-3)); "
                f"got {r!r}."
            )
    return out


def warn_useless(p: Problem) -> None:
    """Warn about a penalty that cannot act: a linear one on rows of fixed sum."""
    for target in ("A", "S"):
        if not p.simplex(target):
            continue
        for pen in p.penalties[target]:
            if pen.lam and pen.constant_gradient() is not None:
                warnings.warn(
                    f"{type(pen).__name__} on sum-to-one rows of {target} is constant "
                    "(its gradient times the fixed row sums); it has no effect.",
                    UserWarning,
                    stacklevel=3,
                )


#: the order in which ``solver="auto"`` tries the solvers: the fastest that supports the
#: problem (HALS for Frobenius NMF, coordinate descent for KL where it applies, MU for
#: other divergences, exact ANLS for abundances on a simplex, then the proximal and
#: gradient solvers that take any projection)
AUTO_ORDER = ("hals", "klcd", "mu", "bpp", "admm", "gradient")
#: the order for KL on dense data in memory (where KLCD cannot run: channel or full
#: weights, data not in NumPy): the gradient solver before MU.  Measured when masked KL
#: went to one of the two (KL-CD takes masks since): on the real maps with 5 % of the
#: entries masked, KL MU ended 0.04-68 % above the gradient solver's objective (XRD
#: +68 %, Raman +11 %, EELS +4 %), four of five at max_iter, while the gradient solver
#: stopped by tol in 0.5-1.3x MU's CPU time.  Sparse X keeps MU (its pass works on the
#: nonzeros), and so do streamed files (MU's compiled pass, benchmarked on them) and the
#: other betas.
AUTO_ORDER_KL = ("hals", "klcd", "gradient", "mu", "bpp", "admm")


def choose_solver(name: Any, p: Problem, options: dict) -> Solver:
    """The solver ``name`` (or the first of :data:`AUTO_ORDER` - for KL on dense data
    :data:`AUTO_ORDER_KL` - that supports ``p``); for
    a loss that reweights the pixels (l2,1) wrapped in :class:`~._robust.Reweighted`."""
    if name in (None, "auto"):
        supported = solvers_supporting(p)
        kl_dense = p.loss.beta == 1 and not (
            getattr(p.data, "sparse", False) or isinstance(p.data, StreamedData)
        )
        order = AUTO_ORDER_KL if kl_dense else AUTO_ORDER
        for pick in order:
            if pick in supported:
                name = pick
                break
        else:
            get_solver("hals").check(p)  # raises with the reasons
    slv = get_solver(name, **options)
    slv.check(p)
    if p.loss.reweights_pixels and not isinstance(slv, Reweighted):
        slv = Reweighted(slv)  # the l2,1 loss: reweighted Frobenius steps
    return slv
