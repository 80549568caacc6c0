"""Terms in the hierarchy: ``unmix tree`` with model flags on the Cu/ZnO EELS map.

Rewrites the section "Terms in the hierarchy" of ``benchmarks/results/models.md`` (its
notes are :data:`NOTES` here; the other sections are kept, :mod:`_models_md`).

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

Run: ``.venv/bin/python benchmarks/bench_tree_terms.py`` (the section to stdout); add
``--write`` to rewrite it in ``benchmarks/results/models.md``.
"""

from __future__ import annotations

import os

_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
for _v in _THREADS:
    os.environ[_v] = "1"

import argparse  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

from _machine import table_rows  # noqa: E402
from _models_md import measured, write_section  # noqa: E402
from unmix.hierarchy import Tree, load_tree  # noqa: E402
from unmix.metrics import match_components, spectral_angles  # noqa: E402

SECTION = "## Terms in the hierarchy"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FILE = DATA / "eels" / "CuZn_EELS_mapping_tutorial.hspy"
LEAVES = 6
ROWS = [
    [],
    ["--loss", "kl"],
    ["--loss", "kl", "--median-filter", "3"],
    ["--loss", "kl", "--smooth", "1", "--median-filter", "3"],
]
PROTOCOL = """`unmix tree FILE --leaves 6 [flags] --no-report` on the Cu/ZnO EELS map
(50x40x162 counts; 2 cores, possibly shared: wall times may be inflated).  With model
flags every split is one rank-2 `unmix.factorize` fit with the same terms (`--smooth`
couples pixels: each split is fitted on the whole grid, the other pixels weighted 1e-3 of
the node in total); the score is the gain in the model's loss.  Leaf angles: leaf
endmembers matched to the plain tree's by the Hungarian assignment on spectral angle.
Neighbour agreement: share of 4-neighbour pixel pairs in the same leaf."""
COLUMNS = [
    "| flags | leaves | leaf sizes | matched leaf angles to plain tree (deg) | mean | "
    "neighbour agreement | ARI to plain | s |",
    "|---|---|---|---|---|---|---|---|",
]
NOTES = """Map smoothing makes the leaves spatially coherent (neighbour agreement 0.78 -> 0.87) at
the price of one whole-image fit a candidate split (the weighted KL loss).  Since
2026-12-06 the median filter adds no unit norm (the fit holds the spectra's norms itself
where only filters would move them, `docs/engine.md`), so the median-filter splits run
KL-CD where UnitNorm had forced the gradient solver: the median-filter row now sits next
to plain KL (matched angles 0.07-4.8 deg against 0.08-5.0 on 2026-12-03's KL row); its 11
splits end at the tree's `max_iter` 300 still falling (1.8e-7 to 3.9e-5 of the objective
an iteration, above the tree's `tol` 1e-7).  A fit with filters now stops once its
objective, averaged over 5 iterations, no longer falls by `tol` an iteration
(`engine/_judge.py`): the smoothed tree's splits all stop by it, and the tree takes 3.9 s
(29 s with the same terms before that rule, with 9 splits at `max_iter`; 87 s on
2026-12-03 with UnitNorm).  Measured 2026-12-03 (before those changes): the smoothed root
split explained less of the rank-one KL residual (gain 0.72 against 0.84), and several
leaves' candidate splits fit worse than their rank-one model (score 0).  With zero weights
outside the node instead of 1e-3, the other pixels' maps went to 0, the map filter pulled
every border pixel of a scattered node down, and node 1 (1634 px) fitted worse than its
rank-one model (KL 2.84e6 against 1.56e6; 1.07e6 with the 1e-3 weights; 411 s for the
tree).

Planted check (`tests/hierarchy/test_hierarchy_terms.py`, 12x12 scan of 8x8 patterns, 3
pattern types, Poisson): every split equals `factorize` on the node's pixels to 1e-10
(KL + UnitNorm + GaussianMapFilter + median filter, and Frobenius + UnitNorm + L1), and
the 3 leaves are the 3 planted regions (at most one corner pixel off with map smoothing).

Run: `.venv/bin/python benchmarks/bench_tree_terms.py --write`."""


def _cpu_children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_tree(flags: list[str], outdir: Path) -> tuple[Tree, float, float, str]:
    """Grow the tree with the CLI: ``(tree, wall s, CPU s, stderr)``."""
    unmix_cli = Path(sys.executable).with_name("unmix")
    cmd = [str(unmix_cli), "tree", str(FILE), "--leaves", str(LEAVES), *flags]
    cmd += ["-o", str(outdir), "--no-report", "-q"]
    cpu0, t0 = _cpu_children(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # threads: 1
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite the section in models.md")
    args = ap.parse_args()
    header = [SECTION, "", measured("bench_tree_terms.py", dtype="float32"), "", PROTOCOL, ""]
    print("\n".join(header + COLUMNS), flush=True)
    trees: list[Tree] = []
    with tempfile.TemporaryDirectory() as tmp:

        def measure(flags: list[str]) -> str:
            tree, wall, cpu, stderr = run_tree(flags, Path(tmp) / str(len(trees)))
            trees.append(tree)
            n_lines, n_warn = _stderr_summary(stderr)
            print(f"  CPU {cpu:.1f} s, stderr {n_lines} lines ({n_warn} warnings)", flush=True)
            return row(flags, tree, trees[0], wall)

        rows = table_rows([(flags,) for flags in ROWS], measure)
    if args.write:
        write_section(SECTION, "\n".join([*header, *COLUMNS, *rows, "", NOTES]))


if __name__ == "__main__":
    main()
