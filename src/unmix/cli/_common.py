"""What the commands share: the error type, the output folder, loading, fitting, config.

Exit codes: 0 success, 1 the fit failed, 2 usage error, 3 unreadable input, 4 output
directory exists (use ``--force`` or ``--resume``), 130 interrupted (a checkpoint was
saved; continue with ``--resume``).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

import click
import numpy as np

from .._params import Instance, Interval, Options, Param
from ..blocks import Weights
from ..engine import PARAMETERS, check_factorize_params, default_max_iter, factorize
from ..preprocessing import OPS
from ._config import load_config, tomllib, validate_config
from ._errors import EXIT_EXISTS, EXIT_FIT, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_USAGE, Fail
from ._load import STREAM_OPTIONS
from ._terms import FIT_TERM_OPTIONS

__all__ = [
    "CHECKPOINT",
    "EXIT_EXISTS",
    "EXIT_FIT",
    "EXIT_INPUT",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "FIT_OPTIONS",
    "IMAGE_OPTIONS",
    "INPUT_OPTIONS",
    "MAX_MEMORY",
    "TABLE_FLAGS",
    "Fail",
    "attach_context",
    "catch_interrupts",
    "check_flags",
    "check_interrupt",
    "command_config",
    "dense_only",
    "fit_command",
    "fit_keys",
    "fit_with_progress",
    "image_input",
    "inline_table",
    "input_flags",
    "merge_config",
    "parse_shape",
    "progress_bar",
    "table_option",
    "with_options",
    "write_html_report",
]

CHECKPOINT = "checkpoint.h5"


# ----------------------------------------------------------------- helpers
class _Interrupt:
    """Ctrl-C seen by the CLI's handler (see :func:`catch_interrupts`)."""

    seen = False


def _on_sigint(signum: int, frame: Any) -> None:
    _Interrupt.seen = True
    raise KeyboardInterrupt


def catch_interrupts() -> Any:
    """Install the CLI's SIGINT handler (main thread only); return the previous one.

    It remembers the Ctrl-C as well as raising ``KeyboardInterrupt``: Python drops an
    exception raised while a weakref callback runs, so the fit's callback raises it again
    at the end of the iteration (:func:`check_interrupt`).
    """
    _Interrupt.seen = False
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, _on_sigint)


def check_interrupt() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C was seen (one that may have been dropped)."""
    if _Interrupt.seen:
        raise KeyboardInterrupt


def progress_bar(max_iter: int, quiet: bool):
    """A click progress bar fed by factorize's callback (or a no-op when quiet)."""
    if quiet:
        return None, (lambda info: check_interrupt())
    bar = click.progressbar(
        length=max_iter,
        label="fitting",
        show_eta=True,
        show_pos=True,
        item_show_func=lambda x: x,
        file=sys.stderr,
    )

    def callback(info: Any) -> None:
        check_interrupt()
        bar.update(
            1, f"objective {info.objective:.6g}" + (" (compressed)" if info.phase == 1 else "")
        )

    return bar, callback


def fit_with_progress(
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
    regs = opts.get("regularizers") or ()
    length = opts.get("max_iter") or default_max_iter(regs, solver=opts.get("solver"))
    bar, callback = progress_bar(int(length), quiet)
    try:
        if bar is None:
            return factorize(X, k, callback=callback, **opts, **kw)
        with bar:
            bar.label = label
            return factorize(X, k, callback=callback, **opts, **kw)
    except KeyboardInterrupt:
        raise Fail(
            "interrupted; a checkpoint was saved: rerun with --resume to continue.",
            EXIT_INTERRUPTED,
        ) from None
    except (ValueError, TypeError) as err:  # the data or the options do not fit
        raise Fail(str(err), EXIT_USAGE) from err


def dense_only(image: Any, command: str) -> None:
    """Refuse a sparse image for a command that needs dense data, naming what works."""
    if image.is_sparse:
        raise Fail(
            f"unmix {command} needs dense data and {image.title or 'this file'} is held "
            "sparse; unmix run fits it on its nonzeros (convert the file to a dense array "
            f"for {command}).",
            EXIT_USAGE,
        )


def attach_context(result: Any, image: Any) -> None:
    from ..hierarchy import attach_phases  # 2-D patterns: phases saved with the result

    ctx = image.provenance()
    ctx["preprocess"] = image.metadata.get("preprocessing", [])
    result.context = ctx
    attach_phases(result)


def parse_shape(text: str) -> list[int]:
    """``--shape ROWSxCOLS`` as a list of ints (a usage error otherwise)."""
    try:
        return [int(v) for v in text.lower().split("x")]
    except ValueError:
        raise click.UsageError(f"--shape {text!r}: use ROWSxCOLS, e.g. 11x13.") from None


def inline_table(text: str) -> dict:
    try:
        value = tomllib.loads(f"step = {text}")["step"]
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"--step {text!r} is not a TOML inline table ({err}).") from err
    if not isinstance(value, dict):
        raise ValueError(f'--step {text!r}: expected a table like {{op="crop", ...}}.')
    return value


