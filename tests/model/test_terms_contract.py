"""The term protocol's contract: every built-in term and a user-written one keep it.

Solvers ask a term what it can do (``separable``, ``implies_nonneg``, ``rescales``,
``fixed()``, ``has_prox``, ``constant_gradient()``, ``quadratic``, ``couples_pixels``,
``scale_free``) and never what it is; these tests check that each declared capability is
true of the term, and that every solver that accepts a term runs with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import unmix
from unmix._backend import backend_of
from unmix.engine.solvers import REGISTRY
from unmix.model import BindContext, Constraint, Penalty, PenaltyModel
from unmix.model._graph import grid_graph

N_ROWS, N_COLS, K = (6, 5), 12, 3
N = N_ROWS[0] * N_ROWS[1]
RNG = np.random.default_rng(0)
SPECTRUM = RNG.random(N_COLS)


# ------------------------------------------------------------ user-written terms
@dataclass(frozen=True)
class CapAt(Constraint):
    """A user's constraint: every entry at most ``cap`` (entry-wise, so HALS takes it)."""

    cap: float = 1.0
    separable = "entries"

    def project(self, M: Any) -> Any:
        return self.ctx.backend.xp.minimum(M, self.cap)

    def project_part(self, values: Any, rows: Any, cols: Any) -> Any:
        return self.ctx.backend.xp.minimum(values, self.cap)


@dataclass(frozen=True)
class NearTarget(Penalty):
    """A user's penalty: ``lam / 2 ||M - T||^2`` toward a constant ``T`` (exactly quadratic)."""

    level: float = 0.5
    target: str = field(default="S", kw_only=True)
    has_prox = True
    quadratic = True

    def value(self, M: Any) -> float:
        xp = self.ctx.backend.xp
        return 0.5 * self.lam * float(xp.sum((M - self.level) ** 2))

    def model(self, M: Any) -> PenaltyModel:
        be = self.ctx.backend
        k = self.ctx.k
        T = self.level * be.xp.ones_like(M)
        return PenaltyModel(
            gram=self.lam * be.eye(k, dtype=be.acc_dtype),
            grad=-self.lam * T,
            mu_pos=self.lam * M,
            mu_neg=self.lam * T,
        )

    def prox(self, V: Any, step: float) -> Any:
        return (V + step * self.lam * self.level) / (1.0 + step * self.lam)


CONSTRAINTS = {
    "NonNegative(A)": unmix.NonNegative(target="A"),
    "NonNegative(S)": unmix.NonNegative(target="S"),
    "SumToOne": unmix.SumToOne(),
    "SumToOne(2)": unmix.SumToOne(total=2.0),
    "Bounds(A)": unmix.Bounds(0.0, 0.5, target="A"),
    "Bounds(S)": unmix.Bounds(0.1, None, target="S"),
    "FixedEndmembers": unmix.FixedEndmembers(SPECTRUM, rows=[1]),
    "FixedEndmembers(mask)": unmix.FixedEndmembers(SPECTRUM, mask=SPECTRUM > 0.5),
    "UnitNorm": unmix.UnitNorm(),
    "Orthogonal": unmix.Orthogonal(),
    "MaxActive(1)": unmix.MaxActive(1),
    "MaxActive(2)": unmix.MaxActive(2),
    "MaxActive(1, S)": unmix.MaxActive(1, target="S"),
    "NoDips": unmix.NoDips(0.05),
    "NoDips(default)": unmix.NoDips(),
    "Unimodal": unmix.Unimodal(),
    "user CapAt(A)": CapAt(0.4, target="A"),
    "user CapAt(S)": CapAt(0.8, target="S"),
}
PENALTIES = {
    "L1(A)": unmix.L1(0.3),
    "L1(S)": unmix.L1(0.3, target="S"),
    "L2(A)": unmix.L2(0.2),
    "SpatialSmoothness": unmix.SpatialSmoothness(0.1),
    "SpatialSmoothness(8)": unmix.SpatialSmoothness(0.1, neighbors=8),
    "TotalVariation": unmix.TotalVariation(0.1),
    "GraphSmoothness": unmix.GraphSmoothness(0.1, graph=grid_graph(N_ROWS, 8)),
    "MinVolume": unmix.MinVolume(0.2),
    "Orthogonality": unmix.Orthogonality(max_cosine=0.05),
    "user NearTarget(S)": NearTarget(0.4),
}
FILTERS = {
    "GaussianMapFilter": unmix.GaussianMapFilter(1.0),
    "SpectralSmoothing": unmix.SpectralSmoothing("gaussian", sigma=1.0),
    "SpectralSmoothing(median)": unmix.SpectralSmoothing("median", size=3),
}


