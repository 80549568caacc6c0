"""Which constraint sets each solver accepts: a JSON dict ``{"set|solver": true/false}``.

Every combination is a 2-iteration fit (``max_iter=2``) on small planted non-negative
data, ``unmix.datasets.make_mixture(3, spatial_shape=(10, 12), n_channels=20,
random_state=0)`` clipped at 0, with ``spatial_shape`` passed. ``true``: the fit ran;
``false``: it raised ``unmix.UnsupportedError``.  Any other exception is also ``false``
and is listed on stderr (``set|solver: Type: message``), so refusals by another
exception type do not pass for acceptance.

Only the top-level ``unmix`` API is used, so the script also runs against older
checkouts::

    .venv/bin/python benchmarks/check_acceptance_matrix.py > new.json
    cd /work/orig && PYTHONPATH=/work/orig/src /work/main/.venv/bin/python \\
        /work/main/benchmarks/check_acceptance_matrix.py > old.json

``--why`` adds the refusal messages to the JSON (``{"set|solver": "message"}``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

import unmix  # noqa: E402

SOLVERS = ("hals", "mu", "bpp", "admm", "gradient", "svd")
SPATIAL = (10, 12)
K = 3


def _simplex() -> list:
    return [unmix.NonNegative(), unmix.SumToOne()]


def combinations(X: np.ndarray, S_true: np.ndarray) -> dict[str, Callable[[], dict]]:
    """Name -> a function returning fresh ``unmix.factorize`` keyword arguments."""
    mean_norm = float(np.mean(np.linalg.norm(X, axis=1)))  # unmix.blocks.mean_row_norm
    mean_sq = float(np.mean(np.einsum("ij,ij->i", X, X)))
    return {
        "NMF": lambda: {},
        "NMF + sum-to-one": lambda: {"constraints": _simplex()},
        "NMF + L1": lambda: {
            "constraints": [unmix.NonNegative(), unmix.UnitNorm()],
            "regularizers": [unmix.L1(0.05 * mean_norm)],
        },
        "NMF + sum-to-one + grid smoothness": lambda: {
            "constraints": _simplex(),
            "regularizers": [unmix.SpatialSmoothness(1e-3 * mean_sq)],
        },
        "NMF + sum-to-one + min-volume": lambda: {
            "constraints": _simplex(),
            "regularizers": [unmix.MinVolume(0.5, scale="residual")],
        },
        "KL": lambda: {"loss": "kl"},
        "KL + sum-to-one": lambda: {"loss": "kl", "constraints": _simplex()},
        "Bounds(0, 1, A) + NonNegative(S)": lambda: {
            "constraints": [unmix.Bounds(0, 1, target="A"), unmix.NonNegative(target="S")]
        },
        "FixedEndmembers(first planted) + NonNegative": lambda: {
            "constraints": [unmix.FixedEndmembers(S_true[:1].copy()), unmix.NonNegative()]
        },
        "UnitNorm + NonNegative": lambda: {"constraints": [unmix.NonNegative(), unmix.UnitNorm()]},
        "Orthogonal alone": lambda: {"constraints": [unmix.Orthogonal()]},
        "MinVolume(0.5) alone": lambda: {"regularizers": [unmix.MinVolume(0.5)]},
        "SpatialSmoothness(0.1) alone": lambda: {"regularizers": [unmix.SpatialSmoothness(0.1)]},
        "GaussianMapFilter(1.0)": lambda: {"regularizers": [unmix.GaussianMapFilter(1.0)]},
        "SpectralSmoothing(median, size=3)": lambda: {
            "regularizers": [unmix.SpectralSmoothing("median", size=3)]
        },
        "loss=itakura-saito": lambda: {"loss": "itakura-saito"},
        "link=logistic": lambda: {"link": "logistic", "X": X / X.max()},  # data in [0, 1]
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--why", action="store_true", help="refusal messages instead of false")
    args = ap.parse_args()
    mix = unmix.datasets.make_mixture(K, spatial_shape=SPATIAL, n_channels=20, random_state=0)
    X = np.clip(np.asarray(mix.X, dtype=np.float64), 0.0, None)
    S_true = np.asarray(mix.S, dtype=np.float64)
    out: dict[str, object] = {}
    for name, kwargs in combinations(X, S_true).items():
        for solver in SOLVERS:
            key = f"{name}|{solver}"
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    kw = kwargs()
                    unmix.factorize(
                        kw.pop("X", X),
                        K,
                        solver=solver,
                        max_iter=2,
                        spatial_shape=SPATIAL,
                        random_state=0,
                        **kw,
                    )
                out[key] = True
            except unmix.UnsupportedError as exc:
                out[key] = " ".join(str(exc).split()) if args.why else False
            except Exception as exc:
                msg = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
                print(f"{key}: {msg}", file=sys.stderr)
                out[key] = msg if args.why else False
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
