"""Preprocessing.

Two levels:

- *invertible steps* on ``X`` (pixels, channels) that :func:`unmix.factorize` applies and
  undoes (``preprocessing=[...]``): :class:`Center`, :class:`NormalizePixels`,
  :class:`PoissonScaling` (see :mod:`unmix.preprocessing`);
- *image operations* on a :class:`~unmix.SpectralImage` before the factorization (crop,
  bin, masks, background removal, FFTs, polar transform, ...), recorded in its metadata
  (see :mod:`unmix.preprocessing`, when present).
"""

from __future__ import annotations

from ._invertible import Center, NormalizePixels, PoissonScaling, Step

__all__ = ["Center", "NormalizePixels", "PoissonScaling", "Step"]

# Image operations: importable from here, but their classes are deliberately not in
# ``__all__``, whose classes are the invertible steps that ``factorize(preprocessing=...)``
# (and the config's ``preprocessing = [{type = ...}]``) accepts; ``IMAGE_OPS`` lists them.
from ._image import (
    FFT,
    Absolute,
    BaselineALS,
    Bin,
    BinDetector,
    Clip,
    Crop,
    Derivative,
    Log,
    MaskChannels,
    MaskPixels,
    Normalize,
    Offset,
    PolarTransform,
    PowerLawBackground,
    SlidingWindowFFT,
    image_from_array,
    op_from_dict,
    pipeline_from_config,
)
from ._image import ImageOp as ImageOp
from ._image import Pipeline as Pipeline

IMAGE_OPS = [
    FFT,
    Absolute,
    BaselineALS,
    Bin,
    BinDetector,
    Clip,
    Crop,
    Derivative,
    Log,
    MaskChannels,
    MaskPixels,
    Normalize,
    Offset,
    PolarTransform,
    PowerLawBackground,
    SlidingWindowFFT,
]

__all__ += ["IMAGE_OPS", "image_from_array", "op_from_dict", "pipeline_from_config"]
