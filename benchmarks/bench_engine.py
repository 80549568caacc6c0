"""Engine benchmark: unmix's Frobenius solvers against scikit-learn's NMF, one BLAS thread.

For each problem size the script plants non-negative factors (Gaussian-peak spectra,
smooth sum-to-one maps), adds Gaussian noise at 30 dB and clips to ``X >= 0``, then

* runs ``sklearn.decomposition.NMF`` (``solver="cd"`` and ``"mu"``, ``init="nndsvda"``,
  default ``tol``) and records its CPU time, iterations, final objective
  ``1/2 ||X - W H||_F^2`` (computed here) and SAD against the planted spectra;
* runs ``unmix.factorize`` with ``solver`` in hals / mu / bpp / admm (``init="nndsvda"``,
  ``tol=0`` so every run does ``max_iter`` iterations), timing every iteration with
  ``time.process_time`` in the callback, and finds the first iteration whose objective
  is ``<=`` scikit-learn's final objective;
* times the "one-pass floor" (one ``X @ v``: reads X once) and the two big products of
  an iteration (``X @ S.T`` plus ``A.T @ X``) as references for the cost of an iteration.

All times are CPU seconds of this process (``time.process_time``) with one BLAS thread,
and include everything a user pays: input checks, initialization and iterations.

Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_engine.py            # ~15 min
    .venv/bin/python benchmarks/bench_engine.py --quick                      # seconds

The full run writes ``benchmarks/results/engine.md``; ``--quick`` prints its report
(write it with ``--out``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import gc  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import sklearn  # noqa: E402
from sklearn.decomposition import NMF  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import unmix  # noqa: E402
import unmix.metrics  # noqa: E402
from _machine import cpu_model  # noqa: E402

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:  # pragma: no cover - installed with scikit-learn
    threadpool_info = threadpool_limits = None

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "engine.md"
SOLVERS = ("hals", "mu", "bpp", "admm", "hals+compress", "admm+compress")
SNR_DB = 30.0
SEED = 0


@dataclass(frozen=True)
class Size:
    """One benchmark problem: a scan grid (rows x cols pixels) times channels, k factors."""

    name: str
    grid: tuple[int, int]
    n_channels: int
    k: int
    unmix_iter: int
    sklearn_iter: int

    @property
    def n_pixels(self) -> int:
        return self.grid[0] * self.grid[1]


FULL = {
    "small": Size("small", (128, 128), 1535, 4, unmix_iter=200, sklearn_iter=400),
    "large": Size("large", (256, 256), 4096, 8, unmix_iter=80, sklearn_iter=200),
}
QUICK = {
    "small": Size("small", (32, 32), 200, 4, unmix_iter=20, sklearn_iter=50),
    "large": Size("large", (48, 64), 400, 8, unmix_iter=15, sklearn_iter=50),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- data
def _spectra(k: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """k sparse-ish spectra: 2-5 narrow Gaussian peaks each on a weak floor."""
    x = np.arange(m, dtype=float)
    S = np.full((k, m), 0.01)
    for j in range(k):
        for _ in range(int(rng.integers(2, 6))):
            centre = rng.uniform(0.03, 0.97) * m
            width = rng.uniform(0.005, 0.03) * m
            S[j] += rng.uniform(0.3, 1.0) * np.exp(-0.5 * ((x - centre) / width) ** 2)
    return S


def _maps(grid: tuple[int, int], k: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth abundance maps on the simplex (softmax of Gaussian blobs), pixels x k."""
    h, w = grid
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    logits = np.zeros((h, w, k))
    for j in range(k):
        for _ in range(3):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            r = rng.uniform(0.08, 0.25) * max(h, w)
            logits[..., j] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    logits *= 6.0
    A = np.exp(logits - logits.max(axis=2, keepdims=True))
    A /= A.sum(axis=2, keepdims=True)
    return A.reshape(h * w, k)


def make_data(size: Size, dtype: np.dtype, rng: np.random.Generator, chunk: int = 4096):
    """``X = clip(A S + noise, 0)`` built in row chunks (no full-size temporaries)."""
    S = _spectra(size.k, size.n_channels, rng)
    A = _maps(size.grid, size.k, rng)
    n, m = A.shape[0], S.shape[1]
    power = float(np.sum((A.T @ A) * (S @ S.T))) / (n * m)  # mean((A S)^2)
    sigma = np.sqrt(power / 10 ** (SNR_DB / 10))
    X = np.empty((n, m), dtype=dtype)
    for i in range(0, n, chunk):
        rows = slice(i, min(n, i + chunk))
        block = A[rows] @ S
        block += sigma * rng.standard_normal(block.shape)
        np.clip(block, 0.0, None, out=block)
        X[rows] = block
    return X, A.astype(dtype), S.astype(dtype), sigma


