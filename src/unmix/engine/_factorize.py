"""The functional core, :func:`factorize`: a short pipeline of named steps.

check the parameters (:mod:`unmix.engine._params`) -> resolve the preset -> prepare the
input (:mod:`unmix.engine._inputs`) -> resolve the model and bind it to the pixel blocks
(:mod:`unmix.engine._assemble`) -> choose a solver -> settings, seeds, spec, checkpoint ->
run the restarts (:mod:`unmix.engine._loop`) -> wrap the :class:`~unmix.Result`.
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .._validation import ConvergenceWarning, check_k
from .._version import __version__
from ..blocks import is_device_sparse, is_sparse
from ..model import Constraint, Term, resolve_preset, tightening
from ..result import Result
from ..spectral_image import SpectralImage
from ._assemble import (
    Model,
    build_model,
    build_problem,
    check_compress,
    check_data,
    choose_solver,
)
from ._checkpoint import Checkpointer, DistributedCheckpointer, data_signature, fingerprint
from ._diagnostics import warn_not_converged
from ._extrapolate import extrapolates
from ._fractions import (
    SOLVED_AS,
    PlainKLForm,
    fit_as_plain_kl,
    fractions_form,
    runs_as_plain_kl,
)
from ._init import default_init
from ._inputs import Input, prepare_input
from ._loop import IterationInfo, Settings, run_restarts
from ._other_starts import other_starts, run_with_other_starts, tries_other_starts
from ._params import check_factorize_params, document_factorize
from ._problem import Problem
from ._seed import resolve_seed, restart_seeds
from .solvers import Solver, get_solver

__all__ = ["IterationInfo", "default_max_iter", "factorize"]


def _accepts_images(fn: Callable[..., Result]) -> Callable[..., Result]:
    """Let ``fn(X, k, ...)`` take a :class:`SpectralImage`: its (pixels, channels)
    matrix is fitted, its shapes are the defaults and its provenance the result's context."""

    @functools.wraps(fn)
    def fit(X: Any, k: int, **options: Any) -> Result:
        if not isinstance(X, SpectralImage):
            return fn(X, k, **options)
        for name in ("spatial_shape", "signal_shape"):
            if options.get(name) is None:
                options[name] = getattr(X, name)
        result = fn(X.unfold(), k, **options)
        result.context = X.provenance()
        return result

    return fit


@document_factorize
@_accepts_images
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

    with a beta-divergence ``loss`` (``1/2 ||W * (X - Y)||_F^2`` Frobenius, ``sum W (X log(X /
    Y) - X + Y)`` KL) or l2,1 ``sum_i w_i ||x_i - y_i||``; ``W`` weights x mask, ``f`` link.

    Parameters
    ----------
    X : array (n_pixels, n_channels)
        Data in scikit-learn orientation (one spectrum a row): NumPy, PyTorch or CuPy;
        the factors follow its dtype (float32 stays float32) and device.  Integer data
        (counts) are converted to float32; an image from :func:`unmix.load` is unfolded.
    {parameters}

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
    given = {n: v for n, v in locals().items() if n != "X"}  # as passed (checked below)
    if getattr(executor, "drives_workers", False):  # e.g. Dask: the fit runs on the workers
        return _on_workers(X, k, executor, given)
    check_factorize_params({n: v for n, v in given.items() if n != "k"})  # k: against X below
    t_start = time.perf_counter()
    opts = resolve_preset(preset, {name: given[name] for name in _PRESET_KEYS})
    inp = prepare_input(X, mask=mask, weights=weights, device=device, steps=opts["preprocessing"])
    model = build_model(opts, link, opts["solver"], constraints)
    check_data(inp, model)
    problem = build_problem(inp, model, check_k(k, *inp.shape), given, init=opts["init"])
    form, init = _form_and_start(opts, given, inp, problem)  # form: KL fractions as plain KL
    slv = choose_solver("auto" if form else opts["solver"], problem, opts["solver_options"] or {})
    cfg = _settings(opts, problem, slv, given)
    seed = resolve_seed(random_state, checkpoint=checkpoint, resume=resume, executor=executor)
    run = _Run(problem, model, slv, opts, given, inp, t_start)
    if form is not None:
        return _as_plain_kl(run, form, cfg, seed)
    return _run_model(run, init, cfg, seed)


