"""Other starts for a fit whose components stay collapsed.

A fit from the model's default start that ends with collapsed components (after each was
restarted once from the worst-fitted pixels, :mod:`unmix.engine._collapse`) may report the
start's split of the data, not the data's: on the XRD map at k 6 (143 patterns, a diffuse
background under a few Bragg peaks) NNDSVDa gives one component the background of every
pattern and leaves another below a 5 % share in all patterns but one (HALS 30222.4, BPP
30222.9), while random starts end *lower* with all six components mattering (HALS
30216.5 and 30215.2, BPP 30213.9 and 30211.5); KL coordinate descent from the Poisson
start leaves one collapsed at 844.98, from NNDSVDa none at 845.21.

So such a fit is tried again from up to two other starts (:func:`other_starts`: NNDSVDa
first where the default was another, then random ones, seeded from the fit's seed).  The
first whose components all live and whose objective is at most ``1 + SLACK`` times the
collapsed fit's replaces it, and the result's spec says so (``spec["init"]``, the start
used; ``spec["diagnostics"]["other_start"]``, what the default start gave).  When none
does, the collapsed fit stands and is reported as before (its warnings, with the advice to
fit fewer components): a ``k`` the data do not support is not hidden.

Only for the default start (a start the caller chose is kept) and fits without a time
limit.  With the pixels split over processes every process takes the same branch (the
collapsed components and the objective are agreed on by all of them).  The other starts
run without a checkpoint (they are short next to the fit itself; an interrupted one
starts again on ``resume``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from ._seed import restart_seeds

__all__ = ["SLACK", "other_starts", "run_with_other_starts", "tries_other_starts"]

logger = logging.getLogger("unmix")

#: an other start's fit replaces a collapsed one up to this much above its objective
SLACK = 1e-3


def tries_other_starts(init_given: Any, slv: Any, cfg: Any) -> bool:
    """Whether a collapsed fit may be tried from other starts (module docstring)."""
    return init_given is None and not slv.one_shot and cfg.time_limit is None


def other_starts(default: str, seed: int) -> list[tuple[str, int]]:
    """``(init, seed)`` of the starts tried after ``default`` (seeded from ``seed``)."""
    draws = [int(s) for s in np.random.default_rng([seed, 7]).integers(0, 2**31 - 1, 2)]
    if default == "nndsvda":
        return [("random", draws[0]), ("random", draws[1])]
    return [("nndsvda", seed), ("random", draws[0])]


def run_with_other_starts(
    run: Callable[..., tuple[dict, list]],
    init: str,
    seeds: list[int],
    cfg: Any,
    resume: bool,
) -> tuple[dict, list, dict | None]:
    """``run(init, seeds, cfg, resume)`` (the restarts), then, if its best fit has collapsed
    components, the other starts; returns the fit kept, every run's summary, and what
    replaced the default (None when nothing did).  The warnings of the fits not kept are
    not shown."""
    (best, runs), first = _quietly(run, init, seeds, cfg, resume)
    if best["collapsed"]:
        bound = best["objective"] + SLACK * abs(best["objective"])
        quiet = replace(cfg, checkpoint=None)
        for other, seed in other_starts(init, seeds[0]):
            # seeded as factorize(init=other, random_state=seed) seeds it: repeatable
            (fit, more), seen = _quietly(run, other, restart_seeds(seed, 1), quiet, False)
            runs = runs + [dict(summary, init=other) for summary in more]
            if not fit["collapsed"] and fit["objective"] <= bound:
                replaced = {
                    "init": init,
                    "collapsed": list(best["collapsed"]),
                    "objective": best["objective"],
                    "other_init": other,
                    "other_seed": seed,
                }
                logger.info(
                    "The %s start left components %s collapsed (objective %.6g); a %s start "
                    "(seed %d) keeps all of them at %.6g: kept.",
                    init,
                    best["collapsed"],
                    best["objective"],
                    other,
                    seed,
                    fit["objective"],
                )
                _replay(seen)
                return fit, runs, replaced
    _replay(first)
    return best, runs, None


def _quietly(run: Callable[..., Any], *args: Any) -> tuple[Any, list]:
    """``run(*args)`` and the warnings it raised, held back; shown at once if it fails."""
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            return run(*args), caught
    except BaseException:
        _replay(caught)
        raise


def _replay(caught: list) -> None:
    """Show the warnings caught while a kept fit ran."""
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
