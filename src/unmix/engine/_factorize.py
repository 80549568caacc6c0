"""The functional core: :func:`factorize`."""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .._backend import Backend, backend_of, to_numpy
from .._validation import (
    UnsupportedError,
    check_k,
    check_nonnegative,
    ensure_2d_float,
    finite_report,
)
from .._version import __version__
from ..blocks._pixels import PixelData, Weights, default_block_size
from ..blocks._sources import check_streamed, is_streamable, streamed_backend
from ..blocks._streamed import StreamedData
from ..executors.base import SerialExecutor
from ..model._constraints import NonNegative, Orthogonal
from ..model._links import make_link
from ..model._losses import make_loss
from ..model._presets import resolve_preset
from ..model._terms import BindContext, Constraint, Filter, Penalty, Term
from ..result import Result
from ._checkpoint import Checkpointer, DistributedCheckpointer, data_signature, fingerprint
from ._loop import IterationInfo, Settings, run_once
from ._problem import Problem
from .solvers import get_solver
from .solvers._base import Solver

logger = logging.getLogger("unmix")

__all__ = ["IterationInfo", "factorize"]


def factorize(
    X: Any,
    k: int,
    *,
    loss: Any = None,
    solver: str | Solver = "auto",
    constraints: Sequence[Constraint] | None = None,
    regularizers: Sequence[Term] = (),
    weights: Any = None,
    mask: Any = None,
    link: Any = None,
    preprocessing: Sequence[Any] = (),
    init: Any = None,
    max_iter: int | None = None,
    tol: float | None = None,
    time_limit: float | None = None,
    n_restarts: int = 1,
    random_state: int | np.random.Generator | None = None,
    callback: Callable[[IterationInfo], Any] | None = None,
    spatial_shape: tuple[int, ...] | None = None,
    signal_shape: tuple[int, ...] | None = None,
    block_size: int | None = None,
    executor: Any = None,
    device: Any = None,
    solver_options: dict | None = None,
    compress: int | bool | str | None = "auto",
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: float = 60.0,
    resume: bool = False,
    preset: str | None = None,
) -> Result:
    r"""Factorize ``X`` (pixels, channels) as ``X ~= f(A @ S)`` under explicit knobs.

    Minimizes::

        loss(X, f(A @ S); W)  +  sum_i  penalty_i(A or S)
        subject to every hard constraint on A (pixels, k) and S (k, channels)

    where ``loss`` is a beta-divergence (``1/2 ||W * (X - Y)||_F^2`` for Frobenius,
    ``sum W (X log(X / Y) - X + Y)`` for KL), ``W`` the weights times the mask, and ``f``
    the link (identity by default).

    Parameters
    ----------
    X : array (n_pixels, n_channels)
        Data in scikit-learn orientation (one spectrum a row): NumPy, PyTorch or CuPy;
        the factors follow its dtype (float32 stays float32) and device.  Integer data
        (counts) are converted to float32.
    k : int
        Number of components, ``1 <= k <= min(n_pixels, n_channels)``.
    loss : str, float or Loss, optional
        ``"frobenius"`` (default), ``"kl"``, ``"itakura-saito"`` or a beta value.
    solver : str or Solver
        ``"auto"``, ``"mu"``, ``"hals"``, ``"bpp"``, ``"admm"``, ``"gradient"`` or
        ``"svd"``.  ``"auto"`` picks one that supports the other knobs.
    constraints : list of Constraint, optional
        Hard constraints; None means ``[NonNegative()]`` (``[Orthogonal()]`` for
        ``solver="svd"``).  ``[]`` means none (unconstrained factorization).
    regularizers : list of Penalty or Filter
        Soft penalties (``L1``, ``L2``, ``SpatialSmoothness``, ``MinVolume``) and
        between-iteration filters (``GaussianMapFilter``, ``SpectralSmoothing``).
    weights : Weights or array (n_pixels, n_channels), optional
        Entry weights of the loss.  Use ``Weights(pixels=w)`` / ``Weights(channels=c)``
        for separable weights (fast path).
    mask : bool array (n_pixels, n_channels), optional
        False marks missing entries (they may hold NaN).
    link : str or Link, optional
        ``"identity"`` (default) or ``"logistic"``.
    preprocessing : list of Step
        E.g. ``[NormalizePixels()]``, ``[PoissonScaling()]``, ``[Center()]``; undone
        in the result (see :mod:`unmix.preprocessing`).
    init : str or tuple, optional
        ``"nndsvda"`` (default), ``"nndsvd"``, ``"nndsvdar"``, ``"random"``, ``"spa"``,
        ``"vca"`` or ``(A0, S0)``.
    max_iter : int, optional
        Most iterations (default 500).
    tol : float, optional
        Stop when the relative change of the objective is below ``tol`` (default 1e-5).
    time_limit : float, optional
        Seconds per restart.
    n_restarts : int
        Independent starts (different seeds); the lowest objective wins.
    random_state : int or Generator, optional
        Seed for reproducible starts.
    callback : callable, optional
        ``callback(IterationInfo)`` after each iteration; a truthy return stops the fit.
    spatial_shape, signal_shape : tuple of int, optional
        Scan grid of the pixels and shape of one spectrum/pattern (needed by spatial
        and 2-D spectral regularizers; kept in the result).
    block_size : int, optional
        Pixels per block of the data pass (default: about 8 MB of X on CPU, all on GPU).
    executor : Executor, optional
        Where blocks run (default: :class:`~unmix.executor.SerialExecutor`).
    device : str or device, optional
        Only for host or file data (NumPy, ``h5py``, Zarr, Dask, memory maps): compute
        on this device while ``X`` stays where it is, streaming one block at a time
        (``"cuda"``, ``"cuda:1"``, ``"torch"`` for PyTorch on the CPU, ``"cupy"``; see
        :func:`unmix._backend.compute_backend`).  The factors live on that device.
        Default: compute where ``X`` is.
    solver_options : dict, optional
        Solver-specific options (e.g. ``{"inner": 10}`` for ADMM, ``{"lr": 0.05}``).
    compress : int, bool, "auto" or None
        Iterate first on a rank-``r`` truncated SVD of ``X`` (``True``: ``r = k + 10``),
        then refine on ``X`` until ``tol`` (low-rank-approximation NMF, Zhou et al. 2012).
        Each compressed pass costs ``O((pixels + channels) r k)``: 8-9x faster than
        scikit-learn to the same objective in ``benchmarks/results/engine.md``.  Frobenius
        solvers (hals, mu, bpp, admm) without weights or a mask.  ``"auto"`` (default)
        turns it on when ``X`` has at least 2**22 entries and the problem allows it;
        ``None``/``False`` turns it off.
    checkpoint : path, optional
        Save the iterate to this HDF5 file every ``checkpoint_every`` seconds (``0``:
        every iteration) and on Ctrl-C; removed when the fit completes.
    checkpoint_every : float
        Seconds between checkpoints (default 60).
    resume : bool
        Continue from ``checkpoint`` when it exists (same data and options, checked by a
        fingerprint); the answer equals that of an uninterrupted fit with the same seed.
    preset : str, optional
        A documented bundle of defaults, e.g. ``"blind-unmixing"`` (see
        :mod:`unmix.presets`); explicit arguments override it.

    Returns
    -------
    Result
        ``A`` (pixels, k), ``S`` (k, channels), objective history, convergence info,
        timings and the full problem spec.

    Raises
    ------
    ValueError, TypeError
        Bad input (the message names the input and the fix).
    UnsupportedError
        The solver cannot handle a knob (the message names solvers that can).
    """
    if getattr(executor, "drives_workers", False):  # e.g. Dask: the fit runs on the workers
        kwargs = dict(locals())
        for name in ("X", "k", "executor"):
            del kwargs[name]
        return executor.factorize(X, k, **kwargs)
    given = {
        "loss": loss,
        "constraints": constraints,
        "regularizers": regularizers,
        "init": init,
        "max_iter": max_iter,
        "tol": tol,
        "preprocessing": preprocessing,
        "solver": solver,
        "solver_options": solver_options,
    }
    opts = resolve_preset(preset, given)
    t_start = time.perf_counter()
    pre_steps = list(opts["preprocessing"])
    streamed = is_streamable(X) or _host_to_device(X, device)
    if streamed:
        if pre_steps:
            raise ValueError(
                "X is streamed block by block (from a file, a lazy array, or host memory "
                "to device=): preprocessing= needs X in memory; preprocess the file (or "
                "load X) first."
            )
        be, X = streamed_backend(X, device)
        n, m = (int(s) for s in X.shape)
        if (mask is not None or weights is not None) and be.name != "numpy":
            raise ValueError(
                f"mask= and weights= with X streamed to device={device!r} are not supported: "
                "move X (and them) onto the device yourself, or stream on the host."
            )
        if getattr(mask, "_unmix_streamable", False):
            mask_arr = mask  # a Dask worker's rows of a mask checked where it was cut
        else:
            mask_arr = _check_mask(None if mask is None else np.asarray(mask), X.shape, be)
        weights_obj, Xw = _check_weights(weights, n, m, be), X
    else:
        X = ensure_2d_float(X)
        be = backend_of(X)
        n, m = (int(s) for s in X.shape)
        mask_arr = _check_mask(mask, X.shape, be)
        finite_report(X, allowed=mask_arr)
        weights_obj = _check_weights(weights, n, m, be)
        Xw = X
        for step in pre_steps:
            Xw = step.fit_transform(Xw, mask_arr)
        weights_obj = _step_weights(pre_steps, weights_obj)
    k = check_k(k, n, m)
    loss_obj = make_loss(opts["loss"])
    link_obj = make_link(link)
    solver_name = opts["solver"]
    if constraints is None and opts["constraints"] is None:
        base = [Orthogonal()] if solver_name == "svd" else [NonNegative()]
    else:
        base = list(opts["constraints"] if constraints is None else constraints)
    terms = _split_terms(base, list(opts["regularizers"]))
    nonneg = {
        t: any(c.kind in ("nonneg", "simplex") for c in terms["constraints"][t])
        for t in ("A", "S")
    }
    if (nonneg["A"] and nonneg["S"] and link_obj.is_identity) or loss_obj.needs_nonnegative_data:
        why = (
            "an NMF model (A >= 0 and S >= 0)"
            if nonneg["A"] and nonneg["S"]
            else (f"loss={loss_obj.name!r}")
        )
        if not streamed:
            check_nonnegative(Xw, observed=mask_arr, why=why)

    ex = executor or SerialExecutor()
    row = spatial_shape[-1] if spatial_shape else 1
    if block_size is None:
        block_size = default_block_size(n, m, be, row=row, streamed=streamed)
    start, stop = ex.partition(n, block_size)  # whole blocks: the serial block grid
    if ex.distributed:
        _check_distributed(terms, opts["init"], ex)
    if streamed:
        rows = slice(start, stop)
        data = StreamedData(
            X,
            be,
            block_size=block_size,
            dtype=be.dtype,
            rows=(start, stop),
            executor=ex,
            weights=_rows_of(weights_obj, rows),
            mask=None if mask_arr is None else mask_arr[rows, :],
        )
        check_streamed(
            data, nonneg=(nonneg["A"] and nonneg["S"]) or loss_obj.needs_nonnegative_data
        )
    else:
        rows = slice(start, stop)
        data = PixelData(
            Xw[rows, :],
            be,
            block_size=block_size,
            weights=_rows_of(weights_obj, rows),
            mask=None if mask_arr is None else mask_arr[rows, :],
            executor=ex,
            n_total=n,
        )
    ctx = BindContext(
        n_pixels=stop - start,
        n_channels=m,
        k=k,
        backend=be,
        spatial_shape=tuple(spatial_shape) if spatial_shape else None,
        signal_shape=tuple(signal_shape) if signal_shape else None,
        nonneg_A=nonneg["A"],
        nonneg_S=nonneg["S"],
        executor=ex,
        rows=(start, stop),
        n_total=n,
    )
    problem = Problem(
        k=k,
        loss=loss_obj,
        link=link_obj,
        be=be,
        data=data,
        constraints={t: [c.bind(ctx) for c in terms["constraints"][t]] for t in "AS"},
        penalties={t: [c.bind(ctx) for c in terms["penalties"][t]] for t in "AS"},
        filters={t: [c.bind(ctx) for c in terms["filters"][t]] for t in "AS"},
        spatial_shape=ctx.spatial_shape,
        signal_shape=ctx.signal_shape,
    )
    _warn_useless(problem)
    for term in problem.penalties["A"] + problem.penalties["S"]:
        term.on_data(problem)
    slv = _choose_solver(solver_name, problem, opts["solver_options"] or {})
    init_name = opts["init"] or "nndsvda"
    max_iter = int(opts["max_iter"] if opts["max_iter"] is not None else 500)
    tol = float(opts["tol"] if opts["tol"] is not None else 1e-5)
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1; got {max_iter}.")
    if n_restarts < 1:
        raise ValueError(f"n_restarts must be >= 1; got {n_restarts}.")
    rng = (
        random_state
        if isinstance(random_state, np.random.Generator)
        else (np.random.default_rng(random_state))
    )
    seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=n_restarts)]
    cfg = Settings(
        max_iter=max_iter,
        tol=tol,
        time_limit=time_limit,
        callback=callback,
        executor=ex,
        compress=_check_compress(compress, problem, slv),
    )
    spec = _spec(
        problem,
        slv,
        cfg,
        init=init_name if isinstance(init_name, str) else "custom",
        n_restarts=n_restarts,
        random_state=random_state if isinstance(random_state, (int, type(None))) else "Generator",
        preprocessing=[st.describe() for st in pre_steps],
        weights=None
        if weights_obj is None
        else {k: v is not None for k, v in vars(weights_obj).items()},
        mask=None if mask_arr is None else "bool mask",
        block_size=block_size,
        preset=preset,
    )
    if checkpoint is not None:
        fp = fingerprint({**spec, "seeds": seeds}, data_signature(data))
        if ex.distributed:
            ckpt = DistributedCheckpointer(
                checkpoint, every=checkpoint_every, fingerprint=fp, executor=ex
            )
        else:
            ckpt = Checkpointer(checkpoint, every=checkpoint_every, fingerprint=fp)
        cfg = replace(cfg, checkpoint=ckpt)
    best, runs = _restarts(problem, slv, init_name, seeds, cfg, resume)
    spec["effective"] = {
        t.label: t.effective() for t in problem.penalties["A"] + problem.penalties["S"]
    }
    A, S = best["A"], best["S"]
    for step in reversed(pre_steps):
        A, S = step.undo_factors(A, S, rows=slice(start, stop))
    total = time.perf_counter() - t_start
    result = Result(
        A=A,
        S=S,
        objective=best["objective"],
        history=best["history"],
        n_iter=best["n_iter"],
        converged=best["stop_reason"] == "tol",
        stop_reason=best["stop_reason"],
        timings={
            "init": best["t_init"],
            "iterations": best["t_iter"],
            "total": total,
            "per_iteration": best["t_iter"] / max(best["n_iter"], 1),
        },
        spec=spec,
        restarts=runs,
        preprocessing=pre_steps,
        spatial_shape=ctx.spatial_shape,
        signal_shape=ctx.signal_shape,
    )
    result.link = link_obj
    result.rows = (start, stop)  # the pixels this process holds (all of them when serial)
    result._args = {  # live objects for fit_maps (not saved)
        "loss": loss_obj,
        "link": link_obj,
        "constraints": base,
        "regularizers": list(opts["regularizers"]),
        "preprocessing": pre_steps,
        "solver": slv.name,
        "solver_options": dict(opts["solver_options"] or {}),
        "nonneg_S": nonneg["S"],
    }
    return result


