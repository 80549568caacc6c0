"""Float32 multiplicative updates and subnormal numbers: time per iteration as MU goes on.

MU shrinks an entry whose optimum is 0 geometrically; unflushed, such entries sink into
subnormal numbers, which many x86 CPUs multiply on a slow microcode path (others, such as
AMD Zen cores, at full speed).  For the three real EDS maps (count data, KL MU, the
library's default start, seed 0) this fits ``X`` (pixels, channels) in float32 and float64::

    unmix.factorize(X.astype(dtype), k, loss=LOSS, solver="mu", random_state=0)

and reports CPU seconds, iterations, the median CPU ms of an iteration over the first ten
and the last ten, and how many non-zero entries of ``A`` and ``S`` end below the backend's
``tiny`` (1e6 x the dtype's smallest normal) and below the smallest normal (subnormal).
Run it at two revisions (``git worktree``) to compare before and after a change; the
revision and the CPU model go into each row.  One BLAS thread, one numba thread.

Run::

    .venv/bin/python benchmarks/bench_mu_subnormal.py [--loss kl] [--jsonl OUT]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import bench_constraints as B  # noqa: E402
import unmix  # noqa: E402
from _machine import cpu_model  # noqa: E402

DATA = B.DATA / "eds"
FILES = {  # name: (file, k)
    "eds-sem": ("eds_sem_bruker_P45_75x100.npz", 4),
    "eds-tem": ("eds_tem_bruker_64x64.npz", 4),
    "eds-jeol": ("eds_tem_jeol_64x64_ds8.npz", 3),
}


def small_entries(M: np.ndarray) -> tuple[int, int]:
    """Non-zero entries of ``M`` below the backend's tiny, and below the smallest normal."""
    normal = float(np.finfo(M.dtype).tiny)
    positive = M > 0
    return int(np.sum(positive & (M < 1e6 * normal))), int(np.sum(positive & (M < normal)))


def fit_row(name: str, dtype: type, loss: str) -> dict:
    """One fit's row (the kernels are compiled / loaded by a 3-iteration call first)."""
    file, k = FILES[name]
    data = np.load(DATA / file)["data"]
    X = data.reshape(-1, data.shape[-1]).astype(dtype)
    unmix.factorize(X, k, loss=loss, solver="mu", random_state=0, max_iter=3)
    stamps: list[float] = []
    t0 = time.process_time()
    r = unmix.factorize(
        X, k, loss=loss, solver="mu", random_state=0,
        callback=lambda info: stamps.append(time.process_time()),
    )  # fmt: skip
    cpu = time.process_time() - t0
    ms = np.diff(np.asarray([t0, *stamps])) * 1e3
    A, S = np.asarray(r.A), np.asarray(r.S)
    return {
        "file": name,
        "k": k,
        "loss": loss,
        "dtype": np.dtype(dtype).name,
        "iterations": int(r.n_iter),
        "stop": r.stop_reason,
        "objective": float(r.objective),
        "cpu_s": round(cpu, 2),
        "ms_first10": round(float(np.median(ms[:10])), 1),
        "ms_last10": round(float(np.median(ms[-10:])), 1),
        "A_below_tiny_subnormal": small_entries(A),
        "S_below_tiny_subnormal": small_entries(S),
        "revision": B._git_revision(),
        "cpu": cpu_model(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loss", default="kl")
    ap.add_argument("--jsonl", type=Path, help="append the rows here")
    a = ap.parse_args()
    for name in FILES:
        for dtype in (np.float64, np.float32):
            row = json.dumps(fit_row(name, dtype, a.loss))
            print(row, flush=True)
            if a.jsonl is not None:
                with a.jsonl.open("a") as f:
                    f.write(row + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
