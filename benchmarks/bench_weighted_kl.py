"""KL with pixel weights or a mask on the real maps: KL coordinate descent against the
solvers that took them before it (the gradient solver, MU), and the trees whose splits
need them.

Model: ``sum_ij w_i M_ij KL(x_ij | (A S)_ij)``, ``A, S >= 0``, ``X`` (pixels, channels)
float64, the default init, ``max_iter`` and ``tol``, seed 0.  Weights and masks:

* **3 masked pixels**: ``w = 1`` but 0 on three pixels (what ``{op="mask_pixels"}`` gives
  the CLI);
* **tree split**: the weights of a tree split fitted on the whole grid
  (:mod:`unmix.hierarchy._terms`): 1 on the node's pixels - here the brighter half (pixel
  sums above their median) - and ``OUTSIDE * n_b / (n - n_b)`` on the others;
* **masked entries**: ``mask=`` False on a band of 10 channels (a dead detector band,
  at a third of the channels) and on 1 % of the other entries (seeded).

Rows: ``solver="klcd"``, ``"gradient"`` and ``"mu"`` (``auto`` picks ``klcd`` now, the
gradient solver before).  CPU seconds of the call (``time.process_time``, one BLAS thread),
iterations and stop reason, the objective against the lowest of the three.  Then the
trees: ``hierarchical_nmf(X, 4, loss="kl", regularizers=[GaussianMapFilter(1.0)],
spatial_shape=scan, solver=...)`` (``unmix tree --loss kl --smooth 1 --leaves 4``), whose
every split is such a weighted fit, by ``klcd`` and by the gradient solver.

Run: ``.venv/bin/python benchmarks/bench_weighted_kl.py`` (writes
``benchmarks/results/weighted_kl.md``; ``--only eels,xrd`` prints only).  The maps, their
loaders and k are ``bench_constraints.py``'s.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import unmix  # noqa: E402
from _machine import measured_line, quiet_cpu_timed  # noqa: E402
from bench_constraints import ENTRIES, SPECTRAL_MAPS  # noqa: E402
from unmix.hierarchy._terms import OUTSIDE  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "weighted_kl.md"

KEYS = SPECTRAL_MAPS
FILES = [e for e in ENTRIES if e.key in KEYS and (e.key, e.k) != ("xrd", 6)]
SOLVERS = ("klcd", "gradient", "mu")
TREE_KEYS = ("eels", "eds-tem", "raman")


def weight_cases(X: np.ndarray) -> dict[str, dict]:
    """The weightings of the module docstring, as options of ``factorize``."""
    n, m = X.shape
    masked = np.ones(n)
    masked[[0, n // 3, n - 1]] = 0.0
    sums = X.sum(axis=1)
    node = sums > np.median(sums)
    split = np.where(node, 1.0, OUTSIDE * node.sum() / max(n - node.sum(), 1))
    entries = np.random.default_rng(0).random(X.shape) > 0.01
    entries[:, m // 3 : m // 3 + 10] = False
    return {
        "3 masked pixels": {"weights": unmix.Weights(pixels=masked)},
        "tree split": {"weights": unmix.Weights(pixels=split)},
        "masked entries": {"mask": entries},
    }


def rows_for(entry) -> list[str]:
    X = np.maximum(entry.load()[0], 0.0)
    out = []
    for case, weighting in weight_cases(X).items():
        fits = {
            s: quiet_cpu_timed(
                unmix.factorize, X, entry.k, loss="kl", solver=s, random_state=0, **weighting
            )
            for s in SOLVERS
        }
        best = min(r.objective for r, _ in fits.values())
        t_cd = fits["klcd"][1]
        for s, (r, t) in fits.items():
            out.append(
                f"| {entry.label} | {entry.k} | {case} | {s} | {r.n_iter} ({r.stop_reason}) | "
                f"{t:.2f} | {t / t_cd:.1f}x | {r.objective:.8g} | "
                f"{r.objective / best - 1:+.4%} |"
            )
            print(out[-1], flush=True)
    return out


def tree_rows(entry) -> list[str]:
    X, scan = entry.load()
    X = np.maximum(X, 0.0)
    out = []
    times = {}
    for s in ("klcd", "gradient"):
        tree, t = quiet_cpu_timed(
            unmix.hierarchical_nmf,
            X,
            4,
            loss="kl",
            regularizers=[unmix.GaussianMapFilter(1.0)],
            spatial_shape=scan,
            solver=s,
        )
        times[s] = t
        sizes = sorted((int(nd.size) for nd in tree.nodes if not nd.children), reverse=True)
        gains = ", ".join(f"{nd.gain:.3g}" for nd in tree.nodes if nd.children)
        out.append(
            f"| {entry.label} | {s} | {t:.1f} | {t / times['klcd']:.1f}x | "
            f"{', '.join(map(str, sizes))} | {gains} |"
        )
        print(out[-1], flush=True)
    return out


NOTES = """## Notes (written by hand, kept in the script)

