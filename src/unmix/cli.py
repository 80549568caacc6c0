"""Command-line interface: ``unmix demo`` (more commands come with the data/CLI work)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import numpy as np

from . import __version__

__all__ = ["main"]


def _edge_names(S: np.ndarray, axis: np.ndarray) -> list[str]:
    """Name EELS components by their edge jumps (Cu L2,3 at 931 eV, Zn L2,3 at 1020 eV)."""

    def jump(s: np.ndarray, edge: float) -> float:
        before = s[(axis > edge - 40) & (axis < edge - 5)].mean()
        after = s[(axis > edge + 10) & (axis < edge + 60)].mean()
        return after / max(before, 1e-12 * max(s.max(), 1e-300))

    names = []
    for s in S:
        cu, zn = jump(s, 931.0), jump(s, 1020.0)
        if max(cu, zn) < 1.3:
            names.append("background")
        else:
            names.append("Cu L2,3 edge" if cu >= zn else "Zn L2,3 edge")
    return names


def demo(outdir: str, *, force: bool = False, quiet: bool = False) -> int:
    """Factorize the bundled Cu/ZnO EELS map and write figures and a results file."""
    from .core import factorize
    from .datasets import load_cuzn_eels
    from .plotting import plot_endmembers, plot_loss, plot_maps

    if os.path.exists(outdir) and os.listdir(outdir) and not force:
        print(
            f"error: {outdir} exists and is not empty; use --force to overwrite.", file=sys.stderr
        )
        return 2
    os.makedirs(outdir, exist_ok=True)
    d = load_cuzn_eels()
    cube = d["data"]
    h, w, m = cube.shape
    X = cube.reshape(h * w, m)
    if not quiet:
        print(
            f"Cu/ZnO EELS spectrum image: {h} x {w} pixels x {m} channels "
            f"({d['axis'][0]:.0f}-{d['axis'][-1]:.0f} {d['axis_units']}), "
            f"{X.sum() / X.shape[0]:.0f} counts/pixel"
        )
    result = factorize(
        X, 3, solver="hals", spatial_shape=(h, w), max_iter=1000, tol=1e-6, random_state=0
    )
    names = _edge_names(np.asarray(result.S), d["axis"])
    files = {
        "results": result.save(os.path.join(outdir, "result.h5")),
        "endmembers": plot_endmembers(
            result,
            os.path.join(outdir, "endmembers.png"),
            axis=d["axis"],
            axis_label=f"{d['axis_name']} ({d['axis_units']})",
            names=names,
        ),
        "maps": plot_maps(
            result,
            os.path.join(outdir, "maps.png"),
            pixel_size=d["scale_nm"],
            units="nm",
            names=names,
        ),
        "loss": plot_loss(result, os.path.join(outdir, "loss.png")),
    }
    if not quiet:
        print(
            f"NMF k=3 ({result.spec['solver']}): {result.n_iter} iterations, "
            f"{result.stop_reason}, {result.timings['total']:.1f} s; components: "
            + ", ".join(names)
        )
        for key, path in files.items():
            print(f"  {key:<11} {os.path.abspath(path)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unmix", description=__doc__)
    parser.add_argument("--version", action="version", version=f"unmix {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="factorize the bundled Cu/ZnO EELS map")
    p_demo.add_argument("-o", "--outdir", default="demo_output")
    p_demo.add_argument("--force", action="store_true", help="overwrite OUTDIR")
    p_demo.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        return demo(args.outdir, force=args.force, quiet=args.quiet)
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
