"""Scale benchmark: out of core under a memory cap, MPI and Dask overhead per iteration.

Writes ``benchmarks/results/scale.md``.  Every measurement runs in its own process
(one BLAS thread) so that peak resident memory and rlimits are per measurement:

- **out of core**: a float32 HDF5 file twice as large as an address-space cap
  (``RLIMIT_AS``) imposed on the fitting process; peak RSS (``ru_maxrss``), per-iteration
  time against one streamed read of the file (page cache warm, and cold after
  ``posix_fadvise(DONTNEED)``), and the answer against the same fit in memory;
- **MPI** (``mpiexec -n 1, 2, 3``) and **Dask** (2-worker ``LocalCluster``): per-iteration
  wall time, time inside the all-reduce / exchange, bytes per iteration, against the
  serial fit of the same problem measured in the same run.

Usage: ``.venv/bin/python benchmarks/bench_scale.py [--quick] [--gib 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "scale.md"
ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _child(*args: str, timeout: float = 3600, cmd: list[str] | None = None) -> dict:
    """Run this script as ``python bench_scale.py args`` (or under ``cmd``); last JSON line."""
    full = (cmd or []) + [sys.executable, str(Path(__file__).resolve()), *args]
    run = subprocess.run(
        full,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("{")]
    if run.returncode != 0 or not lines:
        raise RuntimeError(f"{full} failed ({run.returncode}):\n{run.stderr[-4000:]}")
    return json.loads(lines[-1])


# ------------------------------------------------------------------ data
def planted(n: int, m: int, k: int, seed: int = 0, dtype=np.float32):
    """Generator of row blocks of a planted non-negative rank-k matrix plus noise."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0, 1, m)
    S = np.stack([np.exp(-0.5 * ((grid - c) / 0.03) ** 2) for c in rng.uniform(0.1, 0.9, k)])
    S += 0.05 * rng.random((k, m))

    def block(start: int, stop: int) -> np.ndarray:
        r = np.random.default_rng([seed, start])
        A = r.dirichlet(np.full(k, 0.5), size=stop - start)
        X = A @ S + 0.01 * r.standard_normal((stop - start, m))
        return np.clip(X, 0, None).astype(dtype)

    return block


def write_h5(path: str, n: int, m: int, k: int, chunk_rows: int = 256) -> None:
    import h5py

    block = planted(n, m, k)
    with h5py.File(path, "w") as f:
        d = f.create_dataset("X", shape=(n, m), dtype="float32", chunks=(chunk_rows, m))
        for start in range(0, n, 8192):
            stop = min(n, start + 8192)
            d[start:stop] = block(start, stop)


# ------------------------------------------------------------------ children
def child_ooc(path: str, mode: str, cap_gib: float, iters: int, out: str) -> None:
    """Fit the file streamed (under an RLIMIT_AS cap) or loaded in memory; save S, A."""
    if mode == "streamed" and cap_gib > 0:
        cap = int(cap_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    import h5py

    import unmix

    stamps: list[tuple[float, float]] = []

    def cb(info) -> None:
        stamps.append((time.perf_counter(), time.process_time()))

    f = h5py.File(path, "r")
    X = f["X"] if mode == "streamed" else f["X"][()]
    kw = dict(
        solver="hals",
        max_iter=iters,
        tol=0,
        random_state=0,
        compress=None,
        init="random",
    )
    t0 = time.perf_counter()
    res = unmix.factorize(X, 8, callback=cb, **kw)
    wall = time.perf_counter() - t0
    per_iter = np.diff([s[0] for s in stamps])
    cpu_iter = np.diff([s[1] for s in stamps])
    np.savez(out, S=res.S, A=res.A)
    # ru_maxrss is inherited through fork: the driver that starts this process is kept small
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "mode": mode,
                "wall": wall,
                "iter_wall_ms": 1e3 * float(np.median(per_iter)),
                "iter_cpu_ms": 1e3 * float(np.median(cpu_iter)),
                "peak_rss": rss,
                "cap": cap_gib,
            }
        )
    )


def child_read(path: str, cold: bool) -> None:
    """One streamed pass over the file in the fit's blocks (the out-of-core floor)."""
    import h5py

    if cold:
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd) if hasattr(os, "fsync") else None
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    with h5py.File(path, "r") as f:
        d = f["X"]
        t0, c0 = time.perf_counter(), time.process_time()
        total = 0.0
        for start in range(0, d.shape[0], 512):
            total += float(d[start : start + 512].sum(dtype=np.float64))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"cold": cold, "wall": wall, "cpu": cpu, "bytes": os.path.getsize(path)}))


