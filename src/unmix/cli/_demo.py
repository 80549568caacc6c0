"""``unmix demo``: the bundled Cu/ZnO EELS spectrum image, factorized and reported."""

from __future__ import annotations

import logging
import os

import click
import numpy as np

from ..datasets import load_cuzn_eels
from ..engine import factorize
from ..spectral_image import Axis, SpectralImage
from ._outdir import output_folder

__all__ = ["demo", "edge_names", "run_demo"]

logger = logging.getLogger("unmix")


def edge_names(S: np.ndarray, axis: np.ndarray) -> list[str]:
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


def _image(d: dict):
    h, w, m = d["data"].shape
    spatial = [Axis("y", h, d["scale_nm"], 0.0, "nm"), Axis("x", w, d["scale_nm"], 0.0, "nm")]
    ax = d["axis"]
    signal = [
        Axis(
            d["axis_name"], m, float(ax[1] - ax[0]), float(ax[0]), d["axis_units"], navigate=False
        )
    ]
    meta = {
        "title": "Cu/ZnO EELS spectrum image (bundled demo data)",
        "signal_type": "EELS",
        "source": d["source"],
        "quantity": "Intensity (counts)",
    }
    return SpectralImage(d["data"], spatial_axes=spatial, signal_axes=signal, metadata=meta)


def run_demo(outdir: str) -> tuple[dict[str, str], str]:
    """Factorize the demo data (NMF, k = 3; PCA for comparison); return files and a summary."""
    from ..report import write_report

    d = load_cuzn_eels()
    image = _image(d)
    X = image.unfold()
    h, w = image.spatial_shape
    nmf = factorize(
        X, 3, solver="hals", spatial_shape=(h, w), max_iter=1000, tol=1e-6, random_state=0
    )
    pca = factorize(X, 3, preset="pca", spatial_shape=(h, w))
    names = edge_names(np.asarray(nmf.S), d["axis"])
    for r in (nmf, pca):
        r.context = image.provenance()
    nmf.context["component_names"] = names
    files = {"results": nmf.save(os.path.join(outdir, "result.h5"))}
    report = write_report(
        outdir,
        {"NMF (HALS)": nmf, "PCA": pca},
        X=X,
        image=image,
        title="unmix demo: Cu/ZnO EELS spectrum image",
    )
    files["report"] = os.fspath(report)
    for png in sorted(os.listdir(outdir)):
        if png.endswith(".png") and "nmf" in png:
            files[png.split("_", 2)[-1].removesuffix(".png")] = os.path.join(outdir, png)
    summary = (
        f"Cu/ZnO EELS spectrum image: {h} x {w} pixels x {X.shape[1]} channels "
        f"({d['axis'][0]:.0f}-{d['axis'][-1]:.0f} {d['axis_units']}), "
        f"{float(X.sum()) / X.shape[0]:.0f} counts/pixel\n"
        f"NMF k=3 ({nmf.spec['solver']}): {nmf.n_iter} iterations, {nmf.stop_reason}, "
        f"{nmf.timings['total']:.1f} s; components: " + ", ".join(names)
    )
    return files, summary


@click.command()
@click.option("-o", "--outdir", default="demo_output", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite OUTDIR.")
@click.option("-q", "--quiet", is_flag=True)
def demo(outdir: str, force: bool, quiet: bool) -> None:
    """Factorize the bundled Cu/ZnO EELS map (k = 3) and write figures and a report."""
    with output_folder(outdir, force=force, resume=False) as where:
        staged, summary = run_demo(where.stage)
    files = {key: os.path.join(where.dir, os.path.basename(p)) for key, p in staged.items()}
    if not quiet:
        click.echo(summary)
        for key, path in files.items():
            click.echo(f"  {key:<11} {os.path.abspath(path)}")
