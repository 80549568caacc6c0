"""A tool you can trust with a night's data: reproducible, resumable, never NaN, bounded.

1. Every fit records an int seed (``random_state=None`` draws one): rerunning with it
   repeats the fit bit for bit, and a resume without a seed takes it from the checkpoint.
2. NaN or Inf never come back as a success: non-finite starts, term parameters, losses
   and checkpoints are refused; a fit that turns non-finite returns its last finite
   iterate (or raises when it has none); unknown solver options are refused.
3. Filters do bounded work whatever their width.
"""

from __future__ import annotations

import math
import re
import time
import tracemalloc
from dataclasses import dataclass, field

import h5py
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

import unmix
from unmix._backend import backend_of
from unmix.engine.solvers import HALS, REGISTRY
from unmix.model import BindContext, Constraint, Filter, NonNegative

SOLVERS = ("hals", "mu", "bpp", "admm", "gradient")


def _fit(X, **kw):
    kw.setdefault("max_iter", 15)
    kw.setdefault("init", "random")  # a start that depends on the seed
    return unmix.factorize(X, 3, **kw)


def _same(a, b) -> None:
    np.testing.assert_array_equal(a.A, b.A)
    np.testing.assert_array_equal(a.S, b.S)
    assert a.n_iter == b.n_iter
    np.testing.assert_array_equal(a.history["objective"], b.history["objective"])


def _interrupt_at(n: int):
    def callback(info):
        if info.iteration == n:
            raise KeyboardInterrupt

    return callback


def _interrupted(X, path, **kw) -> None:
    """A fit with a checkpoint, stopped by Ctrl-C at iteration 6 (the checkpoint stays)."""
    with pytest.raises(KeyboardInterrupt):
        _fit(X, checkpoint=path, checkpoint_every=0, callback=_interrupt_at(6), **kw)
    assert path.exists()


# ------------------------------------------------------ 1. reproducibility and resume
@pytest.mark.parametrize("solver", SOLVERS)
def test_default_run_records_an_int_seed_that_repeats_it(mixture, solver):
    first = _fit(mixture.X, solver=solver)
    seed = first.spec["random_state"]
    assert isinstance(seed, int) and seed >= 0
    again = _fit(mixture.X, solver=solver, random_state=seed)
    _same(first, again)
    assert again.spec["random_state"] == seed


def test_drawn_seed_is_logged(mixture, caplog):
    with caplog.at_level("INFO", logger="unmix"):
        r = _fit(mixture.X, max_iter=1)
    seed = r.spec["random_state"]
    assert f"drew the seed {seed} (random_state={seed} repeats this fit)" in caplog.text


def test_default_runs_draw_different_seeds(mixture):
    seeds = {_fit(mixture.X, max_iter=1).spec["random_state"] for _ in range(3)}
    assert len(seeds) == 3


def test_generator_random_state_records_an_int_drawn_from_it(mixture):
    r = _fit(mixture.X, random_state=np.random.default_rng(5))
    seed = r.spec["random_state"]
    assert isinstance(seed, int)
    assert seed == int(np.random.default_rng(5).integers(0, 2**32))
    _same(r, _fit(mixture.X, random_state=seed))


@pytest.mark.parametrize("solver", SOLVERS)
def test_resume_without_seed_equals_the_uninterrupted_fit(mixture, tmp_path, solver):
    path = tmp_path / "fit.ckpt.h5"
    kw = {"solver": solver, "tol": 0.0}
    _interrupted(mixture.X, path, max_iter=20, **kw)
    with h5py.File(path, "r") as f:
        recorded = int(f.attrs["random_state"])
    resumed = _fit(mixture.X, checkpoint=path, resume=True, max_iter=30, **kw)
    assert resumed.spec["random_state"] == recorded
    assert not path.exists()
    _same(resumed, _fit(mixture.X, random_state=recorded, max_iter=30, **kw))


