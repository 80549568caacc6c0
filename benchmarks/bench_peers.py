"""Peer comparison: unmix against scikit-learn, torchnmf and nimfa on the same data, 1 thread.

Every library factorizes the same planted matrix (the recipe of ``bench_onepass.py``:
k Gaussian-peak spectra, gamma abundances, clipped Gaussian noise) from the same start
(scikit-learn's ``nndsvda`` of that X, passed as a custom init to everyone), with BLAS,
OpenMP and torch pinned to one thread.  For each run the script records

* CPU seconds (``time.process_time``) at the end of every iteration, through a hook each
  library offers or a wrapper around its per-iteration update function (unmix: its
  callback; scikit-learn: ``_update_coordinate_descent`` / ``_multiplicative_update_h``;
  torchnmf: ``_double_backward_update``; nimfa: the model's ``_adjustment`` step);
* at each of those points the objective ``1/2 ||X - A S||_F^2``, computed here in float64
  the same way for every library, on a *paused clock*: its cost is left out of the times;
* the final objective, recomputed here from the returned factors (dense residual, float64).

It reports ms per iteration (mean over iterations 2..N), the ratio to the one-pass floor
(one ``X @ v``: reads X once, measured in the same run), the final objective and the CPU
time each method needs to reach scikit-learn cd's final objective (cd at its defaults,
``tol=1e-4``; on the large size cd is capped at a few iterations, so the target there is
its objective after those).  Libraries that are not installed are skipped with a message
(``pip install -e .[bench]`` installs torchnmf and nimfa).

Run::

    .venv/bin/python benchmarks/bench_peers.py              # both sizes, ~15-20 min
    .venv/bin/python benchmarks/bench_peers.py --quick      # small sizes, seconds

The full run writes ``benchmarks/results/peers.md``; ``--quick`` writes
``/tmp/peers_quick.md``.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.metadata  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

import unmix  # noqa: E402
from unmix.engine.kernels import _onepass  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_onepass import make, median_cpu  # noqa: E402  (same data recipe and floor)

OUT = Path(__file__).resolve().parent / "results" / "peers.md"


@dataclass(frozen=True)
class Size:
    """A problem and the iteration / CPU-second caps of its runs."""

    n: int
    m: int
    k: int
    cd_iter: int  # scikit-learn cd (default tol): sets the target
    iters: int  # every other method, tol=0
    cap_s: float  # CPU seconds a run may take (checked after every iteration)
    compress_iter: int  # unmix with its default compress="auto" (tol=1e-6)


FULL = [Size(16384, 1535, 4, 400, 200, 20.0, 800), Size(65536, 4096, 8, 4, 6, 25.0, 200)]
QUICK = [Size(4096, 512, 4, 400, 60, 5.0, 300), Size(8192, 1024, 8, 4, 6, 5.0, 100)]


class StopFit(Exception):
    """Raised from inside a peer's loop when a run passes its CPU-second cap."""


def to_np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def objective_fast(X64: np.ndarray, normX2: float, A: Any, S: Any) -> float:
    """1/2 ||X - A S||^2 from one ``X @ S.T`` (trace form), in float64."""
    A, S = to_np(A), to_np(S)
    cross = float(np.sum(A * (X64 @ S.T)))
    gram = float(np.sum((A.T @ A) * (S @ S.T)))
    return 0.5 * (normX2 - 2.0 * cross + gram)


def objective_exact(X64: np.ndarray, A: Any, S: Any, block: int = 4096) -> float:
    """1/2 ||X - A S||^2 from the dense residual, in row blocks, in float64."""
    A, S = to_np(A), to_np(S)
    total = 0.0
    for s in range(0, X64.shape[0], block):
        R = X64[s : s + block] - A[s : s + block] @ S
        total += float(np.einsum("ij,ij->", R, R))
    return 0.5 * total


