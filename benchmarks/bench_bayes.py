"""Bayesian Poisson NMF (variational Bayes with ARD): calibration, rank and cost.

Writes ``benchmarks/results/bayes.md``.  Model: counts ``X`` (pixels, channels)
``~ Poisson(A @ S)`` with ``A`` (pixels, k) maps and ``S`` (k, channels) endmembers;
:func:`unmix.bayes.bayes_nmf` fits the mean-field posterior.

Data: planted counts on 32 x 32 pixels x 64 channels, ``k`` in {3, 5, 8}: maps a softmax of
smooth random fields (so every component has nearly pure regions), spectra two Gaussian
peaks on a small baseline (unit sum), Poisson noise at 0.5, 5, 50 and 500 counts a pixel.
For every case:

- VB with ARD from ``k_max = k + 4`` (default settings, one start): the rank it keeps,
  iterations, CPU time; planted and kept components matched by the Hungarian algorithm on
  the L1 distance of unit-sum spectra; coverage of the planted unit-sum spectra (and of the
  planted maps on that scale, ``A_ir`` = expected counts of component ``r`` in pixel ``i``)
  by the 90 % credible intervals; median band width; mean L1 error of the spectra.
- VB without ARD at the planted ``k`` (the calibration without rank errors).
- A bootstrap band: ``unmix.factorize(Xb, k, loss="kl", random_state=b)`` on 20 resamples of
  the pixels (rows with replacement), unit-sum spectra aligned to the full-data KL fit by
  the Hungarian algorithm, the 5-95 % percentile band per channel; its median width and its
  coverage of the planted spectra.
- ARD with ``n_init=4`` (best ELBO of four starts).
- Coverage of the planted expected counts ``A @ S`` (every pixel and channel) by the 90 %
  intervals of :meth:`unmix.bayes.BayesResult.model_intervals`, for the ARD, fixed-k and
  Gibbs fits: the model is identifiable where the factors are not.

CPU seconds of this process (``time.process_time``), one BLAS thread.

Run: ``.venv/bin/python benchmarks/bench_bayes.py [--quick] [--seeds N]``.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import unmix  # noqa: E402
from unmix.bayes import bayes_nmf  # noqa: E402
from unmix.datasets import poisson_mixture  # noqa: E402

OUT = Path(__file__).parent / "results" / "bayes.md"
COUNTS = (0.5, 5.0, 50.0, 500.0)
RANKS = (3, 5, 8)
LEVEL = 0.9


def planted(k: int, counts: float, seed: int, side: int = 32, m: int = 64):
    """Poisson counts ``X`` (pixels, channels), maps ``A`` (expected counts a component a
    pixel) and unit-sum spectra ``S`` (k, channels): ``unmix.datasets.poisson_mixture``."""
    return poisson_mixture(k, counts, seed, side=side, m=m)


def match(S_true: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching of planted and fitted unit-sum spectra (L1 distance)."""
    cost = np.abs(S_true[:, None, :] - U[None, :, :]).sum(axis=-1)
    return linear_sum_assignment(cost)


def unit(S: np.ndarray) -> np.ndarray:
    S = np.maximum(np.asarray(S, dtype=np.float64), 0.0)
    return S / np.maximum(S.sum(axis=1, keepdims=True), 1e-300)


def vb_case(
    X,
    A,
    S,
    k_fit: int,
    ard: bool,
    seed: int,
    n_init: int = 1,
    prune: str = "evidence",
    bands: str = "vb",
) -> dict:
    t = time.process_time()
    r = bayes_nmf(
        X,
        k_fit,
        ard=ard,
        level=LEVEL,
        random_state=seed,
        n_init=n_init,
        prune=prune,
        bands=bands,
    )
    cpu = time.process_time() - t
    ri, ci = match(S, r.S_unit_mean)
    inside = (S[ri] >= r.S_unit_lower[ci]) & (S[ri] <= r.S_unit_upper[ci])
    _, m_lo, m_hi = r.unit_map_intervals(random_state=seed)  # q's (VB) map bands
    map_in = (A[:, ri] >= m_lo[:, ci]) & (A[:, ri] <= m_hi[:, ci])
    T = A @ S  # the planted expected counts: identifiable, whatever the split
    _, t_lo, t_hi = r.model_intervals(random_state=seed)
    return {
        "k_eff": r.k_effective,
        "iters": r.n_iter,
        "cpu": cpu,
        "cov_S": float(inside.mean()),
        "cov_A": float(map_in.mean()),
        "cov_model": float(np.mean((T >= t_lo) & (T <= t_hi))),
        "width_model": float(np.median((t_hi - t_lo) / T)),
        "width": float(np.median(r.S_unit_upper[ci] - r.S_unit_lower[ci])),
        "width_mean": float(np.mean(r.S_unit_upper[ci] - r.S_unit_lower[ci])),
        "err": float(np.abs(S[ri] - r.S_unit_mean[ci]).sum(axis=1).mean()),
        "monotone": bool(np.all(np.diff(r.elbo) >= -1e-9 * np.abs(r.elbo[-1]))),
    }


