"""Robust NMF (``loss="l21"``) against Frobenius NMF on real maps with spiked pixels.

Rewrites the "Robust NMF (l2,1)" section of ``benchmarks/results/models.md`` (the file
collects the rows of issue 12's models, one section each; other sections are kept).

Protocol.  Each map (pixels, channels) in float64 is fitted clean and with 3 % of its
pixels spiked (seeded): each spiked pixel gets 1-3 random channels raised by ``U(lo, hi)``
times that pixel's maximum (cosmic-ray-like; ``lo, hi = 50, 100`` unless said).  For
each loss, "moved" is the largest angle between the spiked fit's endmembers and the clean
fit's (Hungarian-matched by angle, :func:`unmix.metrics.score`); "start to start" the
largest angle between two clean fits from different starts (NNDSVDa and ``init="random"``,
seed 1): where it is large the model is not identifiable on that map and "moved" says
little.  Models: ``sparse`` = ``A >= 0``, unit-norm endmembers, L1 on the maps (l2,1: 0.3
per unit of residual norm; Frobenius: 0.01 times the clean map's mean pixel norm, the CLI's
``--sparsity 0.01``); ``plain`` = ``A, S >= 0`` alone.  Both losses with HALS, their
default start (NNDSVDa; for l2,1 its SVD leaves out outlier pixels), ``tol=1e-7``,
``max_iter=3000``, seed 0.  Times are CPU seconds of this process (one BLAS thread).

Run: ``.venv/bin/python benchmarks/bench_robust.py [--quick]`` (``--quick``: the EELS map).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.io as sio  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import unmix  # noqa: E402
from _models_md import write_section  # noqa: E402
from unmix.blocks import mean_row_norm  # noqa: E402
from unmix.metrics import score  # noqa: E402

OUT = Path(__file__).parent / "results" / "models.md"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SECTION = "## Robust NMF (l2,1)"
SEEDS = (0, 1)
FIT = {"solver": "hals", "max_iter": 3000, "tol": 1e-7, "random_state": 0}


# ---------------------------------------------------------------------- data
def spike(X: np.ndarray, seed: int, lo: float = 50.0, hi: float = 100.0) -> np.ndarray:
    """3 % of the pixels (seeded), 1-3 random channels each raised by U(lo, hi) x the
    pixel's maximum (the acceptance test's spike model)."""
    rng = np.random.default_rng(seed)
    Xs = X.copy()
    n, m = X.shape
    for i in rng.choice(n, round(0.03 * n), replace=False):
        c = rng.integers(1, 4)
        Xs[i, rng.choice(m, c, replace=False)] += rng.uniform(lo, hi, c) * X[i].max()
    return Xs


def _hsi(name: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    d = sio.loadmat(DATA / "hsi" / f"{name}.mat")
    cube = d["Y"].T.reshape(*shape, -1, order="F")
    return cube.reshape(-1, cube.shape[-1]).astype(np.float64), d["GT"].astype(np.float64)


def _npz(path: str) -> np.ndarray:
    data = np.load(DATA / path)["data"]
    return data.reshape(-1, data.shape[-1]).astype(np.float64)


def datasets(quick: bool) -> list[tuple[str, np.ndarray, int, np.ndarray | None]]:
    """``(name, X, k, true endmembers or None)`` of every map that exists here."""
    eels = DATA / "eels" / "CuZn_EELS_mapping_tutorial.hspy"
    out = [("EELS Cu/ZnO 50x40x162", np.asarray(unmix.load(str(eels)).unfold(), float), 3, None)]
    if quick:
        return out
    out.append(("Raman 49x45x394", _npz("raman/raman_renishaw_streamline_49x45.npz"), 3, None))
    out.append(("EDS JEOL 64x64x1024", _npz("eds/eds_tem_jeol_64x64_ds8.npz"), 4, None))
    out.append(("XRD 143x2000", _npz("xrd/xrd_aps34ide_143x2000.npz"), 3, None))
    for name, shape, k in (("samson", (95, 95), 3), ("jasper_ridge", (100, 100), 4)):
        X, gt = _hsi(name, shape)
        out.append((f"HSI {name} {shape[0]}x{shape[1]}x{X.shape[1]}", X, k, gt))
    return out


# ---------------------------------------------------------------------- fits
def fit(X: np.ndarray, k: int, loss: str, model: str, lam: float, **kw) -> tuple:
    """``(result, CPU seconds)`` of one fit of the protocol."""
    terms = {}
    if model == "sparse":
        terms = {
            "constraints": [unmix.NonNegative(), unmix.UnitNorm()],
            "regularizers": [unmix.L1(lam)],
        }
    t = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # collapse / scale warnings: the rows say enough
        r = unmix.factorize(X, k, loss=loss, **{**FIT, **terms, **kw})
    return r, time.process_time() - t


def moved(S: np.ndarray, ref: np.ndarray) -> float:
    return float(max(score(S, ref)["sad_each"]))


def one_loss(name: str, X: np.ndarray, k: int, gt, loss: str, model: str, lam: float) -> dict:
    clean, t_clean = fit(X, k, loss, model, lam)
    alt, _ = fit(X, k, loss, model, lam, init="random", random_state=1)
    row = {
        "data": name,
        "k": k,
        "model": model,
        "loss": loss,
        "start": moved(alt.S, clean.S),
        "moved": [],
        "iters": [clean.n_iter],
        "cpu": [t_clean],
        "loop": [clean.timings["iterations"]],
        "sad": None if gt is None else [float(score(clean.S, gt)["sad"])],
    }
    for seed in SEEDS:
        r, t = fit(spike(X, seed), k, loss, model, lam)
        row["moved"].append(moved(r.S, clean.S))
        row["iters"].append(r.n_iter)
        row["cpu"].append(t)
        row["loop"].append(r.timings["iterations"])
        if gt is not None:
            row["sad"].append(float(score(r.S, gt)["sad"]))
    print(f"{name} {model} {loss}: moved {row['moved']}, start {row['start']:.2f}", flush=True)
    return row


#: the columns of the spike-strength table: (label, loss, L1 weight or None for the CLI's)
LEVEL_FITS = (("Frobenius", "frobenius", None), ("l2,1", "l21", 0.3), ("l2,1, L1 0.1", "l21", 0.1))


def levels(X: np.ndarray, k: int) -> list[dict]:
    """The EELS map, sparse model, at three spike strengths (seed 0)."""
    lams = [0.01 * mean_row_norm(X) if lam is None else lam for _, _, lam in LEVEL_FITS]
    pairs = [(loss, lam) for (_, loss, _), lam in zip(LEVEL_FITS, lams, strict=True)]
    ref = [fit(X, k, loss, "sparse", lam)[0] for loss, lam in pairs]
    rows = []
    for lo, hi in ((1, 2), (5, 10), (50, 100)):
        Xs = spike(X, 0, lo, hi)
        cells = []
        for (loss, lam), clean in zip(pairs, ref, strict=True):
            r, t = fit(Xs, k, loss, "sparse", lam)
            cells.append((moved(r.S, clean.S), r.n_iter, t))
        rows.append({"level": f"{lo}-{hi}x", "cells": cells})
    return rows


# ---------------------------------------------------------------------- report
def _per_iteration(row: dict) -> float:
    """Seconds an iteration (the loops of the clean and spiked fits together)."""
    return float(np.sum(row["loop"]) / max(np.sum(row["iters"]), 1))


def _fmt(row: dict, fro: dict) -> str:
    sad = "-" if row["sad"] is None else f"{row['sad'][0]:.2f} / {np.mean(row['sad'][1:]):.2f}"
    it_sp = np.mean(row["iters"][1:])
    clean = row["cpu"][0] / max(fro["cpu"][0], 1e-9)
    per_iter = _per_iteration(row) / max(_per_iteration(fro), 1e-12)
    ratio = "-" if row is fro else f"{clean:.2f}x / {per_iter:.2f}x"
    return (
        f"| {row['data']} | {row['k']} | {row['model']} | {row['loss']} "
        f"| {row['start']:.2f} | {' / '.join(f'{a:.2f}' for a in row['moved'])} | {sad} "
        f"| {row['iters'][0]} / {it_sp:.0f} | {row['cpu'][0]:.2f} / "
        f"{np.mean(row['cpu'][1:]):.2f} | {1e3 * _per_iteration(row):.2f} | {ratio} |"
    )


def _cell(v: tuple) -> str:
    return f"{v[0]:.2f} ({v[1]}, {v[2]:.2f} s)"


def section(rows: list[dict], lv: list[dict], quick: bool) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = [
        SECTION,
        "",
        f"Measured {now} on {platform.machine()}, one BLAS thread, CPU seconds of the process "
        "(`time.process_time`), float64.  Objective: `sum_i w_i ||x_i - a_i S||_2` + "
        "penalties, by iteratively reweighted least squares (each iteration one HALS step "
        "with pixel weights `1 / max(||r_i||, eps)`, then one pass for the residual norms).",
        "",
        "Spikes: 3 % of the pixels (seeds 0 and 1), 1-3 random channels each raised by "
        "U(50, 100) times the pixel's maximum (cosmic-ray-like).  Angles in degrees, "
        'Hungarian-matched by spectral angle; "moved": spiked fit vs clean fit of the same '
        'loss and model (seed 0 / seed 1); "start to start": clean fit from NNDSVDa vs '
        'from `init="random"` (large: the model is not identifiable on that map).  SAD vs '
        "truth: mean angle to the published endmembers, clean / spiked (mean of the seeds).  "
        "CPU s: the whole call (start included; spiked: mean of the seeds); ms / iteration: "
        "wall clock of the iterations (`result.timings`), clean and spiked fits together; "
        "l2,1 / Frobenius: the clean call's CPU, and the time an iteration.",
        "",
        "| data | k | model | loss | start to start | moved by spikes | SAD vs truth "
        "(clean / spiked) | iterations (clean / spiked) | CPU s (clean / spiked) "
        "| ms / iteration | l2,1 / Frobenius |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    fro = {(r["data"], r["model"]): r for r in rows if r["loss"] == "frobenius"}
    body = [_fmt(r, fro[(r["data"], r["model"])]) for r in rows]
    lev = [
        "",
        "EELS map, sparse model, seed 0, three spike strengths (moved deg, iterations, CPU "
        "s); the last column with the l2,1 fit's L1 weight 0.1 instead of 0.3:",
        "",
        "| spikes | " + " | ".join(label for label, _, _ in LEVEL_FITS) + " |",
        "|---|" + "---|" * len(LEVEL_FITS),
        *(f"| {r['level']} | " + " | ".join(map(_cell, r["cells"])) + " |" for r in lv),
    ]
    run = ".venv/bin/python benchmarks/bench_robust.py" + (" --quick" if quick else "")
    return "\n".join([*head, *body, *lev, "", f"Run: `{run}`.", "", NOTES])


NOTES = """### Notes

