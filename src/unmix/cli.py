"""The ``unmix`` command line: run, compare, inspect, demo.

Exit codes: 0 success, 1 the fit failed, 2 usage error, 3 unreadable input, 4 output
directory exists (use ``--force`` or ``--resume``), 130 interrupted (a checkpoint was
saved; continue with ``--resume``).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import click
import numpy as np

from . import __version__
from ._backend import to_numpy
from ._mpi_cli import mpi_executor
from .streaming import mean_row_norm

__all__ = ["main"]

EXIT_FIT, EXIT_INPUT, EXIT_EXISTS, EXIT_INTERRUPTED = 1, 3, 4, 130
CHECKPOINT = "checkpoint.h5"


class _Fail(click.ClickException):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


# ----------------------------------------------------------------- helpers
def _outdir(path: str, *, force: bool, resume: bool) -> str:
    if os.path.isdir(path) and os.listdir(path) and not (force or resume):
        raise _Fail(
            f"{path} exists and is not empty; use --force to overwrite "
            "or --resume to continue an interrupted run.",
            EXIT_EXISTS,
        )
    os.makedirs(path, exist_ok=True)
    return path


def _load_image(cfg: dict, *, lazy: bool = False) -> Any:
    from .io import load

    inp = cfg.get("input", {})
    steps = cfg.get("preprocess", {}).get("steps", [])
    if lazy and (steps or inp.get("spatial_shape")):
        raise _Fail(
            "--out-of-core reads the file as it is: preprocessing steps and --shape need "
            "the data in memory; drop them, or preprocess into a new file first.",
            EXIT_INPUT,
        )
    try:
        image = load(inp["file"], dataset=inp.get("dataset"), signal=inp.get("signal"), lazy=lazy)
    except (OSError, ValueError, KeyError) as err:
        raise _Fail(f"cannot read {inp.get('file')}: {err}", EXIT_INPUT) from err
    if inp.get("spatial_shape"):
        image = image.with_spatial_shape(inp["spatial_shape"])
    if steps:
        from .preprocessing.image import pipeline_from_config

        image = pipeline_from_config(steps).apply(image)
    return image


def _progress(max_iter: int, quiet: bool):
    """A click progress bar fed by factorize's callback (or a no-op when quiet)."""
    if quiet:
        return None, (lambda info: None)
    bar = click.progressbar(
        length=max_iter,
        label="fitting",
        show_eta=True,
        show_pos=True,
        item_show_func=lambda x: x,
        file=sys.stderr,
    )

    def callback(info: Any) -> None:
        bar.update(
            1, f"objective {info.objective:.6g}" + (" (compressed)" if info.phase == 1 else "")
        )

    return bar, callback


def _fit(
    X: Any,
    image: Any,
    opts: dict,
    *,
    outdir: str | None,
    resume: bool,
    quiet: bool,
    label: str = "fitting",
    every: float = 30.0,
    executor: Any = None,
    device: str | None = None,
) -> Any:
    from .core import factorize
    from .executor import Weights

    opts = dict(opts)
    k = opts.pop("k")
    weights = image.metadata.get("pixel_weights")
    kw = {"spatial_shape": image.spatial_shape, "signal_shape": image.signal_shape}
    if executor is not None:
        kw["executor"] = executor
    if device is not None:
        kw["device"] = device
    if weights is not None:
        kw["weights"] = Weights(pixels=np.asarray(weights, dtype=float).reshape(-1))
    if outdir is not None:
        kw.update(
            checkpoint=os.path.join(outdir, CHECKPOINT), checkpoint_every=every, resume=resume
        )
    bar, callback = _progress(int(opts.get("max_iter") or 500), quiet)
    try:
        if bar is None:
            return factorize(X, k, callback=callback, **opts, **kw)
        with bar:
            bar.label = label
            return factorize(X, k, callback=callback, **opts, **kw)
    except KeyboardInterrupt:
        raise _Fail(
            "interrupted; a checkpoint was saved: rerun with --resume to continue.",
            EXIT_INTERRUPTED,
        ) from None
    except (ValueError, TypeError) as err:
        raise _Fail(str(err), EXIT_FIT) from err


def _unfolded(image: Any) -> Any:
    """``X`` (pixels, channels): in memory, or a file-backed / lazy view when out of core."""
    if not image.is_lazy:
        return image.unfold()
    data = image.data
    if getattr(data, "ndim", 0) == 2:  # an h5py / Zarr dataset streamed as it is
        return data
    try:
        return image.unfold(load=False)
    except ImportError as err:
        raise _Fail(f"--out-of-core on {data.ndim}-D data: {err}", EXIT_INPUT) from err