def key_value_pairs(pairs: Sequence[str], flag: str) -> dict | None:
    """A repeatable ``flag KEY=VALUE`` (a table row that takes a dict) as a dict; each
    VALUE is read as a TOML value (``50``, ``1e-3``, ``true``, ``"blas"``), else kept as
    text."""
    out: dict = {}
    for text in pairs or ():
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.UsageError(f"{flag} {text!r}: use KEY=VALUE, e.g. {flag} inner=20.")
        try:
            out[key] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = value.strip()
    return out or None


def merge_config(
    config: str | None,
    file: str | None,
    cli: dict,
    outdir: str | None,
    extra_steps: Sequence[str] = (),
    spatial_shape: str | None = None,
) -> dict:
    """Config file values, overridden by command-line flags that were given."""
    try:
        check_flags(cli)
        return _merge_checked(config, file, cli, outdir, extra_steps, spatial_shape)
    except (ValueError, TypeError) as err:
        raise click.UsageError(str(err)) from err


def check_flags(cli: dict) -> None:
    """Check the given table flags against the parameter table (the flag in the message)."""
    for name, value in cli.items():
        if value is not None:
            check_factorize_params({name: value}, where=f"{PARAMETERS[name].cli} {value}")


def _merge_checked(config, file, cli, outdir, extra_steps, spatial_shape) -> dict:
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
        if isinstance(value, dict):  # KEY=VALUE flags add to the config file's table
            fac[key] = {**(fac.get(key) or {}), **value}
        elif value is not None:
            fac[key] = value
    if outdir:
        cfg.setdefault("output", {})["dir"] = outdir
    if extra_steps:
        steps = cfg.setdefault("preprocess", {}).setdefault("steps", [])
        steps.extend(inline_table(s) for s in extra_steps)
    if spatial_shape:
        cfg.setdefault("input", {})["spatial_shape"] = parse_shape(spatial_shape)
    cfg.setdefault("output", {}).setdefault("dir", "unmix_output")
    if "k" not in fac:
        raise click.UsageError(
            "the number of components is required: -k N (or k in config); "
            "`unmix select FILE` recommends one from the data."
        )
    return validate_config(cfg)


def write_html_report(outdir: str, results: dict, X: Any, image: Any, title: str) -> str | None:
    try:
        from ..report import write_report
    except ImportError:  # pragma: no cover - report module missing
        return None
    from ..hierarchy import attach_phases  # 2-D patterns: components grouped into phases

    for result in results.values():
        if "phases" not in (result.context or {}):
            attach_phases(result)
    return os.fspath(write_report(outdir, results, X=X, image=image, title=title))


class TableValue(click.ParamType):
    """A command-line value for a row of the parameter table: a number where the row
    takes numbers (``--loss 1.5`` is a beta), else the text; the table then checks it."""

    name = "value"

    def __init__(self, row: Param) -> None:
        self.kinds = [r.kind for r in row.rules if isinstance(r, Interval)]
        words = ["NAME"] if any(isinstance(r, Options) for r in row.rules) else []
        if self.kinds:
            words.append("INT" if self.kinds == [int] else "NUMBER")
        self.name = "|".join(words) or "VALUE"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, str):
            return value
        for kind in (int, float):
            if kind in self.kinds or (kind is int and float in self.kinds):
                try:
                    return kind(value)
                except ValueError:
                    continue
        return value


def table_option(name: str) -> Any:
    """The click option of row ``name`` of :data:`unmix.engine.PARAMETERS`."""
    row = PARAMETERS[name]
    choices = [r for r in row.rules if isinstance(r, Options)]
    text = row.doc[0].upper() + row.doc[1:]
    if any(isinstance(r, Instance) and dict in r.types for r in row.rules):
        return click.option(
            row.cli,
            name,
            multiple=True,
            metavar="KEY=VALUE",
            callback=lambda ctx, param, pairs: key_value_pairs(pairs, row.cli),
            help=f"{text}, e.g. inner=20 for admm, extrapolate=false (on by default with "
            f"--sum-to-one, --laplacian, --graph-smooth, --tv) (repeatable; added to the "
            f"config's [factorize] {name}).",
        )
    if choices:
        text += f": {', '.join(sorted(choices[0].values))}"
    default = row.shown_default()
    if default is not None:
        text += f" (default {default})"
    return click.option(row.cli, name, type=TableValue(row), help=text + ".")


def _set_budget(ctx: Any, param: Any, value: str | None) -> None:
    """``--max-memory SIZE``: the readers' memory budget (``UNMIX_MEMORY_BUDGET``) for this
    command (:func:`unmix.cli.entry` restores it afterwards)."""
    if value is None:
        return
    text = value.strip().upper().removesuffix("B")
    number = text[:-1] if text[-1:] in "KMGT" else text
    try:
        ok = float(number) > 0
    except ValueError:
        ok = False
    if not ok:
        raise click.BadParameter(f"{value!r}: give a size such as 512M, 4G or 1.5T.")
    os.environ["UNMIX_MEMORY_BUDGET"] = text