- Sparse model: on the EELS, Raman, EDS and both HSI maps the l2,1 endmembers move at most
  0.7 deg under the spikes, Frobenius's 72-90 deg.  Against the published endmembers
  (HSI) the l2,1 fit is unchanged by the spikes (Samson 1.50 -> 1.50 deg, Jasper Ridge
  3.80 -> 3.72) while Frobenius's goes from 1.66 to 57.5 and from 5.89 to 60.3 deg.
- The exception is XRD, seed 0 (77 deg): Bragg peaks are as narrow as a spike, so a spike
  on a peak channel has a cosine above 0.3 with that endmember and the L1 weight no longer
  holds it off (seed 1: 0.48 deg).
- Plain NMF is not identifiable on these maps ("start to start" 9-53 deg): clean fits from
  different starts end far apart at the same objective, and any perturbation - even 1-2x
  spikes - moves the endmembers along that valley (on the EELS map 35-49 deg from other
  random starts).  l2,1 moves less than Frobenius there (HSI: 11-19 against 80-87 deg)
  but not within 2 deg.  The acceptance test
  (`tests/engine/test_robust.py::test_eels_acceptance_spiked_pixels`) therefore uses the
  sparse model, whose clean fits from random starts agree within about 1.4 deg.
- Why L1 0.3: a pixel's l2,1 term pulls its map along an endmember by at most the cosine
  between its residual and that (unit-norm) endmember; a 1-3 channel spike has a cosine
  below 0.3 with smooth spectra, so the L1 weight 0.3 keeps spikes out of the maps and
  their pull on the endmembers is that of any other pixel.  Under Frobenius the pull
  grows with the spike: no fixed L1 weight holds it.  With L1 0.1 the l2,1 fit follows
  5-10x spikes on the EELS map (table above).