- **KL-CD is the fastest on all 18 (map, weighting) fits: 1.6-105x less CPU than the
  gradient solver, 1.1-129x less than MU**, and within 0.041 % of the lowest objective of
  the three in every row (the largest gaps: EDS SEM 3 masked pixels +0.041 %, masked
  entries +0.0092 %; elsewhere <= 0.003 %).  On the Bruker SEM and TEM EDS maps it
  takes 0.7-3.2 s where the gradient solver takes 17-189 s, and the gradient solver
  ends up to 0.43 % higher on the TEM map (0.27 % with 3 masked pixels).  MU ends
  0.01-1.4 % above the best everywhere (Raman masked entries: 500 iterations at
  `max_iter`).
- Before this change KL-CD refused pixel weights and masks: `solver="auto"` took the
  gradient solver for these fits (dense `X`) and MU for sparse `X`.
- The masked rows start from the Poisson start on the holes filled by the independence
  model (`unmix.engine._poisson_start.hole_filled`), the default now; NNDSVDa, the masked
  start before, left KL-CD 0.09 % above the gradient solver on the EELS map after 172
  iterations and MU 4.1 % above.
- **Trees**: KL-CD fits every split of `--loss kl --smooth 1` 2.0-13.4x faster.  The
  splits are not the gradient solver's: both stop a filtered fit by the trend rule
  (`unmix.engine._judge`), at different points.  On the TEM EDS map every split by the
  gradient solver ends above the node's rank-one fit with the same smoothing (gain 0:
  the tree splits in arbitrary order), KL-CD's do not.  On the Raman map KL-CD's tree
  stops at 2 leaves (the children of both leaves are 0.3-0.4 deg apart after the core
  step, below `min_angle`) where the gradient solver's goes on to 4: map smoothing at
  sigma 1 does not suit that map (pixel-sized features; `unmix compare` says so), and
  every filtered split there starts at a divergence 100x above its unfiltered start
  (3.4e5 -> 3.5e7 after the first filter) whichever solver runs it.
- CPU seconds were measured with another process (the test suite, 2 workers) on the
  2-core machine for part of the run; ratios are within a row group, measured in the
  same process.
"""

HEAD = [
    "| map | k | weights | solver | iterations (stop) | CPU s | CPU / klcd | objective | "
    "vs best |",
    "|---|---|---|---|---|---|---|---|---|",
]
TREE_HEAD = [
    "| map | split solver | CPU s | CPU / klcd | leaf sizes | split gains |",
    "|---|---|---|---|---|---|",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated keys: " + ", ".join(KEYS))
    args = ap.parse_args()
    keys = args.only.split(",") if args.only else KEYS
    rows = [line for e in FILES if e.key in keys for line in rows_for(e)]
    trees = [line for e in FILES if e.key in keys and e.key in TREE_KEYS for line in tree_rows(e)]
    if args.only:
        return 0
    text = [
        "# KL with pixel weights or a mask: KL coordinate descent against the gradient "
        "solver and MU",
        "",
        measured_line("bench_weighted_kl.py"),
        "",
        "## One weighted fit",
        "",
        *HEAD,
        *rows,
        "",
        "## Trees with map smoothing (`unmix tree --loss kl --smooth 1 --leaves 4`)",
        "",
        *TREE_HEAD,
        *trees,
        "",
        "Run: `.venv/bin/python benchmarks/bench_weighted_kl.py`.",
        "",
        NOTES,
    ]
    OUT.write_text("\n".join(text))
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
