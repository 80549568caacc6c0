"""The pieces of the gradient solver's descent steps (see :mod:`._gradient`).

- the beta-divergence a row (:func:`divergence_rows`), its change between two models
  formed as a difference (:func:`divergence_change`), its gradient (:func:`gradient_Y`)
  and a positive curvature (:func:`curvature_Y`) in the model ``Y``;
- the projection onto a factor's constraints, whole or a part (``Problem.projection_terms``);
- the step's direction: diagonal Newton shaped by the constraints' separability
  (:func:`direction`), projected Newton (:func:`newton_direction`, Bertsekas 1982) and its
  simplex variant (:func:`simplex_newton_direction`);
- the penalties' local model row by row (:class:`Majorizer`) and on ``S``;
- Armijo backtracking along the projection arc, a step a row (:func:`search_rows`), and
  repeated steps on a known quadratic (:func:`inner_steps`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "GROW",
    "SIGMA",
    "T_MAX",
    "T_MIN",
    "Majorizer",
    "curv_S",
    "curvature_Y",
    "direction",
    "divergence_change",
    "divergence_rows",
    "gradient_Y",
    "hessian_S",
    "inner_steps",
    "newton_direction",
    "pen_grad",
    "pen_value_S",
    "project_all",
    "project_cols",
    "project_rows",
    "scaled",
    "search_rows",
    "separability",
    "simplex_newton_direction",
    "take_rows",
    "transposed",
]

#: Armijo's sufficient-decrease constant
SIGMA = 1e-4
#: backtracking trials a row (each at most half the step before)
TRIALS = 12
#: the largest step (in units of the scaled step) and the growth after a success
T_MAX = 1e6
GROW = 2.0
#: the smallest first step (rows that passed no trial start from an eighth of it)
T_MIN = 1e-8
#: a trial that moves a row by at most this share of its largest entry leaves it at rest
REST = 1e-13
#: repeated steps on a subproblem end when no more than this share of its rows still
#: gain (each repeat costs the same few array operations whatever the rows it moves)
LIVE = 0.05


def divergence_rows(beta: float, X: Any, Y: Any, W: Any, *, be: Any, tiny: float) -> Any:
    """``sum_j W_ij d_beta(X_ij | Y_ij)`` of every row ``i`` (accumulation dtype), the
    divergence of :meth:`unmix.model.Loss.value` (``Y`` floored at ``tiny``)."""
    xp, b = be.xp, beta
    if b == 2:
        R = X - Y
        D = 0.5 * R * R
    else:
        Yc = be.clip_min(Y, tiny)
        if b == 1:
            D = X * xp.log(be.clip_min(X, tiny) / Yc) - X + Yc  # 0 log 0 = 0
        elif b == 0:
            Q = be.clip_min(X, tiny) / Yc
            D = Q - xp.log(Q) - 1.0
        else:
            D = (X**b + (b - 1.0) * Yc**b - b * X * Yc ** (b - 1.0)) / (b * (b - 1.0))
    if W is not None:
        D = D * W
    return be.acc(xp.sum(D, axis=1))


def log_ratio(step: Any, Y0: Any, Y1: Any, *, xp: Any) -> Any:
    """``log(Y1 / Y0)`` for positive ``Y0``, ``Y1`` with ``step = Y1 - Y0``: ``log1p`` of
    the relative change where ``Y1`` is near ``Y0`` (exact to rounding of itself), the
    difference of the logarithms where it falls by more than half.  (``log1p`` of a
    relative change clipped above -1 stopped at ``log(4 eps)``, -35: a trial that took a
    model entry from 1 to ``tiny`` under a count was judged ~20x too cheap and taken.)"""
    big = float(xp.finfo(Y0.dtype).max) ** 0.5  # Y1 / Y0 kept finite
    rel = step / xp.maximum(Y0, Y1 / big)
    near = rel > -0.5
    return xp.where(near, xp.log1p(xp.where(near, rel, 0.0)), xp.log(Y1) - xp.log(Y0))


def divergence_change(
    beta: float, X: Any, Y0: Any, Y1: Any, W: Any, *, be: Any, tiny: float
) -> Any:
    """``W (d_beta(X | Y1) - d_beta(X | Y0))`` entry by entry, formed as a difference
    (``log1p``, ``expm1`` of the relative change of ``Y``) so that it stays exact to
    rounding of itself when ``Y1`` is close to ``Y0`` (``Y`` floored at ``tiny``)."""
    xp, b = be.xp, beta
    if b == 2:
        D = (Y1 - Y0) * (0.5 * (Y1 + Y0) - X)
    else:
        Y0c, Y1c = be.clip_min(Y0, tiny), be.clip_min(Y1, tiny)
        step = Y1c - Y0c
        r = log_ratio(step, Y0c, Y1c, xp=xp)  # log(Y1 / Y0)
        if b == 1:
            D = step - X * r
        elif b == 0:
            D = r - be.clip_min(X, tiny) * step / (Y0c * Y1c)
        else:  # Y1^p - Y0^p, from expm1 where Y1 / Y0 is near 1
            near = xp.abs(r) < 0.5
            rn = xp.where(near, r, 0.0)
            up_b = xp.where(near, Y0c**b * xp.expm1(b * rn), Y1c**b - Y0c**b)
            up_b1 = xp.where(
                near,
                Y0c ** (b - 1.0) * xp.expm1((b - 1.0) * rn),
                Y1c ** (b - 1.0) - Y0c ** (b - 1.0),
            )
            D = ((b - 1.0) * up_b - b * X * up_b1) / (b * (b - 1.0))
    return D if W is None else D * W


def gradient_Y(beta: float, X: Any, Y: Any, W: Any, *, be: Any, floor: float) -> Any:
    """The divergence's gradient in ``Y``, ``W Y^(b-2) (Y - X)`` (as
    :meth:`unmix.model.Loss.grad_Y`, ``Y`` floored at ``floor``)."""
    b = beta
    if b == 2:
        G = Y - X
    elif b == 1:
        G = 1.0 - X / be.clip_min(Y, floor)
    else:
        Yc = be.clip_min(Y, floor)
        G = Yc ** (b - 2.0) * (Yc - X)
    return G if W is None else G * W


def curvature_Y(beta: float, X: Any, Y: Any, W: Any, *, be: Any, floor: float) -> Any:
    """A positive diagonal curvature of the divergence in ``Y``: ``|b - 1| Y^(b-2) +
    |2 - b| X Y^(b-3)`` (``>= |d''|``; exact for ``1 <= beta <= 2``), times ``W``; None
    for unweighted Frobenius (all ones)."""
    b = beta
    if b == 2:
        return W
    Yc = be.clip_min(Y, floor)
    if b == 1:
        H = X / (Yc * Yc)
    else:
        H = Yc ** (b - 2.0) * (abs(b - 1.0) + abs(2.0 - b) * X / Yc)
    return H if W is None else H * W


def separability(constraints: list) -> str:
    """The coarsest separability of a factor's constraints: ``"entries"``, ``"rows"``
    or ``"none"`` (the shape a diagonal scaling of its steps may take)."""
    kinds = {c.separable for c in constraints if c.separable != "product"}
    if "none" in kinds:
        return "none"
    return "rows" if "rows" in kinds else "entries"


def project_rows(terms: list, M: Any, rows: Any) -> Any:
    """Rows ``rows`` (this process's indices) of ``A`` projected alone (row-separable
    constraints: each through its ``project_part``)."""
    for c in terms:
        M = c.project_part(M, rows, slice(None))
    return M


def project_all(terms: list, M: Any) -> Any:
    """``M`` projected through each constraint in turn (a block of maps, or ``S``)."""
    for c in terms:
        M = c.project(M)
    return M


def project_cols(terms: list, Mt: Any, cols: Any) -> Any:
    """Channels ``cols`` of ``S`` (given transposed, channels x k) projected alone
    (entry-separable constraints)."""
    M = Mt.T
    for c in terms:
        M = c.project_part(M, slice(None), cols)
    return M.T


def scaled(H: Any, sep: str, *, xp: Any) -> Any:
    """The curvature ``H`` made constant where the projection would not keep a diagonal
    metric: per row for ``"rows"``, one number for ``"none"`` (its largest value, so the
    step stays within the Newton step of every coordinate)."""
    if sep == "entries":
        return H
    if sep == "rows":
        return xp.max(H, axis=1, keepdims=True)
    return xp.max(H)


def direction(g: Any, H: Any, sep: str, *, xp: Any) -> Any:
    """The diagonal Newton direction ``-g / H`` (``H`` scaled as :func:`scaled`; a zero
    curvature floored at ``1e-12`` of the largest)."""
    Hs = scaled(H, sep, xp=xp)
    top = float(xp.max(Hs)) if getattr(Hs, "size", 1) else 0.0
    floor = max(1e-12 * top, 1e-300)
    return -g / xp.clip(Hs, min=floor)


def newton_direction(g: Any, H: Any, A: Any, project: Callable[[Any], Any], *, xp: Any) -> Any:
    """The projected Newton direction of each row (Bertsekas 1982), for constraints that
    project entry by entry: ``-H_FF^{-1} g_F`` on the free entries and ``-g / diag(H)`` on
    the blocked ones, those the diagonal step ``-g / diag(H)`` runs into a bound (its
    projection keeps less than half of it: the epsilon-active set).  ``H`` is the
    curvature, (k, k) for every row or (rows, k, k); a ridge of ``1e-10`` of its mean
    diagonal keeps each system solvable."""
    n, k = g.shape
    Hn = xp.broadcast_to(H, (n, k, k))
    diag = xp.linalg.diagonal(Hn)
    top = float(xp.max(diag)) if n else 0.0
    diag = xp.clip(diag, min=max(1e-12 * top, 1e-300))
    d0 = -g / diag
    blocked = xp.abs(project(A + d0) - A) < 0.5 * xp.abs(d0)
    free = ~blocked
    eye = xp.eye(k, dtype=xp.bool, device=getattr(g, "device", None))
    keep = (free[:, :, None] & free[:, None, :]) | eye
    ridge = _ridge(diag, top, xp)
    Hm = xp.where(keep, Hn, 0.0) + ridge[:, None, None] * xp.astype(eye, Hn.dtype)
    d = -_solve(Hm, g[:, :, None], xp)[:, :, 0]
    return xp.where(xp.isfinite(d), d, d0)


def simplex_newton_direction(
    g: Any, H: Any, A: Any, project: Callable[[Any], Any], *, xp: Any
) -> Any:
    """The projected Newton direction of rows on a scaled simplex (``a >= 0``, ``sum a``
    fixed): on the free entries the Newton step within the face, ``-H_FF^{-1} (g_F -
    lam 1)`` with ``lam`` such that the step sums to 0; 0 on the entries the scaled
    gradient step ``P(a - g / max diag(H))`` sets to 0 (the active ones)."""
    n, k = g.shape
    Hn = xp.broadcast_to(H, (n, k, k))
    diag = xp.linalg.diagonal(Hn)
    top = float(xp.max(diag)) if n else 0.0
    hmax = xp.clip(xp.max(diag, axis=1, keepdims=True), min=max(1e-12 * top, 1e-300))
    d0 = project(A - g / hmax) - A
    free = (A + d0) > 0
    freef = xp.astype(free, g.dtype)
    eye = xp.eye(k, dtype=xp.bool, device=getattr(g, "device", None))
    keep = (free[:, :, None] & free[:, None, :]) | eye
    ridge = _ridge(diag, top, xp)
    Hm = xp.where(keep, Hn, 0.0) + ridge[:, None, None] * xp.astype(eye, Hn.dtype)
    uv = _solve(Hm, xp.stack([g * freef, freef], axis=2), xp)
    u, v = uv[:, :, 0], uv[:, :, 1]
    den = xp.sum(v * freef, axis=1, keepdims=True)  # 0: no Newton step (d0 below)
    lam = xp.sum(u * freef, axis=1, keepdims=True) / xp.where(den != 0, den, 1.0)
    lam = xp.where(den != 0, lam, xp.nan)
    d = -(u - lam * v) * freef
    return xp.where(xp.isfinite(d), d, d0)


def _ridge(diag: Any, top: float, xp: Any) -> Any:
    """Each row's ridge: ``1e-10`` of its mean curvature, at least ``1e-12`` of the
    largest and the dtype's smallest normal number (a row whose curvature is all zero,
    e.g. a pixel without counts under KL, stays solvable in float32 too)."""
    tiny = float(xp.finfo(diag.dtype).tiny)
    return 1e-10 * xp.mean(diag, axis=1) + max(1e-12 * top, 1e3 * tiny)


def _solve(H: Any, B: Any, xp: Any) -> Any:
    """``H^{-1} B`` for stacked systems; NaN where the solver finds a system singular
    (the caller then takes the diagonal step)."""
    try:
        return xp.linalg.solve(H, B)
    except (np.linalg.LinAlgError, RuntimeError):  # torch: LinAlgError is a RuntimeError
        return xp.full(B.shape, float("nan"), dtype=B.dtype, device=getattr(B, "device", None))


def with_diag(H: Any, c: Any, xp: Any) -> Any:
    """``H`` (k, k) or (rows, k, k) plus the diagonal ``c`` (a number, (1, k) or
    (rows, k))."""
    if isinstance(c, (int, float)) and c == 0:
        return H
    k = H.shape[-1]
    eye = xp.eye(k, dtype=H.dtype, device=getattr(H, "device", None))
    if getattr(c, "ndim", 0) == 2:
        return H + c[:, :, None] * eye
    return H + c * eye


def _rows_of(M: Any, idx: Any) -> Any:
    """Rows ``idx`` (None: all) of a per-row array; scalars, None and one-row arrays
    broadcast."""
    if idx is None or M is None or isinstance(M, (int, float)) or getattr(M, "ndim", 0) < 2:
        return M
    return M if M.shape[0] == 1 else M[idx, :]


class Majorizer:
    """The penalties on the maps as their local model around ``A0`` (block rows):
    ``r(A) <= r(A0) + <grad, A - A0> + 1/2 <curv, (A - A0)^2> + 1/2 tr(A gram A^T)
    - 1/2 tr(A0 gram A0^T)``, row by row (the term protocol's majorizer), so a row's
    surrogate decrease is a decrease of the objective."""

    def __init__(self, model: Any, A0: Any, sl: slice, be: Any) -> None:
        def cut(M: Any) -> Any:
            if M is None or getattr(M, "ndim", 0) < 2 or M.shape[0] == 1:
                return M
            return M[sl, :]

        self.A0 = A0
        self.grad, self.curv = cut(model.grad), cut(model.curv)
        self.gram = None if model.gram is None else be.work(model.gram)
        self.acc = be.acc
        self.empty = model.empty

    def change(self, A: Any, C: Any, idx: Any, xp: Any) -> Any:
        """Each row's surrogate change from rows ``C`` to rows ``A`` (rows ``idx`` of the
        block), formed as a difference."""
        if self.empty:
            return 0.0
        D = A - C
        E = A + C
        w = 0.0 if self.grad is None else _rows_of(self.grad, idx)
        if self.curv is not None:
            w = w + 0.5 * _rows_of(self.curv, idx) * (E - 2.0 * self.A0[idx, :])
        if self.gram is not None:
            w = w + 0.5 * (E @ self.gram)
        return self.acc(xp.sum(D * w, axis=1))

    def grad_at(self, A: Any, idx: Any) -> Any:
        """The surrogate's gradient at rows ``idx`` (None: all) of the block, ``A``."""
        if self.empty:
            return None
        g = 0.0 if self.grad is None else _rows_of(self.grad, idx)
        if self.curv is not None:
            A0 = self.A0 if idx is None else self.A0[idx, :]
            g = g + _rows_of(self.curv, idx) * (A - A0)
        if self.gram is not None:
            g = g + A @ self.gram
        return g

    def hessian(self, H: Any, xp: Any, idx: Any) -> Any:
        """A curvature ``H`` (k, k) or (rows, k, k) of rows ``idx`` (None: all) plus the
        surrogate's."""
        if self.gram is not None:
            H = H + self.gram
        return H if self.curv is None else with_diag(H, _rows_of(self.curv, idx), xp)

    def curvature(self, xp: Any) -> Any:
        """The surrogate's diagonal curvature (per entry, broadcast), or 0."""
        c = 0.0 if self.curv is None else self.curv
        if self.gram is not None:
            c = c + xp.reshape(xp.linalg.diagonal(self.gram), (1, -1))
        return c