# --------------------------------------------------------------------- steps
def _form_and_start(opts: dict, given: dict, inp: Input, p: Problem) -> tuple[Any, Any]:
    """The plain KL problem the fit runs as (KL fractions fitted by ``auto`` or ``klcd``:
    :mod:`unmix.engine._fractions`; else None) and the start: the caller's, or the model's
    own (:func:`unmix.engine._init.default_init`)."""
    plain = runs_as_plain_kl(opts["solver"], given)
    # the test reads the pixels' sums (a pass over X): only when the answer is used
    fractions = fractions_form(inp, p) if plain or opts["init"] is None else None
    form = fractions if plain else None
    return form, opts["init"] or default_init(p, fractions=fractions is not None)


@dataclass
class _Run:
    """What the last steps of a fit share: the bound problem, its model and solver, the
    resolved options, the arguments as passed, the input and the time the fit began."""

    p: Problem
    model: Model
    slv: Solver
    opts: dict
    given: dict
    inp: Input
    t_start: float

    def wrap(self, best: dict, runs: list, spec: dict) -> Result:
        total = time.perf_counter() - self.t_start
        return _wrap(best, runs, self.p, self.model, self.slv, self.opts, spec, self.inp, total)


def _run_model(run: _Run, init: Any, cfg: Settings, seed: int) -> Result:
    """Run the restarts of ``run.p`` with its solver from ``init`` (seeded by ``seed``)."""
    p, given = run.p, run.given
    seeds = restart_seeds(seed, given["n_restarts"])
    spec = _problem_spec(p, run.slv, cfg, **_provenance(init, run.inp, p, given, seed))
    cfg = replace(cfg, checkpoint=_checkpointer(given, spec, seeds, p))
    if tries_other_starts(run.opts["init"], run.slv, cfg):  # a collapse may be the start's
        restarts = functools.partial(run_restarts, p, run.slv)
        pixels = p.simplex("A") and p.data.mask is None  # pure pixels are a start
        starts = other_starts(init, seeds[0], pixels=pixels)
        best, runs, replaced = run_with_other_starts(
            restarts, init, seeds, cfg, given["resume"], starts
        )
        if replaced is not None:
            spec["init"], best["other_start"] = replaced["other_init"], replaced
    else:
        best, runs = run_restarts(p, run.slv, init, seeds, cfg, given["resume"])
    return run.wrap(best, runs, spec)


def _as_plain_kl(run: _Run, form: PlainKLForm, cfg: Settings, seed: int) -> Result:
    """The fit of ``run.p`` run as its plain KL form (:mod:`unmix.engine._fractions`); the
    spec names the solver that ran, ``fit_maps`` keeps the solver chosen for ``run.p``."""
    p, given = run.p, run.given
    with warnings.catch_warnings():  # the plain fit's own warning: said once, below
        warnings.simplefilter("ignore", ConvergenceWarning)
        best, runs, plain = fit_as_plain_kl(form, p.k, given, run.opts["init"], seed, factorize)
    provenance = _provenance(plain["init"], run.inp, p, given, seed)
    spec = _problem_spec(p, get_solver(plain["solver"]), cfg, **provenance)
    spec.update({key: plain[key] for key in ("solver_options", "extrapolated", "compress")})
    spec["solved_as"] = SOLVED_AS
    return run.wrap(best, runs, spec)


def _on_workers(X: Any, k: Any, executor: Any, given: dict) -> Result:
    """The fit run by an executor that drives its own workers (Dask): dense X only."""
    if is_sparse(X) or is_device_sparse(X):
        raise ValueError(
            f"sparse X with {type(executor).__name__}: the workers take dense blocks; "
            "fit sparse X serially or under MPI (unmix.mpi.MPIExecutor), or pass X.toarray()."
        )
    return executor.factorize(X, k, **{n: v for n, v in given.items() if n not in _OWN})


#: factorize's own parameters that an executor running the fit elsewhere does not take
_OWN = ("X", "k", "executor")
#: the options a preset may fill in
_PRESET_KEYS = (
    "loss",
    "constraints",
    "regularizers",
    "init",
    "max_iter",
    "tol",
    "preprocessing",
    "solver",
    "solver_options",
)


def _provenance(init: Any, inp: Input, p: Problem, given: dict, seed: int) -> dict:
    """What the spec records besides the bound problem: start, seed, steps, weights."""
    return {
        "init": init if isinstance(init, str) else "custom",
        "n_restarts": given["n_restarts"],
        "random_state": seed,  # always an int: rerunning with it repeats the fit
        "preprocessing": [st.describe() for st in inp.steps],
        "weights": None
        if inp.weights is None
        else {key: v is not None for key, v in vars(inp.weights).items()},
        "mask": None if inp.mask is None else "bool mask",
        "block_size": p.block_size,
        "preset": given["preset"],
    }