class Tracker:
    """CPU time and objective at the end of each iteration, on a paused clock."""

    def __init__(self, X64: np.ndarray, normX2: float, cap_s: float) -> None:
        self.X64, self.normX2, self.cap_s = X64, normX2, cap_s
        self.times: list[float] = []
        self.objs: list[float] = []
        self.last: tuple[Any, Any] | None = None
        self.t0 = self.paused = 0.0

    def start(self) -> None:
        self.t0, self.paused = time.process_time(), 0.0

    def elapsed(self) -> float:
        return time.process_time() - self.t0 - self.paused

    def record(self, A: Any, S: Any) -> bool:
        """Stamp an iteration; True when the run has used up its CPU seconds."""
        t = time.process_time()
        self.times.append(t - self.t0 - self.paused)
        self.objs.append(objective_fast(self.X64, self.normX2, A, S))
        self.last = (A, S)
        self.paused += time.process_time() - t
        return self.times[-1] > self.cap_s

    def record_or_stop(self, A: Any, S: Any) -> None:
        if self.record(A, S):
            raise StopFit


@dataclass
class Run:
    """One method on one problem."""

    method: str
    times: np.ndarray
    objs: np.ndarray
    total_s: float
    final_obj: float
    note: str = ""
    n_iter: int = field(init=False)

    def __post_init__(self) -> None:
        self.n_iter = len(self.times)

    @property
    def ms_per_iter(self) -> float:
        if self.n_iter < 2:
            return 1e3 * self.total_s / max(self.n_iter, 1)
        return 1e3 * float(self.times[-1] - self.times[0]) / (self.n_iter - 1)

    def time_to(self, target: float) -> tuple[int, float] | None:
        hit = np.flatnonzero(self.objs <= target)
        return None if hit.size == 0 else (int(hit[0]) + 1, float(self.times[hit[0]]))


# ----------------------------------------------------------------------------- runners


def run_unmix(X, A0, S0, tr: Tracker, solver: str, iters: int, compress: Any, tol: float):
    tr.start()
    r = unmix.factorize(
        X,
        A0.shape[1],
        solver=solver,
        init=(A0.copy(), S0.copy()),
        tol=tol,
        max_iter=iters,
        compress=compress,
        random_state=0,
        callback=lambda info: tr.record(info.A, info.S),
    )
    note = "CPU cap" if r.stop_reason == "callback" else f"stop: {r.stop_reason}"
    if compress is not None:
        note += "; ms/iter mixes compressed and full-X iterations"
    return r.A, r.S, note


def _patched(module: Any, name: str, make_wrapper: Callable) -> Callable:
    """Run ``fn`` with ``module.name`` replaced by ``make_wrapper(original)``."""

    def runner(fn: Callable) -> Any:
        orig = getattr(module, name)
        setattr(module, name, make_wrapper(orig))
        try:
            return fn()
        finally:
            setattr(module, name, orig)

    return runner


def run_sklearn(X, A0, S0, tr: Tracker, solver: str, iters: int, tol: float):
    from sklearn.decomposition import NMF, _nmf

    if solver == "cd":  # called for W, then for H (args X.T, Ht, W): stamp after H
        calls = [0]

        def wrap(orig):
            def f(Xa, Wa, Hta, *a, **kw):
                out = orig(Xa, Wa, Hta, *a, **kw)
                calls[0] += 1
                if calls[0] % 2 == 0:
                    tr.record_or_stop(Hta, Wa.T)
                return out

            return f

        name = "_update_coordinate_descent"
    else:

        def wrap(orig):
            def f(Xa, Wa, Ha, *a, **kw):
                H = orig(Xa, Wa, Ha, *a, **kw)
                tr.record_or_stop(Wa, H)
                return H

            return f

        name = "_multiplicative_update_h"

    est = NMF(A0.shape[1], solver=solver, init="custom", max_iter=iters, tol=tol)

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            W = est.fit_transform(X, W=A0.copy(), H=S0.copy())
        return W, est.components_, f"n_iter_ {est.n_iter_}, tol {tol:g}"

    tr.start()
    try:
        return _patched(_nmf, name, wrap)(fit)
    except StopFit:
        A, S = tr.last
        return A, S, "CPU cap"


