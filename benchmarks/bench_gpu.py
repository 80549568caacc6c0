"""The GPU check: what a session lent a device runs, as one short script.

1. The tests that skip without a device (``-k cuda``: every backend gives NumPy's answer,
   torch sparse gives SciPy's), on the device.
2. Timings on the device against the host in the same run (ratios, not absolute seconds):
   - dense float32 planted counts 65536 x 2048, k 8: HALS (Frobenius) and MU (KL),
     ``device=`` the GPU (torch) against NumPy on one host thread;
   - the same counts as a torch sparse CSR tensor on the GPU against SciPy CSR on the
     host (KL MU; klcd, the host's default, for reference).
   Every fit runs 30 iterations from the same start (``tol=0``); the GPU's time is wall
   time after ``torch.cuda.synchronize()``, the host's CPU time of one thread.

Writes ``benchmarks/results/gpu.md``.  Run: ``.venv/bin/python benchmarks/bench_gpu.py``
(``--device cpu --small`` checks the script itself on a machine without a GPU; it writes
nothing).

On the device machine (its own Python 3.12 has torch, numpy, scipy, numba, h5py,
scikit-learn, matplotlib and pytest, not array-api-compat): download its wheel here
first, as ``/work/.library/device/README.md`` says (``echo /.whl/ >> .git/info/exclude``
and ``python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12
--implementation cp -d .whl array-api-compat==1.16.0``), then run with ``carry=[".whl"]``::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
    export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 &&
    python3 benchmarks/bench_gpu.py && cp benchmarks/results/gpu.md $OUT/

(about 2-4 minutes, the tests first).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import unmix  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "gpu.md"
ITERS = 30


def planted_counts(n: int, m: int, k: int, per_pixel: float = 60.0, seed: int = 0):
    """Poisson counts ``(n, m)`` float32 of ``k`` gamma maps and unit-sum spectra."""
    rng = np.random.default_rng(seed)
    A = rng.gamma(0.5, 1.0, (n, k))
    S = rng.gamma(0.2, 1.0, (k, m))
    S /= S.sum(axis=1, keepdims=True)
    X = np.empty((n, m), np.float32)
    for s in range(0, n, 4096):
        lam = A[s : s + 4096] @ S
        X[s : s + 4096] = rng.poisson(lam * (per_pixel / lam.sum(axis=1, keepdims=True)))
    return X


def run_tests(device: str) -> tuple[int, str]:
    """The device-only tests (they skip without one): exit status and summary line."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", device]
    cmd += ["tests/engine/test_backends.py", "tests/blocks/test_sparse_device.py"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    return r.returncode, lines[-1] if lines else r.stderr[-500:]


def timings(device: str, X: np.ndarray, k: int) -> list[str]:
    """Each fit of :data:`CASES`, warm, timed: a table of markdown rows."""
    import scipy.sparse as sp
    import torch

    dev = torch.device(device)
    on_device = dev.type == "cuda"
    inputs = {
        "dense": X,
        "scipy": sp.csr_array(X),
        "torch": torch.from_numpy(X).to(dev).to_sparse_csr(),
    }
    lines = ["| fit (30 iterations) | where | seconds | speed-up vs the host | objective |"]
    lines.append("|" + "---|" * 5)
    host: dict[str, float] = {}
    for name, where, data, opts in CASES:
        kw = dict(opts, random_state=0, max_iter=ITERS, tol=0)
        if where == "device":
            kw["device"] = device
        gpu = where != "host" and on_device

        def fit(data=data, kw=kw):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return unmix.factorize(inputs[data], k, **kw)

        fit()  # warm: JIT caches, the CUDA context and kernels
        sec, r = _timed(fit, gpu)
        ref = host.setdefault(name, sec)
        label = {"host": "host", "device": f"device={device}"}.get(where, f"tensor on {device}")
        lines.append(f"| {name} | {label} | {sec:.3f} | {ref / sec:.2f}x | {r.objective:,.1f} |")
        print(lines[-1], flush=True)
    return lines


#: (fit, where, input, options): the host's row of a fit comes first
CASES = [
    ("dense, Frobenius HALS", "host", "dense", {"solver": "hals"}),
    ("dense, Frobenius HALS", "device", "dense", {"solver": "hals"}),
    ("dense, KL MU", "host", "dense", {"loss": "kl", "solver": "mu"}),
    ("dense, KL MU", "device", "dense", {"loss": "kl", "solver": "mu"}),
    ("CSR, KL MU", "host", "scipy", {"loss": "kl", "solver": "mu"}),
    ("CSR, KL MU", "tensor", "torch", {"loss": "kl", "solver": "mu"}),
    ("CSR, KL klcd (the host's default)", "host", "scipy", {"loss": "kl", "solver": "klcd"}),
]


def _timed(fit, gpu: bool) -> tuple[float, object]:
    """Seconds of ``fit()``: wall time after a CUDA synchronize on the device, else the
    CPU time of this (one-thread) process."""
    import torch

    if gpu:
        torch.cuda.synchronize()
        t = time.perf_counter()
        r = fit()
        torch.cuda.synchronize()
        return time.perf_counter() - t, r
    t = time.process_time()
    r = fit()
    return time.process_time() - t, r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="torch device (default cuda)")
    ap.add_argument("--small", action="store_true", help="4096 x 512 (a check of the script)")
    args = ap.parse_args()
    threadpool_limits(1)
    import torch

    n, m, k = (4096, 512, 8) if args.small else (65536, 2048, 8)
    status, summary = run_tests(args.device)
    print("tests:", status, summary, flush=True)
    X = planted_counts(n, m, k)
    rows = timings(args.device, X, k)
    if args.small:
        return  # a check of the script: its numbers are not written
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    OUT.write_text(
        "\n".join(
            [
                "# GPU check (`benchmarks/bench_gpu.py`)",
                "",
                f"Measured {datetime.datetime.now():%Y-%m-%d %H:%M}; device {args.device!r} "
                f"(GPU: {gpu}), torch {torch.__version__}; host one thread.  Planted "
                f"counts {n} x {m} float32, k {k}, ~60 counts a pixel.",
                "",
                f"Device tests (`pytest -k {args.device}`): exit {status}, {summary}",
                "",
                *rows,
                "",
            ]
        )
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