def _grid_fit(n_side: int) -> dict:
    """The fit every distributed measurement (and its serial peer) runs."""
    return dict(
        solver="hals",
        tol=0,
        random_state=0,
        compress=None,
        spatial_shape=(n_side, n_side),
        block_size=n_side * 8,
    )


def _problem(n_side: int, m: int, k: int):
    block = planted(n_side * n_side, m, k, seed=1, dtype=np.float64)
    return block(0, n_side * n_side)


def child_mpi(n_side: int, m: int, k: int, iters: int) -> None:
    import unmix
    from unmix.executors.mpi import MPIExecutor

    X = _problem(n_side, m, k)
    ex = MPIExecutor()
    stamps: list[tuple[float, float, float]] = []

    def cb(info) -> None:
        stamps.append((time.perf_counter(), time.process_time(), ex.seconds_reduced))

    kw = dict(_grid_fit(n_side), max_iter=iters)
    ex.comm.Barrier()
    unmix.factorize(X, k, executor=ex, callback=cb, **kw)
    s = np.array(stamps)
    d = np.diff(s, axis=0)
    mine = {
        "wall_ms": 1e3 * float(np.median(d[:, 0])),
        "cpu_ms": 1e3 * float(np.median(d[:, 1])),
        "reduce_ms": 1e3 * float(np.median(d[:, 2])),
    }
    every = ex.comm.gather(mine, root=0)
    bytes_iter = ex.bytes_reduced  # total; per iteration below from a second short run
    if ex.rank == 0:
        print(
            json.dumps(
                {"ranks": ex.size, "per_rank": every, "bytes_total": bytes_iter, "iters": iters}
            )
        )


def child_serial(n_side: int, m: int, k: int, iters: int) -> None:
    import unmix

    X = _problem(n_side, m, k)
    stamps: list[tuple[float, float]] = []

    def cb(info) -> None:
        stamps.append((time.perf_counter(), time.process_time()))

    unmix.factorize(X, k, callback=cb, max_iter=iters, **_grid_fit(n_side))
    d = np.diff(np.array(stamps), axis=0)
    c0 = time.process_time()
    v = np.ones(m)
    for _ in range(10):
        X @ v
    floor = (time.process_time() - c0) / 10
    print(
        json.dumps(
            {
                "wall_ms": 1e3 * float(np.median(d[:, 0])),
                "cpu_ms": 1e3 * float(np.median(d[:, 1])),
                "floor_ms": 1e3 * floor,
            }
        )
    )


def child_dask(n_side: int, m: int, k: int, iters: int) -> None:
    import logging

    import distributed

    import unmix
    from unmix.executors.dask import DaskExecutor

    X = _problem(n_side, m, k)
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    with distributed.Client(cluster) as client:
        ex = DaskExecutor(client)
        kw = _grid_fit(n_side)
        runs = {}
        for n_it in (5, 5, 5 + iters):  # the first run warms the workers up
            t0 = time.perf_counter()
            unmix.factorize(X, k, executor=ex, max_iter=n_it, **kw)
            runs[n_it] = (time.perf_counter() - t0, ex.last_run)
    cluster.close()
    (w0, r0), (w1, r1) = runs[5], runs[5 + iters]
    print(
        json.dumps(
            {
                "wall_ms": 1e3 * (w1 - w0) / iters,
                "worker_ms": [
                    1e3 * (a - b) / iters
                    for a, b in zip(r1["seconds"], r0["seconds"], strict=True)
                ],
                "worker_cpu_ms": [
                    1e3 * (a - b) / iters
                    for a, b in zip(r1["cpu_seconds"], r0["cpu_seconds"], strict=True)
                ],
                "exchange_ms": [
                    1e3 * (a - b) / iters
                    for a, b in zip(r1["seconds_reduced"], r0["seconds_reduced"], strict=True)
                ],
                "rounds_per_iter": (r1["rounds"][0] - r0["rounds"][0]) / iters,
                "bytes_per_iter": (r1["bytes_reduced"][0] - r0["bytes_reduced"][0]) / iters,
            }
        )
    )