def run_torchnmf(X, A0, S0, tr: Tracker, iters: int):
    import torch
    from torchnmf import nmf as tn

    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if X.dtype == np.float64 else torch.float32)
    try:
        tr.start()
        V = torch.from_numpy(X)
        model = tn.NMF(W=torch.from_numpy(S0.T.copy()), H=torch.from_numpy(A0.copy()))

        def wrap(orig):  # called for W, then for H, each iteration: stamp after H
            def f(Va, WH, param, *a, **kw):
                orig(Va, WH, param, *a, **kw)
                if param is model.H:
                    tr.record_or_stop(model.H.data, model.W.data.T)

            return f

        def fit():
            model.fit(V, beta=2, tol=float("-inf"), max_iter=iters)
            return model.H.data, model.W.data.T, "tol -inf (every max_iter iteration)"

        try:
            return _patched(tn, "_double_backward_update", wrap)(fit)
        except StopFit:
            return model.H.data, model.W.data.T, "CPU cap"
    finally:
        torch.set_default_dtype(prev)


def run_nimfa(X, A0, S0, tr: Tracker, iters: int):
    import nimfa

    tr.start()
    # test_conv=iters: nimfa's own dense objective once, at the end (not every iteration)
    model = nimfa.Nmf(
        X,
        seed=None,
        W=A0.copy(),
        H=S0.copy(),
        rank=A0.shape[1],
        max_iter=iters,
        update="euclidean",
        objective="fro",
        test_conv=iters,
    )
    orig = model._adjustment  # runs after every update

    def adjust():
        orig()
        tr.record_or_stop(model.W, model.H)

    model._adjustment = adjust
    try:
        fit = model()
        return fit.basis(), fit.coef(), "euclidean MU, test_conv=max_iter"
    except StopFit:
        return model.W, model.H, "CPU cap"


# ----------------------------------------------------------------------------- setup


def peer_status() -> dict[str, str | None]:
    """Version of each optional peer, or None (with a message) when it is missing."""
    out: dict[str, str | None] = {}
    for name in ("torchnmf", "nimfa"):
        try:
            out[name] = importlib.metadata.version(name)
            __import__(name)
        except Exception as err:  # not installed, or fails to import
            print(f"skipping {name}: {type(err).__name__}: {err} (pip install -e .[bench])")
            out[name] = None
    return out


def nimfa_shim() -> str:
    """nimfa 1.4.0 calls ``np.mat``, removed in NumPy 2; alias it to ``np.asmatrix``."""
    if hasattr(np, "mat"):
        return ""
    setattr(np, "mat", np.asmatrix)  # noqa: B010  (setattr: NumPy 2 has no np.mat)
    return "np.mat = np.asmatrix (NumPy 2 removed np.mat; nimfa 1.4.0 calls it)"


def pin_threads(have_torch: bool) -> None:
    threadpool_limits(1)
    if have_torch:
        import torch

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)


def warm_up_unmix() -> float:
    """First calls that compile (or load from cache) unmix's numba kernels; CPU s."""
    t = time.process_time()
    for dt in (np.float64, np.float32):
        Xs = make(256, 64, 2, dt)
        for s in ("mu", "hals"):
            opts = {"kernel": "onepass"}
            unmix.factorize(Xs, 2, solver=s, max_iter=2, compress=None, solver_options=opts)
    return time.process_time() - t


