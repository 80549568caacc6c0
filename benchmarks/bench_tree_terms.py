"""Terms in the hierarchy: ``unmix tree`` with model flags on the Cu/ZnO EELS map.

Rewrites the table (and the date and machine of its "Measured ..." line) of the section
"Terms in the hierarchy" of ``benchmarks/results/models.md``; the prose around the table
and the other sections are kept.

Protocol.  One BLAS thread (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and
``MKL_NUM_THREADS`` set to 1 here and in the children's environment).  Each row runs the
CLI as a child process, ``unmix tree FILE --leaves 6 [flags] -o TMP/ROW --no-report -q``
(the ``unmix`` next to ``sys.executable``), on the Cu/ZnO EELS map (50x40 pixels x 162
channels of counts; the CLI's default float32), with the flags: none (the plain rank-2
ANLS tree), ``--loss kl``, ``--loss kl --median-filter 3`` and
``--loss kl --smooth 1 --median-filter 3``.  Seconds: the child's wall time (process start
and file read included; ``s`` in the table) and its CPU time (``resource.getrusage``
of the children, user + system, printed with the run's stderr summary).  Each tree is
read back with :func:`unmix.hierarchy.load_tree`; per tree:

- leaves: ``len(tree.leaves)``; leaf sizes: pixels of each leaf (``tree.assignment``) in
  the tree's leaf order (depth first, ``tree.leaves``);
- matched leaf angles: the leaf endmembers (``tree.S[tree.leaves]``) matched to the plain
  tree's by the Hungarian assignment on spectral angle
  (:func:`unmix.metrics.match_components`), the matched angles in degrees
  (:func:`unmix.metrics.spectral_angles`) in this tree's leaf order, and their mean;
- neighbour agreement: the share of 4-neighbour pixel pairs of the scan grid
  (``tree.spatial_shape``, pixels in row-major order) that are in the same leaf;
- ARI to plain: ``sklearn.metrics.adjusted_rand_score`` of the leaf assignment against
  the plain tree's.

The lines each run writes to stderr are counted (all, and those that start with
"Warning" or hold "Warning:") and printed, not written to the results.

Run: ``.venv/bin/python benchmarks/bench_tree_terms.py`` (table to stdout); add
``--write`` to rewrite the section's table in ``benchmarks/results/models.md``.
"""

from __future__ import annotations

import os

_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
for _v in _THREADS:
    os.environ[_v] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

from unmix.hierarchy import Tree, load_tree  # noqa: E402
from unmix.metrics import match_components, spectral_angles  # noqa: E402

SECTION = "## Terms in the hierarchy"
OUT = Path(__file__).parent / "results" / "models.md"
FILE = Path("/work/shared/data/eels/CuZn_EELS_mapping_tutorial.hspy")
LEAVES = 6
ROWS = [
    ("plain", []),
    ("kl", ["--loss", "kl"]),
    ("kl_median", ["--loss", "kl", "--median-filter", "3"]),
    ("kl_smooth_median", ["--loss", "kl", "--smooth", "1", "--median-filter", "3"]),
]
COLUMNS = (
    "| flags | leaves | leaf sizes | matched leaf angles to plain tree (deg) | mean | "
    "neighbour agreement | ARI to plain | s |"
)


def _cpu_children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_tree(flags: list[str], outdir: Path) -> tuple[Tree, float, float, str]:
    """Grow the tree with the CLI: ``(tree, wall s, CPU s, stderr)``."""
    unmix_cli = Path(sys.executable).with_name("unmix")
    cmd = [str(unmix_cli), "tree", str(FILE), "--leaves", str(LEAVES), *flags]
    cmd += ["-o", str(outdir), "--no-report", "-q"]
    env = dict(os.environ, **{v: "1" for v in _THREADS})
    cpu0, t0 = _cpu_children(), time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - t0, _cpu_children() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return load_tree(outdir / "result.h5"), wall, cpu, proc.stderr


def leaf_sizes(tree: Tree) -> list[int]:
    counts = np.bincount(np.asarray(tree.assignment), minlength=len(tree.nodes))
    return [int(counts[i]) for i in tree.leaves]


