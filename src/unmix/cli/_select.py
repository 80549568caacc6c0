"""``unmix select FILE --ks 2:12``: choose k (and optionally the strengths) from the CLI.

Writes into OUTDIR: ``selection.json`` and ``selection.h5`` (every criterion per k),
``selection.html`` with the figures, ``uncertainty.h5`` (bands of the chosen model) and
``selected.toml``, a config that ``unmix run --config selected.toml`` fits directly.
Fits are recorded in ``OUTDIR/checkpoint`` as they finish: after a kill, the same command
with ``--resume`` continues.  A file that does not fit the memory budget is not loaded:
the selection runs on a seeded pixel subsample drawn in one streamed pass (see
:mod:`unmix.cli._subsample`; at most 20 000 pixels, ``--seed``), without the scan grid.
A sparse file (a ``scipy.sparse.save_npz`` archive, an HDF5 CSR group) is selected on
its nonzeros, never made dense (``--lambdas`` needs dense data).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from ._common import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    IMAGE_OPTIONS,
    Fail,
    inline_table,
    input_flags,
    parse_shape,
    with_options,
)
from ._config import load_config
from ._load import is_streamed, open_image, stream_mode, unfolded
from ._mpi import mpi_executor, mpi_options
from ._outdir import output_folder
from ._subsample import draw_pixels

__all__ = ["parse_ks", "select"]


def parse_ks(text: str) -> list[int]:
    """``"2:12"`` (inclusive), ``"2:12:2"`` or ``"3,5,8"`` -> list of ranks."""
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            step = parts[2] if len(parts) == 3 else 1
            if step < 1 or parts[1] < parts[0]:
                raise ValueError
            return list(range(parts[0], parts[1] + 1, step))
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: use FIRST:LAST (inclusive, e.g. 2:12), FIRST:LAST:STEP or a list "
            "like 3,5,8.",
            param_hint="--ks",
        ) from None


def _config_tables(config: str | None, file: str | None, steps: tuple, shape: str | None):
    cfg: dict[str, Any] = {}
    if config:
        cfg = {t: dict(v) for t, v in load_config(config).items()}
        f = cfg.get("input", {}).get("file")
        if f and not os.path.isabs(f):
            cfg["input"]["file"] = os.path.join(os.path.dirname(os.path.abspath(config)), f)
    inp = cfg.setdefault("input", {})
    if file:
        inp["file"] = file
    if "file" not in inp:
        raise click.UsageError("give FILE or an [input] file in --config.")
    if steps:
        cfg.setdefault("preprocess", {}).setdefault("steps", []).extend(
            inline_table(s) for s in steps
        )
    if shape:
        inp["spatial_shape"] = parse_shape(shape)
    return cfg


@click.command()
@click.argument("file", required=False)
@click.option(
    "--ks",
    default=None,
    help="Ranks: FIRST:LAST or 3,5,8 (default 2:11, cut to min(pixels, channels) - 1).",
)
@click.option("--restarts", "n_restarts", type=int, default=10, show_default=True)
@click.option("--cv-repeats", type=int, default=2, show_default=True, help="Held-out fits per k.")
@click.option("--holdout", type=click.Choice(["entries", "blocks"]), default="entries")
@click.option("--criteria", help="Comma-separated subset of the criteria (default: all).")
@click.option("--jobs", "n_jobs", type=int, default=1, show_default=True, help="CPU processes.")
@click.option("--seed", "random_state", type=int, default=0, show_default=True)
@click.option("--max-iter", type=int, default=1000, show_default=True)
@click.option("--lambdas", help="Also search strengths: sparsity, smoothness or both (a,b).")
@click.option("--lambda-method", type=click.Choice(["grid", "random", "bayes"]), default="grid")
@click.option("--lambda-trials", type=int, default=8, show_default=True)
@click.option("--plausibility", type=click.Choice(["sparsity", "smoothness", "negative_lobes"]))
@with_options(IMAGE_OPTIONS)
@click.option("--config", type=click.Path(exists=True, dir_okay=False), help="TOML [input].")
@click.option("-o", "--outdir", default="unmix_selection", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite a non-empty output directory.")
@click.option("--resume", is_flag=True, help="Continue an interrupted selection in OUTDIR.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or table.")
@mpi_options("select", "Run the fits", "fits")
def select(file: str | None, **kw: Any) -> None:
    """Choose the number of components of FILE (and, with --lambdas, the strengths)."""
    ks = None if kw["ks"] is None else parse_ks(kw["ks"])
    cfg = _config_tables(kw["config"], file, kw["steps"], kw["spatial_shape"])
    input_flags(cfg["input"], kw)
    executor = mpi_executor(kw["mpi"], kw["groups"], command="select")
    lead = executor is None or executor.rank == 0
    with output_folder(kw["outdir"], force=kw["force"], resume=kw["resume"], lead=lead) as where:
        if executor is not None:
            executor.barrier()
        parallel = {} if executor is None else {"executor": executor, "groups": kw["groups"]}
        image = open_image(cfg, mode=stream_mode(kw), quiet=kw["quiet"] or not lead)
        _sparse_options(image, kw)
        sel, lam = _choose_guarded(image, ks, where.dir, parallel, kw)
        if not lead:  # every rank holds the selection; rank 0 writes it
            return
        report, toml_path = _write_outputs(
            where.stage, sel, lam, image.title, cfg, kw["random_state"]
        )
    click.echo(f"recommended k = {sel.recommended}")
    if lam is not None:
        click.echo("strengths: " + ", ".join(f"{k} = {v:.4g}" for k, v in lam.best.items()))
    if not kw["quiet"]:
        click.echo(sel.to_markdown())
        moved = os.path.join(where.dir, os.path.basename(toml_path))
        click.echo(f"  config  {os.path.abspath(moved)}  (unmix run --config ...)")
        click.echo(f"  report  {os.path.abspath(os.path.join(where.dir, Path(report).name))}")


def _sparse_options(image: Any, kw: dict[str, Any]) -> None:
    """A sparse file (``.npz``, HDF5 CSR) is selected on its nonzeros; --lambdas is not."""
    if image.is_sparse and kw["lambdas"]:
        raise Fail(
            f"--lambdas needs dense data and {image.title or 'this file'} is held sparse "
            "(the strength search holds out entries with a mask of the data's shape): "
            "drop --lambdas (the rank selection runs on the nonzeros), or convert the "
            "file to a dense array.",
            EXIT_USAGE,
        )


def _choose_guarded(
    image: Any, ks: list[int] | None, outdir: str, parallel: dict[str, Any], kw: dict[str, Any]
) -> tuple[Any, Any]:
    """:func:`_choose` on the image's pixels, its failures mapped to exit codes."""
    criteria = None if not kw["criteria"] else [c.strip() for c in kw["criteria"].split(",")]
    X, shape = None, tuple(image.spatial_shape)
    if not is_streamed(image):
        X = image.unfold()
    else:  # a seeded subsample of the pixels: no scan grid
        index, X = draw_pixels(unfolded(image), kw["random_state"], quiet=kw["quiet"])
        shape = (int(index.size),)
        if not kw["quiet"]:
            click.echo(
                f"selecting on {index.size} of {image.n_pixels} pixels "
                f"(seed {kw['random_state']})",
                err=True,
            )
    try:
        return _choose(X, ks, shape, criteria, outdir, parallel, kw)
    except KeyboardInterrupt:
        raise Fail(
            "interrupted; finished fits are kept: rerun with --resume to continue.",
            EXIT_INTERRUPTED,
        ) from None
    except (ValueError, TypeError, ImportError) as err:
        raise Fail(str(err), EXIT_USAGE) from err


