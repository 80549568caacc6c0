"""``unmix tree FILE``: a tree of endmembers with maps at every level.

Writes into OUTDIR: ``tree.json`` (the tree as data, with spectra), ``result.h5`` (the
leaf level as an unmix result, with the whole tree in its ``hierarchy`` group), and unless
``--no-report``: ``tree.png`` (every node's endmember and map), ``levels.png``,
``dendrogram.png`` and a self-contained ``tree.html``.  Exit codes as for ``unmix run``.
A sparse file (``.npz``, HDF5 in CSR layout) is grown on as ``unmix run`` fits it: on its
CSR rows, never densified.

Registered in the main group of :mod:`unmix.cli` (``unmix tree``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from ._common import (
    EXIT_USAGE,
    IMAGE_OPTIONS,
    Fail,
    image_input,
    table_option,
    with_options,
)
from ._load import is_streamed, open_image, stream_mode, unfolded
from ._mpi import mpi_executor, mpi_options
from ._outdir import output_folder
from ._subsample import draw_pixels, map_tree
from ._terms import ORTHOGONAL_OPTION, TERM_FLAGS, TERM_OPTIONS, flag_terms, given_flags

if TYPE_CHECKING:
    from ..hierarchy import Tree
    from ..spectral_image import SpectralImage

# unmix.hierarchy (and with it scipy.ndimage and scipy.cluster) is imported on use, so that
# `unmix --help` and the other commands start without it.

__all__ = ["tree"]


@click.command("tree")
@click.argument("file")
@click.option(
    "--leaves",
    "n_leaves",
    type=int,
    default=6,
    show_default=True,
    help="Stop at this many leaves.",
)
@click.option("--min-size", type=int, help="Fewest pixels of a child (default pixels/500).")
@click.option("--min-score", type=float, help="Do not split leaves whose split scores less.")
@click.option("--max-depth", type=int, help="Deepest level (root = 0).")
@click.option(
    "--score",
    type=click.Choice(["gain", "ndcg"]),
    default="gain",
    show_default=True,
    help="Which leaf to split next.",
)
@click.option(
    "--stability",
    is_flag=True,
    help="Per-node rank (2..--max-rank) chosen by component stability.",
)
@click.option("--max-rank", type=int, default=4, show_default=True)
@click.option(
    "--strategy", type=click.Choice(["greedy", "breadth"]), default="greedy", show_default=True
)
@click.option(
    "--refit/--no-refit",
    default=True,
    show_default=True,
    help="Refit every level's endmembers to all pixels (else nested tree maps).",
)
@click.option("--joint", is_flag=True, help="Refine each level's maps and endmembers together.")
@click.option(
    "--max-iter",
    type=click.IntRange(min=1),
    help="Most iterations of each split's fit and each level's refit (default 300; with "
    "--orthogonal 5000: its bound tightens each time a fit converges).",
)
@click.option("--sum-to-one", is_flag=True, help="Abundances on the simplex.")
@click.option(
    "--normalize",
    is_flag=True,
    help="Pixels to unit norm first (split by spectral shape, not brightness).",
)
@click.option(
    "--endmember",
    type=click.Choice(["core", "split"]),
    default="core",
    show_default=True,
    help="Leaf endmember: core of its pixels or the NMF component.",
)
@with_options(IMAGE_OPTIONS)
@click.option("--seed", "random_state", type=int, default=0, show_default=True)
@click.option("-o", "--outdir", default="unmix_tree", show_default=True, help="Output directory.")
@click.option("--force", is_flag=True, help="Overwrite a non-empty output directory.")
@click.option("--no-report", is_flag=True, help="Skip the figures and tree.html.")
@click.option("-q", "--quiet", is_flag=True, help="No summary.")
@mpi_options("tree", "Grow the tree", "splits")
@table_option("loss")
@table_option("solver")
@with_options([ORTHOGONAL_OPTION, *TERM_OPTIONS])
def tree(file: str, **kw: Any) -> None:
    """Grow a tree of endmembers on FILE by rank-2 NMF splits (HierNMF2) and map every level.

    The model flags of unmix run (--loss, --solver, --smooth, --median-filter,
    --orthogonal, ...) make every split a rank-2 fit of that model.
    """
    steps, inp = image_input(file, kw)
    executor = mpi_executor(kw["mpi"], kw["groups"], command="tree")
    lead = executor is None or executor.rank == 0
    with output_folder(kw["outdir"], force=kw["force"], resume=False, lead=lead) as where:
        if executor is not None:
            executor.barrier()
        cfg = {"input": inp, "preprocess": {"steps": steps}}
        image = open_image(cfg, mode=stream_mode(kw), quiet=kw["quiet"] or not lead)
        t, caught = (
            _grow_streamed(image, kw, executor)
            if is_streamed(image)
            else _grow(image, kw, executor, image.unfold(), image.spatial_shape)
        )
        if not lead:
            return
        for w in caught:
            click.echo(f"Warning: {w.message}", err=True)
        h5 = _save(where.stage, t, image)
        page = None if kw["no_report"] else _report(where.stage, t, image, file, kw["steps"])
    if not kw["quiet"]:
        moved = os.path.join(where.dir, os.path.basename(h5))
        _summary(where.dir, t, moved, page and os.path.join(where.dir, os.path.basename(page)))


def _grow_streamed(
    image: SpectralImage, kw: dict[str, Any], executor: Any
) -> tuple[Tree, list[warnings.WarningMessage]]:
    """The tree of a seeded pixel subsample of a streamed file, then every pixel mapped
    (:mod:`unmix.cli._subsample`); the subsample is recorded in the tree's params."""
    X = unfolded(image)
    index, rows = draw_pixels(X, kw["random_state"], quiet=kw["quiet"])
    t, caught = _grow(image, kw, executor, rows, None)
    t.params["subsample"] = {
        "pixels": int(index.size),
        "of": int(X.shape[0]),
        "seed": kw["random_state"],
    }
    if not kw["quiet"]:
        click.echo(
            f"tree grown on {index.size} of {X.shape[0]} pixels (seed {kw['random_state']}); "
            "every pixel mapped",
            err=True,
        )
    map_tree(t, X, spatial_shape=image.spatial_shape, normalize=kw["normalize"], quiet=kw["quiet"])
    return t, caught


