"""The command-line flags that add terms to the model (``--sparsity``, ``--smooth``,
``--sum-to-one``, ``--max-active``, ``--orthogonal``, ``--no-dips`` ...) and
:func:`flag_terms`, which turns them into constraint and regularizer objects."""

from __future__ import annotations

from typing import Any

import array_api_compat as aac
import click
import numpy as np

from ..blocks import is_sparse, is_streamable, mean_row_scales
from ..model import (
    L1,
    GaussianMapFilter,
    GraphSmoothness,
    MaxActive,
    MinVolume,
    NoDips,
    NonNegative,
    Orthogonality,
    SpatialSmoothness,
    SpectralSmoothing,
    SumToOne,
    TotalVariation,
    Unimodal,
    UnitNorm,
    beta_of,
    holds_scale,
    make_loss,
)
from ..preprocessing import NormalizePixels
from ._config import factorize_options
from ._errors import EXIT_USAGE, Fail
from ._numbers import STRENGTH, FiniteRange

__all__ = [
    "FIT_TERM_OPTIONS",
    "ORTHOGONAL_OPTION",
    "TERM_FLAGS",
    "TERM_OPTIONS",
    "flag_terms",
    "given_flags",
]


#: the convenience flags that add terms (``flag_terms``), and their defaults (off)
TERM_FLAGS = {
    "sum_to_one": False,
    "sparsity": None,
    "smooth": None,
    "laplacian": None,
    "tv": None,
    "graph_smooth": None,
    "min_volume": None,
    "median_filter": None,
    "max_active": None,
    "no_dips": None,
    "unimodal": False,
    "orthogonal": None,
}


def given_flags(kw: dict, names: Any = TERM_FLAGS) -> dict:
    """The flags among ``names`` that the command line set (off is None or False; a value
    of 0, e.g. ``--orthogonal`` alone, is set)."""
    return {name: kw[name] for name in names if kw.get(name) not in (None, False)}


def _orthogonal(max_cosine: float, regs: list) -> list:
    """``--orthogonal [COS]``: alone (0), one endmember a channel - ``S S^T`` diagonal,
    exact ANLS - returned as a constraint; with a bound, the cosines held below it by a
    growing penalty, appended to ``regs``."""
    if max_cosine == 0.0:
        return [MaxActive(1, target="S")]
    regs.append(Orthogonality(max_cosine=max_cosine))
    return []


