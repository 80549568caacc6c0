"""Orthogonal NMF (issue 12, item 1): ``MaxActive(1, target="S")`` keeps one endmember
per channel, so the rows of ``S`` are orthogonal (``S S^T`` diagonal), ``A, S >= 0``."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import unmix
from conftest import shared_path

ONMF = [unmix.NonNegative(), unmix.MaxActive(1, target="S")]


def _offdiag(S):
    """The largest normalized off-diagonal entry of ``S S^T``."""
    S = np.asarray(S, dtype=float)
    n = np.linalg.norm(S, axis=1)
    C = (S @ S.T) / np.outer(n, n)
    return float(np.max(np.abs(C - np.diag(np.diag(C)))))


@pytest.fixture(scope="module")
def planted():
    """Endmembers with disjoint channel supports (orthogonal), gamma maps, small noise."""
    rng = np.random.default_rng(0)
    k, m, n = 3, 60, 400
    S = np.zeros((k, m))
    S[rng.integers(0, k, m), np.arange(m)] = rng.gamma(2.0, size=m)
    A = rng.gamma(1.0, size=(n, k))
    return A @ S + 0.01 * rng.random((n, m)), A, S


def test_exact_anls_recovers_disjoint_supports_monotonically(planted):
    X, _, S_true = planted
    r = unmix.factorize(X, 3, constraints=ONMF, random_state=0)
    assert r.spec["solver"] == "bpp"
    S = np.asarray(r.S)
    assert _offdiag(S) == pytest.approx(0.0, abs=1e-12)
    assert np.all(S >= 0) and np.all(np.asarray(r.A) >= 0)
    cos = (S / np.linalg.norm(S, axis=1, keepdims=True)) @ (
        S_true / np.linalg.norm(S_true, axis=1, keepdims=True)
    ).T
    rows, cols = linear_sum_assignment(-cos)
    assert np.all(cos[rows, cols] > 0.999)
    h = r.history["objective"]
    assert np.all(np.diff(h) <= 1e-9 * abs(h[0]))


def test_each_channel_subproblem_is_solved_exactly():
    rng = np.random.default_rng(1)
    A = rng.gamma(1.0, size=(50, 3))
    X = rng.gamma(1.0, size=(50, 8))
    ctx = unmix.model.BindContext(
        n_pixels=50, n_channels=8, k=3, backend=unmix._backend.backend_of(A)
    )
    c = unmix.MaxActive(1, target="S").bind(ctx)
    sol = np.asarray(c.solve_rows(A.T @ A, (A.T @ X).T)).T  # (k, channels)
    for j in range(8):  # brute force: the best single endmember for channel j
        best = min(
            (np.sum((X[:, j] - A[:, i] * max(A[:, i] @ X[:, j], 0) / (A[:, i] @ A[:, i])) ** 2), i)
            for i in range(3)
        )
        fit = np.sum((X[:, j] - A @ sol[:, j]) ** 2)
        assert fit == pytest.approx(best[0], rel=1e-10)
        assert np.count_nonzero(sol[:, j]) <= 1


@pytest.mark.parametrize("solver", ["admm", "gradient"])
def test_projecting_solvers_keep_the_rows_orthogonal(planted, solver):
    X, _, _ = planted
    r = unmix.factorize(X, 3, constraints=ONMF, solver=solver, random_state=0, max_iter=50)
    assert _offdiag(r.S) == pytest.approx(0.0, abs=1e-12)
    assert np.all(np.asarray(r.S) >= 0)


@pytest.mark.parametrize("solver", ["hals", "mu"])
def test_column_sweeps_refuse_it_naming_the_solvers_that_can(planted, solver):
    X, _, _ = planted
    with pytest.raises(unmix.UnsupportedError, match="bpp"):
        unmix.factorize(X, 3, constraints=ONMF, solver=solver, max_iter=2)


def test_float32_stays_float32(planted):
    X, _, _ = planted
    r = unmix.factorize(X.astype(np.float32), 3, constraints=ONMF, random_state=0)
    assert np.asarray(r.S).dtype == np.float32 and np.asarray(r.A).dtype == np.float32


def test_orthogonal_with_nonnegative_endmembers_points_to_orthogonal_nmf(planted):
    X, _, _ = planted
    with pytest.raises(ValueError, match=r"MaxActive\(1, target='S'\)"):
        unmix.factorize(X, 3, constraints=[unmix.NonNegative(), unmix.Orthogonal()])


def test_saved_and_reloaded(planted, tmp_path):
    X, _, _ = planted
    r = unmix.factorize(X, 3, constraints=ONMF, random_state=0)
    back = unmix.load_result(r.save(tmp_path / "r.h5"))
    assert any(isinstance(t, unmix.MaxActive) and t.target == "S" and t.m == 1 for t in back.terms)


def test_eels_map_fits_within_1_2x_plain_nmf_with_orthogonal_endmembers():
    path = shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy")
    X = np.asarray(unmix.io.load(path).unfold(), dtype=float)
    plain = unmix.factorize(X, 3, random_state=0)
    onmf = unmix.factorize(X, 3, constraints=ONMF, random_state=0)
    err = [np.linalg.norm(X - np.asarray(r.A) @ np.asarray(r.S)) for r in (plain, onmf)]
    assert err[1] <= 1.2 * err[0]
    assert _offdiag(onmf.S) <= 0.05
    A = np.asarray(onmf.A)
    assert np.min(A.mean(axis=0) / A.mean()) > 0.01  # no collapsed component
    assert all(np.count_nonzero(s) >= 5 for s in np.asarray(onmf.S))


def test_orthogonal_flag_from_the_command_line(planted, tmp_path):
    from unmix.cli import entry

    X, _, _ = planted
    path = tmp_path / "scan.npy"
    np.save(path, X.reshape(20, 20, 60))
    out = tmp_path / "out"
    args = ["run", str(path), "-k", "3", "--orthogonal", "--seed", "0", "-q", "--no-report"]
    assert entry([*args, "-o", str(out)]) == 0
    res = unmix.load_result(str(out / "result.h5"))
    assert _offdiag(res.S) == pytest.approx(0.0, abs=1e-12)
    assert res.spec["solver"] == "bpp"


def test_float32_fit_stops_once_changes_are_rounding_noise_and_the_endmembers_settle():
    """In float32 the EELS objective moves by ~1e-4 relative from rounding alone (above
    tol 1e-5): the fit stops when the endmembers settle, at the float64 fit's objective."""
    path = shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy")
    X = np.asarray(unmix.io.load(path).unfold())
    r32 = unmix.factorize(X.astype(np.float32), 3, constraints=ONMF, random_state=0)
    r64 = unmix.factorize(X.astype(np.float64), 3, constraints=ONMF, random_state=0)
    assert r32.stop_reason == "tol" and r32.n_iter < 50
    assert r32.objective == pytest.approx(r64.objective, rel=1e-4)


