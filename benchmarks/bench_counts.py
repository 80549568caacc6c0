"""KL NMF on counts: coordinate descent (``solver="klcd"``) vs MU vs scikit-learn's KL MU.

Writes ``benchmarks/results/counts.md``.  Data: (a) the Cu/ZnO EELS map (k 3), (b) a planted
count image 16384 x 1024 (k 6, Gaussian-peak spectra, smooth maps, Poisson noise, about
3.5 counts a channel, seed 0), (c) the Bruker EDS TEM map 64 x 64 x 2048 (k 4).  Every
method starts from NNDSVDa and runs with its default stopping rule (unmix ``tol=1e-5``,
``max_iter=500``; scikit-learn ``tol=1e-4``, ``max_iter=200``); all in float64.  Times are
CPU seconds of this process (``time.process_time``) with BLAS and numba on one thread;
the first (JIT-compiling) call of the numba kernels is made before any timing.  The KL
objective ``sum X log(X/Y) - X + Y`` of every final model is computed by one function.
"Time to sklearn's KL" ("to MU's KL") is the CPU time at which a method's objective first
reached scikit-learn's (unmix MU's) final value (unmix: from the per-iteration callback;
the callback of ``klcd`` sees the objective of the previous iterate, so its time is an
upper bound).

Sparse section: (d) planted CSR counts 65536 x 2048 (k 8, ~60 counts a pixel, drawn count by
count, never dense) and (e) the EDS TEM map as CSR, each method on the same CSR matrix,
with the peak traced memory of a 5-iteration call.

Count levels: planted 4096 x 1024 counts (k 6) at 0.5, 5, 50 and 500 counts a pixel, dense
and CSR, scikit-learn's KL MU against ``factorize(X, 6, loss="kl")`` at its defaults.

Torch section: (d) as a torch sparse CSR tensor on the CPU against the same SciPy CSR
matrix (``--only torch``): 30 iterations of KL MU and of Frobenius HALS each, CPU time and
the memory a fit adds (peak RSS of a fresh process after the data are made).

Run: ``.venv/bin/python benchmarks/bench_counts.py [--quick] [--only dense|sparse|levels|torch]``
(``--quick``: (a) and (c); ``--only sparse`` / ``levels`` / ``torch`` rewrites that section
alone).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import unmix  # noqa: E402

OUT = Path(__file__).parent / "results" / "counts.md"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


# ---------------------------------------------------------------------- data
def smooth_maps(n_side: int, k: int, rng) -> np.ndarray:
    """``k`` smooth maps on an ``n_side`` square (three Gaussian blobs each, peak 1, plus
    0.05), as (pixels, k): the sparse and large planted sets' abundances."""
    yy, xx = np.mgrid[0:n_side, 0:n_side] / n_side
    maps = []
    for _ in range(k):
        field = np.zeros((n_side, n_side))
        for _ in range(3):
            cy, cx, w = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.1, 0.3)
            field += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * w * w))
        maps.append(field / field.max())
    return np.stack(maps, axis=-1).reshape(-1, k) + 0.05


