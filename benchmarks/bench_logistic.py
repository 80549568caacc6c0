"""The logistic link on Boolean maps: the data-driven floor against ``shift=0`` and the
identity link.

Rewrites the "Logistic link" section of ``benchmarks/results/models.md`` (other sections
are kept).

Protocol.  Boolean maps (pixels, channels) with entries 0 or 1: a planted one (900
pixels in 3 regions, each region an on/off pattern over 40 channels, 3 % of the entries
flipped; seeds 0-2) and three made from real files - the EELS and Raman maps above each
channel's median, and the EDS JEOL map's detected counts (``X > 0``: at ~0.07 counts a
channel, a photon or none).  Each is fitted with ``unmix.factorize(B, k,
link="logistic", random_state=0)`` at its defaults (gradient solver, ``f(0)`` from the
data: 0.02 on a Boolean map), with ``link=unmix.Logistic(shift=0.0)`` (the former
default: ``f(0) = 0.5``) and with the identity link (plain NMF).  "within 0.2": share of
entries where the model ``f(A S)`` is within 0.2 of the map; "agree": share where the
model and the map fall on the same side of 0.5.  CPU: seconds of the call, one BLAS
thread.

Run: ``.venv/bin/python benchmarks/bench_logistic.py``.
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
from _models_md import measured, write_section  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SECTION = "## Logistic link"
FITS = {
    "logistic (floor from the data)": lambda: {"link": "logistic"},
    "Logistic(shift=0) (former default)": lambda: {"link": unmix.Logistic(shift=0.0)},
    "identity (plain NMF)": lambda: {},
}


def planted(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, 900)
    patterns = rng.random((3, 40)) < 0.4
    X = patterns[labels].astype(float)
    return np.where(rng.random(X.shape) < 0.03, 1.0 - X, X)


def real(rel: str) -> np.ndarray:
    si = unmix.io.load(str(DATA / rel))
    X = np.asarray(si.data, dtype=float)
    return X.reshape(-1, X.shape[-1])


def maps() -> list[tuple[str, int, np.ndarray]]:
    out = [(f"planted 30x30x40, seed {s}", 3, planted(s)) for s in (0, 1, 2)]
    for name, rel in [
        ("EELS Cu/ZnO 50x40x162 > channel median", "eels/CuZn_EELS_mapping_tutorial.hspy"),
        ("Raman 49x45x394 > channel median", "raman/raman_renishaw_streamline_49x45.npz"),
    ]:
        X = real(rel)
        out.append((name, 3, (X > np.median(X, axis=0)).astype(float)))
    X = real("eds/eds_tem_jeol_64x64_ds8.npz")
    out.append(("EDS JEOL 64x64x1024 counts > 0", 3, (X > 0).astype(float)))
    return out


def row(name: str, k: int, B: np.ndarray) -> str:
    cells = []
    for fit in FITS.values():
        t = time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = unmix.factorize(B, k, random_state=0, **fit())
        sec = time.process_time() - t
        Y = np.asarray(r.reconstruct())
        within = np.mean(np.abs(Y - B) < 0.2)
        agree = np.mean((Y > 0.5) == (B > 0.5))
        cells.append(f"{within:.3f} / {agree:.3f} ({r.n_iter} {r.stop_reason}, {sec:.1f} s)")
    return f"| {name} | {k} | {B.mean():.3f} | " + " | ".join(cells) + " |"


def main() -> None:
    head = " | ".join(f"{n}: within 0.2 / agree (iterations, CPU)" for n in FITS)
    lines = [
        SECTION,
        "",
        measured("bench_logistic.py"),
        "",
        f"| Boolean map | k | share of ones | {head} |",
        "|---|---|---|---|---|---|",
    ]
    for name, k, B in maps():
        lines.append(row(name, k, B))
        print(lines[-1], flush=True)
    lines += ["", "Run: `.venv/bin/python benchmarks/bench_logistic.py`.", NOTES]
    write_section(SECTION, "\n".join(lines))


NOTES = """
### Notes

- Planted map: with the floor from the data, the model is within 0.2 of the map on
  95.6-96.0 % of the entries (the 3 % flipped entries bound it near 97 %); with
  ``shift=0`` (the former default) on 36-39 %: ``f(0) = 0.5``, so every zero is fitted at
  0.5 or more, while thresholding at 0.5 still agrees on 97 % - the threshold hid it.
- Real Boolean maps (86-97 % within 0.2): the identity link fits them as closely (within
  0.7 points); what the logistic link adds there is a model that is a probability in
  (0, 1) everywhere.  The former default fitted 1-45 %.
- Cost: links are fitted by the gradient solver only (since 2026-12-04 a monotone
  descent method: projected Newton-scaled steps with Armijo backtracking and a trust
  region for the link).  It now stops by tol on the real maps (131-376 iterations; the
  former projected Adam ran to ``max_iter`` 500 everywhere) at equal or slightly better
  agreement, and takes 30-120x the identity fit's CPU time (Raman 6.5 s against 0.2 s,
  EDS 36.6 s against 0.3 s; EELS 6.6 s, was 1.3 s with Adam).  A Boolean map has no
  finite best logistic fit (the objective keeps falling as ``A S`` grows), so "tol"
  means the trust-region-limited descent stalls.  A Bernoulli (logistic) loss and a
  faster solver for links are not built.
"""

if __name__ == "__main__":
    main()