#: ``unmix --max-memory SIZE CMD`` or ``unmix CMD --max-memory SIZE``
MAX_MEMORY = click.option(
    "--max-memory",
    metavar="SIZE",
    callback=_set_budget,
    expose_value=False,
    help="Memory one file read may take, e.g. 4G (default: 80% of the available memory; "
    "same as UNMIX_MEMORY_BUDGET). HDF5 / Zarr / hspy / .npy files larger than half of it "
    "are streamed block by block; other formats are refused with advice.",
)

#: how every command that reads a file picks what to read (the [input] table's keys)
INPUT_OPTIONS = [
    MAX_MEMORY,
    *STREAM_OPTIONS,
    click.option("--dataset", help="HDF5 dataset path (files with several)."),
    click.option("--signal", help="Which signal of a multi-signal file: its name or index."),
    click.option(
        "--allow-external",
        is_flag=True,
        help="Let an HDF5 file read data stored outside its folder (external storage, "
        "virtual datasets, external links).",
    ),
    click.option(
        "--mz-bins",
        type=click.IntRange(min=1),
        help="imzML: bin the m/z axis into this many bins (needed for processed files).",
    ),
    click.option(
        "--signal-ndim",
        type=click.IntRange(1, 2),
        help="NumPy/HDF5/Zarr arrays: how many trailing axes are the signal (1: spectra, "
        "e.g. a (x, y, z, m/z) depth profile; 2: patterns, e.g. 4D-STEM).",
    ),
    click.option(
        "--channel-pattern",
        help="A folder or glob of 2-D images: the channel value in the file names, e.g. "
        "'q_{value}nm.tif' or a regex with one group (default: the numbers in the names).",
    ),
]
#: the [input] table's keys that have a flag
_INPUT_KEYS = ("dataset", "signal", "allow_external", "mz_bins", "signal_ndim", "channel_pattern")


def image_input(file: str, kw: dict[str, Any]) -> tuple[list[dict], dict[str, Any]]:
    """The preprocessing steps (``--step``) and the input section (FILE, ``--shape``, ...)
    of a command that takes them as flags (``tree``, ``target``)."""
    try:
        steps = [inline_table(s) for s in kw["steps"]]
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    inp: dict[str, Any] = input_flags({"file": file}, kw)
    if kw["spatial_shape"]:
        inp["spatial_shape"] = parse_shape(kw["spatial_shape"])
    return steps, inp


def input_flags(inp: dict, kw: dict) -> dict:
    """``inp`` (an [input] table) with the given input options of ``kw`` set."""
    inp.update({key: kw[key] for key in _INPUT_KEYS if kw.get(key)})
    return inp


#: how a command reads FILE: ``--step`` (read by :func:`image_input`), ``--shape`` and the
#: input options
IMAGE_OPTIONS = [
    click.option(
        "--step",
        "steps",
        multiple=True,
        help="Preprocessing op as a TOML inline table, e.g. "
        "'{op=\"crop\", signal=[0.2, 12]}' (repeatable; after the config's). Ops: "
        + ", ".join(sorted(OPS))
        + ".",
    ),
    click.option("--shape", "spatial_shape", help="Scan shape for 1-D scans, e.g. 11x13."),
    *INPUT_OPTIONS,
]

#: the fit's parameters that have a flag, in the table's order
TABLE_FLAGS = [name for name, row in PARAMETERS.items() if row.cli]

FIT_OPTIONS = [
    *(table_option(name) for name in TABLE_FLAGS),
    *FIT_TERM_OPTIONS,
    *IMAGE_OPTIONS,
    click.option(
        "--mask-nonfinite",
        is_flag=True,
        help="Fit around NaN / Inf entries (e.g. a grid stopped early) instead of refusing.",
    ),
    click.option("--config", type=click.Path(exists=True, dir_okay=False), help="TOML file."),
    click.option("-o", "--outdir", help="Output directory (default unmix_output)."),
    click.option("--force", is_flag=True, help="Overwrite a non-empty output directory."),
    click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary."),
]


def with_options(options):
    def deco(f):
        for opt in reversed(options):
            f = opt(f)
        return f

    return deco


def fit_command(f: Any) -> Any:
    """A command that fits FILE: ``FILE`` and the fit's options (:data:`FIT_OPTIONS`)."""
    return click.command()(click.argument("file", required=False)(with_options(FIT_OPTIONS)(f)))


def command_config(file: str | None, kw: dict) -> dict:
    """The merged, checked config of a fitting command's FILE and options."""
    cfg = merge_config(
        kw["config"], file, fit_keys(kw), kw["outdir"], kw["steps"], kw["spatial_shape"]
    )
    input_flags(cfg["input"], kw)
    return cfg


def fit_keys(kw: dict) -> dict:
    """The table's flags among a command's keyword arguments (None where not given)."""
    return {key: kw.get(key) for key in TABLE_FLAGS}
