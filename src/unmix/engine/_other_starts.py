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
first where the default was another - SPA's pure pixels where the default was NNDSVDa on
abundances that sum to one - then random ones, seeded from the fit's seed).  The first
whose components all live and whose objective is at most ``1 + SLACK`` times the collapsed
fit's replaces it, and the result's spec says so (``spec["init"]``, the start used;
``spec["diagnostics"]["other_start"]``, what the default start gave).  When none does, the
fit with the lowest objective among those with no more collapsed components than the
default's is kept if it is more than ``SLACK`` below the default's - a better fit of the
same model, whose own collapsed components are reported
(``other_start["alive"]`` False) - else the default's collapsed fit stands.  Either way
the warnings, with the advice to fit fewer components, are those of the fit kept: a ``k``
the data do not support is not hidden.  (Orthogonal endmembers with sum-to-one maps on the
XRD map, k 3: NNDSVDa and every random start leave one band empty - an all-zero
endmember whose map takes up the slack of the sum, so the maps no longer sum to one in
effect - at 0.1183; SPA's start keeps three bands at 0.1091, 8 % lower, with one of
them, eight channels of Bragg peaks, just below the 5 % share.  KL with MU, k 6: the
Poisson start ends at 894.4 with two components collapsed, the NNDSVDa start at 855.5
with one.)

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


def other_starts(default: str, seed: int, *, pixels: bool = False) -> list[tuple[str, int]]:
    """``(init, seed)`` of the starts tried after ``default`` (seeded from ``seed``);
    ``pixels``: the model may start from pure pixels (abundances on a simplex, every
    entry of ``X`` known), so an NNDSVDa default is followed by SPA."""
    draws = [int(s) for s in np.random.default_rng([seed, 7]).integers(0, 2**31 - 1, 2)]
    if default == "nndsvda":
        if pixels:
            return [("spa", seed), ("random", draws[0])]
        return [("random", draws[0]), ("random", draws[1])]
    return [("nndsvda", seed), ("random", draws[0])]


def run_with_other_starts(
    run: Callable[..., tuple[dict, list]],
    init: str,
    seeds: list[int],
    cfg: Any,
    resume: bool,
    starts: list[tuple[str, int]],
) -> tuple[dict, list, dict | None]:
    """``run(init, seeds, cfg, resume)`` (the restarts), then, if its best fit has collapsed
    components, the fits from ``starts`` (``(init, seed)``, :func:`other_starts`); returns
    the fit kept, every run's summary, and what replaced the default (None when nothing
    did).  The warnings of the fits not kept are not shown."""
    (best, runs), first = _quietly(run, init, seeds, cfg, resume)
    if not best["collapsed"]:
        _replay(first)
        return best, runs, None
    bound = best["objective"] + SLACK * abs(best["objective"])
    quiet = replace(cfg, checkpoint=None)
    lowest = None  # (fit, warnings, init, seed) of the lowest collapsed fit tried
    for other, seed in starts:
        # seeded as factorize(init=other, random_state=seed) seeds it: repeatable
        (fit, more), seen = _quietly(run, other, restart_seeds(seed, 1), quiet, False)
        runs = runs + [dict(summary, init=other) for summary in more]
        if not fit["collapsed"] and fit["objective"] <= bound:
            return fit, runs, _replaced(best, init, fit, seen, other, seed)
        fewer = len(fit["collapsed"]) <= len(best["collapsed"])  # no more dead than before
        if fewer and (lowest is None or fit["objective"] < lowest[0]["objective"]):
            lowest = (fit, seen, other, seed)
    if lowest is not None and lowest[0]["objective"] < best["objective"] - SLACK * abs(
        best["objective"]
    ):
        return lowest[0], runs, _replaced(best, init, *lowest)
    _replay(first)
    return best, runs, None


def _replaced(best: dict, init: str, fit: dict, seen: list, other: str, seed: int) -> dict:
    """``fit`` (from the ``other`` start, ``seed``) kept in place of the default start's
    collapsed ``best``: logged, its warnings shown; returns the record of the replacement
    (``spec["diagnostics"]["other_start"]``)."""
    alive = not fit["collapsed"]
    logger.info(
        "The %s start left components %s collapsed (objective %.6g); a %s start (seed %d) "
        "%s at %.6g: kept.",
        init,
        best["collapsed"],
        best["objective"],
        other,
        seed,
        "keeps all of them" if alive else f"ends lower, components {fit['collapsed']} collapsed",
        fit["objective"],
    )
    _replay(seen)
    return {
        "init": init,
        "collapsed": list(best["collapsed"]),
        "objective": best["objective"],
        "other_init": other,
        "other_seed": seed,
        "alive": alive,
    }


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
