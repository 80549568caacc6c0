"""The model: what is minimized, as small composable objects.

``X (pixels, channels) ~= f(A @ S)`` with a loss (the similarity), hard constraints,
soft penalties and between-iteration filters on the maps ``A`` (pixels, k) or the
endmembers ``S`` (k, channels), and a link ``f``.  Every term follows one protocol
(:class:`Term`: :class:`Constraint`, :class:`Penalty`, :class:`Filter`); solvers ask a
term what it can do, never what it is.  Presets are documented bundles of these knobs.
"""

from __future__ import annotations

from ._constraints import (
    Bounds,
    FixedEndmembers,
    NonNegative,
    Orthogonal,
    SumToOne,
    UnitNorm,
    holds_scale,
)
from ._graph import GraphSmoothness, knn_graph
from ._links import LINK_NAMES, Identity, Link, Logistic, make_link
from ._losses import BETA_RANGE, KL, LOSS_NAMES, Beta, Frobenius, Loss, beta_of, make_loss
from ._orthogonality import Orthogonality
from ._presets import PRESETS, resolve_preset
from ._product import ProductBounds
from ._regularizers import (
    L1,
    L2,
    GaussianMapFilter,
    MinVolume,
    SpatialSmoothness,
    SpectralSmoothing,
)
from ._shape import NoDips, Unimodal
from ._sparsity import MaxActive
from ._terms import BindContext, Constraint, Filter, Penalty, PenaltyModel, Term, tightening
from ._tv import TotalVariation

__all__ = [
    "BETA_RANGE",
    "KL",
    "L1",
    "L2",
    "LINK_NAMES",
    "LOSS_NAMES",
    "PRESETS",
    "Beta",
    "BindContext",
    "Bounds",
    "Constraint",
    "Filter",
    "FixedEndmembers",
    "Frobenius",
    "GaussianMapFilter",
    "GraphSmoothness",
    "Identity",
    "Link",
    "Logistic",
    "Loss",
    "MaxActive",
    "MinVolume",
    "NoDips",
    "NonNegative",
    "Orthogonal",
    "Orthogonality",
    "Penalty",
    "PenaltyModel",
    "ProductBounds",
    "SpatialSmoothness",
    "SpectralSmoothing",
    "SumToOne",
    "Term",
    "TotalVariation",
    "Unimodal",
    "UnitNorm",
    "beta_of",
    "holds_scale",
    "knn_graph",
    "make_link",
    "make_loss",
    "resolve_preset",
    "tightening",
]
