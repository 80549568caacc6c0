"""Blind unmixing accuracy on the hyperspectral scenes with ground truth.

Scenes (``../shared/data/hsi``, Zhu 2017): Samson (k = 3), Jasper Ridge (k = 4), Moffett
(k = 3).  Scoring (the data README's convention): Hungarian matching on spectral angle,
mean SAD in degrees, abundance RMSE after normalizing abundances to sum to one.  CPU
seconds with one BLAS thread.  Rows: the ``"blind-unmixing"`` preset, ablations of it
(one change each), plain NMF (unmix HALS) and scikit-learn's NMF.

Run: ``.venv/bin/python benchmarks/bench_hsi.py`` (writes ``results/hsi.md``, ~2 min).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.io as sio  # noqa: E402

import unmix  # noqa: E402
from unmix.metrics import score  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "hsi"
SCENES = {"samson": 3, "jasper_ridge": 4, "moffett": 3}
TARGETS = {"samson": (2.0, 0.06), "jasper_ridge": (4.0, 0.10), "moffett": (3.0, 0.06)}


def load(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X (pixels, bands) in the ground truth's pixel order, endmembers, abundances."""
    d = sio.loadmat(DATA / f"{name}.mat")
    Y = d["Y"].astype(float)
    side = round(np.sqrt(Y.shape[1]))
    X = Y.T.reshape(side, side, Y.shape[0], order="F").reshape(-1, Y.shape[0])
    A = d["S_GT"].astype(float)
    return X, d["GT"].astype(float), A.reshape(-1, A.shape[-1])


def _preset(**changes):
    def run(X, k):
        return unmix.factorize(X, k, preset="blind-unmixing", random_state=0, **changes)

    return run


def _sklearn(X, k):
    from sklearn.decomposition import NMF

    m = NMF(k, init="nndsvda", max_iter=1000, random_state=0)
    A = m.fit_transform(X)
    return type("R", (), {"A": A, "S": m.components_})


METHODS = {
    "preset blind-unmixing": _preset(),
    "- without pixel weights": _preset(preprocessing=[unmix.NormalizePixels("l2")]),
    "- without min-volume": _preset(regularizers=[]),
    "- without sum-to-one": _preset(constraints=[unmix.NonNegative()]),
    "- VCA start instead of SPA": _preset(init="vca"),
    "plain NMF (unmix HALS)": lambda X, k: unmix.factorize(X, k, random_state=0, max_iter=1000),
    "scikit-learn NMF": _sklearn,
}


def main() -> int:
    rows = []
    for method, fit in METHODS.items():
        for scene, k in SCENES.items():
            X, E, A = load(scene)
            t = time.process_time()
            r = fit(X, k)
            cpu = time.process_time() - t
            s = score(r.S, E, r.A, A)
            rows.append((method, scene, s["sad"], s["rmse"], cpu))
            print(
                f"{method:>28} {scene:>12} SAD {s['sad']:.2f} RMSE {s['rmse']:.3f} {cpu:.1f} s",
                file=sys.stderr,
            )
    lines = [
        "# Blind unmixing on Samson, Jasper Ridge and Moffett",
        "",
        "Mean SAD (deg) / abundance RMSE / CPU s (one BLAS thread); targets: Samson <= 2 / "
        "0.06, Jasper <= 4 / 0.10, Moffett <= 3 / 0.06, each under 30 s.",
        "",
        "| method | Samson (k=3) | Jasper Ridge (k=4) | Moffett (k=3) |",
        "|---|---|---|---|",
    ]
    for method in METHODS:
        cells = []
        for scene in SCENES:
            _, _, sad, rmse, cpu = next(r for r in rows if r[0] == method and r[1] == scene)
            sad_t, rmse_t = TARGETS[scene]
            mark = "" if sad <= sad_t and rmse <= rmse_t and cpu < 30 else " (target missed)"
            cells.append(f"{sad:.2f} / {rmse:.3f} / {cpu:.1f}{mark}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += [
        "",
        'The preset: `unmix.factorize(X, k, preset="blind-unmixing")` = L2-normalized '
        "pixels with loss weights w_i = ||x_i|| / mean ||x||, SPA start, A >= 0 with rows "
        'summing to one, S >= 0, MinVolume(0.5, delta=0.025, scale="residual"), AO-ADMM '
        "(30 inner iterations). See `unmix/presets.py`.",
        "",
        "Moffett's abundance RMSE stays near 0.069: its ground-truth abundances are "
        "sum-to-one least squares on the *raw* pixels (water is ~17x darker than soil), "
        "while Samson's are scale invariant; fitting the true endmembers under this scoring "
        "convention gives 0.0785 on Moffett, so no scale-invariant read-out reaches 0.06 "
        "there without breaking Samson (see `docs/hsi_notes.md`).",
        "",
    ]
    (HERE / "results" / "hsi.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
