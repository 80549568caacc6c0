"""Shape constraints on the endmembers: ``NoDips`` and ``Unimodal`` (issue 12, item 7).

Noise level of a dip (the acceptance's yardstick, independent of the constraint): sigma,
the data's per-channel noise, is the median over pixels of the robust MAD of a pixel's
second differences over sqrt(6) (white noise); one measured spectrum's dip statistic
``(x[c-1] + x[c+1]) / 2 - x[c]`` then has noise sqrt(1.5) sigma, and component ``j``
enters pixel ``i`` as ``a_ij s_j``: a dip of ``s_j`` below ``sqrt(1.5) sigma / max_i a_ij``
is below the noise in every pixel's spectrum.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

import unmix
from conftest import shared_path
from unmix._backend import backend_of
from unmix.cli import entry
from unmix.cli._config import build_term
from unmix.model import BindContext, NoDips, NonNegative, Unimodal
from unmix.model._shape import dip_depths, project_unimodal

RAMAN = ("raman", "raman_renishaw_streamline_49x45.npz")


def bound(term, m: int = 12, k: int = 3, signal_shape=None):
    ctx = BindContext(
        n_pixels=10, n_channels=m, k=k, backend=backend_of(np.zeros(1)), signal_shape=signal_shape
    )
    return term.bind(ctx)


def relative_excess(S: np.ndarray, depth: float) -> float:
    """The largest violation of ``NoDips(depth)`` in ``S`` (<= 0 where met)."""
    nb = 0.5 * (S[:, :-2] + S[:, 2:])
    return float(max((nb - S[:, 1:-1] - depth * nb).max(), -S.min()))


def peaks(n: int = 120, m: int = 60, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grid = np.arange(m)
    S = np.stack([np.exp(-0.5 * ((grid - c) / w) ** 2) for c, w in ((15, 4), (30, 6), (45, 3))])
    return rng.random((n, 3)) @ (S + 0.1) + 0.01 * rng.standard_normal((n, m))


@pytest.mark.parametrize("depth", [0.01, 0.2, 1.0])
def test_no_dips_projection_is_feasible_idempotent_and_the_nearest_point(depth):
    c = bound(NoDips(depth))
    V = np.random.default_rng(1).normal(size=(3, 12))
    P = c.project(V)
    assert relative_excess(P, depth) <= 1e-12 and P.min() >= 0
    np.testing.assert_array_equal(c.project(P), P)
    for v, p in zip(V, P, strict=True):  # SLSQP on the same QP, independent of unmix
        cons = [
            {"type": "ineq", "fun": lambda s: s[1:-1] - (1 - depth) * 0.5 * (s[:-2] + s[2:])},
            {"type": "ineq", "fun": lambda s: s},
        ]
        ref = minimize(
            lambda s, v=v: 0.5 * np.sum((s - v) ** 2), np.ones(12), jac=lambda s, v=v: s - v,
            constraints=cons, method="SLSQP", options={"ftol": 1e-15, "maxiter": 500},
        )  # fmt: skip
        np.testing.assert_allclose(p, ref.x, atol=1e-6)


def test_no_dips_is_scale_free_and_fast_on_long_rows():
    c = bound(NoDips(), m=394)
    V = np.random.default_rng(2).normal(size=(3, 394)) + 1.0
    P = c.project(V)
    np.testing.assert_allclose(c.project(7.0 * V), 7.0 * P, rtol=1e-9, atol=1e-12)
    assert relative_excess(P, NoDips().depth) <= 1e-10


def test_unimodal_projection_is_the_best_unimodal_fit():
    rng = np.random.default_rng(3)
    for _ in range(20):
        v = rng.normal(size=7)
        p = project_unimodal(v)
        t = int(np.argmax(p))
        assert np.all(np.diff(p[: t + 1]) >= 0) and np.all(np.diff(p[t:]) <= 0) and p.min() >= 0
        best = np.inf  # brute force: every mode, each side by SciPy's SLSQP
        for mode in range(7):
            cons = [{"type": "ineq", "fun": lambda s, m=mode: np.diff(s[: m + 1])},
                    {"type": "ineq", "fun": lambda s, m=mode: -np.diff(s[m:])},
                    {"type": "ineq", "fun": lambda s: s}]  # fmt: skip
            r = minimize(lambda s, v=v: 0.5 * np.sum((s - v) ** 2), np.full(7, 0.5),
                         constraints=cons, method="SLSQP", options={"ftol": 1e-14})  # fmt: skip
            best = min(best, r.fun)
        assert 0.5 * np.sum((p - v) ** 2) <= best + 1e-7


@pytest.mark.parametrize("term", [NoDips(), Unimodal()])
def test_refuses_the_maps_2d_patterns_and_bad_depths(term):
    with pytest.raises(ValueError, match=r"target must be one of \('S',\)"):
        type(term)(target="A")
    with pytest.raises(ValueError, match="acts along one spectral axis"):
        bound(term, m=16, signal_shape=(4, 4))


@pytest.mark.parametrize("depth", [0.0, -0.1, 1.5, True, "a"])
def test_depth_must_be_in_zero_one(depth):
    with pytest.raises(ValueError, match=r"depth must be a number in \(0, 1\]"):
        NoDips(depth)


@pytest.mark.parametrize("term", [NoDips(0.01), Unimodal()])
def test_fit_is_monotone_feasible_and_float32_stays_float32(term):
    cons = [NonNegative(target="A"), term]
    r = unmix.factorize(peaks(), 3, constraints=cons, random_state=0)
    assert r.spec["solver"] == "hals"
    obj = np.asarray(r.history["objective"][1:])
    assert np.all(np.diff(obj) <= 1e-9 * obj[0])
    np.testing.assert_allclose(bound(term, m=60).project(r.S), r.S, atol=1e-9 * float(r.S.max()))
    r32 = unmix.factorize(peaks().astype(np.float32), 3, constraints=cons, random_state=0)
    assert r32.S.dtype == np.float32 and r32.A.dtype == np.float32


def test_unsupported_solver_names_those_that_take_it():
    with pytest.raises(unmix.UnsupportedError, match=r"NoDips on S; solvers that do: .*'hals'"):
        unmix.factorize(peaks(), 3, solver="mu", constraints=[NonNegative(target="A"), NoDips()])


def test_save_load_toml_and_cli(tmp_path):
    assert build_term({"type": "NoDips", "depth": 0.02}) == NoDips(0.02)
    assert build_term({"type": "Unimodal"}) == Unimodal()
    path = tmp_path / "x.npy"
    np.save(path, peaks(n=64).reshape(8, 8, -1))
    for flags, spec in ((["--no-dips"], {"type": "NoDips", "depth": 0.005, "target": "S"}),
                        (["--no-dips", "0.1"], {"type": "NoDips", "depth": 0.1, "target": "S"}),
                        (["--unimodal"], {"type": "Unimodal", "target": "S"})):  # fmt: skip
        out = tmp_path / "out"
        args = [
            "run",
            str(path),
            "-k",
            "3",
            *flags,
            "-o",
            str(out),
            "-q",
            "--no-report",
            "--force",
        ]
        assert entry(args) == 0
        res = unmix.load_result(str(out / "result.h5"))
        assert spec in res.spec["constraints"]
        assert {"type": "NonNegative", "target": "S"} not in res.spec["constraints"]


# ------------------------------------------------------------- Raman acceptance
def noise_levels(X: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Per component: the dip below the noise of every pixel's spectrum (module doc)."""
    d2 = X[:, :-2] - 2 * X[:, 1:-1] + X[:, 2:]
    mad = 1.4826 * np.median(np.abs(d2 - np.median(d2, axis=1, keepdims=True)), axis=1)
    sigma = float(np.median(mad)) / np.sqrt(6)
    return np.sqrt(1.5) * sigma / A.max(axis=0)