def test_resume_refuses_a_seed_other_than_the_checkpoints(mixture, tmp_path):
    path = tmp_path / "fit.ckpt.h5"
    _interrupted(mixture.X, path, random_state=3)
    with pytest.raises(ValueError, match=r"random_state=4 differs from the seed 3 recorded"):
        _fit(mixture.X, checkpoint=path, resume=True, random_state=4)
    resumed = _fit(mixture.X, checkpoint=path, resume=True, random_state=3)
    _same(resumed, _fit(mixture.X, random_state=3))


def test_resume_without_seed_refuses_a_checkpoint_that_records_none(mixture, tmp_path):
    path = tmp_path / "fit.ckpt.h5"
    _interrupted(mixture.X, path, random_state=3)
    with h5py.File(path, "a") as f:  # as written before seeds were recorded
        del f.attrs["random_state"]
    with pytest.raises(ValueError, match=r"records no seed .* resume with the random_state"):
        _fit(mixture.X, checkpoint=path, resume=True)


# --------------------------------------------------------- 2. never NaN as a success
@pytest.mark.parametrize("which", ["A0", "S0"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_start_is_refused(mixture, which, bad):
    rng = np.random.default_rng(0)
    A0, S0 = rng.random((mixture.X.shape[0], 3)), rng.random((3, mixture.X.shape[1]))
    (A0 if which == "A0" else S0)[1, 2] = bad
    with pytest.raises(ValueError, match=rf"init {which} holds 1 NaN or Inf entries"):
        unmix.factorize(mixture.X, 3, init=(A0, S0), max_iter=5)


NAN, INF = float("nan"), float("inf")
BAD_TERMS = {
    "Bounds lower nan": (lambda: unmix.Bounds(lower=NAN), r"Bounds: lower holds NaN"),
    "Bounds upper nan": (lambda: unmix.Bounds(upper=[0.5, NAN]), r"Bounds: upper holds NaN"),
    "Bounds lower +inf": (lambda: unmix.Bounds(lower=INF), r"Bounds: lower holds NaN or \+inf"),
    "L1 nan": (lambda: unmix.L1(NAN), r"L1: lam must be finite"),
    "L2 inf": (lambda: unmix.L2(INF), r"L2: lam must be finite"),
    "Smooth nan": (lambda: unmix.SpatialSmoothness(NAN), r"SpatialSmoothness: lam must be"),
    "MinVolume delta nan": (lambda: unmix.MinVolume(0.1, delta=NAN), r"delta must be a finite"),
    "MinVolume delta inf": (lambda: unmix.MinVolume(0.1, delta=INF), r"delta must be a finite"),
    "SumToOne inf": (lambda: unmix.SumToOne(total=INF), r"SumToOne: total must be a finite"),
    "Gaussian nan": (lambda: unmix.GaussianMapFilter(NAN), r"sigma \(pixels\) must be a finite"),
    "Gaussian inf": (lambda: unmix.GaussianMapFilter(INF), r"sigma \(pixels\) must be a finite"),
    "Gaussian -1": (lambda: unmix.GaussianMapFilter(-1.0), r"sigma \(pixels\) must be a finite"),
    "Spectral nan": (lambda: unmix.SpectralSmoothing(sigma=NAN), r"sigma \(channels\) must be"),
    "Median inf": (
        lambda: unmix.SpectralSmoothing("median", size=INF),
        r"size \(channels\) must be a finite",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_TERMS))
def test_non_finite_term_parameters_are_refused(name):
    make, message = BAD_TERMS[name]
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    ("loss", "shown"),
    [(NAN, "nan"), (1e30, r"1e\+30"), (-0.5, "-0.5"), (3.5, "3.5")],
)
def test_loss_outside_the_beta_range_is_refused(mixture, loss, shown):
    with pytest.raises(ValueError, match=rf"loss={shown} is not allowed; .*>= 0 and <= 3"):
        unmix.factorize(mixture.X, 3, loss=loss)


@pytest.mark.parametrize("beta", [NAN, 1e30, -1.0])
def test_loss_object_outside_the_beta_range_is_refused(beta):
    with pytest.raises(
        ValueError, match=r"beta of a beta-divergence must be a finite number in \[0, 3\]"
    ):
        unmix.Beta(beta)


@pytest.mark.parametrize(
    ("name", "value"), [("tol", -1e-3), ("time_limit", -5.0), ("time_limit", 0.0)]
)
def test_negative_tol_and_time_limit_are_refused(mixture, name, value):
    with pytest.raises(ValueError, match=rf"{name}={value!r} is not allowed"):
        unmix.factorize(mixture.X, 3, **{name: value})


@pytest.mark.parametrize("solver", SOLVERS)
def test_unknown_solver_option_is_refused_with_the_valid_ones(mixture, solver):
    valid = ", ".join(repr(n) for n in sorted(REGISTRY[solver].option_names)) or "none"
    message = rf"solver {solver!r} has no option 'bogus'; its options: {re.escape(valid)}\."
    with pytest.raises(ValueError, match=message):
        unmix.factorize(mixture.X, 3, solver=solver, solver_options={"bogus": 1})


def test_solver_options_with_a_solver_instance_are_refused(mixture):
    with pytest.raises(ValueError, match=r"solver_options \['inner_max'\] given with a Solver"):
        unmix.factorize(mixture.X, 3, solver=HALS(), solver_options={"inner_max": 3})
    with pytest.raises(ValueError, match=r"solver 'hals' has no option 'inner'"):
        HALS(inner=3)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_solver_option_names_are_its_documented_options(name):
    cls = REGISTRY[name]
    doc = cls.__doc__ or ""
    section = doc.split("Options\n    -------\n")[1] if "Options\n" in doc else ""
    documented = set(re.findall(r"^    (\w+) : ", section, flags=re.M))
    assert documented == set(cls.option_names)


def test_preset_solver_options_do_not_follow_to_another_solver(mixture):
    r = unmix.factorize(mixture.X, 3, preset="blind-unmixing", solver="gradient", max_iter=2)
    assert r.spec["solver"] == "gradient"
    assert r.spec["solver_options"] == {}


@dataclass(frozen=True)
class _PoisonMaps(Filter):
    """A filter that turns the maps to NaN on its ``at``-th call (identity otherwise)."""

    at: int = 4
    calls: list = field(default_factory=list, compare=False, repr=False)

    def apply(self, M):
        self.calls.append(None)
        return M * np.nan if len(self.calls) == self.at else M


@pytest.mark.parametrize("solver", SOLVERS)
def test_non_finite_maps_return_the_last_finite_iterate(mixture, solver):
    kw = {"solver": solver, "random_state": 0, "tol": 0.0}
    with pytest.warns(RuntimeWarning, match="non-finite at iteration 4"):
        r = _fit(mixture.X, regularizers=[_PoisonMaps(at=4)], max_iter=30, **kw)
    assert r.stop_reason == "non-finite"
    assert np.all(np.isfinite(r.A)) and np.all(np.isfinite(r.S))
    ref = _fit(mixture.X, regularizers=[_PoisonMaps(at=10**9)], max_iter=3, **kw)
    np.testing.assert_array_equal(r.A, ref.A)
    np.testing.assert_array_equal(r.S, ref.S)


@dataclass(frozen=True)
class _PoisonProjection(Constraint):
    """A constraint on the maps whose projection is NaN: not even the start is finite."""

    def project(self, M):
        return M * np.nan


@pytest.mark.parametrize("solver", ["admm", "gradient"])
def test_a_fit_without_a_finite_iterate_raises(mixture, solver):
    constraints = [NonNegative(target="S"), _PoisonProjection(target="A")]
    with (
        pytest.warns(RuntimeWarning, match="non-finite"),
        pytest.raises(FloatingPointError, match=r"no finite iterate .* check X"),
    ):
        unmix.factorize(mixture.X, 3, solver=solver, constraints=constraints, max_iter=5)


def test_checkpoint_with_non_finite_maps_is_refused(mixture, tmp_path):
    path = tmp_path / "fit.ckpt.h5"
    _interrupted(mixture.X, path, random_state=1)
    with h5py.File(path, "a") as f:
        A = f["A"][()]
        A[3, 1] = np.nan
        f["A"][...] = A
    with pytest.raises(
        ValueError,
        match=r"checkpoint .* holds non-finite maps \(A\); delete it or run without --resume",
    ):
        _fit(mixture.X, checkpoint=path, resume=True, random_state=1)


# ------------------------------------------------------------------ 3. bounded work
def _bound(term, spatial_shape=None, signal_shape=None, n=64 * 64, m=20, k=3):
    be = backend_of(np.zeros((1, 1)))
    ctx = BindContext(
        n_pixels=n,
        n_channels=m,
        k=k,
        backend=be,
        spatial_shape=spatial_shape,
        signal_shape=signal_shape,
    )
    return term.bind(ctx)


@pytest.mark.parametrize("sigma", [1e7, 1e30])
def test_huge_gaussian_map_filter_is_a_bounded_reflected_mean(sigma):
    rng = np.random.default_rng(0)
    A = rng.random((64 * 64, 3))
    tracemalloc.start()
    t0 = time.perf_counter()
    f = _bound(unmix.GaussianMapFilter(sigma), spatial_shape=(64, 64))
    out = f.apply(A)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 5.0 and peak < 32 * 2**20
    # a kernel far wider than the map: the mean over the reflected map, each axis
    V = A.reshape(64, 64, 3)
    for ax in (0, 1):
        P = np.pad(V, [(64, 64) if a == ax else (0, 0) for a in range(3)], mode="symmetric")
        C = np.cumsum(P, axis=ax)
        C = np.concatenate([np.zeros_like(np.take(C, [0], axis=ax)), C], axis=ax)
        V = (np.take(C, range(129, 129 + 64), axis=ax) - np.take(C, range(64), axis=ax)) / 129
    np.testing.assert_allclose(out, V.reshape(-1, 3), rtol=1e-12)


@pytest.mark.parametrize("sigma", [0.4, 0.7, 1.5, 5.0, 30.0])
def test_gaussian_map_filter_unchanged_for_ordinary_widths(sigma):
    A = np.random.default_rng(1).random((12 * 9, 2))
    out = _bound(unmix.GaussianMapFilter(sigma), spatial_shape=(12, 9), n=108, k=2).apply(A)
    if 3 * sigma > 9:  # wider than the grid: a bounded kernel (tested above)
        return
    want = A.reshape(12, 9, 2)
    for ax in (0, 1):  # scipy's "reflect" mirrors like the filter: (d c b a | a b c d)
        reach = max(1, math.ceil(3 * sigma))
        want = gaussian_filter1d(want, sigma, axis=ax, mode="reflect", radius=reach)
    np.testing.assert_allclose(out, want.reshape(-1, 2), rtol=1e-12)


def test_huge_spectral_gaussian_is_bounded():
    S = np.random.default_rng(2).random((3, 40))
    tracemalloc.start()
    out = _bound(unmix.SpectralSmoothing(sigma=1e30, target="S"), m=40).apply(S)
    assert tracemalloc.get_traced_memory()[1] < 8 * 2**20
    tracemalloc.stop()
    assert np.all(np.isfinite(out)) and out.shape == S.shape


@pytest.mark.parametrize(
    ("size", "message"),
    [(10**6, r"size=1000000 is wider than the signal of shape \(40,\)"), (81, r"use size <= 81")],
)
@pytest.mark.filterwarnings("ignore:Components")
def test_median_window_wider_than_the_signal_is_refused(mixture, size, message):
    term = unmix.SpectralSmoothing("median", size=size)
    if size == 81:  # the widest window that fits is accepted
        unmix.factorize(mixture.X, 3, regularizers=[term], max_iter=2, random_state=0)
        term = unmix.SpectralSmoothing("median", size=83)
    with pytest.raises(ValueError, match=message):
        unmix.factorize(mixture.X, 3, regularizers=[term], max_iter=2, random_state=0)


def test_median_window_memory_is_bounded():
    with pytest.raises(ValueError, match=r"GiB of windows per endmember; use size <= \d+"):
        _bound(unmix.SpectralSmoothing("median", size=401), signal_shape=(256, 256), m=256 * 256)