def bootstrap_case(X, S, k: int, seed: int, n_boot: int) -> dict:
    """Percentile band of unit-sum KL-NMF spectra over bootstrap draws of the pixels."""
    rng = np.random.default_rng(seed)
    t = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = unit(unmix.factorize(X, k, loss="kl", random_state=seed).S)
        draws = []
        for b in range(n_boot):
            rows = rng.integers(0, X.shape[0], X.shape[0])
            Ub = unit(unmix.factorize(X[rows], k, loss="kl", random_state=b).S)
            _, cb = match(ref, Ub)
            draws.append(Ub[cb])
    cpu = time.process_time() - t
    D = np.stack(draws)
    lo, hi = np.percentile(D, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2], axis=0)
    ri, ci = match(S, ref)
    inside = (S[ri] >= lo[ci]) & (S[ri] <= hi[ci])
    return {
        "width": float(np.median(hi - lo)),
        "width_mean": float(np.mean(hi - lo)),
        "cov": float(inside.mean()),
        "zeros": float(np.mean(D < 1e-6)),
        "cpu": cpu,
    }


def run(seeds: int, n_boot: int, quick: bool) -> list[dict]:
    rows = []
    for c in COUNTS:
        for k in RANKS[:1] if quick else RANKS:
            for seed in range(seeds):
                X, A, S = planted(k, c, seed)
                row = {"counts": c, "k": k, "seed": seed}
                row["ard"] = vb_case(X, A, S, k + 4, True, seed)
                row["fixed"] = vb_case(X, A, S, k, False, seed)
                row["ard4"] = vb_case(X, A, S, k + 4, True, seed, n_init=4)
                row["ard_alone"] = vb_case(X, A, S, k + 4, True, seed, prune="counts")
                row["gibbs"] = vb_case(X, A, S, k, False, seed, bands="gibbs")
                row["boot"] = bootstrap_case(X, S, k, seed, n_boot)
                rows.append(row)
                a, b = row["ard"], row["boot"]
                print(
                    f"counts {c:>5} k {k} seed {seed}: ARD k {a['k_eff']} cov S {a['cov_S']:.2f} "
                    f"A {a['cov_A']:.2f} width {a['width']:.2e} boot {b['width']:.2e} "
                    f"({a['cpu']:.2f} s)",
                    flush=True,
                )
    return rows


def rank_rows(seeds: int, side: int) -> list[dict]:
    """The rank kept at ``side`` x ``side`` pixels (5, 50, 500 counts; k = 3, 5, 8): ARD
    with the evidence check (the default) and ARD alone, one start, k_max = k + 4."""
    rows = []
    for c in COUNTS[1:]:
        for k in RANKS:
            for seed in range(seeds):
                X, _, _ = planted(k, c, seed, side=side)
                row = {"counts": c, "k": k, "seed": seed}
                for name, prune in (("evidence", "evidence"), ("alone", "counts")):
                    t = time.process_time()
                    r = bayes_nmf(X, k + 4, random_state=seed, prune=prune)
                    row[name] = (r.k_effective, time.process_time() - t)
                rows.append(row)
                print(f"{side}x{side} counts {c:>5} k {k} seed {seed}: {row}", flush=True)
    return rows


