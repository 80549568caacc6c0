"""``unmix run FILE -k K``: one factorization, its result file, figures and report.

A file larger than half the memory budget is streamed (see :mod:`unmix.cli._load`): the
fit reads it block by block, and so do the report's residual figures.
"""

from __future__ import annotations

import os
from typing import Any

import click

from .._backend import to_numpy
from ._common import (
    attach_context,
    command_config,
    fit_command,
    fit_with_progress,
    write_html_report,
)
from ._load import open_image, stream_mode, unfolded
from ._mpi import mpi_executor
from ._outdir import Output, output_folder
from ._terms import flag_terms

__all__ = ["run"]


@fit_command
@click.option("--resume", is_flag=True, help="Continue an interrupted run in OUTDIR.")
@click.option(
    "--checkpoint-every",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds between checkpoints (0: every iteration).",
)
@click.option("--no-report", is_flag=True, help="Skip the HTML report.")
@click.option(
    "--device",
    help="Compute on this device (cuda, cuda:1, cupy, torch) while the data stay in host "
    "memory, streamed to it block by block.",
)
@click.option(
    "--mpi",
    is_flag=True,
    help="Split the pixels over the MPI ranks (mpiexec -n N unmix run --mpi ...).",
)
def run(file: str | None, **kw: Any) -> None:
    """Factorize FILE and write result.h5, figures and report.html to OUTDIR."""
    if kw["mpi"]:
        _run_mpi(file, kw)
    else:
        _run(file, kw)


def _run_mpi(file: str | None, kw: dict) -> None:
    """``unmix run --mpi``: every rank fits its rows; rank 0 gathers the maps and writes."""
    ex = mpi_executor(True)
    kw = dict(kw, quiet=kw["quiet"] or ex.rank > 0)
    try:
        _run(file, kw, executor=ex)
    except click.ClickException as err:
        if ex.size > 1:  # the other ranks may wait in a collective: stop them all
            err.show()
            ex.comm.Abort(err.exit_code)
        raise


def _run(file: str | None, kw: dict, executor: Any = None) -> None:
    cfg = command_config(file, kw)
    out = cfg["output"]
    lead = executor is None or executor.rank == 0
    force, resume = kw["force"] or out.get("force", False), kw["resume"]
    with output_folder(out["dir"], force=force, resume=resume, lead=lead) as where:
        if executor is not None:
            executor.barrier()
        written = _fit_and_write(cfg, kw, where, executor)
    if written is not None and not kw["quiet"]:
        result, names = written
        click.echo(
            f"{result.spec['solver']}: {result.n_iter} iterations, stopped by "
            f"{result.stop_summary}, objective {result.objective:.6g}, "
            f"{result.timings['total']:.1f} s, seed {result.spec.get('random_state')}"
        )
        if result.other_start:
            click.echo(f"  start   {result.start_summary}")
        for label, name in names.items():
            click.echo(f"  {label:<7} {os.path.abspath(os.path.join(where.dir, name))}")


def _fit_and_write(cfg: dict, kw: dict, where: Output, executor: Any) -> Any:
    """Load, fit (checkpoints in the folder itself) and write the staged files; the
    result and the written names (None on ranks other than 0)."""
    lead = executor is None or executor.rank == 0
    blockers = ["--mask-nonfinite"] if kw["mask_nonfinite"] else []
    image = open_image(cfg, mode=stream_mode(kw), quiet=kw["quiet"] or not lead, blockers=blockers)
    X = unfolded(image)
    opts = flag_terms(cfg["factorize"], kw, X)
    result = fit_with_progress(
        X,
        image,
        opts,
        outdir=where.dir,
        resume=kw["resume"],
        quiet=kw["quiet"],
        every=kw["checkpoint_every"],
        executor=executor,
        device=kw["device"],
    )
    if kw["device"] is not None:  # figures, report and file are written from the host
        result.A, result.S = to_numpy(result.A), to_numpy(result.S)
    if executor is not None:
        result.A, result.rows = executor.gather_rows(result.A), None
        if not lead:
            image.close()
            return None
    attach_context(result, image)
    names = {"result": os.path.basename(result.save(os.path.join(where.stage, "result.h5")))}
    if not kw["no_report"] and cfg["output"].get("report", True):
        # streamed: the residual figures read X block by block (whole scan lines)
        report = write_html_report(
            where.stage, {"NMF": result}, X, image, f"unmix run: {image.title}"
        )
        if report:
            names["report"] = os.path.basename(report)
    image.close()
    return result, names
