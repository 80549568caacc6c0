"""Nearly orthogonal endmembers (``Orthogonality(max_cosine)``): a bound on the cosine
between any two endmembers, held by a penalty that grows each time the fit converges with
the bound unmet (issue 12, item 1: on the XRD map at k 6 exact orthogonal NMF is
1.6-1.75x plain NMF's error from every start)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import unmix
from conftest import real_pixels

BOUND = 0.05


def largest_cosine(S) -> float:
    S = np.asarray(S, dtype=float)
    U = S / np.linalg.norm(S, axis=1, keepdims=True)
    C = U @ U.T
    np.fill_diagonal(C, 0.0)
    return float(C.max())


def rel_error(X, r) -> float:
    return float(np.linalg.norm(X - np.asarray(r.A) @ np.asarray(r.S)) / np.linalg.norm(X))


def nearly_orthogonal(X, k, **kw):
    terms = {"constraints": [unmix.NonNegative()], "regularizers": [unmix.Orthogonality()]}
    return unmix.factorize(X, k, random_state=0, **terms, **kw)


@pytest.mark.parametrize(("name", "k", "ratio"), [("xrd", 6, 1.2), ("eels", 3, 1.01)])
def test_real_maps_meet_the_bound_close_to_plain_nmf(name, k, ratio):
    """XRD k 6: 1.10x plain NMF's relative error at cosines <= 0.05 (exact orthogonal NMF
    1.6-1.75x); EELS k 3: 1.002x (exact 1.10x)."""
    X = real_pixels(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # XRD k 6: one weak component
        r = nearly_orthogonal(X, k)
    plain = unmix.factorize(X, k, random_state=0)
    assert r.stop_reason == "tol"
    assert largest_cosine(r.S) <= BOUND * (1 + 1e-3) + 1e-12
    assert largest_cosine(plain.S) > 0.5  # the bound is not met by the plain fit itself
    assert rel_error(X, r) <= ratio * rel_error(X, plain)
    assert r.spec["max_iter"] == 5000  # the default for a penalty that tightens


def test_the_strength_starts_at_zero_and_grows_only_while_the_bound_is_unmet(mixture):
    r = nearly_orthogonal(mixture.X, 3)
    pen = np.asarray(r.history["Orthogonality(S)"])  # the penalty's value each iteration
    assert largest_cosine(r.S) <= BOUND * (1 + 1e-3) + 1e-12
    term = unmix.Orthogonality()
    assert term.lam == 1e-3 and term.growth == 4.0 and term.max_cosine == BOUND
    assert pen.size == 0 or pen[0] == 0.0  # the path starts at the plain fit
    assert np.all(np.asarray(r.S) >= 0) and np.all(np.asarray(r.A) >= 0)


def test_the_objective_falls_at_every_strength(mixture):
    """The objective rises only where the strength grows (a jump of the penalty), and
    falls (to rounding) at every iteration in between."""
    X = mixture.X
    r = nearly_orthogonal(X, 3, solver="hals")
    obj = np.asarray(r.history["objective"])
    fit = np.asarray(r.history["fit"])
    pen = obj - fit
    rises = np.flatnonzero(np.diff(obj) > 1e-9 * np.abs(obj[1:]))
    # each rise is a step where the penalty's value jumped with the strength
    assert all(pen[i + 1] > pen[i] for i in rises)
    assert len(rises) < 30


@pytest.mark.parametrize("solver", ["hals", "gradient", "admm"])
def test_every_solver_that_takes_it_meets_the_bound(mixture, solver):
    r = nearly_orthogonal(mixture.X, 3, solver=solver)
    assert largest_cosine(r.S) <= BOUND * (1 + 1e-3) + 1e-12
    assert r.stop_reason == "tol"


def test_float32_stays_float32(mixture):
    r = nearly_orthogonal(mixture.X.astype(np.float32), 3)
    assert np.asarray(r.A).dtype == np.float32 and np.asarray(r.S).dtype == np.float32
    assert largest_cosine(r.S) <= BOUND * 1.01


def test_max_iter_too_small_says_the_bound_is_unmet(mixture):
    with pytest.warns(RuntimeWarning, match=r"Orthogonality: two endmembers still have"):
        nearly_orthogonal(mixture.X, 3, max_iter=20)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match=r"max_cosine must be in \[0, 1\)"):
        unmix.Orthogonality(max_cosine=1.0)
    with pytest.raises(ValueError, match="growth"):
        unmix.Orthogonality(growth=1.0)


def test_a_fit_resumed_mid_path_ends_where_the_uninterrupted_one_does(mixture, tmp_path):
    """The strength reached is checkpointed: resumed after it grew, the fit goes on from
    that strength, not from 0."""
    X = mixture.X
    ref = nearly_orthogonal(X, 3)
    at = ref.n_iter // 2
    path = tmp_path / "fit.ckpt.h5"
    calls = {"n": 0}

    def interrupt(info):
        calls["n"] += 1
        if calls["n"] == at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        nearly_orthogonal(X, 3, checkpoint=path, checkpoint_every=0, callback=interrupt)
    res = nearly_orthogonal(X, 3, checkpoint=path, resume=True)
    assert res.n_iter == ref.n_iter
    assert res.objective == pytest.approx(ref.objective, rel=1e-12)
    np.testing.assert_allclose(res.S, ref.S, rtol=1e-10, atol=1e-12)


def test_the_command_line_takes_a_bound_and_alone_stays_exact(tmp_path):
    from unmix.cli import entry

    X = unmix.datasets.make_mixture(3, spatial_shape=(12, 10), n_channels=30, random_state=0).X
    path = tmp_path / "scan.npy"
    np.save(path, np.clip(X, 0, None).reshape(12, 10, 30))
    args = ["run", str(path), "-k", "3", "--seed", "0", "-q", "--no-report"]
    assert entry([*args, "--orthogonal", "0.05", "-o", str(tmp_path / "near")]) == 0
    near = unmix.load_result(str(tmp_path / "near" / "result.h5"))
    regs = near.spec["penalties"]
    assert any(t["type"] == "Orthogonality" and t["max_cosine"] == 0.05 for t in regs)
    assert largest_cosine(near.S) <= BOUND * (1 + 1e-3) + 1e-12
    assert entry([*args, "--orthogonal", "-o", str(tmp_path / "exact")]) == 0
    exact = unmix.load_result(str(tmp_path / "exact" / "result.h5"))
    assert largest_cosine(exact.S) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("flags", "length"), [(["--orthogonal", "0.05"], 5000), ([], 500)])
def test_the_progress_bar_runs_to_the_fits_max_iter(tmp_path, monkeypatch, flags, length):
    """The CLI's bar is as long as the fit may run: 5000 iterations for a bound that
    tightens (it was 500, and a fit of 1,000 iterations ran past its end)."""
    import unmix.cli._common as common
    from unmix.cli import entry

    seen = []
    bar = common.progress_bar

    def recorded(max_iter, quiet):
        seen.append(max_iter)
        return bar(max_iter, quiet)

    monkeypatch.setattr(common, "progress_bar", recorded)
    X = unmix.datasets.make_mixture(3, spatial_shape=(12, 10), n_channels=30, random_state=0).X
    path = tmp_path / "scan.npy"
    np.save(path, np.clip(X, 0, None).reshape(12, 10, 30))
    out = tmp_path / "out"
    assert entry(["run", str(path), "-k", "3", "--no-report", "-o", str(out), *flags]) == 0
    assert seen == [length] == [unmix.load_result(str(out / "result.h5")).spec["max_iter"]]
    assert unmix.engine.default_max_iter([unmix.Orthogonality()] if flags else []) == length
    assert unmix.engine.default_max_iter([unmix.Orthogonality(lam=0)]) == 500  # holds nothing


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_dying_endmember_does_not_overflow_the_penalty(dtype):
    """EELS, k 3, sum-to-one maps and nearly orthogonal endmembers: one endmember dies
    (every pixel holds the background, which orthogonal vertices cannot share).  Its
    cosines' gradient was divided by its vanishing norm: "overflow encountered in
    multiply" and the strength grown to 1e16; rows below 1e-3 of the largest norm are now
    normalized by that floor, and the death is reported as a collapse."""
    cube = unmix.datasets.load_cuzn_eels()["data"]
    X = cube.reshape(-1, cube.shape[-1]).astype(dtype)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = unmix.factorize(
            X,
            3,
            constraints=[unmix.NonNegative(), unmix.SumToOne()],
            regularizers=[unmix.Orthogonality()],
            random_state=0,
        )
    said = [str(w.message) for w in caught]
    assert not [m for m in said if "overflow" in m or "invalid value" in m], said
    assert np.all(np.isfinite(np.asarray(r.S))) and r.S.dtype == dtype
    assert r.spec["diagnostics"]["collapsed"] and any("collapsed" in m for m in said)
    live = [j for j in range(3) if j not in r.spec["diagnostics"]["collapsed"]]
    assert largest_cosine(np.asarray(r.S)[live]) <= BOUND * (1 + 1e-3) + 1e-12
