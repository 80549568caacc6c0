"""Benchmark of rank selection (issue 5): planted ranks, real scenes, speed on Samson.

Run (one BLAS thread per process; results to benchmarks/results/selection.md)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_selection.py [--quick] [--only PART]

Parts: ``planted`` (k in {3, 5, 8} at 20, 30, 40 dB), ``real`` (Samson, Jasper Ridge,
Moffett, EELS Cu/ZnO raw and Poisson-scaled), ``serial`` (Samson on one process),
``speed`` (Samson on 2 processes, then 1), ``lambdas`` (staged Bayesian search on Samson),
``markdown`` (rewrite the results file only).  Every result is appended to a JSON lines
file (``$UNMIX_BENCH_LOG``, default in the temporary directory) as it finishes, so a
killed benchmark keeps what it measured; the Markdown takes the latest run of each case.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import tempfile
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from unmix.datasets import load_cuzn_eels, make_mixture  # noqa: E402
from unmix.selection import CRITERIA, select_rank  # noqa: E402
from unmix.selection._rank import voters  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data", "hsi")
LOG = os.environ.get(
    "UNMIX_BENCH_LOG", os.path.join(tempfile.gettempdir(), "unmix_bench_selection.jsonl")
)
logger = logging.getLogger("bench_selection")


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _hsi(name: str, shape: tuple[int, int, int]) -> np.ndarray:
    import scipy.io as sio

    d = sio.loadmat(os.path.join(DATA, name))
    H, W, L = shape
    return np.asarray(d["Y"], dtype=float).T.reshape(H, W, L, order="F")


def scenes() -> dict[str, tuple[np.ndarray, int | None]]:
    """Cubes (rows, cols, channels) and their labelled k."""
    out = {}
    for name, file, shape, k in (
        ("Samson", "samson.mat", (95, 95, 156), 3),
        ("Jasper Ridge", "jasper_ridge.mat", (100, 100, 198), 4),
        ("Moffett", "moffett.mat", (50, 50, 184), 3),
    ):
        if os.path.exists(os.path.join(DATA, file)):
            out[name] = (_hsi(file, shape), k)
    eels = load_cuzn_eels()
    cube = np.asarray(eels["data"], dtype=float)
    out["EELS Cu/ZnO"] = (cube, None)
    # Poisson counts: scale by sqrt(pixel mean) and sqrt(channel mean) (Keenan & Kotula
    # 2004) so that the Frobenius fit weighs the entries by their noise
    pix = np.sqrt(cube.mean(axis=2, keepdims=True))
    chan = np.sqrt(cube.mean(axis=(0, 1), keepdims=True))
    out["EELS Cu/ZnO, Poisson-scaled"] = (cube / pix / chan, None)
    return out


def run_one(
    label: str, cube: np.ndarray, ks: list[int], *, truth: int | None, n_restarts: int, n_jobs: int
) -> dict:
    X = cube.reshape(-1, cube.shape[-1])
    if X.min() < 0:  # negative noise in planted data: kept (Frobenius NMF copes)
        pass
    c_child, c_self, t0 = _children_cpu(), time.process_time(), time.perf_counter()
    sel = select_rank(
        X, ks, n_restarts=n_restarts, spatial_shape=cube.shape[:2], n_jobs=n_jobs, random_state=0
    )
    rec = {
        "label": label,
        "shape": list(cube.shape),
        "truth": truth,
        "ks": ks,
        "n_restarts": n_restarts,
        "n_jobs": n_jobs,
        "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c_self + _children_cpu() - c_child,
        "picks": sel.picks,
        "voters": voters(sel.picks, ks),
        "recommended": sel.recommended,
        "table": [
            {k: (v if not isinstance(v, (np.bool_,)) else bool(v)) for k, v in r.items()}
            for r in sel.table
        ],
    }
    with open(LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec, default=float) + "\n")
    logger.info(
        "%s: recommended %s (truth %s) picks %s, %.1f s wall, %.1f s CPU",
        label,
        rec["recommended"],
        truth,
        sel.picks,
        rec["wall_s"],
        rec["cpu_s"],
    )
    return rec


def planted(quick: bool, n_jobs: int) -> None:
    for k in (3, 5, 8):
        for snr in (20, 30, 40):
            mix = make_mixture(
                k, spatial_shape=(40, 40), n_channels=100, snr_db=snr, random_state=1000 * k + snr
            )
            cube = np.asarray(mix.X, dtype=float).reshape(40, 40, 100)
            run_one(
                f"planted k={k} {snr} dB",
                cube,
                list(range(2, 12)),
                truth=k,
                n_restarts=5 if quick else 10,
                n_jobs=n_jobs,
            )


def real(quick: bool, n_jobs: int, serial: bool, n_jobs_samson: int | None = None) -> None:
    """Every scene on ``n_jobs`` processes; ``serial``: Samson alone on one process (or
    on ``n_jobs_samson``)."""
    for name, (cube, k) in scenes().items():
        if serial and name != "Samson":
            continue
        jobs = n_jobs_samson or (1 if serial else n_jobs)
        label = f"{name} (1 process)" if jobs == 1 and serial else name
        run_one(
            label, cube, list(range(2, 11)), truth=k, n_restarts=5 if quick else 10, n_jobs=jobs
        )


def lambdas(quick: bool) -> None:
    """Staged Bayesian search of sparsity then smoothness on Samson at its labelled k."""
    from unmix.selection import select_lambdas

    cube, k = scenes()["Samson"]
    X = cube.reshape(-1, cube.shape[-1])
    c0, t0 = time.process_time(), time.perf_counter()
    lam = select_lambdas(
        X,
        k,
        params=("sparsity", "smoothness"),
        method="bayes",
        n_trials=4 if quick else 8,
        plausibility="smoothness",
        spatial_shape=cube.shape[:2],
        max_iter=200,
    )
    rec = {
        "label": "lambdas Samson",
        "kind": "lambdas",
        "k": k,
        "best": lam.best,
        "best_score": lam.best_score,
        "markdown": lam.to_markdown(),
        "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
    }
    with open(LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")
    logger.info("lambdas: %s in %.0f s", lam.best, rec["wall_s"])


# ------------------------------------------------------------------ Markdown
def _fmt_pick(rec: dict, c: str) -> str:
    p = rec["picks"].get(c)
    if p is None:
        return "-"
    return f"{p}" if c in rec["voters"] else f"({p})"


NOTES: list[str] = [  # observations on the run recorded above (re-read them after a rerun)
    "## What the numbers say",
    "",
    "- **Planted ranks: 9 of 9 recommendations right.** AIC, BIC, Laplace-PCA, held-out "
    "error and the knee are right (or off by one) in almost every case: the planted noise "
    "is white and Gaussian, exactly what they assume. The consensus criteria (cophenetic, "
    "dispersion) are the weakest: the planted maps are smooth and overlapping, so the "
    "pixel clustering by largest abundance is ambiguous at every k and its consensus "
    "curve is flat near 1 with small, noisy drops. Silhouette and the similarity rule "
    "overshoot by one or more at 40 dB: with little noise an extra component that splits "
    "a true one is still reproducible over bootstrap draws and smooth.",
    "- **Real scenes: the likelihood-type criteria do not stop.** AIC, BIC, Laplace-PCA "
    "and mostly the held-out error keep improving up to k = 10 on every hyperspectral "
    "scene (real noise is neither white nor Gaussian and the linear model is not exact, "
    "so every extra component explains real structure). Their picks sit at the largest "
    "candidate and do not vote.",
    "- **Samson**: the recommendation matches the label (3), but weakly: the five voting "
    "criteria pick five different ranks (6, 2, 3, 5, 8) and the tie goes to the "
    "silhouette by the fixed order. **Jasper Ridge**: 5 (silhouette and knee) against "
    "the labelled 4 - a miss. **Moffett**: 3 (cophenetic, dispersion), right.",
    "- **EELS Cu/ZnO** has no label; the demo uses 3 components (power-law background, "
    "Cu L2,3, Zn L2,3). On the raw counts most criteria say 2: the background dominates "
    "the Frobenius error and the weak Zn edge is within its noise. After Poisson "
    "scaling (Keenan & Kotula 2004; the second EELS row) the recommendation is 3 "
    "(dispersion, silhouette, held-out error). For count data, scale first.",
    "- **Strengths**: on Samson the held-out error prefers (almost) no regularization - "
    "sparsity and smoothness only raise it - and the smoothness plausibility term at "
    "weight 0.1 is too small (q about 0.02) to change that. Regularization there has to "
    "be justified by plausibility (raise `weight`), not by prediction.",
    "- **Speed**: the Samson selection (k = 2..10, 10 restarts + 2 held-out fits each, "
    "108 fits) took 44, 64, 84 and 101 s of wall time on 2 processes in four runs "
    "(load averages 2 to 5 from other jobs on the 2 cores) and 45-65 s on one process, "
    "always under the 2-minute target; CPU time is steadier: 54-58 s on 2 processes "
    "(a few seconds go to starting the workers) and 45-48 s on one. The table above "
    "shows the latest run. The default stopping tolerance is 1e-4 (1e-5 gave the same "
    "picks at about twice the CPU: 83 s on one process).",
    "- **Not measured**: the GPU batch (no device in this session).",
    "",
]


def write_markdown(path: str) -> None:
    recs = [json.loads(line) for line in open(LOG, encoding="utf-8")]
    recs_by = {}
    for r in recs:  # the latest run of each label wins
        recs_by[r["label"]] = r
    lam_r = [r for r in recs_by.values() if r.get("kind") == "lambdas"]
    recs_by = {k: r for k, r in recs_by.items() if r.get("kind") != "lambdas"}
    planted_r = [r for r in recs_by.values() if r["label"].startswith("planted")]
    real_r = [r for r in recs_by.values() if not r["label"].startswith("planted")]
    lines = [
        "# Rank selection benchmark (issue 5)",
        "",
        "`OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_selection.py` (one BLAS thread "
        "per process). Machine: " + f"{platform.machine()}, {os.cpu_count()} cores, "
        "**shared with other jobs** while this ran (load average 3-5 on 2 cores), so wall "
        "times are pessimistic; CPU time (this process + its worker processes) is the "
        "steadier number. **No GPU was lent to this session**: the batched GPU path "
        "(`_batched.fit_batch` on torch/CuPy arrays) is not measured here.",
        "",
        "Settings: `select_rank(X, ks, n_restarts=10, spatial_shape=..., n_jobs=2, "
        "random_state=0)` with every criterion, 2 held-out fits per rank (10 % of the "
        "entries each). A pick in parentheses is at the largest candidate rank and does "
        "not vote.",
        "",
    ]
    if planted_r:
        lines += ["## Planted rank (`make_mixture`, 40 x 40 pixels, 100 channels, ks = 2..11)", ""]
        head = ["case", "recommended", *CRITERIA, "wall s", "CPU s"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        hits = dict.fromkeys(CRITERIA, 0)
        rec_hits = 0
        for r in planted_r:
            ok = r["recommended"] == r["truth"]
            rec_hits += ok
            for c in CRITERIA:
                hits[c] += r["picks"].get(c) == r["truth"]
            cells = [r["label"], f"**{r['recommended']}**" + ("" if ok else " (miss)")]
            cells += [_fmt_pick(r, c) for c in CRITERIA]
            cells += [f"{r['wall_s']:.0f}", f"{r['cpu_s']:.0f}"]
            lines.append("| " + " | ".join(cells) + " |")
        n = len(planted_r)
        lines += [
            "| **hit rate** | **"
            + f"{rec_hits}/{n}"
            + "** | "
            + " | ".join(f"{hits[c]}/{n}" for c in CRITERIA)
            + " | | |",
            "",
        ]
    if real_r:
        lines += ["## Real scenes (ks = 2..10)", ""]
        head = ["scene", "labelled k", "recommended", *CRITERIA, "wall s", "CPU s"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in real_r:
            cells = [
                f"{r['label']} {tuple(r['shape'])}",
                str(r["truth"] or "-"),
                f"**{r['recommended']}**",
            ]
            cells += [_fmt_pick(r, c) for c in CRITERIA]
            cells += [f"{r['wall_s']:.0f}", f"{r['cpu_s']:.0f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for r in real_r:
            lines += [
                f"<details><summary>{r['label']}: criteria per k</summary>",
                "",
                "| k | rel. error | held-out | silh. min | cophenetic | dispersion | "
                "new comp. angle | repeat/noise |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for t in r["table"]:
                lines.append(
                    f"| {t['k']} | {t['rel_error']:.4g} | {t.get('cv_error', float('nan')):.4g}"
                    f" | {t.get('silhouette_min', float('nan')):.3f}"
                    f" | {t.get('cophenetic', float('nan')):.4f}"
                    f" | {t.get('dispersion', float('nan')):.4f}"
                    f" | {t.get('new_component_angle', float('nan')):.1f}"
                    f" | {'yes' if t.get('too_large') else 'no'} |"
                )
            lines += ["", "</details>", ""]
    speed = [r for r in recs_by.values() if r["label"].startswith("Samson")]
    if speed:
        lines += [
            "## Speed: Samson (9025 x 156), k = 2..10, 10 restarts + 2 held-out fits per k",
            "",
            "108 fits in all. CPU = this process and its workers (user + system).",
            "",
            "| run | processes | wall s | CPU s |",
            "|---|---|---|---|",
        ]
        for r in speed:
            lines.append(
                f"| {r['label']} | {r['n_jobs']} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} |"
            )
        lines.append("")
    for r in lam_r:
        lines += [
            f"## Regularization strengths: {r['label']} (k = {r['k']})",
            "",
            "`select_lambdas(X, k, params=('sparsity', 'smoothness'), method='bayes', "
            "n_trials=8, plausibility='smoothness', spatial_shape=..., max_iter=200)`: "
            "staged (sparsity first, then smoothness), score = held-out relative error x "
            f"(1 + 0.1 q). Best: {r['best']}; {r['wall_s']:.0f} s wall, "
            f"{r['cpu_s']:.0f} s CPU.",
            "",
            r["markdown"],
            "",
        ]
    lines += NOTES
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="5 restarts instead of 10")
    ap.add_argument(
        "--only", choices=["planted", "real", "serial", "speed", "lambdas", "markdown"]
    )
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.makedirs(os.path.dirname(LOG), exist_ok=True)
    if args.only in (None, "real"):
        real(args.quick, args.jobs, serial=False)
    if args.only in (None, "planted"):
        planted(args.quick, args.jobs)
    if args.only in (None, "serial"):
        real(args.quick, 1, serial=True)
    if args.only == "speed":  # Samson alone, 2 processes then 1 (timing only)
        real(args.quick, args.jobs, serial=True, n_jobs_samson=args.jobs)
        real(args.quick, 1, serial=True)
    if args.only in (None, "lambdas"):
        lambdas(args.quick)
    write_markdown(os.path.join(HERE, "results", "selection.md"))


if __name__ == "__main__":
    main()
