"""Smoothness on the data graph (``--graph-smooth``) on real maps: maps compared as they
are against maps compared relative to each pixel's brightness.

Rewrites the "Smoothness on the data graph" section of ``benchmarks/results/models.md``
(other sections are kept).

Protocol.  Each real map (pixels x channels, float64; the STM grid after the README's
derivative and clip steps) is fitted with the terms ``unmix run FILE -k K
--graph-smooth 0.01`` adds (:func:`unmix.cli._terms.flag_terms`: unit-norm endmembers,
``GraphSmoothness(0.01 * unit)`` on the 10-nearest-neighbour cosine graph), Frobenius
and KL, ``random_state=0``, the default solver, ``max_iter`` and ``tol``; once with
``normalize="none"`` (the maps compared as they are, the term before 2026-12-05) and once
with the default ``normalize="auto"`` (relative to each pixel's norm).  *min angle*: the
smallest angle between two endmembers (near 0: near-copies); *shares*: each component's
share of ``sum_ij a_ij ||s_j||``; *penalty / fit*: the penalty's value over the data
fit's at the end; *fit / plain*: the data fit over that of plain NMF (same loss,
defaults).  CPU seconds of the call, one BLAS thread.

Run: ``.venv/bin/python benchmarks/bench_graph_smooth.py``.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import dataclasses  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import unmix  # noqa: E402
import unmix.io  # noqa: E402
from _models_md import measured, write_section  # noqa: E402
from unmix.cli._terms import flag_terms  # noqa: E402
from unmix.model import GraphSmoothness  # noqa: E402
from unmix.preprocessing import OPS  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SECTION = "## Smoothness on the data graph"
NOTES = """
### Notes

- **Compared as they are** (`normalize="none"`), the data graph's penalty pulled the maps
  of pixels of one spectral shape but different brightness (thickness in EELS, focus and
  fluorescence in Raman) to one value: at the CLI's strength it was 2.0x (EELS) and 9.2x
  (Raman) the data fit, and the fits split the bright component into near-copies (EELS
  7.6 deg, KL 5.2 deg; Raman 5.4 and 6.0 deg; shares ~1/3 each).  Halving one map into
  two copies halves a quadratic penalty, and the penalty then costs less than the fit
  gains.  The Raman data fit was 25.7x (Frobenius) and 133x (KL) plain NMF's.
- **Relative to brightness** (the default since 2026-12-05): no near-copies (smallest
  angles 49.7-79.3 deg), the penalty 0.1-14 % of the fit, the data fit within 0.04-3.1 %
  of plain NMF's.  The two maps
  of nearly even brightness (XRD, EDS SEM) fit as before (scales near 1).
- **KL** (the gradient solver, unit-norm endmembers): since the endmembers step free in
  scale (2026-12-05, `engine/solvers/_gradient_endmembers.py`) every row stops by `tol`
  (before: Raman and XRD at `max_iter` 500 with the data fit 3 % and 27 % above plain
  KL's, EDS SEM stopped 4.2 % above it with the penalty near 0); the data fits are now
  within 1.4 % of plain KL's on every map but XRD (3.1 %, the penalty 14 % of the fit).
"""
MAPS = [  # name, file, k, scan shape (None: the file's)
    ("EELS Cu/ZnO", "eels/CuZn_EELS_mapping_tutorial.hspy", 3, None),
    ("Raman", "raman/raman_renishaw_streamline_49x45.npz", 3, None),
    ("XRD", "xrd/xrd_aps34ide_143x2000.npz", 3, (11, 13)),
    ("STM dI/dV", "stm/Bias_spectroscopy.3ds", 3, None),
    ("EDS SEM", "eds/eds_sem_bruker_P45_75x100.npz", 4, None),
]


def load(rel: str, shape: tuple | None) -> tuple[np.ndarray, tuple]:
    image = unmix.io.load(str(DATA / rel))
    if rel.endswith(".3ds"):  # the README's STM steps
        image = OPS["clip"](lower=0.0)(OPS["derivative"]()(image))
    X = np.asarray(image.unfold(), dtype=np.float64)
    X = X.reshape(X.shape[0], -1)
    return X, shape or tuple(image.data.shape[:2])


def with_normalize(opts: dict, normalize: str) -> dict:
    regs = [
        dataclasses.replace(t, normalize=normalize) if isinstance(t, GraphSmoothness) else t
        for t in opts["regularizers"]
    ]
    return {**opts, "regularizers": regs}


def measures(r: unmix.Result) -> dict:
    A, S = np.asarray(r.A, dtype=float), np.asarray(r.S, dtype=float)
    n = np.linalg.norm(S, axis=1)
    U = S / np.maximum(n, 1e-300)[:, None]
    ang = np.degrees(np.arccos(np.clip(U @ U.T, -1.0, 1.0)))[np.triu_indices(len(S), 1)]
    contrib = (A * n).sum(axis=0)
    return {
        "angle": float(ang.min()),
        "shares": ", ".join(f"{v:.2f}" for v in sorted(contrib / contrib.sum(), reverse=True)),
        "pen": float(r.history["GraphSmooth(A)"][-1] / r.history["fit"][-1]),
        "fit": float(r.history["fit"][-1]),
    }


def rows() -> list[str]:
    out = []
    for name, rel, k, shape in MAPS:
        X, scan = load(rel, shape)
        for loss in ("frobenius", "kl"):
            plain = unmix.factorize(X, k, loss=loss, spatial_shape=scan, random_state=0)
            base = flag_terms({"loss": loss}, {"graph_smooth": 0.01}, X)
            for normalize in ("none", "auto"):
                t = time.process_time()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    r = unmix.factorize(
                        X, k, spatial_shape=scan, random_state=0, **with_normalize(base, normalize)
                    )
                cpu = time.process_time() - t
                m = measures(r)
                note = "; ".join(sorted({type(w.message).__name__ for w in caught}))
                out.append(
                    f"| {name} | {k} | {loss} | {normalize} | {r.spec['solver']} | "
                    f"{r.n_iter} ({r.stop_reason}) | {m['angle']:.1f} | {m['shares']} | "
                    f"{m['pen']:.3f} | {m['fit'] / plain.history['fit'][-1]:.4f} | "
                    f"{cpu:.1f} | {note or '-'} |"
                )
                print(out[-1], flush=True)
    return out


def main() -> None:
    table = rows()
    text = "\n".join(
        [
            SECTION,
            "",
            measured("bench_graph_smooth.py"),
            "",
            "| map | k | loss | normalize | solver | iterations (stop) | min angle (deg) | "
            "shares | penalty / fit | fit / plain | CPU s | warnings |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            *table,
            "",
            "Run: `.venv/bin/python benchmarks/bench_graph_smooth.py`.",
            NOTES,
        ]
    )
    write_section(SECTION, text)


if __name__ == "__main__":
    main()
