"""Where float32 fits stop, against float64 fits of the same data (the stop rule's noise).

For every real file of ``bench_constraints.py`` (k as there) and each constraint set given
(default: ``KL`` and ``KL + sum-to-one``), every solver that accepts the set fits ``X``
(pixels, channels) cast to float32 and to float64 from the same default start (seed 0):
``unmix.factorize(X.astype(dtype), k, solver=..., spatial_shape=scan, random_state=0,
**set)``.  A float32 fit should stop where the float64 one does, within float32's
rounding; one that stops far earlier (or later) says the stop rule's idea of the float32
rounding noise is off.

Run::

    .venv/bin/python benchmarks/bench_float32_stop.py --jsonl OUT.jsonl  [--sets 'KL']
    .venv/bin/python benchmarks/bench_float32_stop.py --report OUT.jsonl... --out FILE

The first form fits and appends one JSON line per fit; the second writes the markdown
table (later lines replace earlier ones of the same file, k, set, solver and dtype).
One BLAS thread.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import bench_constraints as B  # noqa: E402

DTYPES = (np.float32, np.float64)


def fit_rows(sets: list[str], only: list[str] | None):
    """Yield one dict per fit (file, k, set, solver, dtype, its, stop, obj, cpu)."""
    for e in B.ENTRIES:
        if only and e.key not in only:
            continue
        X, spatial = e.load()
        for set_name in sets:
            solvers, _ = B.accepted_solvers(X, e.k, spatial, set_name)
            for slv in solvers:
                for dt in DTYPES:
                    t = time.process_time()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        r = B._fit(X.astype(dt), e.k, spatial, set_name, slv, 0)
                    yield {
                        "file": e.key,
                        "k": e.k,
                        "set": set_name,
                        "solver": slv,
                        "dtype": np.dtype(dt).name,
                        "its": int(r.n_iter),
                        "stop": r.stop_reason,
                        "obj": float(r.objective),
                        "cpu": time.process_time() - t,
                    }


def report(paths: list[Path]) -> str:
    """The markdown table of the JSON lines in ``paths`` (later lines win)."""
    rows: dict[tuple, dict] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            r = json.loads(line)
            rows[(r["file"], r["k"], r["set"], r["solver"], r["dtype"])] = r
    out = [
        "| file | k | set | solver | iters f32 (stop) | iters f64 (stop) | f32 vs f64 "
        "objective | CPU s f32 / f64 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    above = []
    for key, r32 in rows.items():
        if key[4] != "float32" or (*key[:4], "float64") not in rows:
            continue
        r64 = rows[(*key[:4], "float64")]
        rel = r32["obj"] / r64["obj"] - 1.0
        above.append(rel)
        out.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {r32['its']} ({r32['stop']}) | "
            f"{r64['its']} ({r64['stop']}) | {100 * rel:+.2f} % | "
            f"{r32['cpu']:.1f} / {r64['cpu']:.1f} |"
        )
    a = np.asarray(above)
    out += [
        "",
        f"{a.size} pairs; float32 more than 0.1 % above float64: {int(np.sum(a > 1e-3))}; "
        f"largest {100 * a.max():+.2f} %.",
    ]
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="KL,KL + sum-to-one", help="comma-separated sets")
    ap.add_argument("--only", default="", help="comma-separated file keys")
    ap.add_argument("--jsonl", type=Path, help="append one JSON line per fit here")
    ap.add_argument("--report", type=Path, nargs="+", help="JSON-lines files to tabulate")
    ap.add_argument("--out", type=Path, help="the markdown table (with --report)")
    args = ap.parse_args()
    if args.report:
        text = report(args.report)
        if args.out:
            args.out.write_text(text)
        print(text)
        return 0
    if args.jsonl is None:
        ap.error("give --jsonl (to fit) or --report (to tabulate)")
    only = [s for s in args.only.split(",") if s] or None
    with args.jsonl.open("a") as fh:
        for row in fit_rows(args.sets.split(","), only):
            row["revision"] = B._git_revision()
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            print(json.dumps(row), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
