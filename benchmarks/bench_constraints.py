"""Constraint sets x solvers on the real datasets: collapse, violation, objective.

For every real file (``../shared/data``, see its README) and every constraint set below,
the script finds the solvers that accept the set (a ``max_iter=1`` fit of each of hals /
klcd / mu / bpp / admm / gradient, refused ones raise ``unmix.UnsupportedError``), fits each of
them from 5 starts (``random_state`` 0..4, the default init, default ``max_iter`` and
``tol``) and reports the seed-0 fit (what a user gets by default):

* iterations and stop reason, CPU seconds (``time.process_time``, one BLAS thread);
* collapsed components: ``||S_j|| < 1e-3 max_l ||S_l||``, or 99th-percentile abundance
  share ``< 0.05`` (share_ij = a_ij ||s_j|| / sum_l a_il ||s_l||), or within 3 degrees of
  another endmember;
* the smallest 99th-percentile share and the smallest pairwise endmember angle;
* the constraint violation of the returned factors (sum-to-one: max |sum_j A_ij - 1|;
  non-negativity: -min(A), -min(S) when negative; unit norm: max | ||S_j|| - 1 |);
* the seed-0 objective relative to the best objective over all solvers and starts of
  that (file, set), and the spread max/min - 1 over the starts.

The ``"auto"`` solver is fitted at seed 0 too; the solver it picks is marked, and when its
fit differs from that solver's own seed-0 fit it gets a row of its own.

Constraint sets (``unmix.factorize`` arguments; X float64, ``spatial_shape`` always
passed): "NMF" (defaults); "NMF + sum-to-one" ([NonNegative(), SumToOne()]); "NMF + L1"
([NonNegative(), UnitNorm()], [L1(0.05 * mean ||x_i||)]); "NMF + sum-to-one + grid
smoothness" (+ [SpatialSmoothness(1e-3 * mean ||x_i||^2)]); "NMF + sum-to-one +
min-volume" (+ [MinVolume(0.5, scale="residual")]); "KL" (loss="kl"); "KL + sum-to-one".

Run::

    .venv/bin/python benchmarks/bench_constraints.py           # all files, ~1 h
    .venv/bin/python benchmarks/bench_constraints.py --quick   # EELS and XRD, 2 starts
    .venv/bin/python benchmarks/bench_constraints.py --only eels,stm --starts 2
    # one solver's rows again, into a saved full run (rows replaced one by one):
    .venv/bin/python benchmarks/bench_constraints.py --starts 3 --solvers admm --save NEW
    .venv/bin/python benchmarks/bench_constraints.py --merge FULL NEW

The full run writes ``benchmarks/results/constraints.md``; ``--quick`` / ``--only`` print
the report (write it with ``--out``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime as dt  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.io as sio  # noqa: E402

import unmix  # noqa: E402
import unmix.blocks  # noqa: E402
from _machine import cpu_model  # noqa: E402

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - installed with scikit-learn
    threadpool_limits = None

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
DEFAULT_OUT = HERE / "results" / "constraints.md"
SOLVERS = ("hals", "klcd", "mu", "bpp", "admm", "gradient")
N_STARTS = 5
OBJ_TOL = 0.02  # "more than 2 % above the best"
VIOL_TOL = 1e-6
COLLAPSE_NORM, COLLAPSE_SHARE, COLLAPSE_ANGLE = 1e-3, 0.05, 3.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- data
def _npz(rel: str, crop: tuple[float, float] | None = None):
    def load():
        d = np.load(DATA / rel)
        X = np.asarray(d["data"], dtype=np.float64)
        if crop is not None:  # like {op="crop", signal=[lo, hi]}: inclusive, in axis units
            axis = np.asarray(d["axis"], dtype=float)
            keep = (axis >= crop[0]) & (axis <= crop[1])
            X = X[..., keep]
        return X.reshape(-1, X.shape[-1]), tuple(X.shape[:-1])

    return load


def _xrd():
    d = np.load(DATA / "xrd" / "xrd_aps34ide_143x2000.npz")
    X = np.asarray(d["data"], dtype=np.float64)
    return X.reshape(-1, X.shape[-1]), (11, 13)  # scan shape assumed (README)


def _eels():
    img = unmix.load(DATA / "eels" / "CuZn_EELS_mapping_tutorial.hspy")
    return np.asarray(img.unfold(), dtype=np.float64), tuple(img.spatial_shape)


def _stm():
    from unmix.preprocessing import pipeline_from_config

    steps = [{"op": "derivative"}, {"op": "clip", "lower": 0.0}]
    img = pipeline_from_config(steps).apply(unmix.load(DATA / "stm" / "Bias_spectroscopy.3ds"))
    return np.asarray(img.unfold(), dtype=np.float64), tuple(img.spatial_shape)


def _hsi(name: str):
    def load():
        d = sio.loadmat(DATA / "hsi" / f"{name}.mat")
        Y = np.asarray(d["Y"], dtype=np.float64)  # (bands, pixels), MATLAB column-major
        h, w = d["S_GT"].shape[:2]
        X = Y.T.reshape(h, w, Y.shape[0], order="F").reshape(-1, Y.shape[0])
        return X, (h, w)

    return load


@dataclass(frozen=True)
class Entry:
    key: str  # for --only
    label: str
    path: str
    k: int
    load: Callable[[], tuple[np.ndarray, tuple[int, ...]]]
    note: str = ""


ENTRIES = [
    Entry("eels", "EELS CuZn", "eels/CuZn_EELS_mapping_tutorial.hspy", 3, _eels),
    Entry(
        "eds-sem",
        "EDS SEM Bruker P45",
        "eds/eds_sem_bruker_P45_75x100.npz",
        4,
        _npz("eds/eds_sem_bruker_P45_75x100.npz"),
    ),
    Entry(
        "eds-tem",
        "EDS TEM Bruker",
        "eds/eds_tem_bruker_64x64.npz",
        4,
        _npz("eds/eds_tem_bruker_64x64.npz"),
    ),
    Entry(
        "eds-jeol",
        "EDS TEM JEOL",
        "eds/eds_tem_jeol_64x64_ds8.npz",
        3,
        _npz("eds/eds_tem_jeol_64x64_ds8.npz", crop=(0.2, 12.0)),
        "signal cropped to 0.2-12 keV",
    ),
    Entry(
        "raman",
        "Raman Renishaw",
        "raman/raman_renishaw_streamline_49x45.npz",
        3,
        _npz("raman/raman_renishaw_streamline_49x45.npz"),
    ),
    Entry("xrd", "XRD APS 34-ID-E", "xrd/xrd_aps34ide_143x2000.npz", 3, _xrd, "scan 11 x 13"),
    Entry("xrd", "XRD APS 34-ID-E", "xrd/xrd_aps34ide_143x2000.npz", 6, _xrd, "scan 11 x 13"),
    Entry(
        "stm",
        "STM Nanonis grid",
        "stm/Bias_spectroscopy.3ds",
        3,
        _stm,
        "derivative, then clip at 0",
    ),
    Entry("samson", "Samson", "hsi/samson.mat", 3, _hsi("samson")),
    Entry("jasper", "Jasper Ridge", "hsi/jasper_ridge.mat", 4, _hsi("jasper_ridge")),
    Entry("moffett", "Moffett", "hsi/moffett.mat", 3, _hsi("moffett")),
]
#: the spectroscopy maps (counts or count-like), without the scan-only STM grid and the
#: remote-sensing scenes: what the KL benchmarks fit
SPECTRAL_MAPS = ("eels", "eds-sem", "eds-tem", "eds-jeol", "raman", "xrd")


# ------------------------------------------------------------ constraint sets
def _simplex() -> list:
    return [unmix.NonNegative(), unmix.SumToOne()]


SET_NAMES = (
    "NMF",
    "NMF + sum-to-one",
    "NMF + L1",
    "NMF + sum-to-one + grid smoothness",
    "NMF + sum-to-one + min-volume",
    "KL",
    "KL + sum-to-one",
    "KL fractions",
)


def set_kwargs(name: str, X: np.ndarray) -> dict:
    """Fresh ``unmix.factorize`` keyword arguments of one constraint set (new term objects
    for every fit: terms keep per-fit state)."""
    if name == "NMF":
        return {}
    if name == "NMF + sum-to-one":
        return {"constraints": _simplex()}
    if name == "NMF + L1":
        m = unmix.blocks.mean_row_norm(X)
        return {
            "constraints": [unmix.NonNegative(), unmix.UnitNorm()],
            "regularizers": [unmix.L1(0.05 * m)],
        }
    if name == "NMF + sum-to-one + grid smoothness":
        lam = 1e-3 * float(np.mean(np.einsum("ij,ij->i", X, X)))
        return {"constraints": _simplex(), "regularizers": [unmix.SpatialSmoothness(lam)]}
    if name == "NMF + sum-to-one + min-volume":
        return {
            "constraints": _simplex(),
            "regularizers": [unmix.MinVolume(0.5, scale="residual")],
        }
    if name == "KL":
        return {"loss": "kl"}
    if name == "KL + sum-to-one":
        return {"loss": "kl", "constraints": _simplex()}
    if name == "KL fractions":  # the CLI's --loss kl --sum-to-one
        steps = [unmix.preprocessing.NormalizePixels("l1", weights=True)]
        return {"loss": "kl", "constraints": _simplex(), "preprocessing": steps}
    raise KeyError(name)


# ------------------------------------------------------------------ metrics
def collapse(A: np.ndarray, S: np.ndarray):
    """(collapsed component indices, 99th-percentile shares, smallest pairwise angle)."""
    A = np.abs(np.asarray(A, dtype=float))
    S = np.asarray(S, dtype=float)
    k = S.shape[0]
    norms = np.linalg.norm(S, axis=1)
    contrib = A * norms[None, :]
    share = contrib / np.maximum(contrib.sum(axis=1, keepdims=True), 1e-300)
    p99 = np.percentile(share, 99, axis=0)
    unit = S / np.maximum(norms[:, None], 1e-300)
    angle = np.degrees(np.arccos(np.clip(unit @ unit.T, -1.0, 1.0)))
    np.fill_diagonal(angle, 180.0)
    dead = [
        j
        for j in range(k)
        if norms[j] < COLLAPSE_NORM * norms.max()
        or p99[j] < COLLAPSE_SHARE
        or (k > 1 and angle[j].min() < COLLAPSE_ANGLE)
    ]
    return dead, p99, float(angle.min()) if k > 1 else float("nan")


def violation(A: np.ndarray, S: np.ndarray, spec: dict) -> tuple[float, str]:
    """Largest violation of the fit's constraints (from ``result.spec``) and its label."""
    parts: list[tuple[float, str]] = []
    for c in spec.get("constraints", []):
        kind, target = c.get("type"), c.get("target", "")
        if kind == "NonNegative":
            for name, M in (("A", A), ("S", S)):
                if target in (name, "both") and M.min() < 0:
                    parts.append((-float(M.min()), f"min {name} {M.min():.2g}"))
        elif kind == "SumToOne":
            total = float(c.get("total", 1.0))
            M = A if target == "A" else S.T
            v = float(np.max(np.abs(M.sum(axis=1) - total)))
            parts.append((v, f"sum-to-one {v:.2g}"))
        elif kind == "UnitNorm":
            M = S if target == "S" else A.T
            v = float(np.max(np.abs(np.linalg.norm(M, axis=1) - 1.0)))
            parts.append((v, f"unit norm {v:.2g}"))
    if not parts:
        return 0.0, "0"
    worst = max(p[0] for p in parts)
    shown = [p[1] for p in parts if p[0] > VIOL_TOL] or [max(parts)[1]]
    return worst, "; ".join(shown)