def objective(X: np.ndarray, W: np.ndarray, H: np.ndarray, chunk: int = 4096) -> float:
    """``1/2 ||X - W H||_F^2`` in float64, row chunk by row chunk."""
    total = 0.0
    W64, H64 = W.astype(np.float64), H.astype(np.float64)
    for i in range(0, X.shape[0], chunk):
        R = X[i : i + chunk].astype(np.float64) - W64[i : i + chunk] @ H64
        total += float(np.einsum("ij,ij->", R, R))
    return 0.5 * total


def sad(S_est: np.ndarray, S_true: np.ndarray) -> float:
    return float(unmix.metrics.score(S_est, S_true)["sad"])


# -------------------------------------------------------------------- timing
def cpu_ms(fn, repeat: int) -> float:
    """Median CPU milliseconds of ``fn()`` over ``repeat`` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return 1e3 * float(np.median(times))


def floors(X: np.ndarray, A: np.ndarray, S: np.ndarray, repeat: int) -> dict:
    v = np.ones(X.shape[1], dtype=X.dtype)
    return {
        "Xv": cpu_ms(lambda: X @ v, repeat),
        "sum": cpu_ms(X.sum, repeat),
        "XSt": cpu_ms(lambda: X @ S.T, repeat),
        "AtX": cpu_ms(lambda: A.T @ X, repeat),
        "two": cpu_ms(lambda: (X @ S.T, A.T @ X), repeat),
    }


@dataclass
class Run:
    method: str
    cpu_total: float
    n_iter: int
    final_obj: float
    sad: float
    ms_iter: float = float("nan")
    startup: float = float("nan")
    objectives: np.ndarray = field(default_factory=lambda: np.empty(0))
    cpu_at: np.ndarray = field(default_factory=lambda: np.empty(0))
    reported_obj: float = float("nan")
    wall_total: float = float("nan")
    note: str = ""

    def reach(self, target: float) -> tuple[int, float] | None:
        """(iterations, CPU s from the call) at which the objective first is <= target."""
        hit = np.flatnonzero(self.objectives <= target)
        if hit.size == 0:
            return None
        i = int(hit[0])
        return i + 1, float(self.cpu_at[i])


def run_sklearn(X: np.ndarray, k: int, solver: str, max_iter: int, S_true) -> Run:
    model = NMF(
        n_components=k, solver=solver, init="nndsvda", max_iter=max_iter, random_state=SEED
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        w0, t0 = time.perf_counter(), time.process_time()
        W = model.fit_transform(X)
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    H = model.components_
    note = (
        "hit max_iter" if any(issubclass(w.category, ConvergenceWarning) for w in caught) else ""
    )
    run = Run(
        f"sklearn-{solver}",
        cpu,
        int(model.n_iter_),
        objective(X, W, H),
        sad(H, S_true),
        wall_total=wall,
        note=note,
    )
    # sklearn's own start (input checks + nndsvda), timed apart to get its cost per iteration
    try:
        from sklearn.decomposition._nmf import _initialize_nmf

        t0 = time.process_time()
        _initialize_nmf(X, k, init="nndsvda", random_state=SEED)
        run.startup = time.process_time() - t0
        run.ms_iter = 1e3 * (cpu - run.startup) / max(run.n_iter, 1)
    except ImportError:  # private helper moved: report the total per iteration instead
        run.ms_iter = 1e3 * cpu / max(run.n_iter, 1)
    return run


def run_unmix(X: np.ndarray, k: int, solver: str, max_iter: int, S_true) -> Run:
    """One unmix run; ``"<solver>+compress"`` runs the compressed first phase
    (``compress=True``, which needs ``tol > 0`` to hand over to the exact phase: 1e-6).
    Objectives of compressed iterations refer to the compressed data and never count
    as reaching a target."""
    stamps: list[float] = []
    objs: list[float] = []

    def callback(info) -> bool:
        stamps.append(time.process_time())
        objs.append(info.objective if info.phase == 2 else np.inf)
        return False

    name, _, variant = solver.partition("+")
    compress = variant == "compress"
    w0, t0 = time.perf_counter(), time.process_time()
    res = unmix.factorize(
        X,
        k,
        solver=name,
        init="nndsvda",
        tol=1e-6 if compress else 0,
        max_iter=max_iter * (4 if compress else 1),
        random_state=SEED,
        callback=callback,
        compress=True if compress else None,
    )
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    cpu_at = np.asarray(stamps) - t0
    per_iter = np.diff(cpu_at)  # iterations 2..N (the first one is mixed with the start)
    ms_iter = 1e3 * float(per_iter.mean()) if per_iter.size else float("nan")
    run = Run(
        f"unmix-{solver}",
        cpu,
        int(res.n_iter),
        objective(X, res.A, res.S),
        sad(res.S, S_true),
        ms_iter=ms_iter,
        objectives=np.asarray(objs),
        cpu_at=cpu_at,
        reported_obj=float(res.objective),
        wall_total=wall,
    )
    run.startup = float(cpu_at[0]) - (ms_iter / 1e3 if per_iter.size else 0.0)
    del res
    return run


# -------------------------------------------------------------------- report
def machine_info() -> dict:
    cpu = cpu_model()
    mem = "unknown"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    blas = "unknown"
    if threadpool_info is not None:
        libs = [
            f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} thread)"
            for i in threadpool_info()
            if i.get("user_api") == "blas"
        ]
        blas = "; ".join(libs) or blas
    return {
        "commit": _git_revision(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "blas": blas,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "unmix": unmix.__version__,
    }


def _f(x: float, fmt: str = ".1f") -> str:
    return "-" if x is None or not np.isfinite(x) else format(x, fmt)


def _ms(x: float) -> str:
    """Milliseconds with 3 significant digits (1234, 123, 12.3, 1.23)."""
    if x is None or not np.isfinite(x):
        return "-"
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def _reach_cells(run: Run, target: float, ref_cpu: float) -> list[str]:
    if run.method.startswith("sklearn"):
        return ["-", "-", "-"]
    hit = run.reach(target)
    if hit is None:
        return [f"not reached in {run.n_iter} iterations", "-", "-"]
    it, cpu = hit
    return [str(it), f"{cpu:.2f}", f"{ref_cpu / cpu:.2f}x"]


def size_section(size: Size, dtype, sigma: float, fl: dict, runs: list[Run]) -> list[str]:
    sk = {r.method: r for r in runs if r.method.startswith("sklearn")}
    cd, mu = sk.get("sklearn-cd"), sk.get("sklearn-mu")
    n, m = size.n_pixels, size.n_channels
    mb = n * m * np.dtype(dtype).itemsize / 2**20
    out = [
        f"## {size.name}: {n} x {m} (grid {size.grid[0]} x {size.grid[1]}), k = {size.k}, "
        f"{np.dtype(dtype).name}",
        "",
        f"X is {mb:.0f} MiB; noise sigma {sigma:.3g} ({SNR_DB:g} dB), clipped at 0. "
        f'unmix: tol=0, max_iter={size.unmix_iter} ("+compress": compress=True, tol=1e-6, '
        f"max_iter={4 * size.unmix_iter}); scikit-learn: default tol, "
        f"max_iter={size.sklearn_iter}.",
        "",
        "References (CPU ms, median): one-pass floor `X @ v` "
        f"**{_ms(fl['Xv'])}** (`X.sum()` {_ms(fl['sum'])}); `X @ S.T` {_ms(fl['XSt'])} + "
        f"`A.T @ X` {_ms(fl['AtX'])} = **{_ms(fl['two'])}** together.",
        "",
    ]
    if cd is not None:
        out += [
            f"Target: scikit-learn cd's final objective {cd.final_obj:.6g}, reached by it in "
            f"{cd.cpu_total:.2f} CPU s.",
            "",
        ]
    head = [
        "method",
        "ms/iter (CPU)",
        "x floor",
        "x 2 products",
        "iters to cd obj",
        "CPU s to cd obj",
        "speedup vs sklearn-cd",
        "final objective",
        "final SAD (deg)",
    ]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        reach = _reach_cells(r, cd.final_obj, cd.cpu_total) if cd else ["-"] * 3
        label = r.method + (" (n_iter_ " + str(r.n_iter) + ")" if r.method in sk else "")
        out.append(
            "| "
            + " | ".join(
                [
                    label,
                    _ms(r.ms_iter),
                    _f(r.ms_iter / fl["Xv"]),
                    _f(r.ms_iter / fl["two"], ".2f"),
                    *reach,
                    f"{r.final_obj:.6g}",
                    _f(r.sad, ".3f"),
                ]
            )
            + " |"
        )
    out += ["", "Second target and totals:", ""]
    head2 = [
        "method",
        "start-up CPU s",
        "total CPU s",
        "wall s",
        "iterations",
        "iters to mu obj",
        "CPU s to mu obj",
        "speedup vs sklearn-mu",
        "note",
    ]
    out += ["| " + " | ".join(head2) + " |", "|" + "---|" * len(head2)]
    for r in runs:
        reach = _reach_cells(r, mu.final_obj, mu.cpu_total) if mu else ["-"] * 3
        note = r.note
        if np.isfinite(r.reported_obj) and abs(r.reported_obj - r.final_obj) > 1e-8 * r.final_obj:
            note = (note + "; " if note else "") + f"unmix reports {r.reported_obj:.8g}"
        out.append(
            "| "
            + " | ".join(
                [
                    r.method,
                    _f(r.startup, ".2f"),
                    f"{r.cpu_total:.2f}",
                    f"{r.wall_total:.1f}",
                    str(r.n_iter),
                    *reach,
                    note,
                ]
            )
            + " |"
        )
    out += ["", *remarks(runs, cd, fl), ""]
    return out


def _target_remark(method: str, hals: Run, cd: Run) -> str:
    label = method.removeprefix("unmix-")
    hit = hals.reach(cd.final_obj)
    if hit is None:
        return (
            f"- **Target ({label} <= 1/3 of sklearn-cd CPU): not met** - it did not "
            f"reach sklearn-cd's objective in {hals.n_iter} iterations."
        )
    it, cpu = hit
    ok = cpu <= cd.cpu_total / 3
    first = float(hals.cpu_at[0])
    return (
        f"- **Target ({label} <= 1/3 of sklearn-cd CPU): {'met' if ok else 'not met'}** - "
        f"it needs {cpu:.2f} CPU s ({it} iterations) = {cpu / cd.cpu_total:.2f} of "
        f"sklearn-cd's {cd.cpu_total:.2f} s (the target is {cd.cpu_total / 3:.2f} s): "
        f"{first:.2f} s until the end of iteration 1 (input checks, start, setup, one "
        f"iteration), then {cpu - first:.2f} s for {it - 1} more iterations "
        f"({_ms(1e3 * (cpu - first) / max(it - 1, 1))} ms each on average)."
    )


def remarks(runs: list[Run], cd: Run | None, fl: dict) -> list[str]:
    out = ["Remarks (generated from the numbers above):", ""]
    for method in ("unmix-hals", "unmix-hals+compress"):
        hals = next((r for r in runs if r.method == method), None)
        if hals is not None and cd is not None:
            out.append(_target_remark(method, hals, cd))
    for r in runs:
        if r.method.startswith("unmix"):
            out.append(
                f"- {r.method}: {_ms(r.ms_iter)} ms/iteration = "
                f"{r.ms_iter / fl['Xv']:.1f} one-pass floors = "
                f"{r.ms_iter / fl['two']:.2f} x the two big NumPy products."
            )
    out.append(
        f"- The two big products alone cost {fl['two'] / fl['Xv']:.1f} one-pass floors: "
        "BLAS GEMM with only k columns on one side is not memory-bound."
    )
    return out


def _git_revision() -> str:
    """Commit of the checkout the benchmark ran on, flagged when src/ has local edits."""
    import subprocess

    try:

        def git(*a: str) -> str:
            return subprocess.run(
                ["git", *a], cwd=HERE.parent, capture_output=True, text=True, check=True
            ).stdout.strip()

        rev = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "src")
        return rev + (" (src/ modified)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on every platform
        return float("nan")


def write_report(path: Path | None, info: dict, sections: list[list[str]], args, wall: float):
    cores = info["cores"] or 1
    busy = max(info["load_start"], info["load_end"]) > 1.25
    load = (
        f"Load average (1 min) {info['load_start']:.1f} at the start, "
        f"{info['load_end']:.1f} at the end, on {cores} cores"
        + (
            ": **other jobs shared this machine during the run**, so CPU times (which "
            "exclude waiting) are the reliable measure; wall times are inflated, and "
            "memory-bound CPU times may be inflated by a few percent too."
            if busy
            else "."
        )
    )
    lines = [
        "# unmix engine benchmark (single BLAS thread)",
        "",
        f"Date: {dt.datetime.now().isoformat(timespec='seconds')}; "
        f"script run took {wall / 60:.1f} min wall.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory']} RAM; "
        f"BLAS: {info['blas']}; BLAS threads pinned to 1 "
        "(OMP/OPENBLAS/MKL_NUM_THREADS=1 and threadpoolctl).",
        "",
        load,
        "",
        f"Versions: Python {info['python']}, NumPy {info['numpy']}, SciPy {info['scipy']}, "
        f"scikit-learn {info['sklearn']}, unmix {info['unmix']} (commit {info['commit']}).",
        "",
        "How to run: `.venv/bin/python benchmarks/bench_engine.py` (all sizes, writes this "
        "file); `--sizes small|large|all`, `--quick` for a smoke test in seconds"
        + (" (this report is a --quick run)" if args.quick else "")
        + ".",
        "",
        "Definitions: all times are CPU seconds of the process (`time.process_time`), "
        "including input checks and initialization. *ms/iter* for unmix is the mean over "
        "iterations 2..N from callback time stamps; for scikit-learn it is (total - its "
        "nndsvda start timed apart) / n_iter_. *x floor* divides by one `X @ v` (reads X "
        "once); *x 2 products* by one `X @ S.T` plus one `A.T @ X`. *CPU s to cd obj* is "
        "the CPU time from the call until unmix's reported objective (1/2 ||X - A S||_F^2) "
        "first is <= scikit-learn cd's final objective; *speedup* = sklearn-cd total CPU s "
        "/ that. Final objectives are recomputed here from the returned factors for both "
        "libraries; SAD is the mean spectral angle to the planted spectra after Hungarian "
        "matching (`unmix.metrics.score`). *start-up* for unmix is CPU s until the first "
        "callback minus one iteration.",
        "",
    ]
    for sec in sections:
        lines += sec
    text = "\n".join(lines).rstrip() + "\n"
    if path is None:
        print(text)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        log(f"wrote {path}")


# ---------------------------------------------------------------------- main
def bench_size(size: Size, dtype, solvers: list[str], repeat: int) -> list[str]:
    rng = np.random.default_rng(SEED)
    log(f"{size.name}: building {size.n_pixels} x {size.n_channels} (k={size.k})")
    X, A, S, sigma = make_data(size, dtype, rng)
    fl = floors(X, A, S, repeat)
    log(f"{size.name}: floors {', '.join(f'{k} {v:.1f} ms' for k, v in fl.items())}")
    runs: list[Run] = []
    for solver in ("cd", "mu"):
        runs.append(run_sklearn(X, size.k, solver, size.sklearn_iter, S))
        r = runs[-1]
        log(
            f"{r.method}: {r.cpu_total:.2f} s, {r.n_iter} it, obj {r.final_obj:.6g}, "
            f"SAD {r.sad:.3f} {r.note}"
        )
        gc.collect()
    for solver in solvers:
        runs.append(run_unmix(X, size.k, solver, size.unmix_iter, S))
        r = runs[-1]
        log(
            f"{r.method}: {r.cpu_total:.2f} s, {r.ms_iter:.1f} ms/it, obj {r.final_obj:.6g}, "
            f"SAD {r.sad:.3f}"
        )
        gc.collect()
    return size_section(size, dtype, sigma, fl, runs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", choices=("small", "large", "all"), default="all")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, few iterations")
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument(
        "--solvers",
        default=",".join(SOLVERS),
        help="comma-separated unmix solvers (default: all four)",
    )
    ap.add_argument(
        "--max-iter",
        type=int,
        default=None,
        help="unmix iterations for every size (default: per size, 200 / 100)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"report path (default {DEFAULT_OUT.relative_to(HERE.parent)}; "
        "--quick prints to stdout)",
    )
    args = ap.parse_args(argv)
    table = QUICK if args.quick else FULL
    if args.max_iter is not None:
        table = {name: replace(sz, unmix_iter=args.max_iter) for name, sz in table.items()}
    names = ["small", "large"] if args.sizes == "all" else [args.sizes]
    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    out = args.out if args.out is not None else (None if args.quick else DEFAULT_OUT)
    dtype = np.dtype(args.dtype)
    wall0 = time.perf_counter()
    limiter = threadpool_limits(limits=1) if threadpool_limits is not None else None
    try:
        info = machine_info()
        info["load_start"] = _load()
        sections = [
            bench_size(table[name], dtype, solvers, 2 if args.quick else 5) for name in names
        ]
        info["load_end"] = _load()
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
    write_report(out, info, sections, args, time.perf_counter() - wall0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