def _attach_context(result: Any, image: Any) -> None:
    ctx = image.provenance()
    ctx["preprocess"] = image.metadata.get("preprocessing", [])
    result.context = ctx


def _inline_table(text: str) -> dict:
    from .config import tomllib

    try:
        value = tomllib.loads(f"step = {text}")["step"]
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"--step {text!r} is not a TOML inline table ({err}).") from err
    if not isinstance(value, dict):
        raise ValueError(f'--step {text!r}: expected a table like {{op="crop", ...}}.')
    return value


def _merge(
    config: str | None,
    file: str | None,
    cli: dict,
    outdir: str | None,
    extra_steps: Sequence[str] = (),
    spatial_shape: str | None = None,
) -> dict:
    """Config file values, overridden by command-line flags that were given."""
    from .config import load_config, validate_config

    try:
        return _merge_checked(
            config, file, cli, outdir, load_config, validate_config, extra_steps, spatial_shape
        )
    except ValueError as err:
        raise click.UsageError(str(err)) from err


def _merge_checked(
    config, file, cli, outdir, load_config, validate_config, extra_steps, spatial_shape
) -> dict:
    cfg = load_config(config) if config else {}
    cfg = {t: dict(v) for t, v in cfg.items()}
    if config:  # relative paths in a config file are relative to the file
        base = os.path.dirname(os.path.abspath(config))
        for table, key in (("input", "file"), ("output", "dir")):
            value = cfg.get(table, {}).get(key)
            if value and not os.path.isabs(value):
                cfg[table][key] = os.path.join(base, value)
    if file:
        cfg.setdefault("input", {})["file"] = file
    if "file" not in cfg.get("input", {}):
        raise click.UsageError("give FILE or an [input] file in --config.")
    fac = cfg.setdefault("factorize", {})
    for key, value in cli.items():
        if value is not None:
            fac[key] = value
    if outdir:
        cfg.setdefault("output", {})["dir"] = outdir
    if extra_steps:
        steps = cfg.setdefault("preprocess", {}).setdefault("steps", [])
        steps.extend(_inline_table(s) for s in extra_steps)
    if spatial_shape:
        try:
            cfg.setdefault("input", {})["spatial_shape"] = [
                int(v) for v in spatial_shape.lower().split("x")
            ]
        except ValueError:
            raise ValueError(f"--shape {spatial_shape!r}: use ROWSxCOLS, e.g. 11x13.") from None
    cfg.setdefault("output", {}).setdefault("dir", "unmix_output")
    if "k" not in fac:
        raise click.UsageError("the number of components is required: -k N (or k in config).")
    return validate_config(cfg)


def _flag_terms(
    fac: dict,
    *,
    sum_to_one: bool,
    sparsity: float | None,
    smooth: float | None,
    laplacian: float | None,
    X: Any,
) -> dict:
    """Turn the convenience flags into constraint/regularizer objects."""
    from .config import factorize_options
    from .constraints import NonNegative, SumToOne, UnitNorm
    from .regularizers import L1, GaussianMapFilter, SpatialSmoothness

    opts = factorize_options(fac)
    cons = list(opts.get("constraints") or [])
    regs = list(opts.get("regularizers") or [])
    if sum_to_one:
        cons = cons or [NonNegative()]
        cons.append(SumToOne())
    if sparsity:
        # scale-free: L1 on the maps relative to a typical pixel norm, with unit-norm spectra
        cons = cons or [NonNegative()]
        if not any(isinstance(c, (UnitNorm, SumToOne)) for c in cons):
            cons.append(UnitNorm())
        scale = mean_row_norm(X)
        regs.append(L1(sparsity * scale))
    if smooth:
        regs.append(GaussianMapFilter(smooth))
    if laplacian:
        regs.append(SpatialSmoothness(laplacian))
    if cons:
        opts["constraints"] = cons
    opts["regularizers"] = regs
    return opts


def _report(outdir: str, results: dict, X: Any, image: Any, title: str) -> str | None:
    try:
        from .report import write_report
    except ImportError:  # pragma: no cover - report module missing
        return None
    return os.fspath(write_report(outdir, results, X=X, image=image, title=title))