# ------------------------------------------------------------------ driver
def bench_ooc(gib: float, iters: int, lines: list[str]) -> None:
    m, k = 4096, 8
    n = int(gib * 2**30 / (4 * m))
    n = max(4096, n - n % 4096)
    folder = tempfile.mkdtemp(prefix="unmix-scale-", dir=os.environ.get("UNMIX_SCRATCH"))
    path = os.path.join(folder, "x.h5")
    try:
        t0 = time.perf_counter()
        _child("write", path, str(n), str(m), str(k))  # the driver stays small: see RSS
        size = os.path.getsize(path)
        cap = max(size / 2 / 2**30, 0.5)  # (the quick smoke run cannot go below 0.5 GiB)
        write_s = time.perf_counter() - t0
        warm = _child("read", path, "0")
        cold = _child("read", path, "1")
        streamed = _child(
            "ooc", path, "streamed", f"{cap:.3f}", str(iters), os.path.join(folder, "s.npz")
        )
        memory = _child("ooc", path, "memory", "0", str(iters), os.path.join(folder, "m.npz"))
        a, b = np.load(os.path.join(folder, "s.npz")), np.load(os.path.join(folder, "m.npz"))
        dS = float(np.abs(a["S"] - b["S"]).max() / np.abs(b["S"]).max())
        dA = float(np.abs(a["A"] - b["A"]).max() / np.abs(b["A"]).max())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    gb = size / 1e9
    lines += [
        "## Out of core: HDF5 twice as large as the memory cap",
        "",
        f"X: {n} x {m} float32 in HDF5 (chunks 256 rows), **{size / 2**30:.2f} GiB**, planted "
        f"k = {k}; written in {write_s:.0f} s. Fit: HALS, k = {k}, random init, "
        f"{iters} iterations, default blocks (512 rows = 8 MiB), `compress=None`.",
        "",
        f"The streamed fit ran under `RLIMIT_AS` = **{cap:.2f} GiB** (half the file; the "
        "address space of the whole process: Python, NumPy, OpenBLAS, HDF5 included).",
        "",
        "| run | peak RSS | RSS / data | ms/iter (wall) | ms/iter (CPU) |",
        "|---|---|---|---|---|",
        f"| streamed, capped at {cap:.2f} GiB | {streamed['peak_rss'] / 2**20:.0f} MiB | "
        f"{streamed['peak_rss'] / size:.1%} | {streamed['iter_wall_ms']:.0f} | "
        f"{streamed['iter_cpu_ms']:.0f} |",
        f"| in memory (no cap) | {memory['peak_rss'] / 2**20:.0f} MiB | "
        f"{memory['peak_rss'] / size:.1%} | {memory['iter_wall_ms']:.0f} | "
        f"{memory['iter_cpu_ms']:.0f} |",
        "",
        f"Same answer: max |S_streamed - S_memory| / max|S| = {dS:.1e}, for A {dA:.1e}.",
        "",
        "One streamed read of the file in the same blocks (h5py, summing each block):",
        "",
        "| read | wall s | GB/s | CPU s |",
        "|---|---|---|---|",
        f"| warm (page cache) | {warm['wall']:.2f} | {gb / warm['wall']:.2f} | "
        f"{warm['cpu']:.2f} |",
        f"| cold (`posix_fadvise DONTNEED` first) | {cold['wall']:.2f} | "
        f"{gb / cold['wall']:.2f} | {cold['cpu']:.2f} |",
        "",
        f"Streamed iteration / warm read = {streamed['iter_wall_ms'] / 1e3 / warm['wall']:.2f}; "
        f"streamed / in-memory iteration = "
        f"{streamed['iter_wall_ms'] / memory['iter_wall_ms']:.2f}.",
        "",
    ]


