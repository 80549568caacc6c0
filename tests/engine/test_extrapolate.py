"""Extrapolation with restarts (``solver_options={"extrapolate": True}``, HALS, BPP, ADMM
and the gradient solver):
the accepted objective never rises, slow fits take far fewer iterations to an objective
no higher than the plain iteration's, dtype is kept, and what it cannot do is refused."""

from __future__ import annotations

import numpy as np
import pytest

import unmix
from conftest import real_pixels
from unmix import MinVolume, NonNegative, SpatialSmoothness, SumToOne, UnitNorm, UnsupportedError
from unmix.datasets import make_mixture
from unmix.estimators import NMF

ON = {"extrapolate": True}
OFF = {"extrapolate": False}


def _planted(dtype=np.float64) -> np.ndarray:
    mix = make_mixture(5, spatial_shape=(30, 30), n_channels=80, snr_db=30, random_state=3)
    return np.maximum(mix.X, 0.0).astype(dtype)


@pytest.mark.parametrize("solver", ["hals", "bpp", "gradient", "admm"])
def test_accepted_objective_never_rises(solver):
    X = _planted()
    res = unmix.factorize(X, 5, solver=solver, tol=0.0, max_iter=150, solver_options=ON)
    h = np.asarray(res.history["objective"])
    assert np.all(np.diff(h) <= 1e-12 * h[:-1])
    assert np.all(res.A >= 0) and np.all(res.S >= 0)
    final = 0.5 * np.linalg.norm(X - res.A @ res.S) ** 2
    assert res.objective == pytest.approx(final, rel=1e-9)


@pytest.mark.parametrize("solver", ["hals", "bpp"])
def test_fewer_iterations_to_no_higher_objective_on_the_raman_map(solver):
    X = real_pixels("raman")
    plain = unmix.factorize(X, 3, solver=solver, max_iter=3000, random_state=0)
    fast = unmix.factorize(X, 3, solver=solver, max_iter=3000, random_state=0, solver_options=ON)
    assert fast.stop_reason == "tol" and plain.stop_reason == "tol"
    assert fast.n_iter * 3 <= plain.n_iter
    assert fast.objective <= plain.objective * (1 + 1e-4)


def test_minimum_volume_with_sum_to_one_converges_in_a_fraction_of_the_iterations():
    """The slowest fit of the constraint matrix (Raman, sum-to-one + minimum volume):
    ~190 BPP iterations to tol plain (its restart of the two dead components, 400 more,
    ended higher with them dead again and is given up); extrapolated 70, to a lower
    objective.  The start is named (SPA, the default): from the default, the plain fit's
    collapse now has a lower fit from another start kept in its place."""
    X = real_pixels("raman")
    kw = {
        "solver": "bpp",
        "init": "spa",
        "constraints": [NonNegative(), SumToOne()],
        "regularizers": [MinVolume(0.5)],
        "max_iter": 3000,
        "random_state": 0,
    }
    plain = unmix.factorize(X, 3, solver_options=OFF, **kw)
    fast = unmix.factorize(X, 3, solver_options=ON, **kw)
    assert fast.n_iter * 2 <= plain.n_iter
    assert fast.objective <= plain.objective
    np.testing.assert_allclose(fast.A.sum(axis=1), 1.0, atol=1e-9)
    h = np.asarray(fast.history["objective"])
    assert np.all(np.diff(h) <= 1e-12 * np.abs(h[:-1]))


def test_float32_stays_float32():
    X = _planted(np.float32)
    res = unmix.factorize(X, 5, solver="hals", max_iter=60, solver_options=ON)
    assert res.A.dtype == np.float32 and res.S.dtype == np.float32