def bb_steps(s: Any, y: Any, H: Any, t: Any, *, xp: Any) -> Any:
    """Barzilai-Borwein first steps, a row each, in units of the scaled step ``-g / H``:
    ``t_i = <s_i, H s_i> / <s_i, y_i>`` (``s`` the last change of the rows, ``y`` that of
    their gradients); ``t`` where the pair says nothing (no move, or no curvature)."""
    num = xp.sum(s * H * s, axis=1, keepdims=True)
    den = xp.sum(s * y, axis=1, keepdims=True)
    good = (den > 0) & (num > 0)
    bb = xp.where(good, num / xp.where(good, den, 1.0), t)
    return xp.clip(bb, min=T_MIN, max=T_MAX)


def inner_steps(
    M0: Any,
    t: Any,
    gradient: Callable[[Any, Any], Any],
    step: Callable[[Any, Any, Any], Any],
    change: Callable[[Any, Any, Any], Any],
    project: Callable[[Any, Any], Any],
    *,
    xp: Any,
    rowwise: bool,
    dtype: Any,
    inner: int,
    delta: float,
    t_max: float = T_MAX,
    bb_metric: Any = None,
) -> tuple[Any, Any]:
    """Repeated line-searched steps on one subproblem whose changes are cheap (a known
    quadratic), on the rows ``idx`` that still move: ``gradient(M, idx)``, the direction
    ``step(g, M, idx)``, ``change(M, C, idx)`` (the objective's change from rows ``C``
    to ``M``), ``project(M, idx)``.  A row stops after ``inner`` steps or once a step
    moves it by at most ``delta`` times its first (squared norms, as accelerated HALS;
    with ``rowwise=False`` all rows together).  With ``bb_metric`` (the diagonal of the
    step's metric) each step after the first starts from the Barzilai-Borwein step.
    Returns ``(M, t)``."""
    n = M0.shape[0]
    M, t = xp.asarray(M0, copy=True), xp.asarray(t, copy=True)
    live = xp.arange(n, device=getattr(M0, "device", None))
    first, before = None, None
    for _ in range(max(inner, 1)):
        Ml = M[live, :]
        g = gradient(Ml, live)
        tl = t[live, :]
        if before is not None and bb_metric is not None:
            s_, y_ = Ml - before[0][live, :], g - before[1][live, :]
            tl = bb_steps(s_, y_, take_rows(bb_metric, live), tl, xp=xp)
        d = step(g, Ml, live)

        def rows_change(T: Any, idx: Any, C: Any = Ml, live: Any = live) -> Any:
            return change(T, C[idx, :], live[idx])

        def rows_project(T: Any, idx: Any, live: Any = live) -> Any:
            return project(T, live[idx])

        M_new, _, tl, _ = search_rows(
            Ml,
            g,
            d,
            tl,
            rows_change,
            rows_project,
            xp=xp,
            rowwise=rowwise,
            dtype=dtype,
            t_max=t_max,
        )
        if bb_metric is not None:
            if before is None:
                before = (xp.zeros_like(M), xp.zeros_like(M))
            before[0][live, :], before[1][live, :] = Ml, g
        M[live, :], t[live, :] = M_new, tl
        moved = xp.sum((M_new - Ml) ** 2, axis=1)
        if first is None:
            first = xp.asarray(moved, copy=True)
            cut = first
        else:
            cut = first[live]
        going = moved > delta * delta * cut
        if not rowwise:  # the rows move together
            going = xp.full_like(going, bool(xp.sum(moved) > delta * delta * xp.sum(cut)))
        live = live[going]
        if live.shape[0] <= LIVE * n:  # the few rows left go on at the next pass
            break
    return M, t