# --------------------------------------------------------------------- pieces
def _restarts(
    p: Problem, slv: Solver, init: Any, seeds: list[int], cfg: Settings, resume: bool
) -> tuple[dict, list[dict]]:
    """Run every restart (resuming from the checkpoint when asked); keep the best."""
    ckpt = cfg.checkpoint
    snap = ckpt.load() if (ckpt is not None and resume) else None
    if resume and ckpt is not None and snap is None:
        logger.info("No checkpoint at %s: starting afresh.", ckpt.path)
    if resume and ckpt is None:
        raise ValueError("resume=True needs checkpoint= (the checkpoint file to resume from).")
    first = 0 if snap is None else int(snap["restart"])
    runs = [] if snap is None else list(ckpt.bookkeeping["finished"])
    best = None if snap is None else ckpt.bookkeeping["best"]
    if best is not None:
        best = dict(best, A=p.be.asarray(best["A"]), S=p.be.asarray(best["S"]))
    for r in range(first, len(seeds)):
        run = run_once(p, slv, init, seeds[r], cfg, restart=r, snap=snap if r == first else None)
        runs.append(
            {
                "seed": seeds[r],
                "objective": run["objective"],
                "n_iter": run["n_iter"],
                "stop_reason": run["stop_reason"],
            }
        )
        if best is None or run["objective"] < best["objective"]:
            best = run
        if ckpt is not None:
            ckpt.bookkeeping = {"finished": runs, "best": best}
    if ckpt is not None:
        ckpt.remove()  # the fit completed: the result replaces the checkpoint
    assert best is not None
    return best, runs