# ---------------------------------------------------------------------- fits
@dataclass
class Row:
    entry: Entry
    set_name: str
    solver: str
    auto: bool = False
    init: str = ""
    n_iter: int = 0
    stop: str = ""
    cpu: float = float("nan")
    dead: list = field(default_factory=list)
    min_p99: float = float("nan")
    min_angle: float = float("nan")
    viol: float = 0.0
    viol_text: str = ""
    objectives: list = field(default_factory=list)  # per start (NaN when the fit failed)
    rel_best: float = float("nan")
    error: str = ""
    warns: list = field(default_factory=list)

    @property
    def spread(self) -> float:
        obj = np.asarray(self.objectives, dtype=float)
        obj = obj[np.isfinite(obj)]
        if obj.size < 2 or obj.min() <= 0:
            return float("nan")
        return float(obj.max() / obj.min() - 1.0)


def _fit(X, k, spatial, set_name, solver, seed, **extra):
    kw = set_kwargs(set_name, X)
    return unmix.factorize(
        X, k, solver=solver, spatial_shape=spatial, random_state=seed, **kw, **extra
    )


def accepted_solvers(X, k, spatial, set_name) -> tuple[list[str], dict[str, str]]:
    ok, refused = [], {}
    for s in SOLVERS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _fit(X, k, spatial, set_name, s, 0, max_iter=1)
            ok.append(s)
        except unmix.UnsupportedError as exc:
            refused[s] = str(exc).splitlines()[0][:160]
        except Exception as exc:  # a crash is not a refusal: keep it visible
            refused[s] = f"ERROR {type(exc).__name__}: {str(exc).splitlines()[0][:140]}"
    return ok, refused


