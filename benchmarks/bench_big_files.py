"""Detector-sized files from the command line in bounded memory, no flag given.

Writes a 4 GiB 3-D float32 HDF5 file (512 x 512 scan x 4096 channels, chunked by scan
lines) and a 4 GiB 4-D one (128 x 128 scan x 256 x 256 patterns, chunked by scan lines)
into a scratch folder, runs ``unmix inspect``, ``run -k 4`` (with its report),
``compare``, ``tree`` and ``select`` on each under a 2 GiB address-space cap
(``prlimit --as``: the process sees it and its default memory budget follows), records
peak RSS (``/usr/bin/time -v``) and wall time, and compares ``inspect``'s read rate with a
plain sequential h5py read of the same file; then deletes the files.  Fits use a few
iterations only (``--max-iter 5``), so that the whole benchmark takes minutes: the
numbers are about memory and reading, not about fit quality.

Usage::

    python benchmarks/bench_big_files.py [--scratch /work/tmp] [--small]

``--small`` (1/16 of the sizes) checks the script itself in a minute.
Acceptance: every command exits 0 under the cap with peak RSS <= 25 % of the file.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import cpu_model

CAP = 2 << 30
RESULTS = Path(__file__).parent / "results" / "big_files.md"
UNMIX = [sys.executable, "-c", "import sys; from unmix.cli import entry; sys.exit(entry())"]


def make_cube(path: Path, shape: tuple[int, ...], seed: int = 0) -> None:
    """Four planted components (gamma maps, Gaussian-peak spectra or patterns) plus
    uniform noise, float32, written one scan line at a time."""
    rng = np.random.default_rng(seed)
    m = int(np.prod(shape[2:]))
    grid = np.linspace(0, 1, m, dtype=np.float32)
    S = np.stack([np.exp(-(((grid - c) / 0.05) ** 2)) + 0.1 for c in (0.2, 0.4, 0.6, 0.8)])
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("data", shape=shape, dtype=np.float32, chunks=(1, *shape[1:]))
        for y in range(shape[0]):
            A = rng.gamma(1.0, size=(shape[1], 4)).astype(np.float32)
            line = A @ S + rng.random((shape[1], m), dtype=np.float32)
            ds[y] = line.reshape(shape[1:])


def plain_read(path: Path) -> float:
    """Seconds to read the dataset sequentially, a scan line at a time (plain h5py)."""
    t = time.perf_counter()
    with h5py.File(path, "r") as f:
        ds = f["data"]
        for y in range(ds.shape[0]):
            ds[y]
    return time.perf_counter() - t


def measured(args: list[str], cwd: Path) -> dict:
    """Exit code, wall seconds, peak RSS (bytes) and stderr's last line of one command
    under the address-space cap."""
    cmd = ["prlimit", f"--as={CAP}", "/usr/bin/time", "-v", *UNMIX, *args]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    chosen = re.search(r"data: (.*)", proc.stderr)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error")]
    return {
        "rc": proc.returncode,
        "wall": wall,
        "rss": int(rss.group(1)) * 1024 if rss else -1,
        "chosen": chosen.group(1).split(" (")[0] if chosen else "?",
        "error": errors[-1] if errors else "",
    }


COMMANDS = {
    "inspect": ["inspect", "{f}"],
    "run -k 4 (report)": ["run", "{f}", "-k", "4", "--max-iter", "5", "-o", "{o}"],
    "compare -k 4": ["compare", "{f}", "-k", "4", "--max-iter", "5", "-o", "{o}"],
    "tree --leaves 4": ["tree", "{f}", "--leaves", "4", "-o", "{o}"],
    "select --ks 2:4": [
        "select",
        "{f}",
        "--ks",
        "2:4",
        "--restarts",
        "3",
        "--cv-repeats",
        "1",
        "--max-iter",
        "5",
        "-o",
        "{o}",
    ],
}


def bench_file(name: str, shape: tuple[int, ...], scratch: Path) -> list[dict]:
    path = scratch / f"big_{name}.h5"
    t = time.perf_counter()
    make_cube(path, shape)
    size = path.stat().st_size
    print(f"{name}: wrote {size / 2**30:.2f} GiB in {time.perf_counter() - t:.0f} s", flush=True)
    plain = plain_read(path)
    rows = []
    for label, template in COMMANDS.items():
        out = scratch / f"out_{name}_{label.split()[0]}"
        args = [a.format(f=path, o=out) for a in template]
        r = measured(args, scratch)
        shutil.rmtree(out, ignore_errors=True)
        r.update(file=name, shape=shape, size=size, command=label, plain=plain)
        r["ok"] = r["rc"] == 0 and 0 < r["rss"] <= 0.25 * size
        print(
            f"  {label:<20} rc {r['rc']} peak {r['rss'] / 2**20:7.0f} MiB "
            f"({100 * r['rss'] / size:4.1f} %) {r['wall']:6.1f} s {r['chosen']} {r['error']}",
            flush=True,
        )
        rows.append(r)
    path.unlink()
    return rows


def write_markdown(rows: list[dict], small: bool) -> str:
    lines = [
        "# Detector-sized files from the command line (no flag)",
        "",
        f"Generated by `benchmarks/bench_big_files.py{' --small' if small else ''}` on "
        f"{os.cpu_count()} CPU cores ({cpu_model()}), shared with other jobs.  Each command "
        f"runs with no streaming flag under `prlimit --as={CAP}` (2 GiB of address space; the "
        "default memory budget, 80 % of what is available, sees the limit); peak RSS from "
        "`/usr/bin/time -v`.  `ulimit -v` / `prlimit --as` counts virtual memory (shared "
        "libraries, thread stacks, BLAS buffers), so the cap is stricter than 2 GiB of RSS; "
        "cgroups (`systemd-run -p MemoryMax`) are not available in this container.  Fits run "
        "`--max-iter 5` (select: `--restarts 3 --cv-repeats 1`) so the benchmark takes "
        "minutes: the numbers are about memory and reading, not fit quality.  The files were "
        "just written, so reads come mostly from the page cache (both for unmix and for the "
        "plain h5py read).",
        "",
        "Acceptance: exit 0 under the cap and peak RSS <= 25 % of the file.",
        "",
        "| file | command | data | exit | peak RSS (MiB) | % of file | wall (s) | read rate "
        "| pass |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        shape = "x".join(map(str, r["shape"]))
        rate = ""
        if r["command"] == "inspect" and r["rc"] == 0:
            rate = (
                f"{r['size'] / 2**20 / r['wall']:.0f} MiB/s (plain h5py "
                f"{r['size'] / 2**20 / r['plain']:.0f} MiB/s)"
            )
        lines.append(
            f"| {r['file']} {shape} ({r['size'] / 2**30:.2f} GiB) | {r['command']} | "
            f"{r['chosen']} | {r['rc']} | {r['rss'] / 2**20:.0f} | "
            f"{100 * r['rss'] / r['size']:.1f} | {r['wall']:.1f} | {rate} | "
            f"{'yes' if r['ok'] else 'NO'} |"
        )
    failed = [r for r in rows if not r["ok"]]
    lines += ["", f"{len(rows) - len(failed)} of {len(rows)} pass."]
    for r in failed:
        lines.append(f"- {r['file']} {r['command']}: exit {r['rc']} {r['error']}")
    return "\n".join([*lines, "", *NOTES]) + "\n"


NOTES = [
    "What each command does once the file is streamed (`unmix.cli._load`: streamed when "
    "twice the array exceeds the budget, here about 1.35 GiB under the cap):",
    "",
    "- `inspect`: one pass of blocks of whole scan lines (1/32 of the budget, at most "
    "32 MiB) for min / max / mean, NaN, negative and zero counts, the count rule, the sum "
    "image and the mean spectrum (`unmix.blocks.data_stats`, one compiled loop over "
    "each block).  The file was just written, so both rates here are page-cache "
    "copies; `pass_rate.md` compares each pass with a cold plain read.",
    "- `run`: the fit streams the file (`unmix.blocks.ScanRows` gives 3-D / 4-D datasets "
    "as (pixels, channels) rows read by scan lines); the report's residual map and "
    "data-vs-model figures read it once more (one pass shared by the figures).",
    "- `compare`: the three fits stream; the PCA column is an uncentered truncated SVD "
    "(centering needs the data in memory).",
    "- `tree`, `select`: fit a seeded subsample (`numpy.random.default_rng(--seed)`, "
    "at most 20 000 pixels and what a quarter of the budget holds, at least 256: here "
    "about 1400 pixels of the 3-D file, 256 of the 4-D one); `tree` then maps every pixel of "
    "the file onto each level in one more pass.",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scratch", default="/work/tmp", help="Folder for the generated files.")
    ap.add_argument("--small", action="store_true", help="1/16 of the sizes (a smoke test).")
    ap.add_argument("--only", choices=["3d", "4d"], help="One of the two files.")
    opts = ap.parse_args()
    scratch = Path(opts.scratch) / "bench_big_files"
    scratch.mkdir(parents=True, exist_ok=True)
    shapes = {"3d": (512, 512, 4096), "4d": (128, 128, 256, 256)}
    if opts.small:
        shapes = {"3d": (128, 128, 4096), "4d": (32, 32, 256, 256)}
    rows = []
    for name, shape in shapes.items():
        if opts.only in (None, name):
            rows += bench_file(name, shape, scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    text = write_markdown(rows, opts.small)
    if not opts.small:
        RESULTS.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