def test_estimator_takes_the_option():
    X = _planted()
    est = NMF(n_components=5, solver="hals", solver_options=ON, random_state=0)
    maps = est.fit_transform(X)
    core = unmix.factorize(X, 5, solver="hals", solver_options=ON, random_state=0)
    np.testing.assert_allclose(maps, core.A, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "extra",
    [
        {"solver": "hals"},
        {"solver": "bpp", "constraints": [NonNegative(), SumToOne()]},
        {"solver": "admm", "constraints": [NonNegative(), SumToOne()]},  # duals U, V too
    ],
)
@pytest.mark.parametrize("where", ["callback", "step"])
def test_interrupt_and_resume_gives_the_uninterrupted_answer(tmp_path, monkeypatch, extra, where):
    """The extrapolation's state (beta, its ceiling, the last change) is checkpointed: an
    interrupted fit resumes to the same iterates, whether the interrupt came after an
    iteration (a callback) or inside a step (then the step, from beyond the accepted
    point, is done again)."""
    X = _planted()
    kw = {"random_state": 1, "max_iter": 40, "tol": 0, "solver_options": ON, **extra}
    ref = unmix.factorize(X, 5, **kw)
    assert ref.n_iter == 40
    path = tmp_path / "fit.ckpt.h5"
    if where == "callback":
        calls = {"n": 0}

        def interrupt(info):
            calls["n"] += 1
            if calls["n"] == 17:
                raise KeyboardInterrupt

        run = {"callback": interrupt}
    else:
        from unmix.engine.solvers import Solver

        solver_cls = type(unmix.engine.solvers.get_solver(extra["solver"]))
        original, steps = solver_cls.step, {"n": 0}

        def step(self, *args, **kwargs):
            steps["n"] += 1
            if steps["n"] == 17:
                raise KeyboardInterrupt
            return original(self, *args, **kwargs)

        monkeypatch.setattr(solver_cls, "step", step)
        assert issubclass(solver_cls, Solver)
        run = {}
    with pytest.raises(KeyboardInterrupt):
        unmix.factorize(X, 5, **kw, checkpoint=path, checkpoint_every=0, **run)
    monkeypatch.undo()
    res = unmix.factorize(X, 5, **kw, checkpoint=path, resume=True)
    np.testing.assert_array_equal(res.S, ref.S)
    np.testing.assert_array_equal(res.A, ref.A)
    np.testing.assert_array_equal(res.history["objective"], ref.history["objective"])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"solver": "hals", "solver_options": ON, "loss": "l21"},
            UnsupportedError,
            "extrapolate=True does not run loss='l21'",
        ),
        (
            {
                "solver": "admm",
                "solver_options": ON,
                "constraints": [NonNegative(), unmix.ProductBounds(upper=1e3)],
            },
            UnsupportedError,
            "solver='admm' does not extrapolate with bounds on the model",
        ),
        (
            {"solver": "hals", "solver_options": {"extrapolate": "yes"}},
            ValueError,
            "extrapolate must be True or False",
        ),
        (
            {
                "solver": "hals",
                "solver_options": ON,
                "regularizers": [unmix.SpectralSmoothing("median")],
            },
            UnsupportedError,
            r"extrapolate=True cannot be used with filters \(SpectralSmoothing\[median\]\(S\)\)",
        ),
    ],
)
def test_refusals_name_the_fix(kwargs, error, match):
    with pytest.raises(error, match=match):
        unmix.factorize(_planted(), 3, max_iter=5, **kwargs)


def test_row_constraints_on_the_endmembers_are_met_and_converge_sooner():
    """NoDips acts on whole rows of S: the extrapolated start is not projected (the step
    projects each row it updates; the projection itself cost minutes on long spectra),
    and the fit still meets the constraint: EELS ran to max_iter plain."""
    from unmix.model import NoDips
    from unmix.model._shape import dip_depths

    X = real_pixels("eels")
    kw = {"constraints": [NonNegative(target="A"), NoDips(0.005)], "random_state": 0}
    plain = unmix.factorize(X, 3, **kw)
    fast = unmix.factorize(X, 3, solver_options=ON, **kw)
    assert fast.stop_reason == "tol" and fast.n_iter * 3 <= plain.n_iter
    assert fast.objective <= plain.objective
    S = np.asarray(fast.S)
    nb = 0.5 * (S[:, :-2] + S[:, 2:])
    assert np.all(dip_depths(S) <= 0.005 * nb + 1e-9 * S.max()) and S.min() >= 0


def test_float32_steps_are_judged_beyond_the_rounding_noise():
    """float32 EELS, fractions of unit-norm pixels (the command line's --sum-to-one): the
    objective's rounding noise (~3e-3 of it) exceeds the changes near convergence, and a
    strict comparison discarded steps at random (324 iterations against plain 217)."""
    from unmix.preprocessing import NormalizePixels

    X = real_pixels("eels").astype(np.float32)
    kw = {
        "solver": "bpp",
        "constraints": [NonNegative(), SumToOne()],
        "preprocessing": [NormalizePixels("l2", weights=True)],
        "random_state": 0,
    }
    plain = unmix.factorize(X, 3, solver_options=OFF, **kw)
    fast = unmix.factorize(X, 3, solver_options=ON, **kw)
    assert fast.S.dtype == np.float32
    assert fast.n_iter * 2 <= plain.n_iter
    assert fast.objective <= plain.objective * (1 + 1e-5)