def _short(msg: str, n: int = 150) -> str:
    msg = " ".join(msg.split())
    return msg if len(msg) <= n else msg[: n - 3] + "..."


def run_row(X, k, spatial, entry, set_name, solver, starts) -> tuple[Row, object]:
    row = Row(entry, set_name, solver)
    first = None
    for seed in range(starts):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                t0 = time.process_time()
                res = _fit(X, k, spatial, set_name, solver, seed)
                cpu = time.process_time() - t0
        except Exception as exc:
            msg = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            if seed == 0:
                row.error = msg
                log(f"    {solver} seed 0 failed: {msg}")
                traceback.print_exc(file=sys.stderr)
            row.objectives.append(float("nan"))
            continue
        row.objectives.append(float(res.objective))
        if seed == 0:
            first = res
            A, S = np.asarray(res.A, dtype=float), np.asarray(res.S, dtype=float)
            row.n_iter, row.stop, row.cpu = int(res.n_iter), str(res.stop_reason), cpu
            row.init = str(res.spec.get("init", "?"))
            row.dead, p99, row.min_angle = collapse(A, S)
            row.min_p99 = float(p99.min())
            row.viol, row.viol_text = violation(A, S, res.spec)
            row.warns = sorted({_short(str(w.message)) for w in caught})
    return row, first


