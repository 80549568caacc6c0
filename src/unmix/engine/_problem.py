"""A frozen combination of knobs bound to one data set: what every solver works on."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import Backend, to_numpy
from ..blocks import PixelData
from ..model import Constraint, Filter, Link, Loss, Penalty, PenaltyModel, tightening

__all__ = ["Problem"]


def _add(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


@dataclass
class Problem:
    """Everything a solver needs: data, loss, link and the bound terms per factor."""

    k: int
    loss: Loss
    link: Link
    be: Backend
    data: PixelData
    constraints: dict[str, list[Constraint]]
    penalties: dict[str, list[Penalty]]
    filters: dict[str, list[Filter]]
    spatial_shape: tuple[int, ...] | None = None
    signal_shape: tuple[int, ...] | None = None
    update_S: bool = True
    #: this process's ``[start, stop)`` rows of ``X`` and the block size of the serial grid
    rows: tuple[int, int] | None = None
    block_size: int | None = None

    @property
    def nonneg_A(self) -> bool:
        return self.nonneg("A")

    @property
    def nonneg_S(self) -> bool:
        return self.nonneg("S")

    @property
    def pixel_weighted(self) -> bool:
        """True when the fit weights the pixels: given pixel weights, or a loss that
        reweights them every iteration (l2,1)."""
        return self.data.pixel_w is not None or self.loss.reweights_pixels

    def nonneg(self, target: str) -> bool:
        """True when a constraint on ``target`` keeps it ``>= 0``."""
        return any(c.implies_nonneg for c in self.constraints[target])

    def simplex(self, target: str) -> bool:
        """True when the rows of ``target`` lie on a simplex (fixed row sums)."""
        return any(c.simplex_rows for c in self.constraints[target])

    def one_per_row(self, target: str) -> bool:
        """True when a constraint leaves each row of ``target`` one non-zero at most."""
        return any(c.one_per_row for c in self.constraints[target])

    def one_per_column(self, target: str) -> bool:
        """True when a constraint leaves each column of ``target`` one non-zero at most."""
        return any(c.one_per_column for c in self.constraints[target])

    def projection_terms(self, target: str) -> list[Constraint]:
        """The constraints whose projections, in order, make the projection onto
        ``target``'s set (not those on the model ``A @ S``: see
        :meth:`product_constraints`).  Non-negativity is left out where rows lie on a
        simplex, which implies it: clipping first would not give the Euclidean projection
        onto the simplex."""
        terms = [c for c in self.constraints[target] if c.separable != "product"]
        if any(c.simplex_rows for c in terms):
            terms = [c for c in terms if not c.is_orthant]
        return terms

    def project(self, target: str, M: Any) -> Any:
        """Apply the hard constraints on ``target`` in order (:meth:`projection_terms`)."""
        for c in self.projection_terms(target):
            M = c.project(M)
        return M

    def scale_held_by_penalty(self) -> bool:
        """True when a constraint fixes the endmembers' scale (``rescales``: unit norm)
        and a penalty on ``A`` depends on the scale that moving it into the maps would
        change (L1, L2, ...): solvers must then keep ``S`` on its set while they update
        it, not rescale afterwards."""
        return any(c.rescales for c in self.constraints["S"]) and any(
            t.lam for t in self.penalties["A"]
        )

    def place_dead_endmembers(self, A: Any, S: Any) -> tuple[Any, Any]:
        """Factors whose all-zero endmembers (dead components: they add nothing to
        ``A @ S``) are projected onto the endmember constraints, with zero maps - unit
        norm gives them the flat unit row - so the returned factors meet every
        constraint and ``A @ S`` is unchanged."""
        xp = self.be.xp
        dead = xp.sum(xp.abs(S), axis=1) == 0
        if not bool(xp.any(dead)) or not self.projection_terms("S"):
            return A, S
        S = xp.where(dead[:, None], self.project("S", S), S)
        return xp.where(dead[None, :], 0.0, A), S

    def product_constraints(self) -> list[Constraint]:
        """The constraints on the model ``A @ S`` (``separable == "product"``)."""
        return [c for c in self.constraints["A"] if c.separable == "product"]

    def finish_maps(self, A: Any, S: Any) -> None:
        """Let the ``finishes`` constraints on ``A`` refine the maps (in place), once after
        the fit, block by block: given ``X_b S^T`` where a pixel's best maps do not depend
        on weights (Frobenius or l2,1 loss, identity link, no mask, no channel or full
        weights), else without the data.  Constraints on the model come last (their
        feasibility step must see the final maps)."""
        terms = [c for c in self.constraints["A"] if c.finishes]
        if not terms:
            return
        terms.sort(key=lambda c: c.separable == "product")
        d = self.data
        plain = (
            (self.loss.is_frobenius or self.loss.reweights_pixels)
            and self.link.is_identity
            and d.mask is None
            and d.full_w is None
            and d.channel_w is None
        )
        for block in d.blocks:
            sl = block.slice
            Ab = A[sl, :]
            XSt = d.x_times(block, S.T) if plain else None
            for c in terms:
                Ab = c.finish(Ab, S, XSt, sl)
            A[sl, :] = Ab

    def rescale_into_maps(self, A: Any, S: Any) -> Any:
        """Meet the endmembers' scale constraints (``rescales``, e.g. unit norm) by moving
        scale into ``A`` (in place), ``A @ S`` unchanged; returns the new ``S``."""
        for c in self.constraints["S"]:
            if c.rescales:
                A_new, S = c.rescale(A, S)
                A[...] = A_new
        return S

    def filter(self, target: str, M: Any) -> Any:
        for f in self.filters[target]:
            M = f.apply(M)
        return M

    def filtered(self, A: Any, S: Any) -> Any:
        """Apply the between-iteration filters (and re-project); ``A`` in place, new ``S``."""
        if self.filters["A"]:
            A[:, :] = self.project("A", self.filter("A", A))
        if self.filters["S"]:
            S = self.project("S", self.filter("S", S))
        return S

    def gauge_floats(self) -> bool:
        """True when nothing but the filters holds the endmembers' scale: a model whose
        every term leaves ``(A D, D^-1 S)`` (``D`` a positive diagonal) as good as
        ``(A, S)`` - the loss (on ``A @ S``), non-negativity, no penalty with a strength in
        use - with a filter between iterations.  Such a fit has no scale of its own, and
        the filter can walk it: a map the filter blurs each iteration is fitted back by a
        larger endmember, by the same factor every time (KL with Gaussian map smoothing on
        the XRD map: one endmember's norm 1.2x an iteration, 1e16 after 200, overflow
        after 420).  The loop then holds each endmember's norm (:meth:`hold_gauge`)."""
        if not (self.update_S and (self.filters["A"] or self.filters["S"])):
            return False
        terms = self.constraints["A"] + self.constraints["S"]
        return all(c.is_orthant for c in terms) and not self.active_penalties()

    def hold_gauge(self, A: Any, S: Any, S_ref: Any) -> tuple[Any, Any]:
        """Rescale each component so that its endmember has the norm of that row of
        ``S_ref`` (``A`` in place, ``A @ S`` unchanged); returns ``(S, d)``: the new
        endmembers and the factors ``d`` (k,) the maps' columns were multiplied by (1
        for a component whose endmember, then or now, is zero).  The factors come from
        ``S`` alone, the same on every process when the pixels are split."""
        xp = self.be.xp
        now = xp.sqrt(xp.sum(S * S, axis=1))
        ref = xp.sqrt(xp.sum(S_ref * S_ref, axis=1))
        ok = (now > 0) & (ref > 0) & xp.isfinite(now)
        d = xp.where(ok, now / xp.where(ok, ref, 1.0), 1.0)
        A[...] = A * d[None, :]
        return S / d[:, None], d

    def fixed(self) -> tuple[Any, Any] | None:
        """``(mask, values)`` of the endmember entries pinned by constraints, or None."""
        pins = [c.fixed() for c in self.constraints["S"] if c.fixed() is not None]
        if not pins:
            return None
        xp = self.be.xp
        mask, values = pins[0]
        for m, v in pins[1:]:
            values = xp.where(m, v, values)
            mask = mask | m
        return mask, values

    def free_rows(self) -> list[int]:
        """Rows of ``S`` that are updated (all but fully pinned endmembers)."""
        pins = self.fixed()
        if pins is None:
            return list(range(self.k))
        whole = to_numpy(self.be.xp.all(pins[0], axis=1))
        return [j for j in range(self.k) if not bool(whole[j])]

    def pinned_whole_rows(self) -> bool:
        """True when every pinned endmember entry belongs to a fully pinned row."""
        pins = self.fixed()
        if pins is None:
            return True
        mask = to_numpy(pins[0])
        return bool(np.all(mask[mask.any(axis=1)]))

    def model(self, target: str, M: Any, *, exclude: Iterable[Penalty] = ()) -> PenaltyModel:
        """Combined local model of the penalties on ``target`` at ``M``.

        Penalties in ``exclude`` are left out (a solver that applies them through their
        proximal operator instead).
        """
        skip = [id(t) for t in exclude]
        out = PenaltyModel()
        for p in self.penalties[target]:
            if p.lam == 0 or id(p) in skip:
                continue
            m: PenaltyModel = p.model(M)
            if m.mu_pos is None and m.mu_neg is None:
                m.mu_pos, m.mu_neg = self._mu_split(target, M, m)
            out.gram = _add(out.gram, m.gram)
            out.grad = _add(out.grad, m.grad)
            out.curv = _add(out.curv, m.curv)
            out.lipschitz += m.lipschitz
            out.mu_pos = _add(out.mu_pos, m.mu_pos)
            out.mu_neg = _add(out.mu_neg, m.mu_neg)
        return out

    def constant_penalty_gradient(self, target: str) -> float | None:
        """The summed gradient of the penalties on ``target`` when each is one constant
        (e.g. L1 on a non-negative factor); 0.0 without penalties; None otherwise."""
        total = 0.0
        for p in self.penalties[target]:
            if not p.lam:
                continue
            g = p.constant_gradient()
            if g is None:
                return None
            total += g
        return total

    def _mu_split(self, target: str, M: Any, m: PenaltyModel) -> tuple[Any, Any]:
        """Generic split of a model's gradient into non-negative parts (for MU)."""
        xp, be = self.be.xp, self.be
        pos = neg = None
        if m.grad is not None:
            pos, neg = be.clip_min(m.grad, 0.0), be.clip_min(-m.grad, 0.0)
        if m.gram is not None:
            gp, gn = be.work(be.clip_min(m.gram, 0.0)), be.work(be.clip_min(-m.gram, 0.0))
            qp, qn = (M @ gp, M @ gn) if target == "A" else (gp @ M, gn @ M)
            pos, neg = _add(pos, qp), _add(neg, qn)
        del xp
        return pos, neg

    def active_penalties(self) -> list[Penalty]:
        """The penalties with a strength in use (``effective()["lam"]`` not 0: ``L1(0)``,
        or a tightening penalty not yet raised, leaves the bare model)."""
        terms = self.penalties["A"] + self.penalties["S"]
        return [t for t in terms if t.effective().get("lam") != 0]

    def tightening(self) -> list[Penalty]:
        """The penalties that hold a bound by a growing strength (``tightens``)."""
        return tightening(self.penalties["A"] + self.penalties["S"])

    def tighten(self, A: Any, S: Any) -> bool:
        """Ask every penalty that holds a bound to tighten at this converged point
        (:meth:`~unmix.model.Penalty.tighten`); True when one did (the fit goes on)."""
        return any([t.tighten(A, S) for t in self.tightening()])

    def unmet_bounds(self, A: Any, S: Any) -> list[str]:
        """What the tightening penalties' bounds miss at ``(A, S)`` (sentences)."""
        said = [t.unmet(A, S) for t in self.tightening()]
        return [s for s in said if s]

    def schedules(self) -> dict[str, float]:
        """The strengths the tightening penalties have reached, for a checkpoint."""
        return {f"penalty_schedule_{i}": t.schedule for i, t in enumerate(self.tightening())}

    def resume_schedules(self, saved: dict | None) -> None:
        """Put a checkpoint's strengths back (:meth:`schedules`)."""
        for i, t in enumerate(self.tightening()):
            value = (saved or {}).get(f"penalty_schedule_{i}")
            if value is not None:
                t.resume_schedule(float(np.asarray(value)))

    def penalty_values(self, A: Any, S: Any) -> dict[str, float]:
        """Each penalty's value; those on ``A`` summed over the processes sharing pixels."""
        vals: dict[str, float] = {}
        for target, M in (("A", A), ("S", S)):
            for p in self.penalties[target]:
                v = p.value(M) if p.lam else 0.0
                if target == "A":
                    v = float(self.data.reduce(v))
                vals[p.label] = vals.get(p.label, 0.0) + v
        return vals