@pytest.mark.parametrize("solver", ["hals", "bpp", "gradient", "admm"])
def test_torch_input_stays_torch_and_reaches_the_numpy_objective(solver):
    torch = pytest.importorskip("torch")
    X = _planted()
    kw = {"solver": solver, "random_state": 0, "max_iter": 200, "solver_options": ON}
    ref = unmix.factorize(X, 5, **kw)
    got = unmix.factorize(torch.from_numpy(X), 5, **kw)
    assert isinstance(got.A, torch.Tensor) and got.S.dtype == torch.float64
    assert got.objective == pytest.approx(ref.objective, rel=1e-6)


SIMPLEX = [NonNegative(), SumToOne()]


@pytest.mark.parametrize(
    ("kwargs", "on"),
    [
        ({"constraints": SIMPLEX}, True),  # BPP (auto) on sum-to-one maps
        ({"constraints": SIMPLEX, "solver": "gradient"}, True),
        ({"constraints": SIMPLEX, "solver": "admm"}, True),
        ({"constraints": SIMPLEX, "solver": "gradient", "loss": "kl"}, True),
        ({}, False),  # HALS (auto), maps not on a simplex
        ({"solver": "mu"}, 50),  # from its 50th iteration, as klcd and gradient
        ({"constraints": SIMPLEX, "regularizers": [unmix.SpectralSmoothing("median")]}, False),
        ({"constraints": SIMPLEX, "loss": "l21"}, False),
        ({"regularizers": [SpatialSmoothness(0.01)]}, True),  # couples neighbouring pixels
        ({"regularizers": [unmix.GraphSmoothness(0.01)], "solver": "bpp"}, True),
        ({"regularizers": [unmix.TotalVariation(0.01)]}, True),
        ({"regularizers": [SpatialSmoothness(0.0)]}, False),  # a penalty at strength 0
        ({"regularizers": [unmix.L1(0.01)]}, False),  # pixel by pixel
        ({"regularizers": [SpatialSmoothness(0.01)], "solver": "mu"}, True),
    ],
)
def test_the_default_extrapolates_when_the_maps_sum_to_one_or_a_penalty_couples_pixels(kwargs, on):
    """No option given: the fit is the one with ``extrapolate`` set to what the default
    picks, and ``spec["extrapolated"]`` says which."""
    X = _planted()
    default = unmix.factorize(X, 3, max_iter=60, random_state=0, spatial_shape=(30, 30), **kwargs)
    assert default.spec["extrapolated"] == on and type(default.spec["extrapolated"]) is type(on)
    if kwargs.get("solver", "auto") != "mu" and "loss" not in kwargs:
        if "regularizers" in kwargs and not on:  # filters refuse the explicit option
            return
        chosen = unmix.factorize(
            X,
            3,
            max_iter=60,
            random_state=0,
            spatial_shape=(30, 30),
            solver_options={"extrapolate": on},
            **kwargs,
        )
        assert chosen.n_iter == default.n_iter
        assert chosen.objective == default.objective
        np.testing.assert_array_equal(chosen.S, default.S)


def test_the_default_sum_to_one_fit_is_not_left_on_a_slow_slope():
    """Issue 10's constraint matrix: Raman, sum-to-one + minimum volume.  The plain
    iteration runs to max_iter 9 % above the extrapolated fit, which was not the default;
    now the default fit is the extrapolated one."""
    X = real_pixels("raman")
    cons, regs = SIMPLEX, [MinVolume(0.5, scale="residual")]  # the matrix's set
    kw = {"constraints": cons, "regularizers": regs, "random_state": 0}
    default = unmix.factorize(X, 3, **kw)
    plain = unmix.factorize(X, 3, solver_options=OFF, **kw)
    assert plain.stop_reason == "max_iter"
    assert default.stop_reason == "tol" and default.spec["solver"] == "bpp"
    assert default.objective <= 0.95 * plain.objective


@pytest.mark.parametrize("extra", [{"loss": "kl"}, {"link": "logistic"}])
def test_a_step_that_reports_the_old_fit_is_judged_at_its_new_point(extra):
    """The gradient solver's divergence and link steps report the fit at the previous
    maps; extrapolated, the loop evaluates each at its new point, so the recorded
    objective is that of the returned factors and never rises."""
    X = _planted()
    if "link" in extra:
        X = (X > np.median(X)).astype(float)
    kw = {"solver": "gradient", "max_iter": 60, "tol": 0.0, "random_state": 0, **extra}
    res = unmix.factorize(X, 3, solver_options=ON, **kw)
    assert res.spec["extrapolated"] is True
    h = np.asarray(res.history["objective"])
    assert np.all(np.diff(h) <= 1e-9 * np.abs(h[:-1]))
    plain = unmix.factorize(X, 3, solver_options=OFF, **kw)
    assert res.objective <= plain.objective * (1 + 1e-9)


