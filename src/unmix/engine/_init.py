"""Initialization of ``A`` (pixels x k) and ``S`` (k x channels).

Methods
-------
``"random"``
    Half-normal entries scaled so that ``A @ S`` has the data's mean.
``"nndsvd"``, ``"nndsvda"``, ``"nndsvdar"``
    Non-negative double SVD (Boutsidis & Gallopoulos 2008); zeros kept, filled with the
    data-scale constant, or with small random values.  For the l2,1 loss the SVD leaves
    out the outlier pixels (:func:`unmix.engine._robust.trimmed_svd`).  The fill uses
    ``sqrt(mean(X) / k)`` in *each* factor, so the product has the data's scale (filling
    both factors with ``mean(X)``, as is common, starts count data with relative errors
    in the thousands).
``"spa"``
    Successive projection algorithm (Gillis & Vavasis 2014): ``k`` extreme pixels.
``"vca"``
    Vertex component analysis (Nascimento & Bioucas-Dias 2005): ``k`` extreme pixels.
``"poisson"``
    For KL on counts (the default there): HALS on the Poisson-scaled data
    ``D_r X D_c`` from its NNDSVDa, mapped back (:mod:`unmix.engine._poisson_start`);
    NNDSVDa when more than half of ``X`` is zero.
custom
    A tuple ``(A0, S0)``; either may be None, the missing one is fitted by NNLS.

Every method ends with the optimal global scaling of ``A`` for the loss (least squares
for Frobenius, matching totals for other divergences).  Pixel-based methods (SPA, VCA)
set ``S`` to data spectra and ``A`` by exact NNLS.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .._backend import to_numpy
from .._linalg import nnls_bpp
from ._poisson_start import fillable, poisson_start, starts_dense_counts
from ._problem import Problem
from ._robust import trimmed_svd

logger = logging.getLogger("unmix")

__all__ = ["METHODS", "default_init", "initialize"]

METHODS = ("random", "nndsvd", "nndsvda", "nndsvdar", "spa", "vca", "poisson")


def _mean(p: Problem) -> float:
    return p.data.mean()


def _random(p: Problem, rng: np.random.Generator) -> tuple[Any, Any]:
    be = p.be
    n, m, k = p.data.n_total, p.data.n_channels, p.k
    scale = np.sqrt(max(_mean(p), 1e-12) / k)
    start = getattr(p.data.executor, "rows", None) or (0, n)
    A_all = np.abs(rng.standard_normal((n, k))) * scale  # the same draws as a serial run
    A = be.asarray(A_all[start[0] : start[0] + p.data.n_pixels])
    S = be.asarray(np.abs(rng.standard_normal((k, m))) * scale)
    return A, S


def _nndsvd(p: Problem, rng: np.random.Generator, variant: str) -> tuple[Any, Any]:
    be, xp = p.be, p.be.xp
    k = p.k
    U, s, Vt = trimmed_svd(p, k, rng) if p.loss.reweights_pixels else p.data.svd(k, rng)
    U, s, Vt = to_numpy(U).astype(float), to_numpy(s).astype(float), to_numpy(Vt).astype(float)
    n, m = U.shape[0], Vt.shape[1]
    A = np.zeros((n, k))
    S = np.zeros((k, m))
    A[:, 0] = np.sqrt(s[0]) * np.abs(U[:, 0])
    S[0] = np.sqrt(s[0]) * np.abs(Vt[0])
    for j in range(1, k):
        x, y = U[:, j], Vt[j]
        xp_, xn = np.maximum(x, 0), np.maximum(-x, 0)
        yp, yn = np.maximum(y, 0), np.maximum(-y, 0)
        # U's rows are this process's pixels: its column norms are summed over processes
        nxp, nxn = np.sqrt(p.data.reduce(np.array([xp_ @ xp_, xn @ xn])))
        nyp, nyn = np.linalg.norm(yp), np.linalg.norm(yn)
        mp, mn = nxp * nyp, nxn * nyn
        if mp >= mn:
            u, v, sig = xp_ / max(nxp, 1e-300), yp / max(nyp, 1e-300), mp
        else:
            u, v, sig = xn / max(nxn, 1e-300), yn / max(nyn, 1e-300), mn
        lbd = np.sqrt(s[j] * sig)
        A[:, j], S[j] = lbd * u, lbd * v
    top = float(np.max(A)) if A.size else 0.0
    eps = 1e-6 * max(_global_max(p, top), float(np.max(S)), 1e-300)
    A[A < eps] = 0
    S[S < eps] = 0
    fill = np.sqrt(max(_mean(p), 1e-12) / k)
    if variant == "nndsvda":
        A[A == 0] = fill
        S[S == 0] = fill
    elif variant == "nndsvdar":
        A[A == 0] = fill * rng.random(int(np.sum(A == 0))) / 100
        S[S == 0] = fill * rng.random(int(np.sum(S == 0))) / 100
    del xp
    return be.asarray(A), be.asarray(S)


def _global_max(p: Problem, value: float) -> float:
    """Maximum of a non-negative number over the processes that share the pixels."""
    reducer = getattr(p.data.executor, "allreduce_max", None)
    return float(reducer(value)) if reducer is not None else float(value)


def _stack_rows(p: Problem, f: Any) -> Any:
    """``f(X_b)`` for every block, stacked along the pixels (one pass; empty for a
    process that owns no pixels)."""
    be = p.be
    if not p.data.blocks:
        return be.xp.zeros((0,), dtype=be.acc_dtype, device=be.device)
    return be.xp.concat([f(b) for b in p.data.blocks], axis=0)


def _spa_spectra(p: Problem, k: int) -> list[Any]:
    """SPA on the pixels: one pass for the norms, then one product with ``X`` a pick.

    Returns the picked pixels' spectra (on X's backend).  Pixels are taken on the simplex
    (divided by their sums) when every sum is positive: the separable-NMF setting SPA is
    made for; otherwise as they are.  With the pixels split over processes every process
    picks the same pixels as a serial run (the best candidate of each process is shared;
    ties go to the lower pixel index).
    """
    be, xp = p.be, p.be.xp
    data = p.data
    sums = _stack_rows(p, lambda b: xp.sum(be.acc(data.x(b)), axis=1))
    nonpositive = float(p.data.reduce(float(xp.sum(xp.astype(sums <= 0, be.acc_dtype)))))
    if nonpositive > 0:
        sums = xp.ones_like(sums)
    norms = _stack_rows(p, lambda b: xp.sum(be.acc(data.x(b) ** 2), axis=1)) / sums**2
    picked: list[Any] = []
    basis: list[Any] = []
    for _ in range(k):
        x, total, j = _best_pixel(p, norms, sums)
        if x is None:
            break
        r = be.acc(x) / total
        for u in basis:
            r = r - xp.sum(r * u) * u
        nr = float(xp.sqrt(xp.sum(r * r)))
        if nr <= 0:
            break
        u = r / nr
        basis.append(u)
        picked.append(x)
        proj = be.acc(_stack_rows(p, lambda b, u=u: data.x_times(b, be.work(u)[:, None])[:, 0]))
        proj = proj / sums
        norms = xp.clip(norms - proj * proj, min=0.0)
        if j is not None:
            norms[j] = -1.0
    return picked


def _best_pixel(p: Problem, norms: Any, sums: Any) -> tuple[Any, Any, int | None]:
    """The pixel of largest ``norms`` over all processes: ``(spectrum, its sum, local index
    or None when another process holds it)``."""
    xp, be = p.be.xp, p.be
    j = int(xp.argmax(norms)) if norms.shape[0] else None
    if not p.data.executor.distributed:
        return p.data.rows([j])[0, :], sums[j], j
    start = getattr(p.data.executor, "rows", None) or (0, 0)
    mine = (
        (-float(norms[j]), start[0] + j, to_numpy(p.data.rows([j])[0, :]), float(sums[j]))
        if j is not None
        else (float("inf"), -1, None, 1.0)
    )
    best = min(p.data.executor.allgather(mine), key=lambda c: (c[0], c[1]))
    if best[2] is None:
        return None, None, None
    local = best[1] - start[0] if best[1] == mine[1] else None
    return be.asarray(best[2]), be.asarray(np.asarray(best[3]), dtype=be.acc_dtype), local


def _vca_rows(p: Problem, k: int, rng: np.random.Generator) -> list[int]:
    """VCA (Nascimento & Bioucas-Dias 2005) on the pixels (through the data pass)."""
    be, xp = p.be, p.be.xp
    n, m = p.data.n_pixels, p.data.n_channels
    _, _, Vt = p.data.svd(k, rng)
    Xp = be.acc(_stack_rows(p, lambda b: p.data.x_times(b, Vt.T)))  # n x k projection
    total = p.data.norm2() / n
    proj = float(xp.sum(Xp * Xp)) / n
    snr = 10 * np.log10(max(proj - k / m * total, 1e-30) / max(total - proj, 1e-30))
    if snr > 15 + 10 * np.log10(k):
        u = xp.mean(Xp, axis=0)
        denom = Xp @ u
        denom = xp.where(xp.abs(denom) > 1e-30, denom, 1e-30)
        Y = Xp / denom[:, None]
    else:
        mean = xp.mean(Xp, axis=0)
        Z = Xp - mean
        Y = Z[:, : k - 1] if k > 1 else Z
        c = float(xp.max(xp.sqrt(xp.sum(Y * Y, axis=1))))
        Y = xp.concat([Y, c * xp.ones((n, 1), dtype=Y.dtype, device=be.device)], axis=1)
    Yh = to_numpy(Y)
    E = np.zeros((k, k))
    E[-1, 0] = 1.0
    picked: list[int] = []
    for i in range(k):
        w = rng.standard_normal(k)
        f = w - E @ np.linalg.pinv(E) @ w
        f /= max(np.linalg.norm(f), 1e-300)
        v = np.abs(Yh @ f)
        v[picked] = -1
        j = int(np.argmax(v))
        picked.append(j)
        E[:, i] = Yh[j]
    return picked


def maps_for(p: Problem, S: Any) -> Any:
    """Non-negative least-squares maps for given endmembers (one pass, exact)."""
    be, xp = p.be, p.be.xp
    G = be.acc(S @ S.T)
    ridge = 1e-10 * max(float(xp.max(xp.linalg.diagonal(G))), be.tiny)
    G = G + ridge * be.eye(p.k, dtype=be.acc_dtype)
    A = xp.zeros((p.data.n_pixels, p.k), dtype=be.dtype, device=be.device)
    for b in p.data.blocks:
        A[b.slice, :] = be.work(nnls_bpp(G, be.acc(p.data.x_times(b, S.T)), be))
    return A


def spectra_for(p: Problem, A: Any) -> Any:
    """Non-negative least-squares endmembers for given maps (one pass, exact)."""
    be, xp = p.be, p.be.xp
    H = p.data.reduce(be.acc(A.T @ A))
    P = xp.zeros((p.k, p.data.n_channels), dtype=be.acc_dtype, device=be.device)
    for b in p.data.blocks:
        P = P + be.acc(p.data.t_times(b, A[b.slice, :]))
    P = p.data.reduce(P)
    ridge = 1e-10 * max(float(xp.max(xp.linalg.diagonal(H))), be.tiny)
    H = H + ridge * be.eye(p.k, dtype=be.acc_dtype)
    return be.work(nnls_bpp(H, P.T, be).T)


def _rescale(p: Problem, A: Any, S: Any) -> Any:
    """Best global scale of ``A`` for the loss; returns the rescaled ``A``."""
    be, xp = p.be, p.be.xp
    if p.loss.is_frobenius or p.loss.reweights_pixels:  # least squares (l2,1: reweighted)
        cross = 0.0
        for b in p.data.blocks:
            cross += float(xp.sum(be.acc(p.data.t_times(b, A[b.slice, :])) * be.acc(S)))
        quad = float(xp.sum(be.acc(A.T @ A) * be.acc(S @ S.T)))
        cross, quad = (float(v) for v in p.data.reduce(np.array([cross, quad])))
        alpha = cross / quad if quad > 0 else 1.0
    else:
        total_x = _mean(p) * p.data.n_total * p.data.n_channels
        total_y = float(xp.sum(be.acc(xp.sum(A, axis=0)) * be.acc(xp.sum(S, axis=1))))
        total_y = float(p.data.reduce(total_y))
        alpha = total_x / total_y if total_y > 0 else 1.0
    if not np.isfinite(alpha) or alpha <= 0:
        return A
    return A * alpha


def default_init(p: Problem, *, fractions: bool = False) -> str:
    """The start the model asks for when the caller gave none.

    Abundances on a simplex (sum-to-one rows of ``A``), and maps with one endmember a
    pixel (a hard segmentation, ``MaxActive(1)``), start from pure pixels: SPA picks the
    ``k`` most extreme pixels as endmembers and the maps follow by NNLS (a start inside
    the model's own geometry; from NNDSVDa, whose first endmember is the mean spectrum,
    a segmentation gave every pixel to it and lost the other components on the EELS,
    Raman, XRD, STM and imzML maps); plain KL NMF on data at most half zeros starts
    from a Frobenius fit of the Poisson-scaled data (``"poisson"``); any other model
    starts from NNDSVDa.
    Endmembers with one channel each (orthogonal NMF, ``MaxActive(1, target="S")``)
    start from NNDSVDa even on a simplex: pixels look alike, and the choice of each
    channel's endmember among alike rows gave every channel to one or two of them (EELS
    with sum-to-one maps, k 3: from SPA, VCA and the old NNDSVDa start two bands, a fit
    41 % above the three-band one that NNDSVDa's distinct, balanced rows find).
    KL maps on a simplex over pixels of one sum (``fractions``: the CLI's ``--loss kl
    --sum-to-one``, :func:`unmix.engine._fractions.fractions_form`) are the plain KL fit
    put on the simplex, so a solver that fits them as they are starts where a plain fit
    would, from NNDSVDa: the gradient solver from SPA ended 5.8 % above the best on the
    XRD map (k 6) and 1.3 % on the EDS TEM map, from NNDSVDa 0.0 % and 0.5 %, and within
    0.03 % of SPA's on the other maps (``benchmarks/results/constraints.md``).
    Pixel-based starts need every entry of ``X``.
    """
    if p.one_per_column("S") or fractions:
        return "nndsvda"
    if (p.simplex("A") or p.one_per_row("A")) and p.data.mask is None:
        return "spa"
    return "poisson" if starts_dense_counts(p) else "nndsvda"


def initialize(p: Problem, init: Any, rng: np.random.Generator) -> tuple[Any, Any]:
    """Starting ``(A, S)`` on X's backend for problem ``p`` (see module docstring)."""
    be = p.be
    if isinstance(init, (tuple, list)):
        return _custom(p, init)
    if init in ("spa", "vca"):
        if p.data.mask is not None:
            raise ValueError(f"init={init!r} picks pixels and needs complete data (no mask).")
        if init == "spa":
            spectra = _spa_spectra(p, p.k)
        else:
            rows = _vca_rows(p, p.k, rng)
            spectra = [p.data.rows([j])[0, :] for j in rows]
        if len(spectra) < p.k:
            logger.warning(
                "init=%r found only %d distinct pixels; random fill.", init, len(spectra)
            )
            _, S = _random(p, rng)
            for j, x in enumerate(spectra):
                S[j, :] = x
        else:
            S = be.xp.stack(spectra, axis=0)
        if p.nonneg_S:
            S = be.xp.clip(S, min=0.0)
        S = be.xp.asarray(S, copy=True)
        return maps_for(p, S), S
    if init == "random":
        A, S = _random(p, rng)
    elif init in ("nndsvd", "nndsvda", "nndsvdar"):
        A, S = _nndsvd(p, rng, init)
    elif init == "poisson":
        _check_poisson_start(p)
        start = poisson_start(p, lambda sub: _nndsvd(sub, rng, "nndsvda"), rng)
        A, S = _nndsvd(p, rng, "nndsvda") if start is None else start
    else:
        raise ValueError(f"init={init!r} is unknown; use one of {METHODS} or a tuple (A0, S0).")
    return _rescale(p, A, S), S