def _bind(term, nonneg_S: bool = True):
    be = backend_of(np.zeros((2, 2)))
    ctx = BindContext(
        n_pixels=N, n_channels=N_COLS, k=K, backend=be, spatial_shape=N_ROWS,
        nonneg_A=True, nonneg_S=nonneg_S,
    )  # fmt: skip
    bound = term.bind(ctx)
    shape = ctx.shape_of(bound.target)
    return bound, shape


def _bound_constraint(name):
    term = CONSTRAINTS[name]
    return _bind(term, nonneg_S=not term.is_orthonormal)


def _factors():
    rng = np.random.default_rng(1)
    return rng.random((N, K)), rng.random((K, N_COLS))


# ---------------------------------------------------------------- constraints
@pytest.mark.parametrize("name", sorted(CONSTRAINTS))
def test_constraint_declares_its_capabilities(name):
    c, _ = _bound_constraint(name)
    assert c.separable in ("entries", "rows", "none")
    flags = ("is_orthant", "is_orthonormal", "simplex_rows", "rescales", "implies_nonneg")
    for flag in (*flags, "one_per_row"):
        assert isinstance(getattr(c, flag), bool), flag
    assert isinstance(c.scale_free, bool) and isinstance(c.couples_pixels, bool)
    assert not hasattr(c, "kind")


@pytest.mark.parametrize("name", sorted(CONSTRAINTS))
def test_projection_is_idempotent_and_feasible(name):
    c, shape = _bound_constraint(name)
    M = np.random.default_rng(2).normal(size=shape)
    P = c.project(M)
    assert P.shape == shape
    np.testing.assert_allclose(c.project(P), P, atol=1e-12)
    if c.implies_nonneg:
        assert P.min() >= -1e-12
    if c.is_orthant:
        np.testing.assert_array_equal(P, np.maximum(M, 0))
    if c.simplex_rows:
        np.testing.assert_allclose(P.sum(axis=1), c.row_sum, atol=1e-12)
    if c.one_per_row:
        assert np.all(np.count_nonzero(P, axis=1) <= 1)
    if c.is_orthonormal:
        np.testing.assert_allclose(P @ P.T, np.eye(shape[0]), atol=1e-12)
    if c.fixed() is not None:
        mask, values = c.fixed()
        assert mask.shape == values.shape == shape
        np.testing.assert_array_equal(P[mask], values[mask])


@pytest.mark.parametrize("name", sorted(CONSTRAINTS))
def test_project_part_agrees_with_the_whole(name):
    c, shape = _bound_constraint(name)
    M = np.random.default_rng(3).normal(size=shape)
    P = c.project(M)
    if c.separable == "entries":
        rows = slice(2, 7) if shape[0] > 7 else slice(1, 2)
        np.testing.assert_allclose(c.project_part(M[rows, 1], rows, 1), P[rows, 1])
        one = slice(1, 2)
        np.testing.assert_allclose(c.project_part(M[one, :], one, slice(None)), P[one, :])
    elif c.separable == "rows":
        rows = slice(1, 3)
        np.testing.assert_allclose(c.project_part(M[rows, :], rows, slice(None)), P[rows, :])
    else:
        with pytest.raises(NotImplementedError, match="does not project"):
            c.project_part(M[1:2, :], slice(1, 2), slice(None))


@pytest.mark.parametrize("name", sorted(CONSTRAINTS))
def test_rescale_keeps_the_product(name):
    c, _ = _bound_constraint(name)
    A, S = _factors()
    A2, S2 = c.rescale(A * 7.0, S)
    np.testing.assert_allclose(A2 @ S2, (A * 7.0) @ S, rtol=1e-12)
    if c.rescales:  # the set is reached by the change of scale alone
        M = S2 if c.target == "S" else A2
        np.testing.assert_allclose(c.project(M), M, atol=1e-12)


# ------------------------------------------------------------------ penalties
def _prepared(name):
    p, shape = _bind(PENALTIES[name])
    A, S = _factors()
    p.on_init(A, S, 10.0)
    if p.tightens:  # it starts at strength 0 (the plain fit): test it at a real one
        p.resume_schedule(10.0)
    return p, shape


def _model_value(m: PenaltyModel, M, M2, target):
    """The model's prediction of r(M2) - r(M) (see the protocol)."""
    d = M2 - M
    out = 0.0
    if m.grad is not None:
        out += float(np.sum(np.broadcast_to(m.grad, M.shape) * d))
    if m.curv is not None:
        out += 0.5 * float(np.sum(np.broadcast_to(m.curv, M.shape) * d * d))
    if m.gram is not None:
        quad = (
            (lambda X: np.sum((X @ m.gram) * X))
            if target == "A"
            else (lambda X: np.sum((m.gram @ X) * X))
        )
        out += 0.5 * float(quad(M2) - quad(M))
    return out