def flag_terms(fac: dict, flags: dict, X: Any) -> dict:
    """Turn the convenience flags (:data:`TERM_FLAGS`) into constraint and regularizer
    objects, after those of the ``[factorize]`` table ``fac``; ``--mask-nonfinite`` into
    ``mask=`` (False at every NaN / Inf of ``X``)."""
    opts = factorize_options(fac)
    if flags.get("mask_nonfinite"):
        if hasattr(X, "tocsr"):
            raise Fail(
                "--mask-nonfinite: the file holds a sparse matrix; drop its stored NaN / Inf "
                "values (they are entries, not gaps) and run without the flag.",
                EXIT_USAGE,
            )
        if not isinstance(X, np.ndarray):
            raise Fail(
                "--mask-nonfinite needs the data in memory; drop --out-of-core.", EXIT_USAGE
            )
        opts["mask"] = np.isfinite(X)
    flags = {**TERM_FLAGS, **{k: v for k, v in flags.items() if k in TERM_FLAGS}}
    robust = _reweights_pixels(opts.get("loss"))  # l2,1: penalties per unit of norm
    # what one unit of a map moves a typical pixel's loss by (the mean pixel norm for
    # Frobenius, ||x||_1 / ||x||_2 for KL), so a strength means the same for every loss,
    # and for the quadratic penalties (--laplacian, --graph-smooth) the divergence's
    # curvature per unit of map, that unit over the mean pixel norm (Frobenius: 1; KL:
    # ||x||_1 / ||x||_2^2; as given, KL + --laplacian 0.01 on the Raman map, counts in
    # the thousands, made two of three components copies); one pass over X, only for
    # the flags that need it
    beta = beta_of(opts.get("loss"))
    unit = quad = 1.0
    linear = flags["sparsity"] or flags["tv"]
    quadratic = (flags["laplacian"] or flags["graph_smooth"]) and beta != 2.0
    if (linear or quadratic) and not robust:
        unit, norm = mean_row_scales(X, beta)
        quad = unit / max(norm, 1e-300)
    cons = list(opts.get("constraints") or [])
    regs = list(opts.get("regularizers") or [])
    if flags["sum_to_one"]:
        cons = cons or [NonNegative()]
        cons.append(SumToOne())
        _fit_fractions(opts, X)
    if flags["sparsity"]:
        # scale-free: L1 on the maps relative to a typical pixel norm, with the spectra's
        # scale fixed (unit norm, unless the abundances' sums already fix it); the l2,1
        # loss is itself a sum of pixel norms: its L1 weight is the number given
        cons = _scale_fixed(cons)
        regs.append(L1(flags["sparsity"] * unit))
    if flags["smooth"]:
        regs.append(GaussianMapFilter(flags["smooth"]))
    if flags["median_filter"]:  # each spectrum, or each 2-D pattern (signal_shape);
        # a median lowers peaks and the maps make up for it, but the fit holds the
        # spectra's norms itself where only filters would move them (gauge_floats)
        regs.append(SpectralSmoothing(method="median", size=flags["median_filter"]))
    if flags["laplacian"]:  # quadratic in the maps as the fit is in the data: with the
        cons = _scale_fixed(cons)  # spectra's scale fixed, the strength is scale-free
        regs.append(SpatialSmoothness(flags["laplacian"] * quad))
    if flags["tv"]:  # sharp edges between regions; the maps' scale fixed by the spectra's
        cons = _scale_fixed(cons)  # then map differences are in pixel-norm units, as --sparsity
        regs.append(TotalVariation(flags["tv"] * unit))
    if flags["graph_smooth"]:  # the same Laplacian on a 10-nearest-neighbour data graph
        cons = _scale_fixed(cons)
        regs.append(GraphSmoothness(flags["graph_smooth"] * quad))
    if flags["min_volume"]:  # the residual energy, in the loss's units: not for l2,1
        cons = _scale_fixed(cons)  # or the endmembers shrink and the penalty fades
        regs.append(MinVolume(flags["min_volume"], scale="init" if robust else "residual"))
    if flags["max_active"]:  # at most M endmembers a pixel (exact ANLS, maps polished)
        _check_max_active(flags["max_active"], fac.get("k"))
        cons = cons or [NonNegative()]
        cons.append(MaxActive(flags["max_active"]))
    if flags["orthogonal"] is not None:
        cons = (cons or [NonNegative()]) + _orthogonal(flags["orthogonal"], regs)
    if flags["no_dips"] is not None or flags["unimodal"]:  # in place of S >= 0 (held by them)
        nonneg_S = NonNegative(target="S")
        cons = [p for c in cons or [NonNegative()] for p in c.parts() if p != nonneg_S]
        cons += [NoDips(flags["no_dips"])] if flags["no_dips"] is not None else []
        cons += [Unimodal()] if flags["unimodal"] else []
    if cons:
        opts["constraints"] = cons
    if regs or "regularizers" in opts:  # unset stays unset: a --preset fills it in
        opts["regularizers"] = regs
    return opts


def _check_max_active(m: int, k: Any) -> None:
    """``--max-active M`` with ``M >= k`` restricts nothing, yet moves the fit to exact ANLS
    (the EELS map, k 3, M 5: 500 iterations to ``max_iter`` where HALS converged in 150)."""
    if isinstance(k, int) and not isinstance(k, bool) and m >= k:
        raise Fail(
            f"--max-active {m} with -k {k}: every pixel may hold all {k} endmembers, so "
            f"the flag restricts nothing; give M < k (e.g. --max-active {max(k - 1, 1)}) "
            "or drop it.",
            EXIT_USAGE,
        )


def _scale_fixed(cons: list) -> list:
    """``cons`` (default: non-negativity) with the spectra's scale fixed - unit norm,
    unless the abundances' sums already fix it: a penalty on the maps is otherwise
    escaped by shrinking them and growing the spectra."""
    cons = cons or [NonNegative()]
    if not holds_scale(cons):
        cons.append(UnitNorm())
    return cons


def _fit_fractions(opts: dict, X: Any) -> None:
    """``--sum-to-one``: abundances are fractions of each pixel's spectrum, unless
    preprocessing is named (undone in the result).

    - Frobenius, dense in-memory X: pixels of unit norm weighted by their norms (the
      blind-unmixing preset's recipe), so a pixel far brighter than the rest (hot pixels,
      a streak) needs no component of its own.
    - KL, in memory (dense or sparse): pixels divided by their sums and weighted by them,
      which is exactly the Poisson model ``E[x_i] = n_i (A S)_i`` with ``n_i`` the
      pixel's counts (``KL(x | n y) = n KL(x / n | y)``).  Without it the simplex's
      vertices must carry the brightness: on the EELS map (4x brighter over its first 12
      lines) two endmembers were the dim and bright background, 4.3 deg apart, and the
      divergence 2.8 % higher (Raman: 2.5x).
    """
    try:
        loss = make_loss(opts.get("loss"))
    except (TypeError, ValueError):
        return  # reported by the checks later
    if loss.reweights_pixels or is_streamable(X):  # l2,1; a file or memory map
        return
    if loss.is_frobenius and aac.is_array_api_obj(X):
        opts["preprocessing"] = opts.get("preprocessing") or [NormalizePixels("l2", weights=True)]
    elif loss.beta == 1.0 and (aac.is_array_api_obj(X) or is_sparse(X)):
        opts["preprocessing"] = opts.get("preprocessing") or [NormalizePixels("l1", weights=True)]