def test_stm_grid_keeps_every_component_from_the_default_start(tmp_path):
    """``--orthogonal`` on the STM grid (the README's derivative and clip steps): the
    first NNDSVDa endmember (the mean spectrum) took every channel and components 1 and 2
    collapsed for good ("try k=1", 1.09x plain NMF's error); the start's endmembers now
    share one scale before the projection, and the fit is within 1.05x."""
    from unmix.cli import entry

    path = shared_path("stm", "Bias_spectroscopy.3ds")
    steps = ["--step", '{op="derivative"}', "--step", '{op="clip", lower=0.0}']
    args = ["run", path, "-k", "3", *steps, "--seed", "0", "-q", "--no-report"]
    assert entry([*args, "--orthogonal", "-o", str(tmp_path / "o")]) == 0
    res = unmix.load_result(str(tmp_path / "o"))
    assert res.spec["diagnostics"]["collapsed"] == []
    assert all(np.count_nonzero(s) >= 5 for s in np.asarray(res.S))
    assert entry([*args, "-o", str(tmp_path / "p")]) == 0
    plain = unmix.load_result(str(tmp_path / "p"))
    assert res.objective <= 1.05**2 * plain.objective  # relative error within 1.05x


@pytest.mark.parametrize("name", ["eels", "raman"])
def test_orthogonal_with_sum_to_one_keeps_every_band_from_the_default_start(name):
    """``unmix run -k 3 --orthogonal --sum-to-one`` (unit-norm pixels weighted by their
    norms) on the EELS and Raman maps: from the pure pixels of SPA (and VCA), alike, the
    per-channel choice gave every channel to two endmembers and the third collapsed for
    good (EELS: objective 1.0897 against 0.77 for three bands).  Orthogonal endmembers
    now start from NNDSVDa's balanced bands, each the mean spectrum over its channels."""
    from conftest import real_pixels

    X = real_pixels(name)
    cons = [unmix.NonNegative(), unmix.SumToOne(), unmix.MaxActive(1, target="S")]
    pre = [unmix.NormalizePixels("l2", weights=True)]
    r = unmix.factorize(X, 3, constraints=cons, preprocessing=pre, random_state=0)
    assert r.spec["init"] == "nndsvda"
    assert r.spec["diagnostics"]["collapsed"] == []
    S = np.asarray(r.S)
    assert all(np.count_nonzero(s) >= 5 for s in S)
    assert _offdiag(S) == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(np.asarray(r.A).sum(axis=1), 1.0, atol=1e-9)
    if name == "eels":
        assert r.objective < 0.8  # the collapsed fit: 1.0897