AUTO_COMPRESS_ENTRIES = 1 << 22


def _check_compress(compress: Any, p: Problem, slv: Solver) -> int | None:
    if compress is None or compress is False:
        return None
    if compress == "auto":
        big = p.data.n_total * p.data.n_channels >= AUTO_COMPRESS_ENTRIES
        small_k = p.k + 10 <= min(p.data.n_total, p.data.n_channels) // 4
        fits = slv.name in ("hals", "mu", "bpp", "admm") and p.loss.is_frobenius
        ok = big and small_k and fits and p.link.is_identity and not p.data.weighted
        return min(p.k + 10, p.data.n_total, p.data.n_channels) if ok else None
    if compress is not True and (
        isinstance(compress, bool) or not isinstance(compress, (int, np.integer))
    ):
        raise TypeError(f"compress must be an int rank, True or None; got {compress!r}.")
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


def _check_mask(mask: Any, shape: tuple, be: Backend) -> Any:
    if mask is None:
        return None
    xp = be.xp
    if not hasattr(mask, "shape"):
        mask = np.asarray(mask)
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(
            f"mask has shape {tuple(mask.shape)}; it must match X {tuple(shape)} "
            "(True = observed, False = missing)."
        )
    if isinstance(mask, np.ndarray) and be.name != "numpy":
        mask = be.asarray(mask, dtype=xp.bool)
    mask = xp.astype(mask, xp.bool)
    n_obs = int(xp.sum(xp.astype(mask, xp.int64)))
    if n_obs == 0:
        raise ValueError("mask marks every entry of X missing; nothing to fit.")
    return mask