def take_rows(M: Any, idx: Any) -> Any:
    """Rows ``idx`` (None: all) of a per-row array; one-row arrays and numbers
    broadcast."""
    if idx is None or getattr(M, "ndim", 0) in (0, 1) or M.shape[0] == 1:
        return M
    return M[idx, ...]


def search_rows(
    A0: Any,
    g: Any,
    d: Any,
    t: Any,
    change: Callable[[Any, Any], Any],
    project: Callable[[Any, Any], Any],
    *,
    xp: Any,
    rowwise: bool = True,
    trials: int = TRIALS,
    on_accept: Callable[[Any, Any], None] | None = None,
    dtype: Any = None,
    t_max: float = T_MAX,
) -> tuple[Any, Any, Any, Any]:
    """Armijo backtracking along the projection arc, one step ``t_i`` a row.

    Row ``i`` tries ``a(t) = P(a0 + t d)`` and accepts the first ``t`` with ``f(a(t)) -
    f(a0) <= SIGMA min(<g, a(t) - a0>, 0)``; else ``t`` shrinks (quadratic interpolation,
    clipped to ``[0.1, 0.5]`` of it).  ``change(M, idx)`` gives ``f(M) - f(a0)`` of the
    trial rows ``idx`` (computed as a difference, not from two values, so that rounding
    does not swamp it near convergence), ``project(M, idx)`` projects them.  A row whose
    trial does not move it (by :data:`REST` of its size: it is at rest) is accepted as
    it is.  With ``rowwise=False`` the whole block shares one step and one test (sums
    over its rows).  A row that accepts nothing keeps ``a0``.  Returns ``(A, df, t_next,
    moved)``: the new rows, their changes of ``f``, the next first steps (doubled after
    a first-trial success, at most ``t_max``; an eighth of the first when nothing
    passed, at least :data:`T_MIN`) and which rows accepted a step.  ``on_accept(ok,
    rows)`` is told after every trial which of its rows (``ok``, a mask over the
    trial's rows) were accepted; ``dtype``: that of the changes (default ``A0``'s).
    """
    n = A0.shape[0]
    dev = getattr(A0, "device", None)
    A = xp.asarray(A0, copy=True) if trials else A0
    df = xp.zeros((n,), dtype=A0.dtype if dtype is None else dtype, device=dev)
    tt = xp.clip(xp.asarray(t, copy=True), max=t_max)
    t_next = xp.clip(tt / 8.0, min=T_MIN)
    pending = xp.ones((n,), dtype=xp.bool, device=dev)
    moved = xp.zeros_like(pending)
    size = xp.max(xp.abs(A0), axis=1) if A0.shape[1] else xp.zeros((n,), device=dev)
    for trial in range(trials):
        idx = xp.nonzero(pending)[0]
        if idx.shape[0] == 0:
            break
        whole = idx.shape[0] == n

        def part(M: Any, whole: bool = whole, idx: Any = idx) -> Any:
            return M if whole else M[idx, :]

        a0, step = part(A0), part(tt)
        Ap = project(a0 + step * part(d), idx)
        diff = Ap - a0
        slope = xp.astype(xp.sum(part(g) * diff, axis=1), df.dtype)
        rest = xp.max(xp.abs(diff), axis=1) <= REST * (size if whole else size[idx])
        if not rowwise:  # the rows move together: at rest only all at once
            rest = rest & bool(xp.all(rest))
        fp = xp.where(rest, 0.0, xp.astype(change(Ap, idx), df.dtype))
        ok = _armijo(fp, slope, rowwise, xp) | rest
        grown = xp.clip(step * GROW, max=t_max) if trial == 0 else step
        grown = xp.astype(xp.where(rest[:, None], step, grown), t_next.dtype)
        if whole and bool(xp.all(ok)):  # every row passed: no scatter
            if on_accept is not None:
                on_accept(ok, idx)
            return Ap, fp, grown, ~rest
        hit = idx[ok]
        if on_accept is not None:
            on_accept(ok, hit)
        A[hit, :] = Ap[ok, :]
        df[hit] = fp[ok]
        t_next[idx, :] = xp.where(ok[:, None], grown, t_next[idx, :])
        pending[hit] = False
        moved[hit] = ~rest[ok]
        # the minimizer of the quadratic through 0, the slope and fp, as a share of t
        if not rowwise:  # one step for all rows: from the sums
            fp, slope = xp.sum(fp, keepdims=True), xp.sum(slope, keepdims=True)
        share = -slope / xp.clip(2.0 * (fp - slope), min=1e-300)
        share = xp.where(xp.isfinite(share) & (slope < 0), share, 0.1)
        share = xp.clip(share, min=0.1, max=0.5)
        tt[idx, :] = xp.where(ok[:, None], step, step * xp.astype(share[:, None], step.dtype))
    return A, df, t_next, moved


