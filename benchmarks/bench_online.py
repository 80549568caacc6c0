"""Online NMF: memory while ~2 GB of scan lines stream in, and the EELS demo vs batch.

Part 1 generates synthetic scan lines on the fly (never the whole stream: each line is
made, fed to :class:`unmix.OnlineNMF` and dropped) and records the resident set size
(current, from ``/proc/self/statm``, and the process peak, ``ru_maxrss``) at several
points: flat as lines arrive.  Part 2 streams the bundled Cu/ZnO EELS map one scan line
per batch and compares the final fit (maps recomputed against the final endmembers,
full data) and the endmembers (Hungarian matching on spectral angle) with batch
``unmix.factorize`` of the same k and seed - and, for honesty, batch fits with other
solvers / tolerances against each other.

Writes ``benchmarks/results/online.md``.  One BLAS thread.
Run: ``.venv/bin/python benchmarks/bench_online.py [--quick]``.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import unmix  # noqa: E402
from _machine import cpu_model, cpu_timed  # noqa: E402
from unmix.metrics import match_components, spectral_angles  # noqa: E402

OUT = Path(__file__).parent / "results" / "online.md"
WIDTH, CHANNELS, K = 256, 1024, 4  # one float32 line: 1 MiB


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident set size in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    current = pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def line(i: int, S: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scan line ``i``: smoothly drifting abundances times ``S`` plus noise, float32."""
    x = np.linspace(0, 1, WIDTH)[:, None]
    phase = np.arange(K)[None, :] + 0.01 * i
    A = 0.5 + 0.5 * np.sin(2 * np.pi * (x + phase / K))
    A *= rng.gamma(4.0, 0.25, (WIDTH, K))
    X = A @ S + 0.01 * rng.standard_normal((WIDTH, CHANNELS))
    return np.maximum(X, 0).astype(np.float32)