def bench_entry(
    entry: Entry,
    starts: int,
    gradient_starts: int,
    sets: tuple[str, ...] = SET_NAMES,
    solvers: tuple[str, ...] = (),
) -> tuple[list[Row], dict]:
    """The rows of one file; ``solvers`` (``--solvers``) fits only those of the accepted
    solvers, without the auto row (merged into a full run's rows with ``--merge``)."""
    X, spatial = entry.load()
    X = np.ascontiguousarray(X, dtype=np.float64)
    info = {"shape": X.shape, "spatial": spatial, "refused": {}, "accepted": {}, "auto": {}}
    log(f"{entry.label} k={entry.k}: X {X.shape}, scan {spatial}")
    rows: list[Row] = []
    for set_name in sets:
        ok, refused = accepted_solvers(X, entry.k, spatial, set_name)
        info["refused"][set_name] = refused
        info["accepted"][set_name] = tuple(ok)
        log(f"  {set_name}: accepted {ok}; refused {sorted(refused)}")
        set_rows, fits = [], {}
        for s in ok:
            if solvers and s not in solvers:
                continue
            n = gradient_starts if s == "gradient" else starts
            row, res = run_row(X, entry.k, spatial, entry, set_name, s, n)
            set_rows.append(row)
            fits[s] = res
            log(
                f"    {s:>8}: {row.n_iter} it ({row.stop}) {row.cpu:.1f} s, "
                f"obj {row.objectives[0] if row.objectives else float('nan'):.6g}, "
                f"dead {row.dead}, viol {row.viol:.2g}"
            )
        if solvers:  # a partial run: its rows replace a full run's in --merge
            rows += set_rows
            continue
        # the "auto" choice: which solver, and is its fit that solver's seed-0 fit?
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res_auto = _fit(X, entry.k, spatial, set_name, "auto", 0)
            picked = str(res_auto.spec.get("solver"))
        except Exception as exc:
            info["auto"][set_name] = f"error {type(exc).__name__}: {exc}"
            log(f"    auto failed: {exc}")
            res_auto, picked = None, None
        if res_auto is not None:
            same = next((r for r in set_rows if r.solver == picked), None)
            ref = fits.get(picked)
            if (
                same is not None
                and ref is not None
                and np.isclose(float(res_auto.objective), float(ref.objective), rtol=1e-9)
            ):
                same.auto = True
                info["auto"][set_name] = picked
            else:
                log(f"    auto picked {picked}; its fit differs: own row, {starts} starts")
                row, _ = run_row(X, entry.k, spatial, entry, set_name, "auto", starts)
                row.solver, row.auto = f"auto ({picked})", True
                set_rows.append(row)
                info["auto"][set_name] = f"{picked} (differs from solver={picked!r})"
        rows += _relative_to_best(set_rows)
    return rows, info