def _grow(
    image: SpectralImage,
    kw: dict[str, Any],
    executor: Any,
    X: Any,
    spatial_shape: tuple | None,
) -> tuple[Tree, list[warnings.WarningMessage]]:
    """The tree of ``X`` (pixels, channels: the image's, or a subsample of them without a
    scan grid, ``spatial_shape`` None), and the warnings of its growth (recorded, not
    shown)."""
    from ..hierarchy import hierarchical_nmf

    refit = ("joint" if kw["joint"] else "maps") if kw["refit"] else "none"
    lead = executor is None or executor.rank == 0
    bar = _leaves_bar(kw["n_leaves"] if lead and not kw["quiet"] else None)
    with warnings.catch_warnings(record=True) as caught, bar or contextlib.nullcontext():
        warnings.simplefilter("always")
        try:
            t = hierarchical_nmf(
                X,
                kw["n_leaves"],
                min_size=kw["min_size"],
                min_score=kw["min_score"],
                max_depth=kw["max_depth"],
                score=kw["score"],
                node_rank="stability" if kw["stability"] else 2,
                max_rank=kw["max_rank"],
                strategy=kw["strategy"],
                refit=refit,
                sum_to_one=kw["sum_to_one"],
                normalize=kw["normalize"],
                endmember=kw["endmember"],
                random_state=kw["random_state"],
                max_iter=kw["max_iter"],
                refit_iter=kw["max_iter"],
                spatial_shape=spatial_shape,
                signal_shape=image.signal_shape,
                executor=executor,
                groups=kw["groups"],
                callback=None if bar is None else (lambda n: bar.update(n - bar.pos)),
                **_model(kw, X),
            )
        except (ValueError, TypeError) as err:
            raise Fail(str(err), EXIT_USAGE) from err
    return t, caught