def planted(n_side: int = 128, m: int = 1024, k: int = 6, mean: float = 3.5, seed: int = 0):
    """Poisson counts of smooth maps times Gaussian-peak spectra; returns ``X, A, S``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n_side, 0:n_side] / n_side
    maps = []
    for _ in range(k):
        field = np.zeros((n_side, n_side))
        for _ in range(3):  # a few broad blobs per component
            cy, cx, w = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.1, 0.3)
            field += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * w * w))
        maps.append(field / field.max())
    A = np.stack(maps, axis=-1).reshape(-1, k) + 0.05
    grid = np.arange(m)
    S = np.zeros((k, m))
    for j in range(k):
        for _ in range(3):  # three peaks per endmember
            c, w = rng.uniform(0.05, 0.95) * m, rng.uniform(5, 30)
            S[j] += rng.uniform(0.3, 1.0) * np.exp(-0.5 * ((grid - c) / w) ** 2)
        S[j] += 0.05
    Y = A @ S
    scale = mean / Y.mean()
    X = rng.poisson(Y * scale).astype(np.float64)
    return X, A * scale, S


def planted_sparse(
    n_side: int = 256, m: int = 2048, k: int = 8, per_pixel: float = 60.0, seed: int = 0
):
    """CSR Poisson counts of :func:`planted`'s model drawn count by count (never dense).

    Pixel ``i`` gets ``Poisson(c A_ir)`` counts from component ``r`` (spectra scaled to unit
    sum), each at a channel drawn from ``S_r``: the same law as ``Poisson(c A S)``
    entry by entry (Poisson thinning), with ``c`` set for ``per_pixel`` counts a pixel.
    """
    import scipy.sparse as sp

    _, A, S = planted(n_side=8, m=m, k=k, seed=seed)  # spectra only (maps drawn below)
    rng = np.random.default_rng(seed + 1)
    A = smooth_maps(n_side, k, rng)
    S = S / S.sum(axis=1, keepdims=True)
    A = A * (per_pixel / A.sum(axis=1).mean())
    N = rng.poisson(A)  # counts a (pixel, component)
    pix = np.repeat(np.repeat(np.arange(A.shape[0]), k), N.ravel())
    comp = np.repeat(np.tile(np.arange(k), A.shape[0]), N.ravel())
    cdf = np.cumsum(S, axis=1)
    u = rng.random(pix.size)
    chan = np.empty(pix.size, dtype=np.int64)
    for r in range(k):
        sel = comp == r
        chan[sel] = np.minimum(np.searchsorted(cdf[r], u[sel]), m - 1)
    X = sp.coo_array((np.ones(pix.size), (pix, chan)), shape=(A.shape[0], m)).tocsr()
    X.sum_duplicates()
    return X, A, S


def datasets(quick: bool) -> list[tuple[str, np.ndarray, int]]:
    eels = unmix.load(str(DATA / "eels" / "CuZn_EELS_mapping_tutorial.hspy")).unfold()
    eds = np.load(DATA / "eds" / "eds_tem_bruker_64x64.npz")["data"]
    out = [("(a) EELS Cu/ZnO", np.asarray(eels, dtype=np.float64), 3)]
    if not quick:
        out.append(("(b) planted counts", planted()[0], 6))
    out.append(("(c) EDS TEM", eds.reshape(-1, eds.shape[-1]).astype(np.float64), 4))
    return out


def kl(X: np.ndarray, A: np.ndarray, S: np.ndarray) -> float:
    """``sum X log(X/Y) - X + Y`` in float64, block by block (dense or CSR ``X``)."""
    total = 0.0
    for s in range(0, X.shape[0], 4096):
        x, y = X[s : s + 4096], np.asarray(A[s : s + 4096], np.float64) @ np.asarray(S, float)
        x = x.toarray() if hasattr(x, "toarray") else x
        pos = x > 0
        total += float(np.sum(x[pos] * np.log(x[pos] / y[pos])) - x.sum() + y.sum())
    return total


# ------------------------------------------------------------------- methods
def run_sklearn(X: np.ndarray, k: int) -> dict:
    from sklearn.decomposition import NMF

    est = NMF(k, solver="mu", beta_loss="kullback-leibler", init="nndsvda", random_state=0)
    t = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        A = est.fit_transform(X)
    cpu = time.process_time() - t
    return {"kl": kl(X, A, est.components_), "iters": int(est.n_iter_), "cpu": cpu}


def run_unmix(X: np.ndarray, k: int, solver: str, target: float, mu_kl: float) -> dict:
    trace: list[tuple[float, float]] = []
    t = time.process_time()

    def callback(info) -> bool:
        trace.append((time.process_time() - t, info.objective))
        return False

    r = unmix.factorize(X, k, loss="kl", solver=solver, random_state=0, callback=callback)
    cpu = time.process_time() - t
    hit = next((s for s, obj in trace if obj <= target), None)
    hit_mu = next((s for s, obj in trace if obj <= mu_kl), None)
    res = {"kl": kl(X, r.A, r.S), "iters": r.n_iter, "cpu": cpu}
    return dict(res, to_target=hit, to_mu=hit_mu)


def peak_memory(fit) -> float:
    """Peak traced memory (MiB; NumPy/SciPy buffers included) of ``fit()``."""
    import tracemalloc

    tracemalloc.start()
    try:
        fit()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def sparse_rows(name: str, X, k: int) -> list[dict]:
    """scikit-learn's KL MU and unmix's ``klcd`` / ``mu`` on the same CSR ``X``."""
    from sklearn.decomposition import NMF

    dense_mib = X.shape[0] * X.shape[1] * 8 / 2**20
    ref = run_sklearn(X, k)
    ref["to_target"] = ref["cpu"]
    mu = run_unmix(X, k, "mu", ref["kl"], np.inf)
    cd = run_unmix(X, k, "klcd", ref["kl"], mu["kl"] * (1 + 1e-9))
    mem = {
        "scikit-learn MU": lambda: NMF(
            k, solver="mu", beta_loss="kullback-leibler", init="nndsvda", max_iter=5
        ).fit(X),
        "unmix mu": lambda: unmix.factorize(X, k, loss="kl", solver="mu", max_iter=5),
        "unmix klcd": lambda: unmix.factorize(X, k, loss="kl", solver="klcd", max_iter=5),
    }
    rows = []
    for method, res in (("scikit-learn MU", ref), ("unmix mu", mu), ("unmix klcd", cd)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peak = peak_memory(mem[method])
        rows.append(
            dict(res, data=name, k=k, method=method, ref_kl=ref["kl"], ref_cpu=ref["cpu"])
            | {"peak": peak, "dense": dense_mib, "nnz": X.nnz, "shape": X.shape}
        )
    return rows


def sparse_table(rows: list[dict]) -> list[str]:
    head = (
        "| data (CSR) | k | method | final KL | iterations | CPU s (call) | ms / iteration "
        "| CPU s to sklearn's KL | KL / sklearn's | CPU vs sklearn | peak MiB (5 it.) "
        "| peak / dense X |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        to = "-" if r.get("to_target") is None else f"{r['to_target']:.2f}"
        lines.append(
            f"| {r['data']} | {r['k']} | {r['method']} | {r['kl']:,.1f} | {r['iters']} "
            f"| {r['cpu']:.2f} | {1e3 * r['cpu'] / max(r['iters'], 1):.1f} | {to} "
            f"| {r['kl'] / r['ref_kl']:.4f} | {r['cpu'] / r['ref_cpu']:.3f}x "
            f"| {r['peak']:.0f} | {r['peak'] / r['dense']:.3f} |"
        )
    return lines


def sparse_main() -> list[str]:
    """The sparse-input section: planted CSR counts and the EDS TEM map as CSR."""
    import scipy.sparse as sp

    eds = np.load(DATA / "eds" / "eds_tem_bruker_64x64.npz")["data"]
    cases = [
        ("(d) planted 65536 x 2048, ~60 counts/pixel", planted_sparse()[0], 8),
        ("(e) EDS TEM 4096 x 2048", sp.csr_array(eds.reshape(-1, eds.shape[-1]) * 1.0), 4),
    ]
    rows = []
    for name, X, k in cases:
        rows += sparse_rows(name, X, k)
        print(*sparse_table(rows)[-3:], sep="\n", flush=True)
    info = ", ".join(
        f"{r['data'][:3]} nnz {r['nnz']:,} ({100 * r['nnz'] / np.prod(r['shape']):.2f} %)"
        for r in rows[::3]
    )
    return [
        SPARSE_MARK,
        "## Sparse input (CSR, never densified)",
        "",
        f"Same settings; every method gets the same `scipy.sparse` CSR matrix ({info}). "
        "(d) is drawn count by count (`planted_sparse`: Poisson thinning of the planted "
        "model, no dense array).  Peak memory: `tracemalloc` peak of a 5-iteration call "
        "(NumPy/SciPy buffers), against the dense float64 array of the same shape.",
        "",
        *sparse_table(rows),
        "",
    ]


SPARSE_MARK = "<!-- sparse section: bench_counts.py --only sparse -->"


def warm_up() -> float:
    """The first call of the numba kernels (JIT compile or cache load), timed."""
    X = planted(16, 64, 2, seed=1)[0]
    t = time.process_time()
    unmix.factorize(X, 2, loss="kl", solver="klcd", max_iter=2, random_state=0)
    return time.process_time() - t


# ------------------------------------------------------------------- report
def table(rows: list[dict]) -> list[str]:
    head = (
        "| data | k | method | final KL | iterations | CPU s (call) | CPU s to sklearn's KL "
        "| CPU s to MU's KL | KL / sklearn's | CPU vs sklearn | CPU vs MU |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        to = "-" if r.get("to_target") is None else f"{r['to_target']:.2f}"
        to_mu = "-" if r.get("to_mu") is None else f"{r['to_mu']:.2f}"
        lines.append(
            f"| {r['data']} | {r['k']} | {r['method']} | {r['kl']:,.1f} | {r['iters']} "
            f"| {r['cpu']:.2f} | {to} | {to_mu} | {r['kl'] / r['ref_kl']:.4f} "
            f"| {r['cpu'] / r['ref_cpu']:.2f}x | {r['cpu'] / r['mu_cpu']:.2f}x |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=("dense", "sparse", "levels", "torch"), default=None)
    ap.add_argument("--rss", nargs=3, help=argparse.SUPPRESS)  # a child of the torch section
    args = ap.parse_args()
    threadpool_limits(1)
    if args.rss:
        print(rss_added(*args.rss))
        return
    jit = warm_up()
    if args.only == "torch":
        merge_section(TORCH_MARK, torch_main())
        return
    if args.only == "sparse":
        merge_sparse(sparse_main())
        return
    if args.only == "levels":
        merge_section(LEVELS_MARK, level_main())
        return
    rows = []
    for name, X, k in datasets(args.quick):
        ref = run_sklearn(X, k)
        mu = run_unmix(X, k, "mu", ref["kl"], np.inf)
        mu["to_mu"] = mu["cpu"]
        cd = run_unmix(X, k, "klcd", ref["kl"], mu["kl"] * (1 + 1e-9))
        ref["to_target"] = ref["cpu"]
        for method, res in (("scikit-learn MU", ref), ("unmix mu", mu), ("unmix klcd", cd)):
            res = dict(res, data=name, k=k, method=method, ref_kl=ref["kl"])
            rows.append(dict(res, ref_cpu=ref["cpu"], mu_cpu=mu["cpu"]))
        print(*table(rows)[-3:], sep="\n", flush=True)
    write(rows, jit, args.quick)
    if args.only is None:
        merge_sparse(sparse_main())
        merge_section(LEVELS_MARK, level_main())
        merge_section(TORCH_MARK, torch_main())


def merge_section(mark: str, section: list[str]) -> None:
    """Put ``section`` (starting with ``mark``) in place of the one ``counts.md`` has, from
    its mark to the next ``<!-- `` mark or the end (appended when it has none)."""
    text = OUT.read_text() if OUT.exists() else ""
    head, found, tail = text.partition(mark)
    after = ""
    if found:
        nxt = tail.find("\n<!-- ")
        after = tail[nxt + 1 :] if nxt >= 0 else ""
    parts = [head.rstrip("\n"), "", *section]
    if after:
        parts += ["", after.rstrip("\n"), ""]
    OUT.write_text("\n".join(parts))
    print(f"wrote the section {mark} of {OUT}")


def merge_sparse(section: list[str]) -> None:
    merge_section(SPARSE_MARK, section)


LEVELS_MARK = "<!-- count levels: bench_counts.py --only levels -->"
LEVELS = (0.5, 5.0, 50.0, 500.0)


def level_main() -> list[str]:
    """scikit-learn's KL MU vs ``factorize(X, 6, loss="kl")`` (its defaults) on planted
    counts at 0.5, 5, 50, 500 counts a pixel, dense and CSR (4096 x 1024, k 6)."""
    rows = []
    for level in LEVELS:
        Xs = planted_sparse(n_side=64, m=1024, k=6, per_pixel=level, seed=2)[0]
        zeros = 1.0 - Xs.nnz / np.prod(Xs.shape)
        for fmt, X in (("dense", Xs.toarray()), ("CSR", Xs)):
            rows += _level_rows(level, fmt, X, zeros)
            print(*level_table(rows)[-2:], sep="\n", flush=True)
    return [
        LEVELS_MARK,
        "## Count levels: dense and CSR (4096 x 1024, k 6)",
        "",
        "Planted counts drawn count by count (`planted_sparse`, seed 2) at 0.5, 5, 50 and 500 "
        "counts a pixel; each given dense (float64) and as the same CSR matrix.  unmix: "
        "`factorize(X, 6, loss='kl', random_state=0)` with every other setting at its default "
        "(auto picks the start and the solver); scikit-learn as above.  Peak: `tracemalloc` "
        "peak of a 5-iteration call.",
        "",
        *level_table(rows),
        "",
    ]


def _level_rows(level: float, fmt: str, X, zeros: float) -> list[dict]:
    from sklearn.decomposition import NMF

    ref = run_sklearn(X, 6)
    ref["to_target"] = ref["cpu"]
    auto = run_unmix(X, 6, "auto", ref["kl"], np.inf)
    fits = {
        "scikit-learn MU": lambda: NMF(
            6, solver="mu", beta_loss="kullback-leibler", init="nndsvda", max_iter=5
        ).fit(X),
        "unmix (defaults)": lambda: unmix.factorize(X, 6, loss="kl", max_iter=5),
    }
    out = []
    for method, res in (("scikit-learn MU", ref), ("unmix (defaults)", auto)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peak = peak_memory(fits[method])
        info = {"level": level, "fmt": fmt, "zeros": zeros, "method": method, "peak": peak}
        out.append(dict(res, **info, ref_kl=ref["kl"], ref_cpu=ref["cpu"]))
    return out


def level_table(rows: list[dict]) -> list[str]:
    head = (
        "| counts/pixel | input | zeros | method | final KL | iterations | CPU s (call) "
        "| CPU s to sklearn's KL | KL / sklearn's | CPU vs sklearn | peak MiB (5 it.) |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        to = "-" if r.get("to_target") is None else f"{r['to_target']:.2f}"
        lines.append(
            f"| {r['level']:g} | {r['fmt']} | {100 * r['zeros']:.1f} % | {r['method']} "
            f"| {r['kl']:,.1f} | {r['iters']} | {r['cpu']:.2f} | {to} "
            f"| {r['kl'] / r['ref_kl']:.4f} | {r['cpu'] / r['ref_cpu']:.3f}x | {r['peak']:.0f} |"
        )
    return lines


def write(rows: list[dict], jit: float, quick: bool) -> None:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = [
        "# KL NMF on counts: coordinate descent vs multiplicative updates",
        "",
        f"Measured {now} on {platform.processor() or platform.machine()}, one BLAS/numba "
        f"thread, CPU seconds of the process (`time.process_time`), float64"
        f"{', --quick' if quick else ''}.  First call of the numba kernels (JIT/cache "
        f"load, excluded below): {jit:.2f} s.",
        "",
        *table(rows),
        "",
        "Ratios are measured in the same run.  unmix: `tol=1e-5`, `max_iter=500`; "
        "scikit-learn: `NMF(solver='mu', beta_loss='kullback-leibler', init='nndsvda')` "
        "(`tol=1e-4`, `max_iter=200`).",
        "",
        "Run: `.venv/bin/python benchmarks/bench_counts.py` (`--quick`: (a) and (c) only).",
        "",
    ]
    OUT.write_text("\n".join(text))
    print(f"wrote {OUT}")


TORCH_MARK = "<!-- torch sparse: bench_counts.py --only torch -->"
TORCH_FITS = (("kl", "mu"), ("frobenius", "hals"))


def _torch_csr(X):
    """SciPy CSR ``X`` as a torch sparse CSR tensor on the CPU (float32)."""
    import torch

    return torch.sparse_csr_tensor(
        torch.from_numpy(X.indptr.astype(np.int64)),
        torch.from_numpy(X.indices.astype(np.int64)),
        torch.from_numpy(X.data.astype(np.float32)),
        size=X.shape,
    )


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` memory field (kB), e.g. ``VmRSS``, ``VmHWM`` (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def rss_added(kind: str, loss: str, solver: str) -> float:
    """MiB by which a 5-iteration fit raises this process's RSS at its peak: the peak
    (``VmHWM``) is reset after the data are made (``/proc/self/clear_refs``, Linux)."""
    import gc

    import torch

    torch.set_num_threads(1)
    X = planted_sparse()[0].astype(np.float32)
    X = _torch_csr(X) if kind == "torch" else X
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    unmix.factorize(X, 8, loss=loss, solver=solver, random_state=0, max_iter=5, tol=0)
    return (_status_kib("VmHWM") - before) / 1024


def torch_main() -> list[str]:
    """(d) as a torch sparse tensor against SciPy CSR: time, objective and memory."""
    import subprocess
    import sys

    import torch

    torch.set_num_threads(1)
    X = planted_sparse()[0].astype(np.float32)
    inputs = {"SciPy CSR": X, "torch CSR (CPU)": _torch_csr(X)}
    lines = [
        "| fit (30 iterations) | input | CPU s | ms / iteration | objective "
        "| objective / SciPy's - 1 | MiB the fit adds | result |",
        "|" + "---|" * 8,
    ]
    for loss, solver in TORCH_FITS:
        ref = None
        for (name, Y), kind in zip(inputs.items(), ("scipy", "torch"), strict=True):
            t = time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = unmix.factorize(
                    Y, 8, loss=loss, solver=solver, random_state=0, max_iter=30, tol=0
                )
            cpu = time.process_time() - t
            ref = r.objective if ref is None else ref
            cmd = [sys.executable, __file__, "--rss", kind, loss, solver]
            added = float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
            lines.append(
                f"| {loss} {solver} | {name} | {cpu:.2f} | {1e3 * cpu / r.n_iter:.0f} "
                f"| {r.objective:,.1f} | {r.objective / ref - 1:.1e} | {added:.0f} "
                f"| {type(r.A).__module__.split('.')[0]} {r.A.dtype} |"
            )
            print(lines[-1], flush=True)
    dense = X.shape[0] * X.shape[1] * 4 / 2**20
    return [
        TORCH_MARK,
        "## Sparse input as a torch tensor (CPU)",
        "",
        f"Measured {datetime.datetime.now():%Y-%m-%d %H:%M}, one thread "
        f"(`torch.set_num_threads(1)`), torch {torch.__version__}.  (d) in float32 (nnz "
        f"{X.nnz:,}; dense float32 would be {dense:.0f} MiB), fitted as it is given: the "
        "tensor on its device (`unmix.blocks.DeviceSparsePixelData`: torch CSR products, "
        "a CSR copy of each block's transpose), the SciPy matrix on the host.  30 "
        "iterations from the same start (`tol=0`); memory: the peak RSS a 5-iteration fit "
        "adds in a fresh process.  The torch path is for a GPU; on the CPU it shows the "
        "same answer and memory of the same order.",
        "",
        *lines,
        "",
    ]


if __name__ == "__main__":
    main()