def _relative_to_best(set_rows: list[Row]) -> list[Row]:
    """Set each row's ``rel_best``: its seed-0 objective over the lowest objective of all
    rows (solvers and starts) of one (file, set), minus one."""
    all_obj = np.asarray([o for r in set_rows for o in r.objectives], dtype=float)
    all_obj = all_obj[np.isfinite(all_obj)]
    best = float(all_obj.min()) if all_obj.size else float("nan")
    for r in set_rows:
        if r.objectives and np.isfinite(r.objectives[0]) and best > 0:
            r.rel_best = r.objectives[0] / best - 1.0
        elif r.objectives and r.objectives[0] == best:
            r.rel_best = 0.0
    return set_rows


# -------------------------------------------------------------------- report
def machine_info() -> dict:
    cpu = cpu_model()
    return {
        "commit": _git_revision(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "unmix": getattr(unmix, "__version__", "?"),
        "unmix_path": str(Path(unmix.__file__).resolve().parent),
        "copy": (
            ""
            if Path(unmix.__file__).resolve().is_relative_to(HERE.parent / "src")
            else ": a copy of the checkout's src/ taken at the start, put first on PYTHONPATH "
            "so that edits during the run do not mix in"
        ),
    }


def _git_revision() -> str:
    """Commit of the checkout the benchmark ran on, flagged when src/ has local edits."""
    import subprocess

    try:

        def git(*a: str) -> str:
            return subprocess.run(
                ["git", *a], cwd=HERE.parent, capture_output=True, text=True, check=True
            ).stdout

        rev = git("rev-parse", "--short", "HEAD").strip()
        status = git("status", "--porcelain", "--", "src").splitlines()
        dirty = [ln[3:] for ln in status if ln.strip()]
        return rev + (f" (uncommitted changes in {', '.join(dirty)})" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def _f(x: float, fmt: str) -> str:
    return "-" if x is None or not np.isfinite(x) else format(x, fmt)


def _pct(x: float) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    return f"{100 * x:.2g} %" if abs(x) < 1e-3 else f"{100 * x:.2f} %"


def is_collapsed(r: Row) -> bool:
    return bool(r.dead)


def is_violating(r: Row) -> bool:
    return r.viol > VIOL_TOL


def is_worse(r: Row) -> bool:
    return bool(np.isfinite(r.rel_best) and r.rel_best > OBJ_TOL)


HEAD = (
    "file",
    "k",
    "set",
    "solver",
    "init",
    "iters (stop)",
    "CPU s",
    "collapsed",
    "min p99 share",
    "min angle (deg)",
    "violation",
    "obj vs best",
    "spread",
)


def row_cells(r: Row) -> list[str]:
    solver = f"**{r.solver}** (auto)" if r.auto and "auto" not in r.solver else r.solver
    if r.error:
        return [
            r.entry.label,
            str(r.entry.k),
            r.set_name,
            solver,
            "-",
            f"error: {r.error}",
            *["-"] * 7,
        ]
    return [
        r.entry.label,
        str(r.entry.k),
        r.set_name,
        solver,
        r.init,
        f"{r.n_iter} ({r.stop})",
        f"{r.cpu:.2f}",
        ", ".join(str(j) for j in r.dead) if r.dead else "-",
        f"{r.min_p99:.3f}",
        _f(r.min_angle, ".1f"),
        r.viol_text,
        _pct(r.rel_best),
        _pct(r.spread),
    ]


def table(rows: list[Row]) -> list[str]:
    out = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    out += ["| " + " | ".join(row_cells(r)) + " |" for r in rows]
    return out


def report(rows, infos, args, meta) -> str:
    m = meta["machine"]
    cmd = meta.get("cmd") or " ".join(
        [".venv/bin/python", "benchmarks/bench_constraints.py", *sys.argv[1:]]
    )
    lines = [
        "# Constraint sets x solvers on the real datasets",
        "",
        f"Date: {meta['date']}; the script took {meta['wall'] / 60:.1f} min wall, "
        f"{meta['cpu'] / 60:.1f} min CPU.",
        "",
        f"How to run: `{cmd}` (one BLAS thread: OMP/OPENBLAS/MKL_NUM_THREADS=1 set before "
        "NumPy is imported, plus threadpoolctl). `--quick`: EELS and XRD, 2 starts; "
        "`--only eels,xrd,...` selects files (keys: "
        + ", ".join(sorted({e.key for e in ENTRIES}))
        + "); `--starts N`.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; {m['platform']}; Python {m['python']}, "
        f"NumPy {m['numpy']}, SciPy {m['scipy']}, unmix {m['unmix']} (commit {m['commit']}; "
        f"imported from `{m['unmix_path']}`{m['copy']}). Load average (1 min) "
        f"{meta['load0']:.1f} at the start, {meta['load1']:.1f} at the end: CPU times "
        "exclude waiting but the machine was shared.",
        "",
        "## Definitions",
        "",
        f"* Every fit: `unmix.factorize(X, k, solver=..., spatial_shape=scan, "
        f"random_state=seed, **set)` with X float64, the default init, `max_iter` and "
        f"`tol`; {args.starts} starts (seed 0..{args.starts - 1})"
        + (
            f", {args.gradient_starts} for the gradient rows (the slowest solver)"
            if getattr(args, "gradient_starts", args.starts) != args.starts
            else ""
        )
        + ". The row shows the "
        "seed-0 fit (what a user gets by default).",
        "* Constraint sets: **NMF** = defaults (`constraints=None`); **NMF + sum-to-one** = "
        "`[NonNegative(), SumToOne()]`; **NMF + L1** = `[NonNegative(), UnitNorm()]` with "
        "`regularizers=[L1(0.05 * m)]`, m = `unmix.blocks.mean_row_norm(X)` (the CLI's "
        "scale-free `--sparsity 0.05`); **+ grid smoothness** = sum-to-one plus "
        "`SpatialSmoothness(lam)` with **lam = 1e-3 * mean_i ||x_i||^2** (the mean squared "
        "pixel norm: the penalty is on sum-to-one maps, so this makes it scale-free); "
        '**+ min-volume** = sum-to-one plus `MinVolume(0.5, scale="residual")`; **KL** = '
        '`loss="kl"` (default constraints); **KL + sum-to-one** = `loss="kl"` with the '
        "sum-to-one constraints (on the raw pixels: the vertices carry the brightness); "
        "**KL fractions** = the same on pixels divided by their sums and weighted by them "
        '(`NormalizePixels("l1", weights=True)`, the CLI\'s `--loss kl --sum-to-one`; '
        "`auto` fits it as the plain KL fit put on the simplex, exactly).",
        "* Solvers: each of hals, klcd (runs saved before it existed: only as the auto row), "
        "mu, bpp, admm, gradient that accepts the set (a "
        '`max_iter=1` fit does not raise `unmix.UnsupportedError`). `solver="auto"` is '
        "fitted at seed 0: the solver it picks is marked **bold (auto)**; if its fit is not "
        "that solver's seed-0 fit (objectives differ by > 1e-9 relative) it has its own "
        "row `auto (picked)`.",
        "* *init*: `result.spec['init']` (the default start the engine chose). "
        "*iters (stop)*: `result.n_iter` (`result.stop_reason`). *CPU s*: "
        "`time.process_time` of the seed-0 fit (input checks, init and iterations).",
        f"* *collapsed*: components j with ||S_j|| < {COLLAPSE_NORM:g} max_l ||S_l||, or "
        f"99th-percentile (over pixels) abundance share < {COLLAPSE_SHARE:g} (share_ij = "
        "a_ij ||s_j|| / sum_l a_il ||s_l||), or within "
        f"{COLLAPSE_ANGLE:g} deg of another endmember. *min p99 share*: the smallest "
        "99th-percentile share over the components; *min angle*: the smallest pairwise "
        "angle between endmembers.",
        "* *violation*: of the fit's own constraints (`result.spec`): sum-to-one "
        "max_i |sum_j A_ij - 1|; non-negativity min(A), min(S) when negative; unit norm "
        "max_j | ||S_j|| - 1 |; `0` when none applies (non-negativity met exactly). Only "
        f"parts above {VIOL_TOL:g} are listed (else the largest part).",
        "* *obj vs best*: the seed-0 `result.objective` / the lowest objective over all "
        "solvers (and the separate auto row, if any) and all starts of that (file, set) - 1. "
        "*spread*: max / min - 1 of the objectives of the row's starts. The objective "
        "is the full one (data fit + penalties) for that set, so values compare only within "
        "a (file, set).",
        "",
    ]
    # the solvers accepted by most files, per set, with the refusal messages
    common: dict[str, tuple] = {}
    lines += ["## Solver acceptance", ""]
    for s in SET_NAMES:
        seen = [info["accepted"][s] for info in infos.values() if s in info["accepted"]]
        if not seen:
            continue
        common[s] = max(set(seen), key=seen.count)
        first = next(i for i in infos.values() if i["accepted"].get(s) == common[s])
        why = "; ".join(f"{sv}: {msg}" for sv, msg in first["refused"][s].items())
        autos = sorted({str(i["auto"].get(s)) for i in infos.values() if s in i["auto"]})
        lines.append(
            f"* **{s}**: {', '.join(common[s]) or 'none'}"
            + (f" (refused: {why})" if why else "")
            + f"; auto picks {', '.join(autos)}."
        )
    lines += ["", "Files where it differs say so below their table.", ""]
    for e in [e for e in ENTRIES if any(r.entry is e for r in rows)]:
        info = infos[id(e)]
        n, c = info["shape"]
        lines += [
            f"## {e.label}, k = {e.k}",
            "",
            f"`{e.path}`: X {n} x {c}, scan {' x '.join(map(str, info['spatial']))}"
            + (f"; {e.note}" if e.note else "")
            + ".",
            "",
            *table([r for r in rows if r.entry is e]),
            "",
        ]
        odd = [
            f"* {s}: accepted {', '.join(ok) or 'none'}; refused "
            + "; ".join(f"{sv} ({why})" for sv, why in info["refused"][s].items())
            for s, ok in info["accepted"].items()
            if ok != common.get(s)
        ]
        if odd:
            lines += ["Solver acceptance differs from the common one here:", "", *odd, ""]
        notes = [
            f"* {r.set_name} / {r.solver}: " + " | ".join(r.warns)
            for r in rows
            if r.entry is e and r.warns
        ]
        if notes:
            lines += ["Warnings raised by the seed-0 fits:", "", *notes, ""]
    collapsed = [r for r in rows if is_collapsed(r)]
    violating = [r for r in rows if is_violating(r)]
    worse = [r for r in rows if is_worse(r)]
    errors = [r for r in rows if r.error]
    lines += [
        "## Summary",
        "",
        f"{len(rows)} rows ({len(infos)} file / k combinations x {len(SET_NAMES)} sets x "
        "accepted solvers).",
        "",
        f"* rows with a collapsed component: **{len(collapsed)}**",
        f"* rows violating a constraint by more than {VIOL_TOL:g}: **{len(violating)}**",
        f"* rows whose seed-0 objective is more than {100 * OBJ_TOL:g} % above the best: "
        f"**{len(worse)}**",
        f"* rows whose seed-0 fit failed: **{len(errors)}**",
        "",
    ]
    for title, sel in (
        ("Rows with a collapsed component", collapsed),
        (f"Rows violating a constraint by more than {VIOL_TOL:g}", violating),
        (f"Rows more than {100 * OBJ_TOL:g} % above the best objective", worse),
        ("Rows whose seed-0 fit failed", errors),
    ):
        if sel:
            lines += [f"### {title}", "", *table(sel), ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="EELS and XRD only, 2 starts")
    ap.add_argument("--only", default="", help="comma-separated file keys (e.g. eels,xrd)")
    ap.add_argument("--starts", type=int, default=None, help=f"starts per row ({N_STARTS})")
    ap.add_argument(
        "--gradient-starts", type=int, default=None, help="starts of the gradient rows"
    )
    ap.add_argument("--out", type=Path, default=None, help="write the report here")
    ap.add_argument("--save", type=Path, default=None, help="pickle each file's rows here")
    ap.add_argument(
        "--sets", default="", help="comma-separated constraint sets (default: all; --save)"
    )
    ap.add_argument(
        "--solvers",
        default="",
        help="comma-separated solvers to fit (default: all accepted; no auto row; --save)",
    )
    ap.add_argument(
        "--merge", type=Path, nargs="+", default=None, help="report saved rows (--save)"
    )
    args = ap.parse_args()
    if args.merge:
        return merge(args)
    keys = {e.key for e in ENTRIES}
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if args.quick:
        only = only or {"eels", "xrd"}
    unknown = only - keys
    if unknown:
        ap.error(f"unknown file keys {sorted(unknown)}; use {sorted(keys)}")
    if args.starts is None:
        args.starts = 2 if args.quick else N_STARTS
    if args.gradient_starts is None:
        args.gradient_starts = args.starts
    entries = [e for e in ENTRIES if not only or e.key in only]
    solvers = tuple(x.strip() for x in args.solvers.split(",") if x.strip())
    if set(solvers) - set(SOLVERS):
        ap.error(f"unknown solvers {sorted(set(solvers) - set(SOLVERS))}; use {SOLVERS}")
    out = args.out
    if out is None and not only and args.starts == N_STARTS:
        out = DEFAULT_OUT

    if threadpool_limits is not None:
        threadpool_limits(1)
    meta = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load0": _load(),
        "cmd": shlex.join([".venv/bin/python", "benchmarks/bench_constraints.py", *sys.argv[1:]]),
    }
    w0, c0 = time.perf_counter(), time.process_time()
    rows: list[Row] = []
    infos: dict[int, dict] = {}
    for e in entries:
        t0, c1 = time.perf_counter(), time.process_time()
        sets = tuple(x.strip() for x in args.sets.split(",") if x.strip()) or SET_NAMES
        if set(sets) - set(SET_NAMES):
            ap.error(f"unknown sets {sorted(set(sets) - set(SET_NAMES))}; use {SET_NAMES}")
        r, info = bench_entry(e, args.starts, args.gradient_starts, sets, solvers)
        rows += r
        infos[id(e)] = info
        if args.save is not None:
            times = (time.perf_counter() - t0, time.process_time() - c1)
            save_entry(args.save, e, r, info, dict(meta, args=vars(args), times=times))
    meta.update(wall=time.perf_counter() - w0, cpu=time.process_time() - c0, load1=_load())
    text = report(rows, infos, args, meta)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        log(f"wrote {out}")
    print(text)
    return 0


# ------------------------------------------------- runs split over processes
def save_entry(folder: Path, entry: Entry, rows: list[Row], info: dict, meta: dict) -> None:
    """Pickle one file's rows (``--save``), for :func:`merge`."""
    import pickle

    folder.mkdir(parents=True, exist_ok=True)
    index = ENTRIES.index(entry)
    plain = [dataclasses.replace(r, entry=None) for r in rows]
    tag = time.strftime("%H%M%S")
    with open(folder / f"{index:02d}_{entry.key}_k{entry.k}_{tag}.pkl", "wb") as f:
        pickle.dump({"index": index, "rows": plain, "info": info, "meta": meta}, f)


def merge(args: argparse.Namespace) -> int:
    """The report of rows saved by several runs (``--merge DIR...``), in ENTRIES order."""
    import pickle

    saved = []
    for folder in args.merge:
        for path in sorted(folder.glob("*.pkl")):
            with open(path, "rb") as f:
                saved.append(pickle.load(f))
    saved.sort(key=lambda d: (d["index"], d["meta"]["date"]))
    by_entry: dict[int, dict[str, list[Row]]] = {}
    infos: dict[int, dict] = {}
    for d in saved:  # a later run of a (file, set) replaces the earlier one (--sets),
        e = ENTRIES[d["index"]]  # of a (file, set, solver) only that row (--solvers)
        sets = by_entry.setdefault(d["index"], {})
        partial = bool(d["meta"].get("args", {}).get("solvers"))
        for name in {r.set_name for r in d["rows"]}:
            new = [dataclasses.replace(r, entry=e) for r in d["rows"] if r.set_name == name]
            if partial and name in sets:
                by_solver = {r.solver: r for r in sets[name]}
                by_solver.update({r.solver: r for r in new})
                new = list(by_solver.values())
            sets[name] = new
        info = infos.setdefault(id(e), {**d["info"], "refused": {}, "accepted": {}, "auto": {}})
        for key in ("refused", "accepted", "auto"):
            info[key].update(d["info"][key])
    rows = [
        r
        for i in sorted(by_entry)
        for name in SET_NAMES
        for r in _relative_to_best(by_entry[i].get(name, []))
    ]
    metas = [d["meta"] for d in saved]
    first = min(metas, key=lambda m: m["date"])
    meta = dict(first, wall=sum(m["times"][0] for m in metas))
    commits = sorted({m["machine"]["commit"] for m in metas})
    meta["machine"] = dict(first["machine"], commit=" and ".join(commits))
    cmds = sorted({m["cmd"] for m in metas})
    if len(cmds) > 1:
        meta["cmd"] = "; ".join(cmds)
    meta.update(cpu=sum(m["times"][1] for m in metas), load1=_load())
    run_args = argparse.Namespace(**first["args"])
    text = report(rows, infos, run_args, meta)
    out = args.out or DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    log(f"wrote {out} from {len(saved)} saved files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
