"""Phases of a factorization of 2-D patterns: its components grouped rotation-invariantly.

Two components of a 4D-STEM factorization are often the same crystal phase seen at two
orientations. :func:`component_phases` clusters the endmembers with the rotation-invariant
distance (:func:`~unmix.hierarchy.cluster_components` with ``metric="rotation"``) and cuts
the dendrogram at ``threshold`` degrees; :func:`attach_phases` stores the result in
``result.context["phases"]`` (JSON-friendly, saved with the result), where the run and
compare reports of :mod:`unmix.report` find it and draw the dendrogram and the phase maps
(each group's maps summed).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._backend import to_numpy
from ._cluster import cluster_components

__all__ = ["attach_phases", "component_phases"]


def component_phases(result: Any, *, threshold: float = 15.0) -> dict[str, Any] | None:
    """The rotation-invariant grouping of a result's 2-D endmembers.

    Parameters
    ----------
    result : Result
        Endmembers ``S`` (k, channels) with a 2-D ``signal_shape`` (diffraction patterns).
    threshold : float
        Components closer than this (degrees, average linkage) form one phase.

    Returns
    -------
    dict or None
        ``labels`` (the phase of every component, 0-based), ``linkage`` (SciPy's matrix),
        ``names``, ``metric``, ``method``, ``cophenetic`` and ``threshold``; None when the
        endmembers are not 2-D patterns or there are fewer than two.
    """
    shape = result.signal_shape
    if not shape or len(shape) != 2 or result.k < 2:
        return None
    S = np.asarray(to_numpy(result.S), dtype=float)
    names = [f"c{j}" for j in range(result.k)]
    den = cluster_components(S, metric="rotation", names=names, signal_shape=tuple(shape))
    return {
        "labels": [int(v) for v in den.labels(threshold=float(threshold))],
        "linkage": np.asarray(den.linkage, dtype=float).tolist(),
        "names": names,
        "metric": den.metric,
        "method": den.method,
        "cophenetic": float(den.cophenetic),
        "threshold": float(threshold),
    }


def attach_phases(result: Any, *, threshold: float = 15.0) -> Any:
    """Store :func:`component_phases` in ``result.context["phases"]`` (when there are
    phases to find: 2-D endmembers, k >= 2) and return ``result``."""
    phases = component_phases(result, threshold=threshold)
    if phases is not None:
        result.context = {**(result.context or {}), "phases": phases}
    return result