@pytest.fixture(scope="module")
def raman():
    X = np.asarray(unmix.io.load(shared_path(*RAMAN)).data, dtype=np.float64)
    X = X.reshape(-1, X.shape[-1])
    plain = unmix.factorize(X, 3, random_state=0)
    cons = [NonNegative(target="A"), NoDips(0.02)]
    shaped = unmix.factorize(X, 3, constraints=cons, random_state=0)
    return X, plain, shaped


def deepest(X, r) -> np.ndarray:
    return dip_depths(r.S).max(axis=1) / noise_levels(X, r.A)


def test_raman_no_dips_halves_the_deepest_dip_within_1_1x(raman):
    X, plain, shaped = raman
    assert deepest(X, plain).max() > 10  # plain NMF: dips far above the noise
    assert deepest(X, shaped).max() <= 0.5 * deepest(X, plain).max()
    assert shaped.objective <= 1.1 * plain.objective


@pytest.mark.xfail(
    strict=True,
    reason="not met: at <= 1.1x the objective (depth 0.02) the deepest dips are 9-42x the "
    "noise (the feet of the sharp Raman peaks curve up); depth 0.001 costs 1.78x and "
    "still leaves 2.4x the noise (benchmarks/results/models.md, Spectral shape)",
)
def test_raman_no_dip_deeper_than_the_noise_at_1_1x(raman):
    X, plain, shaped = raman
    assert np.all(deepest(X, plain) > 1)
    assert np.all(deepest(X, shaped) <= 1)
    assert shaped.objective <= 1.1 * plain.objective


def test_no_dips_projection_converges_where_block_pivoting_cycles(caplog):
    """``unmix run --no-dips`` on the EDS TEM JEOL map (cropped to 0.2-12 keV, 295
    channels, k 3): block principal pivoting cycled on two rows (13-23 infeasible
    variables after 610 pivots), logged "stopped before it converged" and returned dips
    0.28 and 0.12 deep; Lawson & Hanson on the same dual now finishes the projection."""
    d = np.load(shared_path("eds", "eds_tem_jeol_64x64_ds8.npz"))
    keep = (d["axis"] >= 0.2) & (d["axis"] <= 12)
    X = d["data"].reshape(-1, d["data"].shape[-1])[:, keep].astype(np.float32)
    with caplog.at_level("WARNING"):
        r = unmix.factorize(X, 3, constraints=[NonNegative(target="A"), NoDips()], random_state=0)
    assert "stopped before it converged" not in caplog.text
    S = np.asarray(r.S, dtype=np.float64)
    mean = 0.5 * (S[:, :-2] + S[:, 2:])
    assert np.all(dip_depths(S) <= 0.005 * mean + 1e-6 * S.max(axis=1, keepdims=True))