def nndsvda(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    from sklearn.decomposition._nmf import _initialize_nmf

    t = time.process_time()
    W, H = _initialize_nmf(X, k, init="nndsvda", random_state=0)
    return W, H, time.process_time() - t


# ----------------------------------------------------------------------------- driver


def methods(size: Size, dtype: type, peers: dict) -> list[tuple[str, Callable]]:
    it = size.iters
    out: list[tuple[str, Callable]] = [
        ("scikit-learn mu", lambda *a: run_sklearn(*a, "mu", it, 0.0)),
        ("unmix hals", lambda *a: run_unmix(*a, "hals", it, None, 0.0)),
        ("unmix mu", lambda *a: run_unmix(*a, "mu", it, None, 0.0)),
        (
            'unmix hals, compress="auto"',
            lambda *a: run_unmix(*a, "hals", size.compress_iter, "auto", 1e-6),
        ),
    ]
    if peers.get("torchnmf"):
        out.append(("torchnmf (MU)", lambda *a: run_torchnmf(*a, it)))
    if peers.get("nimfa") and dtype == np.float64:  # nimfa casts X to float64 anyway
        out.append(("nimfa (MU)", lambda *a: run_nimfa(*a, it)))
    return out


def measure(name, fn, X, X64, normX2, A0, S0, cap_s) -> Run:
    tr = Tracker(X64, normX2, cap_s)
    t = time.perf_counter()
    A, S, note = fn(X, A0, S0, tr)
    total = tr.elapsed()
    run = Run(name, np.asarray(tr.times), np.asarray(tr.objs), total, objective_exact(X64, A, S))
    run.note = note
    if run.n_iter < 2:
        run.note += "; one iteration: ms/iter is its total CPU s (start included)"
    print(
        f"  {name:30s} {run.n_iter:4d} it  {run.ms_per_iter:9.1f} ms/it  "
        f"obj {run.final_obj:.6g}  ({time.perf_counter() - t:.0f} s wall)",
        flush=True,
    )
    return run


def bench_problem(size: Size, X64: np.ndarray, dtype: type, peers: dict) -> dict:
    X = X64 if dtype == np.float64 else X64.astype(dtype)
    normX2 = float(np.einsum("ij,ij->", X64, X64))
    v = np.ones(X.shape[1], dtype)
    floor_ms = 1e3 * median_cpu(lambda: X @ v)
    A0, S0, init_s = nndsvda(X, size.k)
    print(f"{size.n} x {size.m}, k {size.k}, {np.dtype(dtype).name}: floor {floor_ms:.1f} ms")
    runs = [
        measure(
            "scikit-learn cd",
            lambda *a: run_sklearn(*a, "cd", size.cd_iter, 1e-4),
            X,
            X64,
            normX2,
            A0,
            S0,
            4 * size.cap_s,
        )
    ]
    for name, fn in methods(size, dtype, peers):
        runs.append(measure(name, fn, X, X64, normX2, A0, S0, size.cap_s))
    return {"size": size, "dtype": dtype, "floor_ms": floor_ms, "init_s": init_s, "runs": runs}


def row(label: str, run: Run, floor_ms: float, cd: Run) -> str:
    hit = run.time_to(cd.objs[-1])  # tracked objectives are compared among themselves
    if hit is None:
        reach, speed = "not reached", "-"
    else:
        reach = f"{hit[1]:.2f} ({hit[0]})"
        speed = f"{cd.times[-1] / hit[1]:.2f}x" if run is not cd else "1x"
    return (
        f"| {label} | {run.method} | {run.n_iter} | {run.ms_per_iter:.1f} | "
        f"{run.ms_per_iter / floor_ms:.1f} | {run.final_obj:.6g} | {reach} | {speed} | "
        f"{run.note} |"
    )


def report(results: list[dict], args, peers: dict, shim: str, jit_s: float, wall: float):
    blas = "; ".join(
        f"{d.get('internal_api')} {d.get('version')} ({d.get('num_threads')} thread)"
        for d in threadpool_info()
    )
    vers = {n: importlib.metadata.version(n) for n in ("numpy", "scipy", "scikit-learn", "torch")}
    peer_txt = ", ".join(f"{n} {v or 'MISSING (skipped)'}" for n, v in peers.items())
    lines = [
        "# unmix vs peer NMF libraries, 1 thread, same data and start",
        "",
        f"Date: {datetime.datetime.now().isoformat(timespec='seconds')}; "
        f"{wall / 60:.1f} min wall.",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"shared with other jobs (load average {os.getloadavg()[0]:.1f} at the end); "
        f"BLAS: {blas}; torch threads 1 (intra and inter-op).",
        "",
        f"Versions: Python {platform.python_version()}, "
        + ", ".join(f"{n} {v}" for n, v in vers.items())
        + f", unmix {unmix.__version__ if hasattr(unmix, '__version__') else '?'}; "
        f"{peer_txt}." + (f" nimfa shim: `{shim}`." if shim else ""),
        "",
        f"Command: `.venv/bin/python benchmarks/bench_peers.py{' --quick' if args.quick else ''}`"
        f" (`OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS=1`, threadpoolctl, `torch.set_num_threads(1)`).",
        "",
        f'unmix uses its default kernel choice (`kernel="auto"`: the one-pass numba '
        f"kernel when X has at least {_onepass.AUTO_MIN_ENTRIES} entries and numba is "
        f"installed: {_onepass.available()}); its kernels were compiled / loaded before "
        f"timing ({jit_s:.2f} CPU s).",
        "",
        "Definitions: *ms/iter* is the mean CPU time of iterations 2..N (stamps taken at "
        "the end of each iteration, tracking cost excluded); *x floor* divides it by one "
        "`X @ v` of the same run; *final objective* is 1/2 ||X - A S||_F^2 recomputed "
        "here in float64 from the returned factors; *CPU s to cd objective* is the CPU "
        "time from the library call (input checks included, the shared nndsvda start "
        "excluded) to the first iteration whose objective is <= scikit-learn cd's final "
        "one; *speedup* = cd's CPU s / that.",
    ]
    for res in results:
        size, dt, cd = res["size"], res["dtype"], res["runs"][0]
        label = f"{size.n} x {size.m}, k {size.k}, {np.dtype(dt).name}"
        target = (
            "its default `tol=1e-4`, `max_iter=400`"
            if size.cd_iter >= 400
            else f"**capped at {size.cd_iter} iterations** (not converged)"
        )
        lines += [
            "",
            f"## {label}",
            "",
            f"Floor (one `X @ v`): **{res['floor_ms']:.2f} ms** CPU. Common start: "
            f"scikit-learn nndsvda of this X ({res['init_s']:.2f} CPU s, not counted). "
            f"Target: scikit-learn cd's final objective **{cd.final_obj:.6g}**, cd at "
            f"{target}, reached in {cd.times[-1]:.2f} CPU s. Others: `tol=0` (or the "
            f"library's equivalent), at most {size.iters} iterations or {size.cap_s:.0f} "
            f"CPU s; unmix with compress: `tol=1e-6`, at most {size.compress_iter}.",
            "",
            "| problem | method | iters | ms/iter (CPU) | x floor | final objective | "
            "CPU s to cd objective (iters) | speedup vs cd | note |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [row(label, r, res["floor_ms"], cd) for r in res["runs"]]
        lines += ["", *remarks(res["runs"])]
    return lines


def remarks(runs: list[Run]) -> list[str]:
    """Generated comparisons with unmix hals (per iteration and to the target)."""
    ref = next(r for r in runs if r.method == "unmix hals")
    hit_ref = ref.time_to(runs[0].objs[-1])
    out = []
    for r in runs:
        if r.method.startswith("unmix"):
            continue
        txt = f"- {r.method}: {r.ms_per_iter / ref.ms_per_iter:.1f}x unmix hals's ms/iter"
        hit = r.time_to(runs[0].objs[-1])
        if hit and hit_ref:
            txt += f"; {hit[1] / hit_ref[1]:.1f}x its CPU time to the cd objective"
        elif hit_ref:
            txt += "; did not reach the cd objective in its iterations"
        out.append(txt + ".")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, seconds")
    ap.add_argument("--sizes", default="all", choices=("all", "small", "large"))
    args = ap.parse_args()
    t_wall = time.perf_counter()
    peers = peer_status()
    shim = nimfa_shim() if peers.get("nimfa") else ""
    pin_threads(bool(peers.get("torchnmf")))
    jit_s = warm_up_unmix()
    sizes = QUICK if args.quick else FULL
    sizes = {"all": sizes, "small": sizes[:1], "large": sizes[1:]}[args.sizes]
    results = []
    for size in sizes:
        X64 = make(size.n, size.m, size.k, np.float64)
        for dt in (np.float64, np.float32):
            results.append(bench_problem(size, X64, dt, peers))
        del X64
    lines = report(results, args, peers, shim, jit_s, time.perf_counter() - t_wall)
    out = Path("/tmp/peers_quick.md") if args.quick else OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print("wrote", out)


if __name__ == "__main__":
    main()