def _check_weights(weights: Any, n: int, m: int, be: Backend) -> Weights | None:
    if weights is None:
        return None
    xp = be.xp
    if not isinstance(weights, Weights):
        shape = tuple(getattr(weights, "shape", np.shape(weights)))
        if len(shape) == 1:
            raise ValueError(
                f"weights is 1-D (length {shape[0]}); say what it weighs: "
                "unmix.Weights(pixels=w) (length n_pixels) or unmix.Weights(channels=w) "
                "(length n_channels)."
            )
        weights = Weights(full=weights)
    out = {}
    for name, expected in (("pixels", (n,)), ("channels", (m,)), ("full", (n, m))):
        w = getattr(weights, name)
        if w is None:
            out[name] = None
            continue
        w = (
            be.asarray(to_numpy(w))
            if isinstance(w, np.ndarray)
            or (not hasattr(w, "__array_namespace__") and be.name != "numpy")
            else xp.astype(xp.asarray(w), be.dtype)
        )
        if tuple(w.shape) != expected:
            raise ValueError(f"Weights.{name} has shape {tuple(w.shape)}; expected {expected}.")
        if not bool(xp.all(xp.isfinite(w))) or bool(xp.any(w < 0)):
            raise ValueError(f"Weights.{name} must be finite and >= 0.")
        out[name] = w
    return Weights(**out)