def _leaves_bar(n_leaves: int | None) -> Any:
    """A bar of the leaves grown so far, up to ``n_leaves`` (None - quiet, another MPI
    rank, or no leaf count: no bar)."""
    if n_leaves is None:
        return None
    return click.progressbar(
        length=n_leaves, label="growing", show_eta=True, show_pos=True, file=sys.stderr
    )


def _model(kw: dict[str, Any], X: Any) -> dict[str, Any]:
    """The terms of every split from ``--loss``, ``--solver`` and the term flags, built as
    ``unmix run`` builds its model (:func:`~unmix.cli._terms.flag_terms`; the tree's own
    ``--sum-to-one`` is the levels' simplex, not a term of the splits)."""
    fac = {key: kw[key] for key in ("loss", "solver") if kw.get(key) is not None}
    flags = {key: kw.get(key) for key in TERM_FLAGS if key != "sum_to_one"}
    given = [*fac, *given_flags(flags)]
    if given and kw.get("stability"):
        named = ", ".join("--" + k.replace("_", "-") for k in given)
        raise Fail(
            f"--stability chooses each node's rank from its own perturbed plain NMF fits "
            f"and takes no model flags ({named}): drop --stability, or the model flags.",
            EXIT_USAGE,
        )
    opts = flag_terms(fac, flags, X)
    return {k: opts[k] for k in ("loss", "solver", "constraints", "regularizers") if k in opts}


def _save(outdir: str, t: Tree, image: SpectralImage) -> str:
    """``tree.json`` and ``result.h5`` (the leaf level, the whole tree attached): its path."""
    from ..hierarchy import attach_tree

    t.to_json(os.path.join(outdir, "tree.json"))
    result = t.to_result()
    ctx = image.provenance()
    ctx["preprocess"] = image.metadata.get("preprocessing", [])
    result.context = ctx
    return attach_tree(result.save(os.path.join(outdir, "result.h5")), t)


def _report(outdir: str, t: Tree, image: SpectralImage, file: str, steps: Any) -> str:
    """The figures and ``tree.html`` (spectra on the signal axis of a 1-D signal): its path.

    The viewer reads in-memory or sparse data a few dense rows at a time (a long line
    scan in runs of columns); lazy data is not read for it."""
    from ..hierarchy import write_tree_report

    axis, label = None, "channel"
    if len(image.signal_axes) == 1:
        ax = image.signal_axes[0]
        axis = np.asarray(ax.values, dtype=float)
        label = f"{ax.name} ({ax.units})" if ax.units else ax.name
    return write_tree_report(
        outdir,
        t,
        title=f"unmix tree: {image.title or os.path.basename(file)}",
        axis=axis,
        axis_label=label,
        extra={"input": file, "steps": steps or ""},
        spatial_axes=image.spatial_axes,
        X=None if image.is_lazy else image.unfold(),  # the viewer's pixel spectra
    )


def _summary(outdir: str, t: Tree, h5: str, page: str | None) -> None:
    """The tree as text, how growth ended, and where the files are."""
    click.echo(t.text())
    click.echo(
        f"{t.n_leaves} leaves, depth {t.depth}, stopped: {t.stop_reason}, "
        f"{t.timings['total']:.1f} s"
    )
    click.echo(f"  {'tree':<8} {os.path.abspath(os.path.join(outdir, 'tree.json'))}")
    click.echo(f"  {'result':<8} {os.path.abspath(h5)}")
    if page is not None:
        click.echo(f"  {'report':<8} {os.path.abspath(page)}")
