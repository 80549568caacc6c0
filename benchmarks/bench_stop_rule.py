"""Where the default stop leaves a fit: the defaults against the same fit run on.

For the solvers that crawl (KL coordinate descent, MU, the gradient solver: those that
switch on extrapolation when a fit runs long), on the real maps of
``bench_constraints.py`` (its loaders, files, k and constraint sets), seed 0, X float64:

- *default*: ``unmix.factorize(X, k, solver=..., spatial_shape=scan, random_state=0,
  **set)`` with the default ``tol`` (1e-5) and ``max_iter`` (500);
- *run on*: the same with ``tol=1e-9, max_iter=3000`` (the reference).

Columns: iterations and stop reason, CPU seconds of the call (``time.process_time``, one
BLAS thread), the objective's gap to the run-on fit (``default / run_on - 1``) and the
largest endmember angle between the two fits after Hungarian matching.

Run it once per version and merge::

    .venv/bin/python benchmarks/bench_stop_rule.py --save /tmp/after.json
    PYTHONPATH=<an older checkout>/src .venv/bin/python benchmarks/bench_stop_rule.py \\
        --save /tmp/before.json --reference /tmp/after.json
    .venv/bin/python benchmarks/bench_stop_rule.py --merge /tmp/before.json /tmp/after.json

``--reference`` reuses another run's run-on fits (the reference does not depend on the
default stop); ``--merge BEFORE AFTER`` writes ``benchmarks/results/stop_rule.md``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import unmix  # noqa: E402
from _machine import cpu_timed, worst_angle  # noqa: E402
from bench_constraints import ENTRIES, machine_info, set_kwargs  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "stop_rule.md"

KEYS = ("eels", "eds-tem", "eds-jeol", "raman", "xrd", "stm", "samson")
#: (constraint set of bench_constraints.py, solver, the files it runs on)
CASES = (
    ("KL", "auto", KEYS),
    ("KL", "mu", KEYS[:-1]),
    ("KL + sum-to-one", "auto", KEYS),
    ("NMF", "mu", KEYS[:-1]),
)
RUN_ON = {"tol": 1e-9, "max_iter": 3000}


def fit(X, shape: tuple, k: int, setname: str, solver: str, **extra) -> tuple:
    """One fit and its CPU seconds."""
    kw = {**set_kwargs(setname, X), **extra}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cpu_timed(
            unmix.factorize, X, k, solver=solver, spatial_shape=shape, random_state=0, **kw
        )


def measure(reference: dict) -> dict:
    """Every case's default fit (and run-on fit, unless in ``reference``)."""
    out, loaded = {}, {}
    for setname, solver, keys in CASES:
        for e in [e for e in ENTRIES if e.key in keys]:
            if e.path not in loaded:  # each file read once (XRD serves k 3 and k 6)
                loaded[e.path] = e.load()
            X, shape = loaded[e.path]
            key = f"{setname}|{solver}|{e.key}|{e.k}"
            r, cpu = fit(X, shape, e.k, setname, solver)
            ref = reference.get(key, {}).get("run_on")
            if ref is None:
                far, far_cpu = fit(X, shape, e.k, setname, solver, **RUN_ON)
                ref = {
                    "objective": far.objective,
                    "n_iter": far.n_iter,
                    "stop": far.stop_reason,
                    "cpu": far_cpu,
                    "S": np.asarray(far.S, float).tolist(),
                }
            S_ref = np.asarray(ref["S"])
            out[key] = {
                "label": e.label,
                "solver": r.spec["solver"],
                "default": {
                    "objective": r.objective,
                    "n_iter": r.n_iter,
                    "stop": r.stop_reason,
                    "cpu": cpu,
                    "gap": r.objective / ref["objective"] - 1,
                    "angle": worst_angle(np.asarray(r.S, float), S_ref),
                },
                "run_on": ref,
            }
            d = out[key]["default"]
            print(
                f"{key}: {d['n_iter']} it ({d['stop']}), {d['cpu']:.2f} s, gap "
                f"{100 * d['gap']:.4f} %, {d['angle']:.1f} deg",
                flush=True,
            )
    return out


def table(before: dict, after: dict) -> list[str]:
    """The markdown rows: each case before and after."""
    head = (
        "| set | solver | map | k | run on: iters | before: iters (stop) | CPU s | gap | "
        "max angle (deg) | after: iters (stop) | CPU s | gap | max angle (deg) |"
    )
    rows = [head, "|" + "---|" * 13]
    for key, a in after.items():
        setname, solver, _, k = key.split("|")
        b = before.get(key)
        ref = a["run_on"]
        cells = [setname, f"{solver} ({a['solver']})", a["label"], k, str(ref["n_iter"])]
        for side in (b, a):
            if side is None:
                cells += ["-"] * 4
                continue
            d = side["default"]
            cells += [
                f"{d['n_iter']} ({d['stop']})",
                f"{d['cpu']:.2f}",
                f"{100 * d['gap']:.4f} %",
                f"{d['angle']:.1f}",
            ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def summary(runs: dict) -> str:
    d = [r["default"] for r in runs.values()]
    gaps = np.array([x["gap"] for x in d])
    return (
        f"gap median {100 * np.median(gaps):.4f} %, max {100 * gaps.max():.4f} %; "
        f"{sum(x['angle'] > 3 for x in d)} of {len(d)} more than 3 deg away; "
        f"{sum(x['stop'] == 'max_iter' for x in d)} at max_iter; "
        f"CPU {sum(x['cpu'] for x in d):.1f} s"
    )


def write(before_path: Path, after_path: Path) -> None:
    before, after = (json.loads(Path(p).read_text()) for p in (before_path, after_path))
    text = [
        "# Where the default stop leaves a fit",
        "",
        f"Merged {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; before: "
        f"{before['meta']}; after: {after['meta']}.",
        "",
        (__doc__ or "").split("\n\n")[1].replace("\n", " "),
        "",
        "*before*: the stop by the last relative change alone; *after*: the solvers that "
        "crawl also need the fall still to come (a geometric tail of the last two falls) "
        "within `tol`, three iterations in a row (`unmix.engine._stop.remaining_fall`).",
        "",
        *table(before["runs"], after["runs"]),
        "",
        f"Before: {summary(before['runs'])}.",
        "",
        f"After: {summary(after['runs'])}.",
        "",
    ]
    OUT.write_text("\n".join(text))
    print(f"wrote {OUT}")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--save", help="write this run's fits to a JSON file")
    ap.add_argument("--reference", help="reuse the run-on fits of a saved run")
    ap.add_argument("--merge", nargs=2, metavar=("BEFORE", "AFTER"))
    a = ap.parse_args()
    if a.merge:
        write(*a.merge)
        return
    reference = json.loads(Path(a.reference).read_text())["runs"] if a.reference else {}
    runs = measure(reference)
    m = machine_info()
    meta = (
        f"unmix from {m['unmix_path']}{m['copy']} (the checkout at {m['commit']}), "
        f"{m['cpu']}, Python {m['python']}, NumPy {m['numpy']}"
    )
    if a.save:
        Path(a.save).write_text(json.dumps({"meta": meta, "runs": runs}))


if __name__ == "__main__":
    main()
