"""``unmix.fit_maps``: the maps of given endmembers, solved exactly on ``X`` itself."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import nnls

import unmix
from unmix.engine._assemble import AUTO_COMPRESS_ENTRIES


def test_maps_of_a_large_map_are_exact_nnls_on_x_itself():
    """At ``AUTO_COMPRESS_ENTRIES`` entries and more, the one exact solve ran in the
    compressed first phase: the maps fitted a rank-(k + 10) stand-in of ``X`` (off by up
    to 9 on the maps of ``unmix target``'s component on the 4096 x 2048 EDS TEM map, whose
    largest map value is 10) and a ``ConvergenceWarning`` said "reached max_iter=1"."""
    rng = np.random.default_rng(0)
    n, m = AUTO_COMPRESS_ENTRIES // 2000 + 1, 2000
    X = rng.random((n, 3)) @ rng.random((3, m)) + 0.1 * rng.random((n, m))
    S = rng.random((4, m))  # not in the span of X's leading singular vectors
    with warnings.catch_warnings():
        warnings.simplefilter("error", unmix.ConvergenceWarning)
        A = np.asarray(unmix.fit_maps(X, S))
    exact = np.array([nnls(S.T, x)[0] for x in X[:40]])
    np.testing.assert_allclose(A[:40], exact, rtol=1e-6, atol=1e-9 * exact.max())