- The start matters as much as the loss: a least-squares SVD (NNDSVD) of a spiked map is
  ruled by the spikes, and both losses then stay in a minimum that fits them.  For l2,1
  the NNDSVD's SVD leaves out the pixels whose residual norm to the rank-k subspace
  exceeds 3x the mean of the others (`unmix.engine._robust.trimmed_svd`), and a collapsed
  component is restarted from the worst-fitted pixel that is not such an outlier.
- Cost: an l2,1 iteration is one weighted HALS step plus one pass for the residual norms,
  1.3-1.6x a Frobenius iteration where both make the same passes.  On the EDS map (4.2 M
  entries) Frobenius's default compressed phase (`compress="auto"`) runs on a rank-14 SVD
  and l2,1 has none: 4-7x.  On clean maps l2,1 needs about as many iterations; on spiked
  maps Frobenius often stops early (14-200 iterations) in a spike-fitting minimum.
- EDS at ~0.07 counts a channel is a Poisson case (KL is its loss); the l2,1 rows are for
  completeness (sparse l2,1 stops after ~30 iterations, and from a random start it ends
  elsewhere: 83 deg).
- `tol` is relative to the whole objective, which spiked pixels dominate under l2,1 (their
  residual norms stay): use a smaller `tol` (here 1e-7) than for Frobenius.
- The l2,1 limits: its influence per pixel is bounded, not zero; where the outliers' total
  norm dwarfs the clean residual and an endmember can align with them (plain NMF, sharp
  peaks), the l2,1 optimum itself fits them.
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="the EELS map only")
    args = ap.parse_args()
    rows = []
    with threadpool_limits(1):
        for name, X, k, gt in datasets(args.quick):
            lam = {"frobenius": 0.01 * mean_row_norm(X), "l21": 0.3}
            for model in ("sparse", "plain"):
                for loss in ("frobenius", "l21"):
                    rows.append(one_loss(name, X, k, gt, loss, model, lam[loss]))
        eels = datasets(True)[0]
        lv = levels(eels[1], eels[2])
    write_section(SECTION, section(rows, lv, args.quick))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