def rank_table(rows: list[dict]) -> list[str]:
    out = [
        "| counts/pixel | k | k kept (evidence check, default) | k kept (ARD alone) | "
        "CPU s (evidence) | CPU s (ARD alone) |",
        "|---|---|---|---|---|---|",
    ]
    for c in COUNTS[1:]:
        for k in RANKS:
            sel = [r for r in rows if r["counts"] == c and r["k"] == k]
            ev = ",".join(str(r["evidence"][0]) for r in sel)
            al = ",".join(str(r["alone"][0]) for r in sel)
            t_ev = np.mean([r["evidence"][1] for r in sel])
            t_al = np.mean([r["alone"][1] for r in sel])
            out.append(f"| {c:g} | {k} | {ev} | {al} | {t_ev:.2f} | {t_al:.2f} |")
    seeds = sorted({r["seed"] for r in rows})
    for name in ("evidence", "alone"):
        per = [sum(r[name][0] == r["k"] for r in rows if r["seed"] == s) for s in seeds]
        label = "evidence check" if name == "evidence" else "ARD alone"
        out.append("")
        out.append(f"Right ({label}), of 9 per seed: {', '.join(map(str, per))}.")
    return out


def rank_section(ranks: list[dict], seeds: int) -> list[str]:
    if not ranks:
        return []
    return [
        f"## The rank on 64 x 64 pixels ({seeds} seeds, ranks listed per seed)",
        "",
        "The same generator on 64 x 64 pixels (4x the counts of each case above); "
        "`bayes_nmf(X, k + 4, random_state=seed)`, one start.",
        "",
        *rank_table(ranks),
        "",
    ]


def pct(v: float) -> str:
    return f"{100 * v:.0f} %"


def table(rows: list[dict], seeds: int) -> list[str]:
    out = [
        "| counts/pixel | k | ARD k (1 start) | ARD alone k | ARD k (4 starts) | iters | CPU s | "
        "cov S (ARD) | cov maps (ARD) | cov S (fixed k) | cov S (bootstrap) | "
        "VB width | boot width | VB / boot | L1 err VB | ELBO monotone | "
        "cov S (Gibbs, fixed k) | Gibbs width | Gibbs / boot | Gibbs CPU s | "
        "cov A S (ARD) | cov A S (Gibbs) | A S width (Gibbs) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        "---|---|---|",
    ]
    for c in COUNTS:
        for k in RANKS:
            sel = [r for r in rows if r["counts"] == c and r["k"] == k]
            if not sel:
                continue

            def mean(key, sub, sel=sel):
                return float(np.mean([r[key][sub] for r in sel]))

            ks = ",".join(str(r["ard"]["k_eff"]) for r in sel)
            ks4 = ",".join(str(r["ard4"]["k_eff"]) for r in sel)
            ksa = ",".join(str(r["ard_alone"]["k_eff"]) for r in sel)
            vw, bw = mean("ard", "width"), mean("boot", "width")
            out.append(
                f"| {c:g} | {k} | {ks} | {ksa} | {ks4} | {mean('ard', 'iters'):.0f} | "
                f"{mean('ard', 'cpu'):.2f} | {pct(mean('ard', 'cov_S'))} | "
                f"{pct(mean('ard', 'cov_A'))} | {pct(mean('fixed', 'cov_S'))} | "
                f"{pct(mean('boot', 'cov'))} | {vw:.2e} | {bw:.2e} | {vw / bw:.2f} | "
                f"{mean('ard', 'err'):.3f} | {all(r['ard']['monotone'] for r in sel)} | "
                f"{pct(mean('gibbs', 'cov_S'))} | {mean('gibbs', 'width'):.2e} | "
                f"{mean('gibbs', 'width') / bw:.2f} | {mean('gibbs', 'cpu'):.2f} | "
                f"{pct(mean('ard', 'cov_model'))} | {pct(mean('gibbs', 'cov_model'))} | "
                f"{mean('gibbs', 'width_model'):.2f} |"
            )
    return out