def _rows_of(weights: Weights | None, rows: slice) -> Weights | None:
    """This process's rows of the per-pixel and full weights."""
    if weights is None:
        return None
    return Weights(
        pixels=None if weights.pixels is None else weights.pixels[rows],
        channels=weights.channels,
        full=None if weights.full is None else weights.full[rows, :],
    )


def _host_to_device(X: Any, device: Any) -> bool:
    """True when in-memory host ``X`` is to be streamed to ``device=`` block by block."""
    if device is None:
        return False
    if isinstance(X, np.ndarray) and X.ndim == 2:
        return True
    raise ValueError(
        f"device={device!r} moves host or file data (NumPy, h5py, Zarr, Dask) to a compute "
        f"device; X is a {type(X).__module__.split('.')[0]} array, and the fit already "
        "follows X's device: drop device=."
    )


def _check_distributed(terms: dict, init: Any, executor: Any) -> None:
    """What the distributed executors do not support yet (a clear error, not a hang).

    Terms that couple neighbouring pixels need the executor's halo exchange of boundary
    scan lines (:meth:`unmix.mpi.MPIExecutor.halo`).
    """
    coupled = [
        type(t).__name__
        for group in ("penalties", "filters")
        for t in terms[group]["A"]
        if type(t).__name__ in ("SpatialSmoothness", "GaussianMapFilter")
    ]
    if coupled and not callable(getattr(executor, "halo", None)):
        raise UnsupportedError(
            f"{coupled} couple neighbouring pixels; with pixels split over processes they "
            f"need a halo exchange of boundary scan lines that {type(executor).__name__} "
            "does not do - use unmix.mpi.MPIExecutor or run them serially."
        )
    if init in ("spa", "vca", "nndsvdar"):
        raise UnsupportedError(
            f"init={init!r} is not available with a distributed executor yet; use "
            "'nndsvda', 'nndsvd', 'random' or (A0, S0)."
        )