@pytest.mark.parametrize("name", sorted(PENALTIES))
def test_penalty_model_majorizes_and_splits_its_gradient(name):
    p, shape = _prepared(name)
    rng = np.random.default_rng(4)
    M = rng.random(shape) + 0.1
    m = p.model(M)
    for scale in (1e-3, 0.1, 1.0):
        M2 = np.maximum(M + scale * rng.normal(size=shape), 0.0)
        gap = _model_value(m, M, M2, p.target) - (p.value(M2) - p.value(M))
        assert gap >= -1e-9 * max(1.0, abs(p.value(M))), (scale, gap)  # a majorizer
        if p.quadratic:
            assert abs(gap) <= 1e-9 * max(1.0, abs(p.value(M)))  # exact
    grad = np.zeros(shape) if m.grad is None else np.broadcast_to(m.grad, shape).copy()
    if m.gram is not None:
        grad += M @ m.gram if p.target == "A" else m.gram @ M
    if m.mu_pos is not None or m.mu_neg is not None:
        pos = 0 if m.mu_pos is None else np.broadcast_to(m.mu_pos, shape)
        neg = 0 if m.mu_neg is None else np.broadcast_to(m.mu_neg, shape)
        np.testing.assert_allclose(pos - neg, grad, atol=1e-9)
    if p.constant_gradient() is not None:
        np.testing.assert_allclose(grad, p.constant_gradient())


@pytest.mark.parametrize("name", sorted(PENALTIES))
def test_prox_minimizes_when_declared(name):
    p, shape = _prepared(name)
    assert isinstance(p.has_prox, bool) and isinstance(p.smooth, bool)
    if not p.has_prox:
        return
    rng = np.random.default_rng(5)
    V, step = rng.normal(size=shape), 0.7

    def objective(P):
        return step * p.value(P) + 0.5 * float(np.sum((P - V) ** 2))

    P = p.prox(V, step)
    best = objective(P)
    for _ in range(20):
        assert objective(P + 1e-3 * rng.normal(size=shape)) >= best - 1e-12


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_filter_keeps_the_shape(name):
    f, shape = _bind(FILTERS[name])
    M = np.random.default_rng(6).random(shape)
    out = f.apply(M)
    assert out.shape == shape and np.all(np.isfinite(out))
    assert isinstance(f.couples_pixels, bool) and f.scale_free


# ------------------------------------------------ every accepting solver runs it
def _terms(name):
    if name in CONSTRAINTS:
        c = CONSTRAINTS[name]
        if c.is_orthonormal:
            return {"constraints": [c]}
        other = "S" if c.target == "A" else "A"
        return {"constraints": [c, unmix.NonNegative(target=other)]}
    return {"regularizers": [{**PENALTIES, **FILTERS}[name]]}


def _accepting(name, X):
    ok = []
    for solver in sorted(REGISTRY):
        try:
            unmix.factorize(X, K, solver=solver, max_iter=1, spatial_shape=N_ROWS, **_terms(name))
        except unmix.UnsupportedError:
            continue
        ok.append(solver)
    return ok


@pytest.mark.parametrize("name", sorted({**CONSTRAINTS, **PENALTIES, **FILTERS}))
def test_every_solver_that_accepts_a_term_runs_it(name):
    mx = unmix.datasets.make_mixture(K, spatial_shape=N_ROWS, n_channels=N_COLS, random_state=0)
    X = np.clip(mx.X, 0, None)
    solvers = _accepting(name, X)
    assert solvers, f"no solver takes {name}"
    for solver in solvers:
        r = unmix.factorize(
            X, K, solver=solver, max_iter=4, tol=0, spatial_shape=N_ROWS, random_state=0,
            **_terms(name),
        )  # fmt: skip
        assert np.all(np.isfinite(r.A)) and np.all(np.isfinite(r.S)), solver
        parts = [part for c in _terms(name).get("constraints", []) for part in c.parts()]
        nonneg_S = any(part.target == "S" and part.implies_nonneg for part in parts)
        for part in parts:
            bound, _ = _bind(part, nonneg_S=nonneg_S)
            M = np.asarray(r.A if part.target == "A" else r.S)
            np.testing.assert_allclose(bound.project(M), M, atol=1e-6, err_msg=solver)


def test_user_terms_are_taken_by_the_solvers_their_capabilities_fit():
    mx = unmix.datasets.make_mixture(K, spatial_shape=N_ROWS, n_channels=N_COLS, random_state=0)
    X = np.clip(mx.X, 0, None)
    assert {"hals", "admm", "gradient"} <= set(_accepting("user CapAt(A)", X))
    assert {"hals", "mu", "bpp", "admm"} <= set(_accepting("user NearTarget(S)", X))