# ----------------------------------------------------------------- commands
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="unmix")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """unmix: physically constrained linear unmixing of spectroscopic images."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


_fit_options = [
    click.option("-k", "k", type=int, help="Number of components."),
    click.option("--loss", help="frobenius, kl, itakura-saito or a beta value."),
    click.option("--solver", help="auto, hals, mu, bpp, admm, gradient, svd."),
    click.option("--init", help="nndsvda, nndsvd, nndsvdar, random, spa, vca."),
    click.option("--preset", help="nmf, counts, pca, blind-unmixing."),
    click.option("--max-iter", type=int),
    click.option("--tol", type=float),
    click.option("--seed", "random_state", type=int, help="Random seed (reproducible)."),
    click.option("--restarts", "n_restarts", type=int),
    click.option("--compress", type=int, help="Rank of the compressed first phase."),
    click.option("--sum-to-one", is_flag=True, help="Abundances on the simplex."),
    click.option("--sparsity", type=float, help="L1 on the maps, relative to pixel norms."),
    click.option("--smooth", type=float, help="Gaussian smoothing of maps, sigma in pixels."),
    click.option("--laplacian", type=float, help="Graph-Laplacian smoothness strength."),
    click.option(
        "--step",
        "steps",
        multiple=True,
        help="Preprocessing op as a TOML inline table, e.g. "
        "'{op=\"crop\", signal=[0.2, 12]}' (repeatable; after the config's).",
    ),
    click.option("--shape", "spatial_shape", help="Scan shape for 1-D scans, e.g. 11x13."),
    click.option("--config", type=click.Path(exists=True, dir_okay=False), help="TOML file."),
    click.option("-o", "--outdir", help="Output directory (default unmix_output)."),
    click.option("--force", is_flag=True, help="Overwrite a non-empty output directory."),
    click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary."),
]


def _with(options):
    def deco(f):
        for opt in reversed(options):
            f = opt(f)
        return f

    return deco


def _fit_keys(kw: dict) -> dict:
    keys = (
        "k",
        "loss",
        "solver",
        "init",
        "preset",
        "max_iter",
        "tol",
        "random_state",
        "n_restarts",
        "compress",
    )
    return {key: kw.get(key) for key in keys}


@main.command()
@click.argument("file", required=False)
@_with(_fit_options)
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
    "--out-of-core",
    is_flag=True,
    help="Stream the file block by block instead of loading it (HDF5 / Zarr / hspy); "
    "with --mpi each rank reads only its rows.",
)
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
    cfg = _merge(kw["config"], file, _fit_keys(kw), kw["outdir"], kw["steps"], kw["spatial_shape"])
    out = cfg["output"]
    lead = executor is None or executor.rank == 0
    force, resume = kw["force"] or out.get("force", False), kw["resume"]
    outdir = _outdir(out["dir"], force=force, resume=resume) if lead else out["dir"]
    if executor is not None:
        executor.barrier()
    image = _load_image(cfg, lazy=kw["out_of_core"])
    X = _unfolded(image)
    opts = _flag_terms(
        cfg["factorize"],
        sum_to_one=kw["sum_to_one"],
        sparsity=kw["sparsity"],
        smooth=kw["smooth"],
        laplacian=kw["laplacian"],
        X=X,
    )
    result = _fit(
        X,
        image,
        opts,
        outdir=outdir,
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
            return
    _attach_context(result, image)
    path = result.save(os.path.join(outdir, "result.h5"))
    report = None
    if not kw["no_report"] and out.get("report", True):
        shown = None if image.is_lazy else X  # out of core: no residual figures
        report = _report(outdir, {"NMF": result}, shown, image, f"unmix run: {image.title}")
    image.close()
    if not kw["quiet"]:
        click.echo(
            f"{result.spec['solver']}: {result.n_iter} iterations, stopped by "
            f"{result.stop_reason}, objective {result.objective:.6g}, "
            f"{result.timings['total']:.1f} s"
        )
        click.echo(f"  result  {os.path.abspath(path)}")
        if report:
            click.echo(f"  report  {os.path.abspath(report)}")


@main.command()
@click.argument("file", required=False)
@_with(_fit_options)
def compare(file: str | None, **kw: Any) -> None:
    """PCA vs NMF vs constrained NMF on FILE, side by side in one report."""
    cfg = _merge(kw["config"], file, _fit_keys(kw), kw["outdir"], kw["steps"], kw["spatial_shape"])
    outdir = _outdir(cfg["output"]["dir"], force=kw["force"], resume=False)
    image = _load_image(cfg)
    X = image.unfold()
    fac = cfg["factorize"]
    base = {k: v for k, v in fac.items() if k in ("k", "random_state", "max_iter", "tol")}
    constrained = _flag_terms(
        dict(fac),
        sum_to_one=kw["sum_to_one"],
        sparsity=kw["sparsity"] or 0.05,
        smooth=kw["smooth"] or 1.0,
        laplacian=kw["laplacian"],
        X=X,
    )
    runs = {
        "PCA": dict(base, preset="pca"),
        "NMF": {
            k: v
            for k, v in _flag_terms(
                dict(fac), sum_to_one=False, sparsity=None, smooth=None, laplacian=None, X=X
            ).items()
        },
        "constrained NMF": constrained,
    }
    results = {}
    for name, opts in runs.items():
        results[name] = _fit(
            X, image, opts, outdir=None, resume=False, quiet=kw["quiet"], label=name
        )
        _attach_context(results[name], image)
        results[name].save(os.path.join(outdir, f"result_{name.replace(' ', '_')}.h5"))
    report = _report(outdir, results, X, image, f"unmix compare: {image.title}")
    if not kw["quiet"]:
        for name, r in results.items():
            neg = float(np.mean(np.asarray(r.S) < 0))
            click.echo(
                f"{name:>16}: {r.n_iter} it., objective {r.objective:.6g}, "
                f"negative entries in spectra {100 * neg:.0f}%"
            )
        if report:
            click.echo(f"  report  {os.path.abspath(report)}")


@main.command()
@click.argument("file")
@click.option("--dataset", help="HDF5 dataset path.")
@click.option("--signal", help="Which signal/channel in multi-signal files.")
def inspect(file: str, dataset: str | None, signal: str | None) -> None:
    """Axes, shape, counts and suggested preprocessing of FILE."""
    image = _load_image({"input": {"file": file, "dataset": dataset, "signal": signal}})
    click.echo(repr(image))
    for ax in image.spatial_axes + image.signal_axes:
        v = ax.values
        kind = "spatial" if ax.navigate else "signal"
        click.echo(
            f"  {kind:<7} {ax.name:<16} {ax.size:>6} points  {v[0]:.6g} .. {v[-1]:.6g} "
            f"{ax.units}{'' if ax.is_uniform else ' (non-uniform)'}"
        )
    X = np.asarray(image.unfold(), dtype=float)
    per_pixel = X.sum(axis=1)
    integer = bool(np.all(np.mod(X[: min(len(X), 2000)], 1) == 0))
    click.echo(
        f"  values  min {X.min():.4g}  max {X.max():.4g}  mean {X.mean():.4g}  "
        f"zeros {100 * np.mean(X == 0):.1f}%  {'integer counts' if integer else 'real'}"
    )
    click.echo(f"  per pixel total: mean {per_pixel.mean():.4g}, min {per_pixel.min():.4g}")
    for line in _suggestions(image, X, integer, per_pixel):
        click.echo(f"  suggestion: {line}")


def _suggestions(image: Any, X: np.ndarray, integer: bool, per_pixel: np.ndarray) -> list[str]:
    out = []
    kind = str(image.metadata.get("signal_type", ""))
    if X.min() < 0:
        out.append(
            f'{int(np.sum(X < 0))} negative values: use an offset ({{op="offset"}}), '
            "|I| or dI/dV for NMF, or compare with PCA."
        )
    if integer and per_pixel.mean() < 1000:
        out.append(
            f"low counts ({per_pixel.mean():.0f}/pixel): --loss kl or "
            "PoissonScaling preprocessing."
        )
    elif integer:
        out.append("counts: --loss kl (Poisson) or PoissonScaling before Frobenius NMF.")
    if kind == "EELS":
        out.append('EELS: a power-law background fit before the edges (op="powerlaw").')
    if kind == "Raman" or X.min() > 0.2 * X.mean():
        out.append('a large baseline: asymmetric least squares (op="baseline_als").')
    if len(image.spatial_shape) == 1 and image.n_pixels > 16:
        out.append("a 1-D scan: if it is a raster, set [input] spatial_shape = [rows, cols].")
    return out


@main.command()
@click.option("-o", "--outdir", default="demo_output", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite OUTDIR.")
@click.option("-q", "--quiet", is_flag=True)
def demo(outdir: str, force: bool, quiet: bool) -> None:
    """Factorize the bundled Cu/ZnO EELS map (k = 3) and write figures and a report."""
    from .demo import run_demo

    outdir = _outdir(outdir, force=force, resume=False)
    files, summary = run_demo(outdir)
    if not quiet:
        click.echo(summary)
        for key, path in files.items():
            click.echo(f"  {key:<11} {os.path.abspath(path)}")


def entry(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit code (for tests and ``python -m unmix``)."""
    try:
        main.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except click.exceptions.Abort:
        return EXIT_INTERRUPTED
    except click.exceptions.Exit as err:
        return err.exit_code
    return 0


from .hierarchy.cli import tree  # noqa: E402

main.add_command(tree)

from .selection.cli import select  # noqa: E402

main.add_command(select)