def _step_weights(steps: list, weights: Weights | None) -> Weights | None:
    """Multiply pixel weights requested by preprocessing steps into ``weights``."""
    for step in steps:
        w = step.pixel_weights()
        if w is None:
            continue
        base = weights or Weights()
        pixels = w if base.pixels is None else base.pixels * w
        weights = Weights(pixels=pixels, channels=base.channels, full=base.full)
    return weights


def _split_terms(constraints: list, regularizers: list) -> dict:
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
        for part in c.split() if isinstance(c, NonNegative) else [c]:
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


def _warn_useless(p: Problem) -> None:
    if "simplex" in p.kinds("A"):
        for pen in p.penalties["A"]:
            if type(pen).__name__ == "L1" and pen.lam:
                warnings.warn(
                    "L1 on sum-to-one abundances is constant (lam * total); it has no effect.",
                    UserWarning,
                    stacklevel=3,
                )


def _choose_solver(name: Any, p: Problem, options: dict) -> Solver:
    from .solvers import get_solver as _get
    from .solvers._base import solvers_supporting

    if name in (None, "auto"):
        supported = solvers_supporting(p)
        for pick in ("hals", "mu", "admm", "gradient"):
            if pick in supported:
                name = pick
                break
        else:
            get_solver("hals").check(p)  # raises with the reasons
    slv = _get(name, **options)
    slv.check(p)
    return slv


def _spec(p: Problem, slv: Solver, cfg: Settings, **extra: Any) -> dict:
    """The full problem specification, JSON-friendly (for provenance)."""

    def terms(group: str) -> list:
        return [t.describe() for tgt in "AS" for t in getattr(p, group)[tgt]]

    spec = {
        "unmix_version": __version__,
        "k": p.k,
        "n_pixels": p.data.n_total,
        "n_channels": p.data.n_channels,
        "loss": p.loss.name,
        "beta": p.loss.beta,
        "link": p.link.name,
        "solver": slv.name,
        "solver_options": dict(slv.options),
        "constraints": terms("constraints"),
        "penalties": terms("penalties"),
        "filters": terms("filters"),
        "max_iter": cfg.max_iter,
        "tol": cfg.tol,
        "time_limit": cfg.time_limit,
        "compress": cfg.compress,
        "spatial_shape": None if p.spatial_shape is None else list(p.spatial_shape),
        "signal_shape": None if p.signal_shape is None else list(p.signal_shape),
        "backend": p.be.name,
        "dtype": str(p.be.dtype),
        "device": str(p.be.device),
    }
    spec.update(extra)
    return spec