def test_kl_with_sum_to_one_is_not_left_on_a_slow_slope():
    """Issue 10's matrix, KL + sum-to-one on the raw Raman map (the gradient solver, the
    only one that fits it): the plain iteration ran to max_iter at an objective 48 %
    above the extrapolated fit, which now is the default."""
    X = real_pixels("raman")
    kw = {"loss": "kl", "constraints": SIMPLEX, "random_state": 0}
    default = unmix.factorize(X, 3, **kw)
    assert default.spec["solver"] == "gradient" and default.stop_reason == "tol"
    plain = unmix.factorize(X, 3, solver_options=OFF, max_iter=100, **kw)
    assert default.objective <= 0.8 * plain.objective


def test_float32_kl_does_not_climb_within_the_rounding_noise():
    """float32 KL + sum-to-one on the XRD map: with the noise of a Frobenius objective
    (``||X||^2`` scale, far above a KL objective's), every extrapolated step was "within
    the noise" and the objective climbed 2 % in 60 steps; now it ends below the plain
    iteration's and no kept step rises by more than float32 rounding."""
    X = real_pixels("xrd").astype(np.float32)
    kw = {"loss": "kl", "constraints": SIMPLEX, "random_state": 0}
    fast = unmix.factorize(X, 3, **kw)
    plain = unmix.factorize(X, 3, solver_options=OFF, **kw)
    assert fast.spec["extrapolated"] and fast.stop_reason == "tol"
    assert fast.objective <= plain.objective * (1 + 1e-5)
    h = np.asarray(fast.history["objective"])
    assert np.max(np.diff(h) / np.abs(h[:-1])) <= 1e-4


def _counts() -> np.ndarray:
    mix = make_mixture(
        4, spatial_shape=(20, 20), n_channels=50, noise="poisson", scale=30.0, random_state=5
    )
    return mix.X


@pytest.mark.parametrize(
    ("solver", "loss"),
    [
        ("klcd", "kl"),
        ("gradient", "kl"),
        ("gradient", "frobenius"),
        ("mu", "kl"),
        ("mu", "frobenius"),
    ],
)
def test_slow_solvers_extrapolate_by_default_from_iteration_50(solver, loss):
    """``solver="klcd"``, ``"gradient"`` and ``"mu"`` left to the default: plain for their first 49
    iterations (the same iterates as ``extrapolate=False``), extrapolated from the 50th,
    never above the plain fit; ``spec["extrapolated"]`` is that iteration."""
    if solver == "klcd":
        pytest.importorskip("numba")
    X = _counts()
    kw = {"loss": loss, "solver": solver, "random_state": 0, "tol": 0, "max_iter": 120}
    default = unmix.factorize(X, 4, **kw)
    plain = unmix.factorize(X, 4, **kw, solver_options=OFF)
    assert default.spec["extrapolated"] == 50 and plain.spec["extrapolated"] is False
    h, hp = default.history["objective"], plain.history["objective"]
    np.testing.assert_array_equal(h[:50], hp[:50])
    assert not np.array_equal(h[50:], hp[50:])
    assert np.all(np.diff(h) <= 1e-12 * h[:-1])
    assert default.objective <= plain.objective
    short = unmix.factorize(X, 4, **{**kw, "max_iter": 40})
    np.testing.assert_array_equal(
        short.S, unmix.factorize(X, 4, **{**kw, "max_iter": 40}, solver_options=OFF).S
    )


@pytest.mark.parametrize("stop_at", [30, 70])
def test_kl_default_resumes_across_the_switch(tmp_path, stop_at):
    """Interrupted before or after iteration 50, the fit resumes to the uninterrupted
    iterates (the extrapolation starts, or goes on, where it would have)."""
    pytest.importorskip("numba")
    X = _counts()
    kw = {"loss": "kl", "solver": "klcd", "random_state": 0, "tol": 0, "max_iter": 90}
    ref = unmix.factorize(X, 4, **kw)
    assert ref.spec["extrapolated"] == 50
    calls = {"n": 0}

    def interrupt(info):
        calls["n"] += 1
        if calls["n"] == stop_at:
            raise KeyboardInterrupt

    path = tmp_path / "fit.ckpt.h5"
    with pytest.raises(KeyboardInterrupt):
        unmix.factorize(X, 4, **kw, checkpoint=path, checkpoint_every=0, callback=interrupt)
    res = unmix.factorize(X, 4, **kw, checkpoint=path, resume=True)
    np.testing.assert_array_equal(res.S, ref.S)
    np.testing.assert_array_equal(res.history["objective"], ref.history["objective"])


