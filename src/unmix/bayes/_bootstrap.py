"""Bootstrap bands of the endmembers, to set beside the model-based credible bands.

For counts ``X`` (pixels, channels) and reference endmembers ``S_ref`` (k, channels),
KL-NMF (:func:`unmix.factorize` with ``loss="kl"``, rank ``k``) is fitted to ``n_boot``
draws of the pixels with replacement; each draw's endmembers are matched to the
reference ones (Hungarian algorithm on the cosine) and scaled onto them (least squares,
``c = <s, s_ref> / <s, s>``), and the percentiles of the draws at ``(1 -+ level) / 2``
are the band of every channel.  The band holds the spread of the point fit over
resampled pixels (sampling of the pixels and the fit's own variability), not a
posterior; entries that KL-NMF sets to (near) zero in most draws give a collapsed band.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

from .._bands import Bands

__all__ = ["BOOTSTRAP_NOTE", "bootstrap_bands"]

logger = logging.getLogger("unmix")

BOOTSTRAP_NOTE = (
    "Bootstrap: the spread of the KL-NMF point fit at the same rank over draws of the "
    "pixels with replacement, each draw's endmembers matched and scaled onto these. "
    "Not a credible interval: it holds the sampling of the pixels and the optimizer's "
    "variability, and collapses where the point fits set an entry to zero."
)


def bootstrap_bands(
    X: Any,
    S_ref: Any,
    *,
    n_boot: int = 20,
    level: float = 0.9,
    random_state: int | None = 0,
) -> Bands:
    """Percentile bands of the endmembers from KL-NMF on bootstrap draws (module doc).

    Parameters
    ----------
    X : array or scipy.sparse matrix (pixels, channels)
        The counts the reference endmembers were fitted to.
    S_ref : array (k, channels)
        The endmembers the bands are for (their order and scale).
    n_boot, level, random_state : int >= 2, float in (0, 1), int or None
        Draws; probability of the central band; seed of the draws and of the fits.

    Returns
    -------
    Bands
        ``S_lower``, ``S_upper`` in ``S_ref``'s units (no map bands), ``level``,
        ``method`` starting with ``"bootstrap"``.
    """
    from ..engine import factorize
    from ..selection._stability import align_components

    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2 (bootstrap draws); got {n_boot!r}.")
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be in (0, 1); got {level!r}.")
    dtype = np.asarray(S_ref).dtype
    S_ref = np.asarray(S_ref, dtype=np.float64)
    k, n = S_ref.shape[0], int(X.shape[0])
    rng = np.random.default_rng(random_state)
    fits = []
    for b in range(int(n_boot)):
        rows = rng.integers(0, n, n)
        with warnings.catch_warnings():  # a draw's collapse warnings are not the user's fit
            warnings.simplefilter("ignore", RuntimeWarning)
            fit = factorize(X[rows], k, loss="kl", random_state=int(rng.integers(2**31 - 1)))
        fits.append(np.asarray(fit.S, dtype=np.float64))
        logger.debug("bootstrap_bands: draw %d of %d, %d iterations", b + 1, n_boot, fit.n_iter)
    # each draw's endmembers matched to the reference's (one Hungarian step on the cosine)
    order, _ = align_components([S_ref, *fits], reference=0, max_iter=1)
    draws = []
    for S, rows_of in zip(fits, order[1:], strict=True):
        S = S[rows_of]
        scale = np.sum(S * S_ref, axis=1) / np.maximum(np.sum(S * S, axis=1), 1e-300)
        draws.append(S * np.maximum(scale, 0.0)[:, None])
    D = np.stack(draws)
    lo, hi = np.quantile(D, [(1.0 - level) / 2.0, (1.0 + level) / 2.0], axis=0)
    return Bands(
        S_lower=lo.astype(dtype),
        S_upper=hi.astype(dtype),
        A_lower=None,
        A_upper=None,
        level=float(level),
        method=f"bootstrap: KL-NMF on {int(n_boot)} draws of the pixels (percentiles)",
        note=BOOTSTRAP_NOTE,
    )