#: the default ``max_iter``; with a penalty that tightens (a bound held by a growing
#: strength: one converged fit per strength, 10-20 of them) the larger one (nearly
#: orthogonal endmembers on XRD k 6: about 1,000, and KL fits of the EDS maps 1,500-2,300)
MAX_ITER, MAX_ITER_TIGHTENING = 500, 5000


def _max_iter(p: Problem, slv: Solver) -> int:
    return default_max_iter(p.tightening(), solver=slv)


def default_max_iter(regularizers: Sequence[Term] = (), *, solver: Any = None) -> int:
    """The ``max_iter`` :func:`factorize` takes when none is given: the solver's own
    (``Solver.default_max_iter``: 500, MU 2000; ``solver`` a name or an instance, None
    or ``"auto"`` for 500), or 5000 when a penalty holds a bound that it tightens each
    time the fit converges (``tightens``: ``Orthogonality``), whose every strength's fit
    must converge (e.g. the length of a progress bar).  A penalty of strength 0
    (``lam=0``) holds nothing."""
    if tightening(regularizers):
        return max(MAX_ITER_TIGHTENING, _solver_max_iter(solver))
    return _solver_max_iter(solver)


def _solver_max_iter(solver: Any) -> int:
    """A solver's default ``max_iter``; 500 for ``"auto"`` (not resolved yet) and for a
    name that is not a solver (:func:`factorize` says what is wrong with it)."""
    if solver is None or solver == "auto":
        return MAX_ITER
    try:
        return int(get_solver(solver).default_max_iter)
    except (ValueError, TypeError):
        return MAX_ITER


def _settings(opts: dict, p: Problem, slv: Solver, given: dict) -> Settings:
    """The stopping rules and plumbing shared by the restarts."""
    return Settings(
        max_iter=int(opts["max_iter"] if opts["max_iter"] is not None else _max_iter(p, slv)),
        tol=float(opts["tol"] if opts["tol"] is not None else 1e-5),
        time_limit=given["time_limit"],
        callback=given["callback"],
        executor=p.data.executor,
        compress=check_compress(given["compress"], p, slv),
    )


def _checkpointer(given: dict, spec: dict, seeds: list[int], p: Problem) -> Any:
    """The checkpointer of this fit, keyed to its spec, seeds and data (None without one)."""
    path, every = given["checkpoint"], given["checkpoint_every"]
    if path is None:
        return None
    fp = fingerprint({**spec, "seeds": seeds}, data_signature(p.data))
    ex, seed = p.data.executor, spec["random_state"]
    if ex.distributed:
        return DistributedCheckpointer(
            path, every=every, fingerprint=fp, executor=ex, random_state=seed
        )
    return Checkpointer(path, every=every, fingerprint=fp, random_state=seed)


def _wrap(
    best: dict,
    runs: list,
    p: Problem,
    model: Model,
    slv: Solver,
    opts: dict,
    spec: dict,
    inp: Input,
    total: float,
) -> Result:
    """The best restart as a :class:`Result` (preprocessing undone, provenance attached)."""
    spec["effective"] = {t.label: t.effective() for t in p.penalties["A"] + p.penalties["S"]}
    spec["diagnostics"] = {key: best.get(key, []) for key in ("collapsed", "revived")}
    spec["diagnostics"]["kept_without_penalties"] = best.get("kept_without_penalties")
    spec["diagnostics"]["other_start"] = best.get("other_start")
    spec["diagnostics"]["still_falling"] = (
        warn_not_converged(
            best["history"]["objective"], max_iter=spec["max_iter"], tol=spec["tol"]
        )
        if best["stop_reason"] == "max_iter"
        else None
    )
    rows = p.rows
    A, S = best["A"], best["S"]
    for step in reversed(inp.steps):
        A, S = step.undo_factors(A, S, rows=slice(*rows))
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
        preprocessing=inp.steps,
        spatial_shape=p.spatial_shape,
        signal_shape=p.signal_shape,
    )
    result.link = model.link
    result.rows = rows  # the pixels this process holds (all of them when serial)
    result.fit_args = {  # live objects for fit_maps (not saved)
        "loss": model.loss,
        "link": model.link,
        "constraints": model.constraints,
        "regularizers": model.regularizers,
        "preprocessing": inp.steps,
        "solver": slv.name,
        "solver_options": dict(opts["solver_options"] or {}),
        "nonneg_S": model.nonneg["S"],
    }
    return result


def _problem_spec(p: Problem, slv: Solver, cfg: Settings, **extra: Any) -> dict:
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
        "extrapolated": extrapolates(slv, p),
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
