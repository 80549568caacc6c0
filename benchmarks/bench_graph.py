"""Build time and memory of the data graph (``unmix.knn_graph``), 1 thread.

Writes ``benchmarks/results/graph.md``.  Each build runs in a fresh subprocess that first
loads the data from a ``.npy``/``.npz`` file (so the data's own generation does not count
toward the peak), then builds the graph twice: once timed (CPU seconds of the process,
``time.process_time``, and wall seconds) with the peak resident memory of the process
read from ``resource.getrusage`` (``ru_maxrss``, which includes ``X`` itself, Python and
the libraries; the kernel's peak mark is reset just before the build, ``VmHWM``, where
Linux allows it), once under ``tracemalloc`` for the peak of the memory the build itself
allocates (NumPy arrays and Python objects; not BLAS's or the ball tree's C buffers, which
the RSS catches).  BLAS is pinned to one thread (environment + threadpoolctl).

Data: ``unmix.datasets.make_mixture`` (5 planted endmembers, smooth maps, 512 channels,
30 dB Gaussian noise; float64), and Poisson counts of the same maps at ~0.5 counts per
channel stored as SciPy CSR.  Recall: the share of the exact graph's edges (16,384
pixels) that the approximate graph has; distance ratio: the mean cosine distance
(``1 - cos`` on the full spectra) from each pixel to its 10 closest neighbours in the
approximate graph divided by the same in the exact graph (1.00: the approximate
neighbours are as close as the exact ones); and both graphs against the exact graph of
the noiseless signal ``A @ S``.

Run: ``.venv/bin/python benchmarks/bench_graph.py [--quick]``.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

import unmix  # noqa: E402
from unmix.model._graph import BRUTE_MAX_PIXELS  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _machine import cpu_model  # noqa: E402

OUT = Path(__file__).parent / "results" / "graph.md"
K, CHANNELS, NEIGHBORS = 5, 512, 10
MB = 2.0**20


def make_data(side: int, folder: Path) -> dict[str, Path]:
    """The dense and the sparse (Poisson counts) data sets of a ``side x side`` map."""
    mx = unmix.datasets.make_mixture(
        K, spatial_shape=(side, side), n_channels=CHANNELS, snr_db=30, random_state=0
    )
    dense = folder / f"dense{side}.npy"
    np.save(dense, mx.X)
    Y = mx.A @ mx.S
    np.save(folder / f"clean{side}.npy", Y)
    lam = Y * (0.5 / Y.mean())
    del mx, Y
    counts = sp.csr_array(np.random.default_rng(1).poisson(lam).astype(np.float64))
    del lam
    sparse = folder / f"sparse{side}.npz"
    sp.save_npz(sparse, counts)
    return {"dense": dense, "sparse": sparse}


def _load(path: str) -> object:
    return sp.load_npz(path) if path.endswith(".npz") else np.load(path)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0), if allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb(reset: bool) -> float:
    """``VmHWM`` since the reset; else the process's ``ru_maxrss`` (since its start)."""
    if reset:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def child(case: dict) -> dict:
    """One build in this (fresh) process: times, memory, and the graph saved."""
    threadpool_limits(1)
    X = _load(case["data"])
    opts = {"approximate": case["approximate"], "random_state": 0}
    unmix.knn_graph(X[:200], NEIGHBORS, **opts)  # imports and first calls, not timed
    reset = _reset_peak()
    base = _rss_mb()
    cpu, wall = time.process_time(), time.perf_counter()
    W = unmix.knn_graph(X, NEIGHBORS, **opts)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    peak_rss = _peak_rss_mb(reset)
    del W
    tracemalloc.start()
    W = unmix.knn_graph(X, NEIGHBORS, **opts)
    traced = tracemalloc.get_traced_memory()[1] / MB
    tracemalloc.stop()
    if case.get("save"):
        sp.save_npz(case["save"], W)
    nbytes = X.data.nbytes + X.indices.nbytes if sp.issparse(X) else X.nbytes
    return {
        "cpu": cpu, "wall": wall, "peak_rss": peak_rss, "rss_before": base,
        "traced": traced, "x_mb": nbytes / MB, "edges": int(W.nnz // 2), "reset": reset,
        "min_degree": int(np.diff(W.indptr).min()),
    }  # fmt: skip


def run_case(case: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--case", json.dumps(case)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def recall(reference: sp.csr_array, W: sp.csr_array) -> float:
    """The share of ``reference``'s edges that ``W`` has."""
    return reference.multiply(W).nnz / reference.nnz


def mean_distance(X: np.ndarray, W: sp.csr_array) -> float:
    """Mean over pixels of the cosine distance ``1 - cos(x_i, x_j)`` to the pixel's
    ``NEIGHBORS`` closest neighbours in ``W`` (a row of a union graph may hold more)."""
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    rows = np.repeat(np.arange(W.shape[0]), np.diff(W.indptr))
    d = np.empty(W.nnz)
    for s in range(0, W.nnz, 65536):
        i, j = rows[s : s + 65536], W.indices[s : s + 65536]
        d[s : s + 65536] = 1.0 - np.einsum("ij,ij->i", U[i], U[j])
    per_pixel = [
        np.sort(d[W.indptr[i] : W.indptr[i + 1]])[:NEIGHBORS].mean() for i in range(W.shape[0])
    ]
    return float(np.mean(per_pixel))


def quality(folder: Path, side: int, exact: sp.csr_array, approx: sp.csr_array) -> dict:
    """The approximate graph against the exact one, both against the noiseless signal's."""
    X = np.load(folder / f"dense{side}.npy")
    clean = np.load(folder / f"clean{side}.npy")
    truth = unmix.knn_graph(clean, NEIGHBORS, approximate=False)
    return {
        "recall": recall(exact, approx),
        "ratio": mean_distance(X, approx) / mean_distance(X, exact),
        "truth_exact": recall(truth, exact),
        "truth_approx": recall(truth, approx),
        "clean_exact": mean_distance(clean, exact),
        "clean_approx": mean_distance(clean, approx),
        "clean_truth": mean_distance(clean, truth),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="32x32 and 64x64 maps (seconds)")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(child(json.loads(args.case))))
        return
    small, large = (32, 64) if args.quick else (128, 256)
    threadpool_limits(1)
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = {side: make_data(side, folder) for side in (small, large)}
        graphs = {}
        plan = [
            (small, "dense", False), (small, "dense", True), (large, "dense", True),
            (large, "sparse", True), (small, "sparse", False),
        ]  # fmt: skip
        for side, kind, approximate in plan:
            save = folder / f"W{side}{kind}{approximate}.npz"
            case = {"data": str(files[side][kind]), "approximate": approximate}
            res = run_case({**case, "save": str(save)})
            graphs[(side, kind, approximate)] = save
            rows.append((side, kind, approximate, res))
            print(side, kind, approximate, res, flush=True)
        exact = sp.load_npz(graphs[(small, "dense", False)])
        approx = sp.load_npz(graphs[(small, "dense", True)])
        q = quality(folder, small, exact, approx)
    write(rows, q, small, time.perf_counter() - t0, args.quick)


def table(rows: list) -> list[str]:
    lines = [
        "| pixels x channels | X | search | CPU s | wall s | peak RSS MB | RSS before MB "
        "| traced peak MB | X MB | edges | min degree |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for side, kind, approximate, r in rows:
        x_kind = "dense float64" if kind == "dense" else "CSR counts"
        lines.append(
            f"| {side * side:,} x {CHANNELS} | {x_kind} | "
            f"{'approximate' if approximate else 'exact'} | {r['cpu']:.1f} | {r['wall']:.1f} | "
            f"{r['peak_rss']:.0f} | {r['rss_before']:.0f} | {r['traced']:.0f} | "
            f"{r['x_mb']:.0f} | {r['edges']:,} | {r['min_degree']} |"
        )
    return lines


def write(rows: list, q: dict, small: int, wall: float, quick: bool) -> None:
    libs = "; ".join(
        f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} thread)"
        for i in threadpool_info()
    )
    lines = [
        "# The data graph (`unmix.knn_graph`): build time and memory, 1 thread",
        "",
        f"Date: {datetime.datetime.now().isoformat(timespec='seconds')}; {wall:.0f} s wall.",
        "",
        f"Machine: {platform.machine()}, {cpu_model()}, {os.cpu_count()} cores (shared with "
        f"other jobs: load average {os.getloadavg()[0]:.1f} at the end); BLAS: {libs}.",
        "",
        "How to run: `.venv/bin/python benchmarks/bench_graph.py`"
        + (" (this file: `--quick`)" if quick else "")
        + ". Method: see the script's docstring.",
        "",
        f"`knn_graph(X, n_neighbors={NEIGHBORS})`: cosine metric, binary weights, "
        "approximate = randomized SVD to 32 dimensions (4 power iterations) + scikit-learn's "
        "brute-force k-nearest search of the reduced vectors (a ball tree above "
        f"{BRUTE_MAX_PIXELS:,} pixels); "
        "exact = blockwise brute force on the full spectra. Each row is a fresh process; "
        "*peak RSS* is the whole process's peak during the build (X, Python and libraries "
        "included; the peak mark reset just before it: "
        f"{'yes' if all(r['reset'] for *_, r in rows) else 'NO - since the start'}), "
        "*RSS before* its resident memory just before the build (X loaded), *traced peak* "
        "what the build itself allocated (tracemalloc).",
        "",
        *table(rows),
    ]
    lines += [
        "",
        f"Approximate vs exact on {small * small:,} pixels (dense float64):",
        "",
        f"- edge recall (share of the exact graph's edges the approximate graph has): "
        f"{q['recall']:.3f};",
        f"- distance ratio (mean cosine distance in X from each pixel to its 10 closest "
        f"neighbours in the approximate graph / in the exact graph): {q['ratio']:.4f};",
        f"- against the exact graph of the noiseless planted signal `A @ S`: recall of "
        f"the exact graph of X {q['truth_exact']:.3f}, of the approximate one "
        f"{q['truth_approx']:.3f}; the same mean distance measured in `A @ S`: "
        f"noiseless graph {q['clean_truth']:.3e} (the floor), exact graph of X "
        f"{q['clean_exact']:.3e}, approximate {q['clean_approx']:.3e}.",
        "",
        "The exact neighbours of a noisy pixel are partly chosen by its noise (512 "
        "channels at 30 dB, many nearly pure pixels); the reduction to 32 dimensions drops "
        "most of the noise, so the approximate graph misses many of those edges but its "
        "edges join pixels whose *signals* are closer.",
        "",
    ]
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
