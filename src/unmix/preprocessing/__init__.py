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

# Image operations on a SpectralImage (``--step``, ``[preprocess]``); ``IMAGE_OPS`` lists them.
from ._image import (
    FFT,
    Absolute,
    BaselineALS,
    Bin,
    BinDetector,
    Clip,
    Crop,
    Derivative,
    ImageOp,
    Log,
    MaskChannels,
    MaskPixels,
    Normalize,
    Offset,
    Pipeline,
    PolarTransform,
    PowerLawBackground,
    SlidingWindowFFT,
    image_from_array,
    op_from_dict,
    pipeline_from_config,
)
from ._imagebase import OPS
from ._invertible import Center, NormalizePixels, PoissonScaling, Step, is_counts
from ._lines import LineArray
from ._stem import CenterPatterns, DarkFlat, Despike, PatternBackground

#: every image operation, in the order of their names
IMAGE_OPS = [OPS[name] for name in sorted(OPS)]

__all__ = [  # the invertible steps, then the image operations and their helpers
    "FFT",
    "IMAGE_OPS",
    "Absolute",
    "BaselineALS",
    "Bin",
    "BinDetector",
    "Center",
    "CenterPatterns",
    "Clip",
    "Crop",
    "DarkFlat",
    "Derivative",
    "Despike",
    "ImageOp",
    "LineArray",
    "Log",
    "MaskChannels",
    "MaskPixels",
    "Normalize",
    "NormalizePixels",
    "Offset",
    "PatternBackground",
    "Pipeline",
    "PoissonScaling",
    "PolarTransform",
    "PowerLawBackground",
    "SlidingWindowFFT",
    "Step",
    "image_from_array",
    "is_counts",
    "op_from_dict",
    "pipeline_from_config",
]