def stream_memory(n_lines: int) -> tuple[list[tuple], float, float]:
    rng = np.random.default_rng(0)
    grid = np.linspace(0, 1, CHANNELS)
    S = np.stack([np.exp(-0.5 * ((grid - c) / 0.05) ** 2) + 0.05 for c in (0.2, 0.4, 0.6, 0.8)])
    state = unmix.OnlineNMF(K, random_state=0)
    marks = sorted({1, n_lines // 8, n_lines // 4, n_lines // 2, 3 * n_lines // 4, n_lines})
    rows, t0 = [], time.perf_counter()
    for i in range(1, n_lines + 1):
        state.partial_fit(line(i, S, rng))
        if i in marks:
            cur, peak = rss_mib()
            gb = i * WIDTH * CHANNELS * 4 / 1e9
            rows.append((i, gb, cur, peak, time.perf_counter() - t0))
    rows_, cols = match_components(state.S, S)
    worst = float(np.max(spectral_angles(state.S, S)[rows_, cols]))
    return rows, worst, time.perf_counter() - t0


def rel(X: np.ndarray, A, S) -> float:
    return float(
        np.linalg.norm(X - np.asarray(A, float) @ np.asarray(S, float)) / np.linalg.norm(X)
    )


def angles(S, ref) -> str:
    r, c = match_components(S, ref)
    return ", ".join(f"{a:.2f}" for a in sorted(spectral_angles(S, ref)[r, c]))


def passes(epochs: int) -> str:
    return f"{epochs} epoch{'s' if epochs > 1 else ''}"


def eels_rows() -> list[str]:
    cube = unmix.datasets.load_cuzn_eels()["data"].astype(np.float64)
    X = cube.reshape(-1, cube.shape[-1])
    lines = list(cube)
    out = []
    for k in (2, 3):
        batch = unmix.factorize(X, k, random_state=0)
        rb = rel(X, batch.A, batch.S)
        for epochs in (1, 2, 5):
            on, dt = cpu_timed(unmix.online_factorize, lines, k, n_epochs=epochs, random_state=0)
            ro = rel(X, on.A, on.S)
            out.append(
                f"| {k} | online, {passes(epochs)} | {ro:.5f} | "
                f"{100 * (ro / rb - 1):+.2f} % | {angles(on.S, batch.S)} | {dt:.2f} |"
            )
        Xr = cube[::-1].reshape(X.shape)  # the reversed stream (A's rows follow it)
        for epochs in (1, 5):
            on = unmix.online_factorize(lines[::-1], k, n_epochs=epochs, random_state=0)
            ro = rel(Xr, on.A, on.S)
            out.append(
                f"| {k} | online, {passes(epochs)}, lines in reverse order | {ro:.5f} | "
                f"{100 * (ro / rb - 1):+.2f} % | {angles(on.S, batch.S)} | |"
            )
        others = {
            "batch hals tol 1e-6 (the demo's)": {"solver": "hals", "tol": 1e-6, "max_iter": 1000},
            "batch hals tol 1e-9, 3000 it": {"solver": "hals", "tol": 1e-9, "max_iter": 3000},
            "batch bpp (default tol)": {"solver": "bpp"},
        }
        start = unmix.online_factorize(lines, k, random_state=0)
        others["batch hals tol 0, 5000 it, from the online fit"] = {
            "init": (np.asarray(start.A), np.asarray(start.S)),
            "tol": 0.0,
            "max_iter": 5000,
        }
        backwards = unmix.online_factorize(lines[::-1], k, random_state=0)
        others["batch hals tol 0, 5000 it, from the reverse-order online fit"] = {
            "init": (
                np.asarray(backwards.A).reshape((*cube.shape[:2], k))[::-1].reshape(-1, k),
                np.asarray(backwards.S),
            ),
            "tol": 0.0,
            "max_iter": 5000,
        }
        for name, kw in others.items():
            b, dt = cpu_timed(unmix.factorize, X, k, **{"random_state": 0, **kw})
            r = rel(X, b.A, b.S)
            out.append(
                f"| {k} | {name} | {r:.5f} | {100 * (r / rb - 1):+.2f} % | "
                f"{angles(b.S, batch.S)} | {dt:.2f} |"
            )
    return out


def simplex_rows() -> list[str]:
    """Sum-to-one maps on the EELS lines: the online fit against the batch fit."""
    cube = unmix.datasets.load_cuzn_eels()["data"].astype(np.float64)
    X, lines, k = cube.reshape(-1, cube.shape[-1]), list(cube), 3
    cons = [unmix.NonNegative(), unmix.SumToOne()]
    batch = unmix.factorize(X, k, constraints=cons, random_state=0)
    off = {"extrapolate": False}
    plain = unmix.factorize(X, k, constraints=cons, random_state=0, solver_options=off)
    rb, rp = rel(X, batch.A, batch.S), rel(X, plain.A, plain.S)
    out = [
        f"| batch (defaults: {batch.spec['solver']}, extrapolated) | {rb:.5f} | | | "
        f"{angles(batch.S, plain.S)} | | {batch.n_iter} iterations |",
        f"| batch, plain iteration (extrapolate=False) | {rp:.5f} | {rp / rb:.4f}x | "
        f"{angles(plain.S, batch.S)} | | | {plain.n_iter} iterations |",
    ]
    for epochs in (1, 3, 10, 30):
        on, dt = cpu_timed(
            unmix.online_factorize, lines, k, n_epochs=epochs, constraints=cons, random_state=0
        )
        ro = rel(X, on.A, on.S)
        out.append(
            f"| online, {passes(epochs)} | {ro:.5f} | {ro / rb:.2f}x | {angles(on.S, batch.S)} "
            f"| {angles(on.S, plain.S)} | {on.spec['n_restarts']} | {dt:.2f} |"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 MB instead of 2 GB")
    args = parser.parse_args()
    n_lines = 200 if args.quick else 2000
    with threadpool_limits(1):
        mem, worst, total = stream_memory(n_lines)
        eels = eels_rows()
        simplex = simplex_rows()
    lines = [
        "# Online NMF (`unmix.OnlineNMF`, `unmix.online_factorize`, `unmix watch`)",
        "",
        f"Generated by `benchmarks/bench_online.py` on {datetime.date.today()}; "
        f"{cpu_model()}, Python {platform.python_version()}, NumPy {np.__version__}, "
        "one BLAS thread.",
        "",
        f"## Memory: {n_lines} scan lines of {WIDTH} pixels x {CHANNELS} channels (float32, "
        f"1 MiB a line, {n_lines * WIDTH * CHANNELS * 4 / 1e9:.2f} GB in all), k = {K}",
        "",
        "Each line is generated, fed to `OnlineNMF.partial_fit` and dropped; the state holds",
        "`S`, `A^T A` and `A^T X` only (O((batch + k) x channels)).",
        "",
        "| lines fed | GB streamed | RSS now (MiB) | peak RSS (MiB) | seconds |",
        "|---:|---:|---:|---:|---:|",
        *[f"| {i} | {gb:.2f} | {cur:.0f} | {peak:.0f} | {t:.1f} |" for i, gb, cur, peak, t in mem],
        "",
        f"Worst endmember angle to the planted spectra at the end: {worst:.2f} deg; "
        f"{1e3 * total / n_lines:.1f} ms a line (generation included).",
        "",
        "## Cu/ZnO EELS demo map (50 x 40 x 162), one scan line (40 pixels) a batch",
        "",
        "Relative error `||X - A S||_F / ||X||_F` with the maps recomputed against the final",
        "endmembers on the full data; angles (deg, sorted) after Hungarian matching against",
        "the batch `unmix.factorize(X, k, random_state=0)` (defaults: HALS, tol 1e-5); the",
        "online fits use the defaults (forget 0.95, seed 0).",
        "",
        "| k | fit | rel. error | vs batch | angles to batch (deg) | CPU s |",
        "|---:|---|---:|---:|---|---:|",
        *eels,
        "",
        "Reading: in line order, one pass is within 0.1 % of the batch error at k = 2 and 3",
        "(more epochs change little), and within 3 deg of the batch endmembers at k = 2.",
        "The endmembers themselves are not decided by these data: HALS run 5000",
        "iterations with no tolerance from an online fit ends at the batch fit's error (to",
        "0.01 %) yet 25 deg (k = 3, the Zn L2,3 edge's endmember) or, from the reverse-order",
        "fit, 18 and 42 deg (k = 2) from it - minima of equal error, not unconverged",
        "fits; BPP with its default tolerance lands 42 deg from HALS at k = 3.  Which one a",
        "fit finds depends on its start and, online, on the order of the stream.  The",
        "order also matters for the error after one pass: fed in reverse (bright lines",
        "first, so the start - a fit of the first line - hardly sees the second",
        "endmember), k = 2 ends +71 % above the batch error and needs ~5 epochs to come",
        "within 10 %.  (The batch start is NNDSVDa, which does not depend on the seed:",
        "batch fits from other seeds are the same fit, not independent evidence.)",
        "`tests/engine/test_online.py` asserts the angles (< 3 deg) at k = 2 and the error",
        "(within 2 %) at k = 2 and 3, in line order.",
        "",
        "## Sum-to-one maps on the same lines (k = 3)",
        "",
        "`constraints=[NonNegative(), SumToOne()]`; angles against the batch sum-to-one fit;",
        "restarts: endmembers that died (norm below 1e-3 of the largest) and were restarted",
        "from the worst-fitted pixel of the batch.",
        "",
        "| fit | rel. error | vs batch | angles to batch (deg) | angles to the plain batch "
        "(deg) | restarts | CPU s |",
        "|---|---:|---:|---|---|---:|---:|",
        *simplex,
        "",
        "Reading: the map gets 4x brighter over its first 12 lines, and under sum-to-one",
        "the endmembers must carry the brightness (they are the hull's vertices).  The",
        "start (a fit of the dim first line) is too dim: the brightest endmember takes",
        "every pixel and, before the restart, the other two died for good (norm 0, 90 deg",
        "from the batch fit, 3.2x its error after one pass, 2.4x after three).  Restarted,",
        "all three live, but one pass is still far from the batch fit: each batch moves",
        "the vertices outwards only a little (the plain batch iteration needs ~230",
        "iterations over all pixels).  For a fixed map under sum-to-one, stream it several",
        "times (`n_epochs`) or fit it whole; the online fit suits plain NMF.",
        "",
        "The batch fit under sum-to-one extrapolates by default (2026-12-05): it reaches",
        "the plain iteration's error in ~30 iterations, but at another point of a flat",
        "minimum, tens of degrees from the plain fit (first two rows).  The online fits",
        "end on that valley too; how close they come to either batch fit says which",
        "point of it they found, not how well they fit (same error to 0.1 % at 30 epochs).",
        "",
    ]
    OUT.write_text("\n".join(lines))
    print(OUT.read_text())


if __name__ == "__main__":
    main()