def test_extrapolated_gradient_fit_keeps_unit_norm_endmembers():
    """The gradient solver's line search may leave a row where it was; an extrapolated
    endmember is therefore projected before the step (it was not: XRD k 6 + L1, unit-norm
    rows ended with norms up to 1.21)."""
    X = real_pixels("xrd")
    m = float(np.mean(np.linalg.norm(X, axis=1)))
    kw = {
        "constraints": [NonNegative(), unmix.UnitNorm()],
        "regularizers": [unmix.L1(0.05 * m)],
        "solver": "gradient",
        "random_state": 0,
        "max_iter": 80,
        "solver_options": ON,
    }
    r = unmix.factorize(X, 6, **kw)
    np.testing.assert_allclose(np.linalg.norm(r.S, axis=1), 1.0, atol=1e-9)


def _xrd_graph_smoothness(**extra) -> dict:
    """``unmix run xrd --shape 11x13 --graph-smooth 0.01``'s model, as keywords."""
    return {
        "constraints": [NonNegative(), UnitNorm()],
        "regularizers": [unmix.GraphSmoothness(0.01)],
        "spatial_shape": (11, 13),
        "random_state": 0,
        **extra,
    }


@pytest.mark.parametrize("solver", ["hals", "bpp", "admm"])
def test_smoothness_on_the_data_graph_is_not_left_on_a_slow_slope(solver):
    """``unmix run xrd --shape 11x13 --graph-smooth 0.01`` (unit-norm endmembers): the
    plain iteration, whose map steps majorize the graph Laplacian by its diagonal, ran to
    max_iter 500 about 33 % above the fit's minimum (HALS 124,170 against 93,300);
    extrapolated by default, it stops by tol within 0.1 % of it."""
    X, kw = real_pixels("xrd"), _xrd_graph_smoothness(solver=solver)
    default = unmix.factorize(X, 3, **kw)
    assert default.spec["extrapolated"] is True and default.stop_reason == "tol"
    best = unmix.factorize(X, 3, tol=0.0, max_iter=1500, solver_options=ON, **kw)
    assert default.objective <= best.objective * (1 + 1e-3)


def test_float32_does_not_stop_on_a_steady_descent_within_the_rounding_noise():
    """float32 XRD with smoothness on the data graph, extrapolated: each iteration fell
    by ~180, under the Frobenius objective's noise bound (207), with the endmembers
    moving little, and three in a row stopped the fit at iteration 58, 33 % above float64's
    fit.  Changes within the noise now count only while they add up to less than it."""
    X, kw = real_pixels("xrd"), _xrd_graph_smoothness(solver_options=ON)
    f64 = unmix.factorize(X, 3, **kw)
    f32 = unmix.factorize(X.astype(np.float32), 3, **kw)
    assert f32.S.dtype == np.float32 and f32.stop_reason == "tol"
    assert f32.objective <= f64.objective * (1 + 1e-3)


@pytest.mark.parametrize("sparse", [False, True])
def test_mu_extrapolates_logarithms_and_judges_kl_at_the_new_point(sparse):
    """MU extrapolated (its factors' logarithms) from the first iteration: the accepted
    objective never rises, ends below the plain iteration's, and the recorded KL is that
    of the returned factors (judged by KL-CD's kernels on dense and CSR blocks)."""
    pytest.importorskip("numba")
    sp = pytest.importorskip("scipy.sparse")
    X = _counts()
    kw = {"loss": "kl", "solver": "mu", "random_state": 0, "tol": 0, "max_iter": 80}
    res = unmix.factorize(sp.csr_array(X) if sparse else X, 4, solver_options=ON, **kw)
    assert res.spec["extrapolated"] is True
    h = np.asarray(res.history["objective"])
    assert np.all(np.diff(h) <= 1e-12 * h[:-1])
    M = np.asarray(res.A) @ np.asarray(res.S)
    pos = X > 0
    kl = float(np.sum(X[pos] * np.log(X[pos] / M[pos])) - X.sum() + M.sum())
    assert res.objective == pytest.approx(kl, rel=1e-9)
    plain = unmix.factorize(X, 4, solver_options=OFF, **kw)
    assert res.objective < plain.objective