def _armijo(fp: Any, slope: Any, rowwise: bool, xp: Any) -> Any:
    """Armijo's test on the changes ``fp`` (a row each, or their sum)."""
    if rowwise:
        return (fp <= SIGMA * xp.clip(slope, max=0.0)) & xp.isfinite(fp)
    total = float(xp.sum(fp))
    good = total <= SIGMA * min(float(xp.sum(slope)), 0.0) and np.isfinite(total)
    return xp.full(fp.shape, good, dtype=xp.bool, device=getattr(fp, "device", None))


def pen_grad(p: Any, target: str, M: Any) -> Any:
    """The gradient of the penalties' local model on ``target`` at ``M`` (None: none)."""
    m = p.model(target, M)
    g = m.grad
    if m.gram is not None:
        gm = p.be.work(m.gram)
        q = M @ gm if target == "A" else gm @ M
        g = q if g is None else g + q
    return g


def pen_value_S(p: Any, S: Any) -> float:
    """The penalties on ``S`` at ``S`` (as the loop counts them)."""
    return float(sum(t.value(S) for t in p.penalties["S"] if t.lam))


def transposed(M: Any) -> Any:
    """``M.T`` for a 2-D array; a number (or None) as it is."""
    return M.T if getattr(M, "ndim", 0) == 2 else M


def curv_S(model: Any, xp: Any) -> Any:
    """The diagonal curvature of the penalties' model on ``S`` (broadcast), or 0."""
    c = 0.0 if model.curv is None else model.curv
    if model.gram is not None:
        c = c + xp.reshape(xp.linalg.diagonal(model.gram), (-1, 1))
    return c


def hessian_S(H: Any, model: Any, be: Any) -> Any:
    """Channel curvatures ``H`` (k, k) or (channels, k, k) plus the penalties' model on
    ``S`` (its Gram coupling and diagonal curvature, a channel a row)."""
    if model.gram is not None:
        H = H + be.work(model.gram)
    curv = model.curv
    if curv is None:
        return H
    if getattr(curv, "ndim", 0) == 2:  # (k, channels), (k, 1) or (1, channels)
        curv = curv.T if curv.shape[0] > 1 else be.xp.broadcast_to(curv.T, (curv.shape[1], 1))
    return with_diag(H, curv, be.xp)
