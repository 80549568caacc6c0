"""Nearly orthogonal endmembers: a bound on the cosine between any two, held by a penalty.

Orthogonal NMF proper (:class:`~unmix.model.MaxActive` ``(1, target="S")``) gives each
channel to one endmember, so a background that every pixel holds is cut into bands: on
the XRD map at k 6 one endmember takes the diffuse background and the others a few
Bragg-peak channels each, 1.6-1.75x plain NMF's relative error from every start.  A
bound on the overlap instead, ``cos(s_i, s_j) <= max_cosine`` for every pair, lets the
background run under the peaks a little (a cosine of 0.05 between a row spread over
~1,700 channels and one of ~7 peak channels leaves the background most of its height
there).

:class:`Orthogonality` holds the bound by a penalty whose strength grows (the quadratic
penalty method): the fit converges at one strength (``tol``), and while a pair's cosine
is above the bound the strength is multiplied by ``growth`` and the fit goes on from
where it stopped (:meth:`Orthogonality.tighten`, asked by the fit loop).  Followed,
from the plain fit's point, the path keeps most of the plain fit's quality (XRD, k 6:
1.09x plain NMF's error at cosines <= 0.05; ``benchmarks/results/models.md``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._backend import to_numpy
from ._smoothing import check_positive
from ._terms import Penalty, PenaltyModel

__all__ = ["Orthogonality"]

logger = logging.getLogger("unmix")

#: curvature of the penalty per pair, in units of ``strength / |s_i|^2``: the Hessian
#: of ``1/2 max(0, cos - c)^2`` in one row is at most ``|grad cos|^2 + |Hess cos| <= 9``
#: times ``1 / |s_i|^2``, so the model majorizes the penalty along steps that keep each
#: row's norm within the margin below of its norm at the model's point
CURVATURE = 9.0
MARGIN = 3.0  # the model stays a majorizer for rows down to 1/sqrt(MARGIN) of their norm
#: the strength stops growing here (times the data's energy): a bound that this does not
#: bring is reported instead
MAX_STRENGTH = 1e12
#: a cosine counts as within the bound up to this much above it (relative)
SLACK = 1e-3
#: rows of S are normalized by at least this fraction of the largest row's norm (the
#: engine's floor of a collapsed endmember)
NORM_FLOOR = 1e-3


@dataclass(frozen=True)
class Orthogonality(Penalty):
    """Nearly orthogonal endmembers: ``cos(s_i, s_j) <= max_cosine`` for every pair.

    The penalty on the endmembers ``S`` (k x channels; ``X`` is pixels x channels)::

        rho / 2 * sum_{i < j} max(0, cos(s_i, s_j) - max_cosine)^2

    with ``rho = lam * ||X||^2 / 2`` at the start (scale-free), multiplied by ``growth``
    each time the fit converges with a pair above the bound (the fit then goes on,
    :meth:`tighten`), so the fit ends with every cosine at most ``max_cosine`` (plus a
    relative slack of 1e-3) or, if ``max_iter`` comes first, with a warning.  The
    penalty is 0 on every point that meets the bound: the objective then is the data
    fit alone.  The cosines do not depend on the rows' norms, so nothing need hold the
    endmembers' scale (with :class:`~unmix.model.UnitNorm`, whose projection drops each
    step's change of norm, HALS ended at 3.5x plain NMF's error on XRD k 6: leave it
    out).  ``max_cosine=0`` asks for orthogonal rows (use ``MaxActive(1, target="S")``
    for that: exact and fast).

    Parameters
    ----------
    lam : float
        Starting strength relative to the data's energy ``||X||^2 / 2`` (default 1e-3).
    max_cosine : float
        The bound on the cosine between two endmembers, in [0, 1) (default 0.05).
    growth : float
        The strength's factor at each tightening (> 1; default 4: each strength's fit
        converges before the next, so a faster growth costs little - XRD k 6: 1.098x
        plain NMF's error at 2 (1,624 iterations), 1.094x at 4 (1,021), 1.095x at 8
        (915); EELS 1.002x at each).
    """

    lam: float = 1e-3
    max_cosine: float = 0.05
    growth: float = 4.0
    target: str = field(default="S", kw_only=True)
    _allowed_targets = ("S",)
    tightens = True

    @property
    def scale_free(self) -> bool:
        return True

    @property
    def label(self) -> str:
        return "Orthogonality(S)"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= float(self.max_cosine) < 1.0:
            raise ValueError(
                f"Orthogonality: max_cosine must be in [0, 1); got {self.max_cosine!r}."
            )
        check_positive(self.growth - 1.0, "Orthogonality", "growth - 1")

    def _prepare(self, ctx: Any) -> None:
        object.__setattr__(self, "_state", {"rho": None, "energy": None})

    def on_data(self, problem: Any) -> None:
        self._state["energy"] = 0.5 * float(problem.data.norm2())

    def on_init(self, A: Any, S: Any, loss_value: float) -> None:
        """Each start (and restart) begins without the penalty: the path starts at the
        plain fit (from the default start the penalty at once ended 2x plain NMF's error
        on XRD k 6, against 1.1x from the plain fit's point)."""
        self._state["rho"] = 0.0

    @property
    def schedule(self) -> float | None:
        return self._state["rho"]

    def resume_schedule(self, value: float) -> None:
        self._state["rho"] = float(value)

    @property
    def strength(self) -> float:
        """The absolute strength ``rho`` in use."""
        if self._state["rho"] is None:
            raise RuntimeError("Orthogonality: on_init must run before it is evaluated.")
        return float(self._state["rho"])

    def effective(self) -> dict[str, float]:
        return {"lam": self.strength, "max_cosine": float(self.max_cosine)}

    def _cosines(self, M: Any) -> tuple[Any, Any, Any, Any]:
        """``(C, U, norms, live)``: the cosines (zero diagonal), the unit rows, their norms
        (each at least :data:`NORM_FLOOR` of the largest) and 1 where a row's own norm is
        above that floor (0 elsewhere).  A row below the floor (a collapsed endmember) is
        divided by the floor, so its "cosines" fade with it and its gradient stays
        bounded: divided by its own vanishing norm, the gradient of a dying endmember
        overflowed (EELS, k 3, with ``SumToOne``, float32 and float64)."""
        be = self.ctx.backend
        xp = be.xp
        norms = xp.sqrt(xp.sum(M * M, axis=1, keepdims=True))
        floor = be.clip_min(NORM_FLOOR * xp.max(norms), be.tiny)  # on the device: no sync
        live = xp.astype(norms > floor, norms.dtype)  # rows normalized by their own norm
        norms = xp.maximum(norms, floor)
        U = M / norms
        C = U @ U.T
        C = C * (1.0 - be.eye(C.shape[0], dtype=C.dtype))
        return C, U, norms, live

    def value(self, M: Any) -> float:
        C = self._cosines(M)[0]
        H = self.ctx.backend.clip_min(C - self.max_cosine, 0.0)
        return 0.25 * self.strength * float(self.ctx.backend.xp.sum(H * H))

    def model(self, M: Any) -> PenaltyModel:
        be = self.ctx.backend
        xp = be.xp
        C, U, norms, live = self._cosines(M)
        H = be.clip_min(C - self.max_cosine, 0.0)
        rho = self.strength
        inv = 1.0 / norms  # at least the floor (see _cosines)
        pos = rho * (H @ U) * inv  # the gradient, split into non-negative parts for MU
        # the normalization's part, for the rows divided by their own norm only
        neg = rho * xp.sum(H * C, axis=1, keepdims=True) * U * inv * live
        k = M.shape[0]
        curv = rho * CURVATURE * MARGIN * max(k - 1, 1) * inv * inv
        return PenaltyModel(
            grad=pos - neg,
            curv=curv,
            lipschitz=float(xp.max(curv)),
            mu_pos=pos,
            mu_neg=neg,
        )

    def largest_cosine(self, S: Any) -> float:
        """The largest cosine between two endmembers of ``S``."""
        C = self._cosines(S)[0]
        return float(np.max(to_numpy(C))) if C.shape[0] > 1 else 0.0

    def _met(self, worst: float) -> bool:
        return worst <= self.max_cosine * (1.0 + SLACK) + 1e-12

    def unmet(self, A: Any, S: Any) -> str | None:
        worst = self.largest_cosine(S)
        if self._met(worst):
            return None
        return (
            f"Orthogonality: two endmembers still have a cosine of {worst:.3g}, above "
            f"max_cosine={self.max_cosine:g} (strength {self.strength:.3g}); raise max_iter "
            "(the strength grows each time the fit converges) or the bound."
        )

    def tighten(self, A: Any, S: Any) -> bool:
        """At a converged point: if a pair's cosine is above the bound, multiply the
        strength by ``growth`` and return True (the fit goes on); else False."""
        worst = self.largest_cosine(S)
        if self._met(worst):
            return False
        rho = self.strength * self.growth or self.lam * self._state["energy"]
        if rho > MAX_STRENGTH * self._state["energy"]:
            return False
        self._state["rho"] = rho
        logger.debug("Orthogonality: largest cosine %.4g; strength -> %.4g", worst, rho)
        return True
