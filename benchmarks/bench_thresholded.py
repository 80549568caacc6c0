"""Thresholded NMF against plain NMF: a planted 1 % target on real maps.

Rewrites the "Thresholded NMF" section of ``benchmarks/results/models.md`` (the file
collects the rows of issue 12's models, one section each; other sections are kept).

Protocol.  A narrow Gaussian peak (sigma 1.5 channels) is added to a compact blob of 1 %
of a real map's pixels (:func:`unmix.datasets.plant_target`; its norm ``amplitude`` x the
median pixel norm; seeds 0-2), then rounded to counts where the map holds counts.
:func:`unmix.thresholded.thresholded_nmf` at its defaults (k background components,
threshold 5, 3 rounds, smooth 1.5, l2,1 loss, ``max_iter=300``) gives a target mask; F1
against the planted blob.  Plain NMF (k + 1 components, HALS, its defaults) is scored
generously: for every component and every threshold of its (maps x spectrum norm), the
best F1 over all of them.  "target angle": the target endmember against the planted peak
(deg).  CPU: seconds of the whole call, one BLAS thread.

Run: ``.venv/bin/python benchmarks/bench_thresholded.py``.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import datetime  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import unmix  # noqa: E402
from _models_md import write_section  # noqa: E402
from unmix.datasets import plant_target  # noqa: E402
from unmix.thresholded import thresholded_nmf  # noqa: E402

OUT = Path(__file__).parent / "results" / "models.md"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SECTION = "## Thresholded NMF"
AMPLITUDES = (0.03, 0.05, 0.1, 0.2, 1.0)
SEEDS = (0, 1, 2)
NOTES = """
### Notes

- EELS (counts, 20 planted pixels): found with F1 0.90-0.98 at every amplitude from 3 %
  of the median pixel norm, with no threshold tuned on the answer.  Plain NMF with one
  more component finds it as well from 5 % on, but only when its best component and the
  best threshold of that map are picked knowing the answer; at 3 % it does not (0.00 /
  0.62 / 0.97).  The target's spectrum is recovered (<= 7.4 deg) from 10 % on; below,
  the mean residual of 20 pixels is still dominated by the counting noise.
- EDS JEOL (about 75 counts a pixel over 1024 channels): a peak of a few counts is below
  the counting noise of the residual norm: nothing found up to a peak of 1.8 counts; at
  9 counts, 1 of 3 seeds (F1 0.94), 0.59 and 0.00 for the others.  A matched filter on
  the residual would see weaker targets; the residual norm does not.
- Raman (float data, 3 background components): the background leaves structured
  residual in about 380 of 2205 pixels (the map holds more than 3 smooth components), so
  the score flags them and the target is lost (F1 0.11).  Plain NMF k + 1 (best
  component, best threshold) finds a strong target (amplitude 1.0, F1 0.94-0.98); at 3-20 %
  neither does.
"""


def maps() -> list[tuple[str, np.ndarray, int, bool]]:
    with h5py.File(DATA / "eels" / "CuZn_EELS_mapping_tutorial.hspy") as f:
        eels = f["Experiments/EELS Spectrum Image/data"][()]
    raman = np.load(DATA / "raman" / "raman_renishaw_streamline_49x45.npz")["data"]
    jeol = np.load(DATA / "eds" / "eds_tem_jeol_64x64_ds8.npz")["data"]
    return [
        ("EELS Cu/ZnO 50x40x162", eels, 3, True),
        ("EDS JEOL 64x64x1024", jeol, 3, True),
        ("Raman 49x45x394", raman, 3, False),
    ]


def f1(pred: np.ndarray, mask: np.ndarray) -> float:
    tp = np.sum(pred & mask)
    return float(2 * tp / max(1, 2 * tp + np.sum(pred & ~mask) + np.sum(~pred & mask)))


def plain_best_f1(X: np.ndarray, k: int, mask: np.ndarray) -> float:
    r = unmix.factorize(X, k + 1, random_state=0)
    share = np.asarray(r.A) * np.linalg.norm(np.asarray(r.S), axis=1)
    best = 0.0
    for j in range(share.shape[1]):
        for t in np.unique(np.quantile(share[:, j], np.linspace(0.9, 0.999, 60))):
            best = max(best, f1(share[:, j] > t, mask))
    return best


def one(name: str, cube: np.ndarray, k: int, counts: bool, amp: float, seed: int) -> dict:
    p = plant_target(cube, amp, seed=seed)
    X = (np.rint(p.X) if counts else p.X).reshape(-1, cube.shape[-1])
    mask = p.mask.reshape(-1)
    t0 = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = thresholded_nmf(X, k, max_iter=300)
        cpu = time.process_time() - t0
        plain = plain_best_f1(X, k, mask)
    angle = float("nan")
    if r.target is not None:
        s = np.asarray(r.target.S[0])
        cos = s @ p.spectrum / max(np.linalg.norm(s), 1e-300)
        angle = float(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    return {
        "name": name,
        "amp": amp,
        "seed": seed,
        "f1": f1(r.mask, mask),
        "plain": plain,
        "found": int(r.mask.sum()),
        "true": int(mask.sum()),
        "angle": angle,
        "cpu": cpu,
        "peak": float(amp * np.median(np.linalg.norm(cube, axis=-1)) * p.spectrum.max()),
    }


def section(rows: list[dict]) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        SECTION,
        "",
        f"Measured {now} on {platform.machine()}, one BLAS thread, CPU seconds of the call "
        "(`time.process_time`).  Protocol: `benchmarks/bench_thresholded.py` docstring "
        "(planted 1 % blob, narrow peak of norm amplitude x the median pixel norm, seeds "
        "0-2; plain NMF with k + 1 components scored at its best component and threshold).",
        "",
        "| map | amplitude | peak height | F1 thresholded (seeds 0/1/2) | "
        "F1 plain NMF k+1, best | pixels found / planted | target angle (deg) | CPU s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["name"], r["amp"]) for r in rows}, key=lambda x: (x[0], x[1]))
    for name, amp in keys:
        rs = [r for r in rows if r["name"] == name and r["amp"] == amp]
        cell = " / ".join(f"{r['f1']:.3f}" for r in rs)
        plain = " / ".join(f"{r['plain']:.3f}" for r in rs)
        found = " / ".join(f"{r['found']}/{r['true']}" for r in rs)
        ang = " / ".join(f"{r['angle']:.1f}" for r in rs)
        cpu = np.mean([r["cpu"] for r in rs])
        peak = rs[0]["peak"]
        lines.append(
            f"| {name} | {amp} | {peak:.3g} | {cell} | {plain} | {found} | {ang} | {cpu:.1f} |"
        )
    lines += ["", "Run: `.venv/bin/python benchmarks/bench_thresholded.py`.", NOTES]
    return "\n".join(lines)


def main() -> None:
    rows = []
    with threadpool_limits(1):
        for name, cube, k, counts in maps():
            for amp in AMPLITUDES:
                for seed in SEEDS:
                    rows.append(one(name, cube, k, counts, amp, seed))
                    print(rows[-1], flush=True)
    write_section(SECTION, section(rows))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
