"""Orthogonal NMF on real maps: ``MaxActive(1, target="S")`` against plain NMF.

Rewrites the "Orthogonal NMF" section of ``benchmarks/results/models.md`` (other sections
are kept).

Protocol.  Each map (clipped at 0, pixels x channels) is fitted by plain NMF
(``unmix.factorize(X, k, random_state=0)``, its defaults) and by orthogonal NMF
(``constraints=[NonNegative(), MaxActive(1, target="S")]``: one endmember a channel,
exact ANLS) from the default start (NNDSVDa) and from SPA, VCA and 4 random starts; the
table gives the default start's fit and the best of all.  Relative error
``||X - A S||_F / ||X||_F``; off-diagonal: the largest ``|s_i . s_j| / (|s_i| |s_j|)``,
``i != j``; min share: the weakest component's mean abundance over the mean of all
(near 0: collapsed).  CPU: seconds of the default-start fit, one BLAS thread.

Run: ``.venv/bin/python benchmarks/bench_orthogonal.py``.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import unmix  # noqa: E402
import unmix.io  # noqa: E402
from _machine import table_rows  # noqa: E402
from _models_md import measured, write_section  # noqa: E402
from unmix.preprocessing import OPS  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SECTION = "## Orthogonal NMF"
ONMF = [unmix.NonNegative(), unmix.MaxActive(1, target="S")]
MAPS = [
    ("EELS Cu/ZnO 50x40x162", "eels/CuZn_EELS_mapping_tutorial.hspy", 3),
    ("XRD 143x2000", "xrd/xrd_aps34ide_143x2000.npz", 6),
    ("XRD 143x2000", "xrd/xrd_aps34ide_143x2000.npz", 3),
    ("Raman 49x45x394", "raman/raman_renishaw_streamline_49x45.npz", 3),
    ("STM dI/dV 20x20x128", "stm/Bias_spectroscopy.3ds", 3),  # derivative (README steps)
]


def measures(X: np.ndarray, r: unmix.Result) -> tuple[float, float, float, list[int]]:
    A, S = np.asarray(r.A, dtype=float), np.asarray(r.S, dtype=float)
    err = float(np.linalg.norm(X - A @ S) / np.linalg.norm(X))
    n = np.linalg.norm(S, axis=1)
    C = (S @ S.T) / np.outer(n, n)
    off = float(np.max(np.abs(C - np.diag(np.diag(C)))))
    share = float(np.min(A.mean(axis=0)) / max(A.mean(), 1e-300))
    return err, off, share, [int(v) for v in np.count_nonzero(S, axis=1)]


def fits(X: np.ndarray, k: int) -> tuple[unmix.Result, float, unmix.Result]:
    """The default-start fit, its CPU seconds, and the best of every start."""
    t = time.process_time()
    first = unmix.factorize(X, k, constraints=ONMF, random_state=0, max_iter=1000)
    sec = time.process_time() - t
    runs = [first]
    for init in ("spa", "vca"):
        runs.append(unmix.factorize(X, k, constraints=ONMF, init=init, random_state=0))
    for seed in range(4):
        runs.append(unmix.factorize(X, k, constraints=ONMF, init="random", random_state=seed))
    return first, sec, min(runs, key=lambda r: r.objective)


def row(name: str, rel: str, k: int) -> str:
    image = unmix.io.load(str(DATA / rel))
    if rel.endswith(".3ds"):  # the current: dI/dV as the README's STM run, then clip
        image = OPS["derivative"]()(image)
    X = np.asarray(image.unfold(), dtype=float)
    X = np.clip(X.reshape(X.shape[0], -1), 0, None)
    plain = unmix.factorize(X, k, random_state=0)
    e0, off0, _, _ = measures(X, plain)
    first, sec, best = fits(X, k)
    e1, off1, share1, ch1 = measures(X, first)
    e2, _, share2, _ = measures(X, best)
    return (
        f"| {name} | {k} | {e0:.4f} ({off0:.2f}) | {e1:.4f} | {e1 / e0:.2f}x | {off1:.1e} | "
        f"{share1:.3f} | {', '.join(map(str, ch1))} | {first.n_iter} {first.stop_reason} | "
        f"{e2 / e0:.2f}x ({share2:.3f}) | {sec:.2f} |"
    )


NOTES = """
### Notes

- The rows of `S` are orthogonal exactly (off-diagonal 0): each channel belongs to one
  endmember, so orthogonal NMF is a clustering of the channels, each cluster with its own
  map.  Exact ANLS solves each channel's choice exactly (the best single endmember for
  that channel's column of `X`), so the objective never increases; it stops within 5-20
  iterations.
- EELS: within 1.2x of plain NMF's error (the issue's bound).  The channels split into
  three energy bands - 700-940 eV (below the Cu L2,3 edge), 948-1044 eV (from it to the
  Zn L2,3 edge) and 1052-1988 eV - so the maps are band intensities, not Cu and Zn maps:
  orthogonal endmembers cannot share the background every pixel holds.  The min share
  depends on each endmember's scale (0.018 from NNDSVDa, 0.80 from the best start); no
  component is empty.
- The start: NNDSVDa's endmembers are put on one scale (unit norm, `MaxActive.rescale`)
  before the projection gives each channel to one of them; unbalanced, the first
  NNDSVDa endmember (the mean spectrum) took every channel of the STM grid and the
  other two collapsed for good (error 0.1272, "try k=1"; balanced 0.1194, 1.03x).
- XRD k 6 is **not** within 1.2x (1.6-1.75x from every start): one endmember takes the
  diffuse background of ~1650-1720 channels and the others a few Bragg-peak channels
  each, so the background under a peak is fitted by the peak's own map.  Plain NMF
  shares that background between components (its endmembers overlap: off-diagonal up to
  the value in brackets).  A soft orthogonality penalty (an earlier prototype, HALS,
  continued to off-diagonal 0.05) reached 1.40x; the bound looks out of reach for
  orthogonal endmembers on this map.
- Raman: 2.3x - the polystyrene and background bands overlap in every channel.
- STM (dI/dV, the README's steps): 1.03x, three bias ranges, every component alive.
"""


def main() -> None:
    warnings.simplefilter("ignore")
    lines = [
        SECTION,
        "",
        measured("bench_orthogonal.py"),
        "",
        "| map | k | plain NMF error (off-diagonal) | orthogonal NMF error | ratio | "
        "off-diagonal | min share | channels per endmember | iterations | best of 7 starts: "
        "ratio (min share) | CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += table_rows(MAPS, row)
    lines += ["", "Run: `.venv/bin/python benchmarks/bench_orthogonal.py`.", NOTES]
    write_section(SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()