def _choose(
    X: Any,
    ks: list[int] | None,
    shape: tuple[int, ...],
    criteria: list[str] | None,
    outdir: str,
    parallel: dict[str, Any],
    kw: dict[str, Any],
) -> tuple[Any, Any]:
    """The rank selection (fits recorded in ``OUTDIR/checkpoint``) and, with --lambdas,
    the strength search at its recommended rank (else None)."""
    from ..selection import check_lambda_search, select_lambdas, select_rank

    search = {
        "params": [p.strip() for p in (kw["lambdas"] or "").split(",") if p.strip()],
        "method": kw["lambda_method"],
        "n_trials": kw["lambda_trials"],
        "plausibility": kw["plausibility"],
        "spatial_shape": shape,
    }
    if kw["lambdas"]:  # its mistakes found now, not after the rank selection's fits
        check_lambda_search(**search)
    sel = select_rank(
        X,
        ks,
        n_restarts=kw["n_restarts"],
        cv_repeats=kw["cv_repeats"],
        holdout=kw["holdout"],
        criteria=criteria,
        spatial_shape=shape,
        random_state=kw["random_state"],
        n_jobs=kw["n_jobs"],
        max_iter=kw["max_iter"],
        checkpoint=os.path.join(outdir, "checkpoint"),
        resume=kw["resume"],
        progress=not kw["quiet"],
        **parallel,
    )
    if not kw["lambdas"]:
        return sel, None
    lam = select_lambdas(
        X,
        sel.recommended,
        **search,
        random_state=kw["random_state"],
        **({} if kw["lambda_method"] == "bayes" else parallel),
    )
    return sel, lam


def _write_outputs(
    outdir: str, sel: Any, lam: Any, title: str, cfg: dict, random_state: int
) -> tuple[Path, str]:
    """Write the selection (.json, .h5), the uncertainty bands, the HTML report and
    ``selected.toml`` into ``outdir``; the report's and the config's paths."""
    from ..selection import run_config, write_selection_report

    sel.save(os.path.join(outdir, "selection.json"))
    sel.save(os.path.join(outdir, "selection.h5"))
    try:
        sel.uncertainty().save(os.path.join(outdir, "uncertainty.h5"))
    except ValueError:  # fewer than two restarts
        pass
    report = write_selection_report(outdir, sel, lambdas=lam, title=f"unmix select: {title}")
    toml_path = os.path.join(outdir, "selected.toml")
    keys = ("file", "dataset", "signal", "spatial_shape", "allow_external", "mz_bins")
    keys += ("signal_ndim",)
    inp = {key: cfg["input"].get(key) for key in keys}
    inp["file"] = os.path.abspath(inp["file"])
    text = run_config(
        sel.recommended,
        lambdas=lam,
        input_table=inp,
        steps=cfg.get("preprocess", {}).get("steps"),
        random_state=random_state,
        noise=sel.settings.get("noise"),
    )
    with open(toml_path, "w", encoding="utf-8") as f:
        f.write(text)
    return report, toml_path