def bench_distributed(n_side: int, m: int, k: int, iters: int, lines: list[str]) -> None:
    ser = _child("serial", str(n_side), str(m), str(k), str(iters))
    mpiexec = shutil.which("mpiexec", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    rows = []
    for ranks in (1, 2, 3):
        if mpiexec is None:
            break
        out = _child(
            "mpi", str(n_side), str(m), str(k), str(iters), cmd=[mpiexec, "-n", str(ranks)]
        )
        for r, pr in enumerate(out["per_rank"]):
            rows.append(
                f"| MPI -n {ranks} | {r} | {pr['wall_ms']:.1f} | {pr['cpu_ms']:.1f} | "
                f"{pr['reduce_ms']:.2f} |"
            )
    try:
        dk = _child("dask", str(n_side), str(m), str(k), str(iters))
    except RuntimeError as err:
        dk = None
        print(err, file=sys.stderr)
    n = n_side * n_side
    lines += [
        "## MPI and Dask: overhead per iteration",
        "",
        f"X: {n} x {m} float64 (grid {n_side} x {n_side}), k = {k}, HALS, {iters} iterations, "
        "blocks of 8 scan lines, `compress=None`. Medians over iterations. The machine has 2 "
        "cores, so `-n 3` is oversubscribed (its times show waiting, not communication).",
        "",
        f"Serial in the same run: **{ser['wall_ms']:.1f} ms/iter wall, {ser['cpu_ms']:.1f} CPU**; "
        f"one-pass floor `X @ v` {ser['floor_ms']:.1f} ms.",
        "",
        "| run | rank | ms/iter (wall) | ms/iter (CPU) | in all-reduce ms/iter |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Bytes all-reduced per iteration: k (channels + k) x 8 = {k * (m + k) * 8} "
        "(asserted in `tests/test_mpi.py` and `tests/test_dask.py`), in one packed all-reduce.",
        "",
    ]
    if dk is not None:
        lines += [
            f"Dask, 2-worker LocalCluster (127.0.0.1, processes): **{dk['wall_ms']:.1f} ms/iter** "
            f"wall seen by the client; per worker {', '.join(f'{v:.1f}' for v in dk['worker_ms'])}"
            f" ms/iter, of which waiting in the exchange "
            f"{', '.join(f'{v:.1f}' for v in dk['exchange_ms'])} ms; "
            f"{dk['rounds_per_iter']:.0f} exchange per iteration, "
            f"{dk['bytes_per_iter']:.0f} bytes.",
            "",
        ]


_HEADINGS = {"ooc": "## Out of core", "distributed": "## MPI and Dask"}


def _kept_section(path: Path, name: str) -> list[str]:
    """The section ``name`` of an earlier results file (for ``--only``), marked as such."""
    text = path.read_text().splitlines() if path.exists() else []
    start = next((i for i, ln in enumerate(text) if ln.startswith(_HEADINGS[name])), None)
    if start is None:
        return [f"{_HEADINGS[name]}: not measured in this run", ""]
    stop = next(
        (i for i in range(start + 1, len(text)) if text[i].startswith(("## ", "Total run"))),
        len(text),
    )
    marker = "(This section is from an earlier run"
    section = text[start:stop]
    old = [ln for ln in section if ln.startswith(marker)]  # kept twice: keep its date
    kept = [ln for ln in section if not ln.startswith(marker)]
    while kept and not kept[-1].strip():
        kept.pop()
    when = next((ln.split(" on ", 1)[1].split(";")[0] for ln in text if " on 20" in ln), "")
    note = old[0] if old else f"{marker}{', ' + when if when else ''}.)"
    return [*kept, "", note, ""]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("ooc", "read", "mpi", "serial", "dask", "write"):
        cmd, rest = argv[0], argv[1:]
        if cmd == "write":
            write_h5(rest[0], int(rest[1]), int(rest[2]), int(rest[3]))
            print("{}")
        elif cmd == "ooc":
            child_ooc(rest[0], rest[1], float(rest[2]), int(rest[3]), rest[4])
        elif cmd == "read":
            child_read(rest[0], rest[1] == "1")
        else:
            fn = {"mpi": child_mpi, "serial": child_serial, "dask": child_dask}[cmd]
            fn(*(int(x) for x in rest))
        return 0
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--gib", type=float, default=2.0, help="size of the out-of-core file")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument(
        "--only",
        choices=("ooc", "distributed"),
        help="run one part; the other part's section is kept from the existing results file",
    )
    args = ap.parse_args(argv)
    t0 = time.time()
    lines = [
        "# Scale: out of core, MPI, Dask",
        "",
        f"Produced by `benchmarks/bench_scale.py` on {time.strftime('%Y-%m-%d %H:%M')}; "
        f"machine: {os.cpu_count()} cores, shared with other jobs (load average "
        f"{os.getloadavg()[0]:.1f} at the start). One BLAS thread per process. No GPU was "
        "lent to this task: the GPU rows of issue 6 are not measured.",
        "",
    ]
    parts = {
        "ooc": lambda: bench_ooc(0.05, 3, lines) if args.quick else bench_ooc(args.gib, 8, lines),
        "distributed": lambda: (
            bench_distributed(32, 64, 3, 10, lines)
            if args.quick
            else bench_distributed(128, 1535, 4, 40, lines)
        ),
    }
    for name, run in parts.items():
        if args.only in (None, name):
            run()
        else:
            lines += _kept_section(args.out, name)
    lines.append(
        f"Total run time {time.time() - t0:.0f} s wall; load average at the end "
        f"{os.getloadavg()[0]:.1f}."
    )
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