def _check_poisson_start(p: Problem) -> None:
    """``init="poisson"`` fits plain NMF to the scaled data: every entry of ``X``, and no
    constraint beyond the orthant (HALS met ``SumToOne`` there and stopped with "does not
    project entries alone", an unexpected error in the CLI)."""
    if p.data.mask is not None and not fillable(p.data):
        raise ValueError(
            "init='poisson' fills a mask's missing entries for the start, which needs X "
            "held in memory as a dense array; leave init out or use init='nndsvda'."
        )
    shaped = [c.label for t in ("A", "S") for c in p.constraints[t] if not c.is_orthant]
    if shaped:
        raise ValueError(
            f"init='poisson' starts from plain NMF (non-negative factors, nothing else) "
            f"and cannot hold {', '.join(shaped)}; leave init out (the model's own start) "
            "or use init='nndsvda'."
        )


def _custom(p: Problem, init: Any) -> tuple[Any, Any]:
    if len(init) != 2:
        raise ValueError("init as a tuple must be (A0, S0); either may be None.")
    A0, S0 = init
    be = p.be
    n, m, k = p.data.n_pixels, p.data.n_channels, p.k
    if A0 is None and S0 is None:
        raise ValueError(
            "init=(None, None): give at least one of A0 (pixels, k), S0 (k, channels)."
        )
    if S0 is not None:
        S0 = be.xp.asarray(be.asarray(to_numpy(S0)), copy=True)
        if tuple(S0.shape) != (k, m):
            raise ValueError(
                f"init S0 has shape {tuple(S0.shape)}; expected (k, channels) = {(k, m)}."
            )
    if A0 is not None:
        A0 = to_numpy(A0)
        start = getattr(p.data.executor, "rows", None)
        if start is not None and A0.shape[0] == p.data.n_total != n:  # full maps given
            A0 = A0[start[0] : start[0] + n]
        A0 = be.xp.asarray(be.asarray(A0), copy=True)
        if tuple(A0.shape) != (n, k):
            raise ValueError(
                f"init A0 has shape {tuple(A0.shape)}; expected (pixels, k) = {(n, k)}."
            )
    for name, M in (("A0", A0), ("S0", S0)):
        _check_finite_start(p, name, M)
    if S0 is None:
        S0 = spectra_for(p, A0)
    if A0 is None:
        A0 = maps_for(p, S0)
    return A0, S0


def _check_finite_start(p: Problem, name: str, M: Any) -> None:
    """Refuse a given start with NaN or Inf (the fit could only return them)."""
    if M is None:
        return
    xp = p.be.xp
    bad = float(xp.sum(xp.astype(~xp.isfinite(M), xp.int64)))
    if name == "A0":  # the maps' rows may be split over processes: every one decides alike
        bad = float(p.data.reduce(np.array([bad]))[0])
    if bad:
        raise ValueError(
            f"init {name} holds {bad:.0f} NaN or Inf entries; give finite starting factors "
            "(or a named start such as init='nndsvda')."
        )
