"""Preprocessing.

Two levels:

- *invertible steps* on ``X`` (pixels, channels) that :func:`unmix.factorize` applies and
  undoes (``preprocessing=[...]``): :class:`Center`, :class:`NormalizePixels`,
  :class:`PoissonScaling` (see :mod:`unmix.preprocessing.invertible`);
- *image operations* on a :class:`~unmix.SpectralImage` before the factorization (crop,
  bin, masks, background removal, FFTs, polar transform, ...), recorded in its metadata
  (see :mod:`unmix.preprocessing.image`, when present).
"""

from __future__ import annotations

from .invertible import Center, NormalizePixels, PoissonScaling, Step

__all__ = ["Center", "NormalizePixels", "PoissonScaling", "Step"]
