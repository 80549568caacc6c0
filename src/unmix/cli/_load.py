"""Reading FILE for a command: load it, or stream it when it does not fit the memory budget.

Every command that reads a file (``inspect``, ``run``, ``compare``, ``tree``, ``select``)
calls :func:`open_image`.  Without a flag it opens the file lazily first (no data read),
and streams it (reads blocks of whole scan lines, a few tens of MB each) when
:data:`STREAM_FACTOR` times the array's size exceeds the memory budget (``--max-memory``,
``UNMIX_MEMORY_BUDGET``, default 80 % of the available memory); ``--out-of-core`` forces
streaming, ``--in-memory`` forces loading.  The choice and its reason go to stderr.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from typing import Any

import click
import numpy as np

from ..blocks import ScanRows
from ..io import ImageStack, TooLargeError, is_stack, load, memory_budget
from ..preprocessing import LineArray, pipeline_from_config
from ._errors import EXIT_INPUT, EXIT_USAGE, Fail

__all__ = [
    "LAZY_EXTENSIONS",
    "STREAM_FACTOR",
    "STREAM_OPTIONS",
    "SUBSAMPLE_PIXELS",
    "block_bytes",
    "choose_streaming",
    "is_streamed",
    "load_image",
    "open_image",
    "read_progress",
    "stream_mode",
    "subsample_size",
    "unfolded",
]

_logger = logging.getLogger(__name__)

#: the data are streamed when this many times their size exceeds the memory budget (a
#: load holds the array, and a fit or the statistics about as much again in copies)
STREAM_FACTOR = 2
#: formats whose data can stay on disk: HDF5, Zarr, HyperSpy, NumPy memory maps, and the
#: formats RosettaSciIO reads lazily (Digital Micrograph, Velox EMD, Merlin MIB, NanoMegas
#: BLO, MRC, TVIPS: a Dask array over the file)
LAZY_EXTENSIONS = frozenset(
    {"h5", "hdf5", "hdf", "zarr", "npy", "hspy", "zspy"}
    | {"dm3", "dm4", "emd", "mib", "blo", "mrc", "tvips"}
)
#: ``tree`` and ``select`` on a streamed file fit this many pixels at most (drawn with
#: ``numpy.random.default_rng(--seed)``, see :func:`subsample_size`)
SUBSAMPLE_PIXELS = 20_000

#: ``--out-of-core`` / ``--in-memory``: force the choice :func:`open_image` makes
STREAM_OPTIONS = [
    click.option(
        "--out-of-core",
        is_flag=True,
        help="Stream the file block by block (HDF5 / Zarr / hspy / .npy) even when it fits "
        "in memory (default: streamed when it does not fit --max-memory).",
    ),
    click.option(
        "--in-memory",
        is_flag=True,
        help="Load the whole file even when it exceeds the memory budget (no streaming).",
    ),
]


def stream_mode(kw: dict) -> str:
    """``"stream"``, ``"memory"`` or ``"auto"`` from ``--out-of-core`` / ``--in-memory``."""
    if kw.get("out_of_core") and kw.get("in_memory"):
        raise click.UsageError("--out-of-core and --in-memory contradict: give one of them.")
    return "stream" if kw.get("out_of_core") else "memory" if kw.get("in_memory") else "auto"


def choose_streaming(nbytes: int, budget: int, blockers: list[str]) -> tuple[bool, str]:
    """Whether to stream an array of ``nbytes`` under ``budget`` bytes, and why (a phrase).

    Streamed when ``STREAM_FACTOR * nbytes > budget`` and nothing in ``blockers`` (the
    options that need the data in memory) is given.
    """
    size = f"{nbytes / 2**20:.1f} MiB of data, memory budget {budget / 2**20:.1f} MiB"
    if STREAM_FACTOR * nbytes <= budget:
        return False, f"in memory ({size})"
    if blockers:
        return False, f"in memory although large ({size}): {', '.join(blockers)} need it"
    return True, f"streamed block by block ({size}; --in-memory loads it)"


def open_image(cfg: dict, *, mode: str = "auto", quiet: bool = False, blockers=()) -> Any:
    """The image of ``cfg["input"]``, loaded or left on disk as ``mode`` and size say.

    ``blockers`` names the command's options that need the data in memory (with
    ``--shape`` and ``--step`` from ``cfg``); the choice is echoed on stderr unless
    ``quiet``.
    """
    inp = cfg.get("input", {})
    if mode != "auto":
        image = load_image(cfg, lazy=mode == "stream")
        why = "--out-of-core" if mode == "stream" else "--in-memory"
        _tell(f"{'streamed' if is_streamed(image) else 'in memory'} ({why})", quiet)
        return image
    path = str(inp.get("file", ""))
    ext = os.path.splitext(path.rstrip("/\\"))[1].lstrip(".").lower()
    if ext not in LAZY_EXTENSIONS and not is_stack(path):  # folders and globs: read lazily
        return load_image(cfg)  # a format read whole anyway: nothing to choose
    probe = _read(inp, lazy=True, checksum=False)
    nbytes = math.prod(int(n) for n in probe.data.shape) * np.dtype(probe.dtype).itemsize
    lazy = probe.is_lazy or isinstance(probe.data, np.memmap)
    given = list(blockers)
    blocking = _blocking_step(cfg, probe)
    if blocking:
        given.append(f"--step {blocking}")
    if inp.get("spatial_shape"):
        given.append("--shape")
    probe.close()
    stream, why = choose_streaming(nbytes, memory_budget(), given if lazy else ["its format"])
    _tell(why, quiet)
    return load_image(cfg, lazy=stream)


def _blocking_step(cfg: dict, image: Any) -> str | None:
    """The name of the first ``--step`` that needs ``image`` in memory (None when every
    step runs scan line by scan line on the file)."""
    steps = cfg.get("preprocess", {}).get("steps", [])
    if not steps:
        return None
    try:
        op = pipeline_from_config(steps).blocking(image)
    except (ValueError, TypeError):
        return "(invalid)"  # reported where the steps are applied
    return None if op is None else op.op


def _tell(why: str, quiet: bool) -> None:
    _logger.info("reading the file: %s", why)
    if not quiet:
        click.echo(f"data: {why}", err=True)


def load_image(cfg: dict, *, lazy: bool = False, checksum: bool = True) -> Any:
    """The image of ``cfg["input"]`` (lazy: left on disk), with ``--shape`` and ``--step``."""
    inp = cfg.get("input", {})
    steps = cfg.get("preprocess", {}).get("steps", [])
    if lazy and inp.get("spatial_shape"):
        raise Fail(
            "--out-of-core reads the file as it is: --shape needs the data in memory; "
            "drop it, or write the file with its scan shape first.",
            EXIT_INPUT,
        )
    image = _read(inp, lazy=lazy, checksum=checksum)
    blocking = _blocking_step(cfg, image) if lazy and is_streamed(image) else None
    if blocking:
        image.close()
        raise Fail(
            f"--out-of-core: the step {blocking!r} needs the whole image in memory (the "
            "other operations run scan line by scan line on the file); drop it or "
            "--out-of-core, or preprocess into a new file first.",
            EXIT_INPUT,
        )
    return _prepared(image, inp, steps)


def _read(inp: dict, *, lazy: bool, checksum: bool) -> Any:
    """The file of the [input] table ``inp`` as it is (no --shape, no --step)."""
    signal = inp.get("signal")
    if isinstance(signal, str) and signal.strip().isdigit():  # --signal 2: by index
        signal = int(signal)
    keys = ("allow_external", "mz_bins", "signal_ndim", "channel_pattern")
    extra = {key: inp[key] for key in keys if inp.get(key)}
    try:
        image = load(
            inp["file"],
            dataset=inp.get("dataset"),
            signal=signal,
            lazy=lazy,
            checksum=checksum,
            **extra,
        )
    except TooLargeError as err:
        raise Fail(
            f"cannot read {inp.get('file')}: {err}. From the command line: --out-of-core "
            "streams HDF5 / Zarr / .npy files, unmix --max-memory SIZE raises the budget.",
            EXIT_INPUT,
        ) from err
    except (OSError, ValueError, KeyError) as err:
        raise Fail(f"cannot read {inp.get('file')}: {err}", EXIT_INPUT) from err
    return image


def _prepared(image: Any, inp: dict, steps: list) -> Any:
    """``--shape`` and ``--step`` applied; a single 2-D image refused."""
    if inp.get("spatial_shape"):
        image = _regrid(image, list(inp["spatial_shape"]))
    if steps and image.is_sparse:
        raise Fail(
            f"{inp['file']} holds a sparse matrix: --step operations need dense data; "
            "drop them, or preprocess the data yourself (keeping it sparse).",
            EXIT_USAGE,
        )
    if steps:
        image = pipeline_from_config(steps).apply(image)
    if image.n_pixels == 1 and len(image.signal_axes) == 2:
        raise Fail(
            f"{inp['file']} is a single {'x'.join(map(str, image.signal_shape))} image, not "
            "a spectrum image: make spectra from it first, e.g. local FFTs with "
            "--step '{op=\"sliding_window_fft\", window=16, step=4}'.",
            EXIT_USAGE,
        )
    return image


def _regrid(image: Any, shape: list[int]) -> Any:
    """``--shape``: re-grid a 1-D scan (or confirm the file's own scan shape)."""
    own = list(image.spatial_shape)
    text = "x".join(map(str, shape))
    if len(own) > 1 and shape != own:
        raise Fail(
            f"--shape {text}: the file's scan is already {'x'.join(map(str, own))}; "
            "--shape re-grids 1-D scans only (drop it, or give the file's own shape).",
            EXIT_USAGE,
        )
    try:
        return image.with_spatial_shape(shape)
    except ValueError as err:
        raise Fail(f"--shape {text}: {err}.", EXIT_USAGE) from None


def is_streamed(image: Any) -> bool:
    """Whether the image's data stay on disk: h5py / Zarr / Dask, or a ``.npy`` memory map."""
    return bool(image.is_lazy or isinstance(image.data, np.memmap))


def unfolded(image: Any) -> Any:
    """``X`` (pixels, channels): in memory, or read block by block when left on disk.

    A 2-D h5py / Zarr dataset is streamed as it is; a 3-D ``(y, x, E)`` or 4-D
    ``(y, x, ky, kx)`` one through :class:`unmix.blocks.ScanRows` (whole scan lines);
    a Dask array as a 2-D Dask array.
    """
    if not image.is_lazy:
        return image.unfold()
    data = image.data
    if getattr(data, "ndim", 0) == 2:  # an h5py / Zarr dataset streamed as it is
        return data
    if type(data).__module__.split(".")[0] in ("h5py", "zarr") or isinstance(
        data, (ImageStack, LineArray)
    ):
        return ScanRows(data, len(image.spatial_shape))
    try:
        return image.unfold(load=False)
    except ImportError as err:
        raise Fail(f"--out-of-core on {data.ndim}-D data: {err}", EXIT_INPUT) from err


def block_bytes() -> int:
    """Bytes of one block the CLI's own passes read (statistics, subsample, maps): 1/32 of
    the memory budget, between 256 KiB and 32 MiB (rounded to whole scan lines)."""
    return int(min(32 << 20, max(256 << 10, memory_budget() // 32)))


def subsample_size(n_pixels: int, n_channels: int) -> int:
    """Pixels ``tree`` / ``select`` fit on a streamed file: :data:`SUBSAMPLE_PIXELS` at most,
    fewer when eight float64 copies of them would exceed a quarter of the memory budget
    (at least 256, never more than the file holds)."""
    fit = memory_budget() // (4 * 8 * 8 * max(1, n_channels))
    return int(min(n_pixels, SUBSAMPLE_PIXELS, max(256, fit)))


def read_progress(n_rows: int, label: str, quiet: bool) -> Any:
    """A click progress bar over ``n_rows`` pixels read (a no-op context when quiet)."""
    if quiet:
        return _NoBar()
    return click.progressbar(length=n_rows, label=label, show_eta=True, file=sys.stderr)


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def update(self, n: int) -> None:
        return None
