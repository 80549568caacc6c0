"""Restarting collapsed components during a fit, and going back when that loses.

A fit that stopped by ``tol`` with collapsed components (:mod:`._collapse`) restarts each
of them once from the worst-fitted pixels (:func:`restart_collapsed`) and iterates on;
the point before the restart is kept (:class:`KeptPoint`) in case the restart ends
higher with a restarted component dead again.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from ._collapse import collapsed_components, revive
from ._problem import Problem
from ._record import RestartRecord

logger = logging.getLogger("unmix")

__all__ = ["KeptPoint", "restart_collapsed"]


@dataclasses.dataclass(frozen=True)
class KeptPoint:
    """The iterate where a fit stopped by ``tol`` with collapsed components, kept while
    they are restarted: a restart that ends higher with a restarted component dead again
    goes back to it (XRD, KL, k 6, MU: 895 before the restart, 1134 after it, the two
    components dead again).  One that ends higher with every component alive is kept: it
    is the k-component fit asked for."""

    A: Any
    S: Any
    n_iter: int
    n_history: int
    objective: float
    revived: list[int]

    def lost(self, p: Problem, A: Any, S: Any, rec: RestartRecord) -> bool:
        """Whether the restart ended above the kept point with a restarted component
        collapsed again."""
        if rec.history.last <= self.objective:
            return False
        return bool(set(self.revived) & set(collapsed_components(p, A, S)))

    def restore(self, A: Any, rec: RestartRecord) -> Any:
        """Put the kept maps back into ``A`` (in place), cut the history back; returns S."""
        logger.info(
            "Components %s: the restart ended at objective %.6g, above %.6g where it "
            "began; kept the fit before it",
            self.revived,
            rec.history.last,
            self.objective,
        )
        A[...] = self.A
        rec.history.truncate(self.n_history)
        return self.S


def restart_collapsed(
    p: Problem, A: Any, S: Any, rec: RestartRecord, n_iter: int
) -> tuple[Any, KeptPoint | None]:
    """Restart, once each, the components that collapsed (see :mod:`._collapse`); returns
    the new ``S`` and the point kept from before the restart (None: nothing restarted)."""
    fresh = [j for j in collapsed_components(p, A, S) if j not in rec.revived]
    if not fresh:
        return S, None
    kept = KeptPoint(
        p.be.xp.asarray(A, copy=True), S, n_iter, len(rec.history), rec.history.last, fresh
    )
    logger.info("Components %s collapsed: restarted from the worst-fitted pixels", fresh)
    S = revive(p, A, S, fresh)
    rec.revived.extend(fresh)
    return S, kept
