"""No solver x constraint combination accepted before the term protocol is refused now.

The list is what ``benchmarks/check_acceptance_matrix.py`` printed for the code before
the capability protocol (main at 45b44bb); each is a 2-iteration fit on planted data.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

import unmix

SCRIPT = os.path.join(
    os.path.dirname(__file__), "..", "..", "benchmarks", "check_acceptance_matrix.py"
)
ACCEPTED_BEFORE = [
    "Bounds(0, 1, A) + NonNegative(S)|admm",
    "Bounds(0, 1, A) + NonNegative(S)|gradient",
    "Bounds(0, 1, A) + NonNegative(S)|hals",
    "FixedEndmembers(first planted) + NonNegative|admm",
    "FixedEndmembers(first planted) + NonNegative|bpp",
    "FixedEndmembers(first planted) + NonNegative|gradient",
    "FixedEndmembers(first planted) + NonNegative|hals",
    "FixedEndmembers(first planted) + NonNegative|mu",
    "GaussianMapFilter(1.0)|admm",
    "GaussianMapFilter(1.0)|bpp",
    "GaussianMapFilter(1.0)|gradient",
    "GaussianMapFilter(1.0)|hals",
    "GaussianMapFilter(1.0)|mu",
    "GaussianMapFilter(1.0)|svd",
    "KL + sum-to-one|gradient",
    "KL|gradient",
    "KL|mu",
    "MinVolume(0.5) alone|admm",
    "MinVolume(0.5) alone|bpp",
    "MinVolume(0.5) alone|gradient",
    "MinVolume(0.5) alone|hals",
    "MinVolume(0.5) alone|mu",
    "NMF + L1|admm",
    "NMF + L1|bpp",
    "NMF + L1|gradient",
    "NMF + L1|hals",
    "NMF + L1|mu",
    "NMF + sum-to-one + grid smoothness|admm",
    "NMF + sum-to-one + grid smoothness|gradient",
    "NMF + sum-to-one + min-volume|admm",
    "NMF + sum-to-one + min-volume|gradient",
    "NMF + sum-to-one|admm",
    "NMF + sum-to-one|gradient",
    "NMF|admm",
    "NMF|bpp",
    "NMF|gradient",
    "NMF|hals",
    "NMF|mu",
    "NMF|svd",
    "Orthogonal alone|admm",
    "Orthogonal alone|gradient",
    "Orthogonal alone|svd",
    "SpatialSmoothness(0.1) alone|admm",
    "SpatialSmoothness(0.1) alone|bpp",
    "SpatialSmoothness(0.1) alone|gradient",
    "SpatialSmoothness(0.1) alone|hals",
    "SpatialSmoothness(0.1) alone|mu",
    "SpectralSmoothing(median, size=3)|admm",
    "SpectralSmoothing(median, size=3)|bpp",
    "SpectralSmoothing(median, size=3)|gradient",
    "SpectralSmoothing(median, size=3)|hals",
    "SpectralSmoothing(median, size=3)|mu",
    "SpectralSmoothing(median, size=3)|svd",
    "UnitNorm + NonNegative|admm",
    "UnitNorm + NonNegative|bpp",
    "UnitNorm + NonNegative|gradient",
    "UnitNorm + NonNegative|hals",
    "UnitNorm + NonNegative|mu",
    "link=logistic|gradient",
    "loss=itakura-saito|gradient",
    "loss=itakura-saito|mu",
]


def _matrix():
    spec = importlib.util.spec_from_file_location("matrix", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def cases():
    mod = _matrix()
    mx = unmix.datasets.make_mixture(3, spatial_shape=mod.SPATIAL, n_channels=20, random_state=0)
    X = np.clip(mx.X, 0, None)
    return X, mod.combinations(X, np.asarray(mx.S))


@pytest.mark.parametrize("key", ACCEPTED_BEFORE)
def test_still_accepted(cases, key):
    X, combos = cases
    name, solver = key.split("|")
    kwargs = combos[name]()
    X = kwargs.pop("X", X)  # a row may bring its own data (the logistic link: X in [0, 1])
    r = unmix.factorize(
        X, 3, solver=solver, max_iter=2, spatial_shape=(10, 12), random_state=0, **kwargs
    )
    assert np.all(np.isfinite(np.asarray(r.S)))