def matched_angles(tree: Tree, plain: Tree) -> np.ndarray:
    """Angles (deg) of this tree's leaf endmembers to their Hungarian matches among the
    plain tree's, in this tree's leaf order."""
    S, ref = (np.asarray(t.S, dtype=float)[t.leaves] for t in (tree, plain))
    rows, cols = match_components(S, ref)
    angles = spectral_angles(S, ref)[rows, cols]
    return angles[np.argsort(rows)]


def neighbour_agreement(tree: Tree) -> float:
    """Share of 4-neighbour pixel pairs of the scan grid in the same leaf."""
    shape = tuple(tree.spatial_shape or ())
    if len(shape) != 2:
        raise ValueError(f"expected a 2-D scan, got spatial shape {shape}")
    a = np.asarray(tree.assignment).reshape(shape)
    same = np.count_nonzero(a[:, 1:] == a[:, :-1]) + np.count_nonzero(a[1:, :] == a[:-1, :])
    pairs = a[:, 1:].size + a[1:, :].size
    return same / pairs


def _flags_cell(flags: list[str]) -> str:
    return f"`{' '.join(flags)}`" if flags else "(plain rank-2 ANLS)"


def _ari_cell(ari: float) -> str:
    return "1" if np.isclose(ari, 1.0) else f"{ari:.3f}"


def row(flags: list[str], tree: Tree, plain: Tree, wall: float) -> str:
    if tree is plain:
        angles_cell = mean_cell = "-"
    else:
        angles = matched_angles(tree, plain)
        angles_cell = ", ".join(f"{a:.2f}" for a in angles)
        mean_cell = f"{angles.mean():.2f}"
    ari = adjusted_rand_score(np.asarray(plain.assignment), np.asarray(tree.assignment))
    return (
        f"| {_flags_cell(flags)} | {len(tree.leaves)} | "
        f"{', '.join(map(str, leaf_sizes(tree)))} | {angles_cell} | {mean_cell} | "
        f"{neighbour_agreement(tree):.3f} | {_ari_cell(ari)} | {wall:.1f} |"
    )


def _stderr_summary(stderr: str) -> tuple[int, int]:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    warn = sum(ln.lstrip().startswith("Warning") or "Warning:" in ln for ln in lines)
    return len(lines), warn


def _stamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def write_table(table: list[str], stamp: str, out: Path = OUT) -> None:
    """Replace the table (and the "Measured <date> on <machine>" words) of the section,
    keeping everything else."""
    text = out.read_text()
    if SECTION not in text:
        raise ValueError(f"{out} has no section {SECTION!r}")
    before, rest = text.split(SECTION, 1)
    body, sep, tail = rest.partition("\n## ")
    body = re.sub(
        r"Measured \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC on \S+",
        f"Measured {stamp} on {platform.machine()}",
        body,
        count=1,
    )
    lines = body.split("\n")
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| flags |"))
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines[start:end] = table
    out.write_text(before + SECTION + "\n".join(lines) + sep + tail)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite the table in models.md")
    args = ap.parse_args()

    stamp = _stamp()
    print(
        f"Measured {stamp} on {platform.machine()}, one BLAS thread, float32, "
        f"`unmix tree FILE --leaves {LEAVES} [flags] --no-report` on {FILE.name}.",
        flush=True,
    )
    print(flush=True)
    table = [COLUMNS, "|---|---|---|---|---|---|---|---|"]
    print("\n".join(table), flush=True)
    plain = None
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in ROWS:
            tree, wall, cpu, stderr = run_tree(flags, Path(tmp) / name)
            plain = plain if plain is not None else tree
            table.append(row(flags, tree, plain, wall))
            print(table[-1], flush=True)
            n_lines, n_warn = _stderr_summary(stderr)
            notes.append(
                f"{_flags_cell(flags)}: wall {wall:.1f} s, CPU {cpu:.1f} s, stderr "
                f"{n_lines} lines, {n_warn} warning lines"
            )
            if stderr.strip():
                notes.append("  " + stderr.strip().replace("\n", "\n  "))
    print()
    print("\n".join(notes))
    if args.write:
        write_table(table, stamp)
        print(f"\nwrote the table of {SECTION!r} in {OUT}")


if __name__ == "__main__":
    main()