def summary(rows: list[dict]) -> list[str]:
    out = [
        "| counts/pixel | cov S (ARD) | cov maps (ARD) | cov S (fixed k) | cov S (bootstrap) | "
        "median VB width / median boot width | mean VB width / mean boot width | "
        "boot entries < 1e-6 | ARD right (1 start) | ARD alone right | "
        "ARD right (4 starts) | cov S (Gibbs, fixed k) | median Gibbs width / median boot width | "
        "cov A S (ARD) | cov A S (fixed k) | cov A S (Gibbs, fixed k) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in COUNTS:
        sel = [r for r in rows if r["counts"] == c]
        hit = sum(r["ard"]["k_eff"] == r["k"] for r in sel)
        hit4 = sum(r["ard4"]["k_eff"] == r["k"] for r in sel)
        hita = sum(r["ard_alone"]["k_eff"] == r["k"] for r in sel)
        ratio = np.median([r["ard"]["width"] for r in sel]) / np.median(
            [r["boot"]["width"] for r in sel]
        )
        ratio_mean = np.mean([r["ard"]["width_mean"] for r in sel]) / np.mean(
            [r["boot"]["width_mean"] for r in sel]
        )
        zeros = np.mean([r["boot"]["zeros"] for r in sel])
        gratio = np.median([r["gibbs"]["width"] for r in sel]) / np.median(
            [r["boot"]["width"] for r in sel]
        )
        out.append(
            f"| {c:g} | {pct(np.mean([r['ard']['cov_S'] for r in sel]))} | "
            f"{pct(np.mean([r['ard']['cov_A'] for r in sel]))} | "
            f"{pct(np.mean([r['fixed']['cov_S'] for r in sel]))} | "
            f"{pct(np.mean([r['boot']['cov'] for r in sel]))} | {ratio:.2f} | "
            f"{ratio_mean:.2f} | {pct(zeros)} | "
            f"{hit}/{len(sel)} | {hita}/{len(sel)} | {hit4}/{len(sel)} | "
            f"{pct(np.mean([r['gibbs']['cov_S'] for r in sel]))} | {gratio:.2f} | "
            f"{pct(np.mean([r['ard']['cov_model'] for r in sel]))} | "
            f"{pct(np.mean([r['fixed']['cov_model'] for r in sel]))} | "
            f"{pct(np.mean([r['gibbs']['cov_model'] for r in sel]))} |"
        )
    return out


def write(rows: list[dict], ranks: list[dict], seeds: int, n_boot: int, total_cpu: float) -> None:
    from _machine import cpu_model

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = [
        "# Bayesian Poisson NMF (variational Bayes, ARD): calibration, rank, cost",
        "",
        f"Measured {now} on {platform.machine()} ({cpu_model()}), one BLAS thread, CPU "
        f"seconds of the process (`time.process_time`), float64; {seeds} seed(s) a case "
        f"(values are means over seeds; ARD ranks listed per seed), {n_boot} bootstrap "
        f"draws, total CPU {total_cpu:.0f} s.",
        "",
        "Data: 32 x 32 pixels x 64 channels, planted k components (softmax maps of smooth "
        "fields, two-peak Gaussian spectra of unit sum), Poisson noise at the given mean "
        "counts a pixel.  VB: `bayes_nmf(X, k + 4)` (ARD with the evidence check, default "
        "settings) unless marked *ARD alone* (`prune='counts'`) or *fixed k* (`ard=False`, "
        "planted k); *Gibbs*: `bayes_nmf(X, k, ard=False, bands='gibbs')` (500 sweeps "
        "from the VB fit, planted k, quantiles of 100 kept samples).  Coverage: share of "
        "planted entries inside the "
        "90 % credible interval (unit-sum spectra: exact Dirichlet marginals of q(S); maps: "
        "`A_ir sum_j S_rj`, sampled from q), over the matched components.  Width: median "
        "over entries of the 90 % band of the unit-sum spectra.  Bootstrap: 20 KL-NMF fits "
        "(`unmix.factorize(..., loss='kl')`, planted k) on pixel resamples, 5-95 % "
        "percentile band.  *cov A S*: share of the planted expected counts `(A S)_ij` "
        "(every pixel and channel; no matching needed, the model is identifiable where "
        "the factors are not) inside the 90 % interval of "
        "`BayesResult.model_intervals` (Gibbs: the chain's kept samples; VB: 400 draws "
        "from q); *A S width*: median over entries of the interval's width / the planted "
        "value.",
        "",
        "## Per count level (all k and seeds pooled)",
        "",
        *summary(rows),
        "",
        "## Per case",
        "",
        *table(rows, seeds),
        "",
        *rank_section(ranks, seeds),
        "Run: `.venv/bin/python benchmarks/bench_bayes.py` (`--seeds N`, `--quick`: k = 3).",
        "",
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    notes = ""
    if OUT.exists():
        text = OUT.read_text()
        mark = "## Notes on this run (written by hand)"
        if mark in text:
            notes = text[text.index(mark) :]
    OUT.write_text("\n".join(head) + ("\n" + notes if notes else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="k = 3 only")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--boot", type=int, default=20)
    args = ap.parse_args()
    t0 = time.process_time()
    with threadpool_limits(1):
        rows = run(args.seeds, args.boot, args.quick)
        ranks = [] if args.quick else rank_rows(args.seeds, 64)
    write(rows, ranks, args.seeds, args.boot, time.process_time() - t0)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
