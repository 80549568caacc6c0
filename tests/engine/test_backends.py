"""Everything follows X: dtype, device and the same answer on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import unmix
from conftest import BACKENDS, host, to_backend

CASES = [
    ("hals", "frobenius", {}),
    ("mu", "frobenius", {}),
    ("mu", "kl", {}),
    ("bpp", "frobenius", {}),
    # the plain iteration (here and with SpatialSmoothness below): the extrapolation (on
    # by default for both) keeps or discards each step by objectives that float32 rounds
    # differently, so its path is not float64's to single precision
    # (tests/engine/test_extrapolate.py compares its backends)
    (
        "admm",
        "frobenius",
        {
            "constraints": [unmix.NonNegative(), unmix.SumToOne()],
            "solver_options": {"extrapolate": False},
        },
    ),
    ("gradient", "frobenius", {}),
    ("svd", "frobenius", {"preprocessing": [unmix.Center()]}),
    (
        "hals",
        "frobenius",
        {
            "regularizers": [unmix.SpatialSmoothness(0.1), unmix.L1(1e-3, target="S")],
            "solver_options": {"extrapolate": False},
        },
    ),
    ("admm", "frobenius", {"regularizers": [unmix.MinVolume(0.1), unmix.GaussianMapFilter(1.0)]}),
]


def _run(X, solver, loss, extra, **kw):
    return unmix.factorize(
        X,
        3,
        solver=solver,
        loss=loss,
        random_state=0,
        max_iter=25,
        tol=0,
        spatial_shape=(20, 25),
        **extra,
        **kw,
    )


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b.id != "numpy"])
@pytest.mark.parametrize(("solver", "loss", "extra"), CASES)
def test_same_answer_as_numpy(mixture, backend, solver, loss, extra):
    ref = _run(mixture.X, solver, loss, extra)
    got = _run(to_backend(mixture.X, backend), solver, loss, extra)
    scale = np.abs(ref.S).max()
    np.testing.assert_allclose(host(got.S), ref.S, rtol=1e-7, atol=1e-9 * scale)
    np.testing.assert_allclose(host(got.A), ref.A, rtol=1e-7, atol=1e-9 * np.abs(ref.A).max())
    assert got.objective == pytest.approx(ref.objective, rel=1e-8)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("solver", "loss", "extra"), CASES)
def test_float32_stays_float32_on_device(mixture, backend, solver, loss, extra):
    X = to_backend(mixture.X, backend, dtype="float32")
    r = _run(X, solver, loss, extra)
    assert type(r.A) is type(X) and type(r.S) is type(X)
    assert r.A.dtype == X.dtype and r.S.dtype == X.dtype
    if hasattr(X, "device"):
        assert r.A.device == X.device and r.S.device == X.device
    ref = _run(mixture.X, solver, loss, extra)
    # float32 follows the float64 answer to single precision
    rel = np.linalg.norm(host(r.S) - ref.S) / np.linalg.norm(ref.S)
    assert rel < 2e-3
    assert np.isfinite(r.objective)


@pytest.mark.parametrize("backend", BACKENDS)
def test_input_not_modified(mixture, backend):
    X = to_backend(mixture.X, backend)
    before = host(X).copy()
    unmix.factorize(X, 3, preprocessing=[unmix.NormalizePixels()], max_iter=5)
    np.testing.assert_array_equal(host(X), before)


def test_float32_accumulates_in_float64(mixture):
    X32 = mixture.X.astype(np.float32)
    r32 = unmix.factorize(X32, 3, solver="hals", random_state=0, max_iter=50, tol=0)
    r64 = unmix.factorize(mixture.X, 3, solver="hals", random_state=0, max_iter=50, tol=0)
    assert r32.objective == pytest.approx(r64.objective, rel=1e-3)