def _reweights_pixels(loss: Any) -> bool:
    """Whether ``loss`` is the l2,1 loss (a bad value is reported by the checks later)."""
    try:
        return make_loss(loss).reweights_pixels
    except (TypeError, ValueError):
        return False


#: the flags that add terms to the model (:data:`TERM_FLAGS` but ``--sum-to-one``), shared
#: by the fitting commands and ``unmix tree``
TERM_OPTIONS = [
    click.option(
        "--sparsity",
        type=STRENGTH,
        help="L1 on the maps, relative to how much a unit of map moves a typical pixel's "
        "loss (Frobenius: the pixel norm; KL: ||x||_1 / ||x||_2; --loss l21: the L1 weight "
        "itself).",
    ),
    click.option("--smooth", type=STRENGTH, help="Gaussian smoothing of maps, sigma in pixels."),
    click.option(
        "--laplacian",
        type=STRENGTH,
        help="Smoothness of the maps on the scan grid (graph Laplacian), a strength free of "
        "the data's units: the endmembers get unit norm, as with --sparsity (e.g. 0.01).",
    ),
    click.option(
        "--tv",
        type=STRENGTH,
        metavar="LAM",
        help="Total variation of the maps on the scan grid, strength LAM relative to pixel "
        "norms as --sparsity (piecewise-constant maps: sharp edges between regions, noise "
        "smoothed within; e.g. 0.01).",
    ),
    click.option(
        "--graph-smooth",
        type=STRENGTH,
        help="Laplacian smoothness on a 10-nearest-neighbour graph of the spectra "
        "(pixels of one spectral shape anywhere on the map, maps compared relative to "
        "each pixel's brightness), strength as --laplacian (e.g. 0.01).",
    ),
    click.option(
        "--min-volume",
        type=STRENGTH,
        help="Minimum-volume endmembers, strength relative to the residual energy (e.g. "
        "0.5); without --sum-to-one the endmembers are held at unit norm (else they shrink "
        "and the penalty fades).",
    ),
    click.option(
        "--median-filter",
        type=click.IntRange(min=1),
        metavar="SIZE",
        help="Median filter of every endmember between iterations (each 2-D pattern of a "
        "4D-STEM scan), window in channels: removes isolated spikes and dips.",
    ),
]

#: ``--orthogonal [COS]``: a flag of run, compare and tree
ORTHOGONAL_OPTION = click.option(
    "--orthogonal",
    type=FiniteRange(0, 1, max_open=True),
    is_flag=False,
    flag_value=0.0,
    metavar="[COS]",
    help="Orthogonal NMF: alone, each channel in one endmember (S S^T diagonal; exact "
    "ANLS); with COS (e.g. 0.05), nearly orthogonal endmembers - the cosine between "
    "any two at most COS, held by a penalty that grows until it holds (a background "
    "may run under other endmembers' peaks).",
)

#: the constraint flags of run and compare beyond :data:`TERM_OPTIONS` (the tree takes
#: only ``--orthogonal`` of them: with ``--max-active 1`` a rank-2 split's two endmembers
#: are near-copies deep in the tree and ``--unimodal`` splits of the XRD map did not
#: converge in the splits' 300 iterations; both stay open to ``hierarchical_nmf``)
CONSTRAINT_OPTIONS = [
    click.option(
        "--max-active",
        type=click.IntRange(min=1),
        metavar="M",
        help="At most M endmembers in each pixel (hard sparsity of the maps).",
    ),
    click.option(
        "--no-dips",
        type=FiniteRange(0, 1, min_open=True),
        is_flag=False,
        flag_value=NoDips.depth,
        metavar="[DEPTH]",
        help="No endmember channel below (1 - DEPTH) x its neighbours' mean (default 0.005).",
    ),
    click.option("--unimodal", is_flag=True, help="Each endmember rises to one peak, then falls."),
]

#: the term flags of run and compare (tree's --sum-to-one is its levels' simplex)
FIT_TERM_OPTIONS = [
    click.option("--sum-to-one", is_flag=True, help="Abundances on the simplex."),
    *CONSTRAINT_OPTIONS,
    ORTHOGONAL_OPTION,
    *TERM_OPTIONS,
]
