"""``unmix watch FOLDER -k K -o OUTDIR``: unmix during acquisition, file by file.

The command polls FOLDER every ``--interval`` seconds for files matching ``--pattern``.
Each file is a block of pixels - one scan line ``(x, channels)`` or a chunk of lines
``(lines, x, channels)`` - read by :func:`unmix.load` (NumPy, HDF5 and every format it
reads).  Files are taken in name order, once each, and only when complete:

- a file whose size or modification time changed since the previous poll is still being
  written and waits for the next poll (so a file is taken at the earliest one interval
  after its last write);
- a writer can instead write ``NAME.part`` and rename it to ``NAME`` when done: names
  ending in ``.part`` are never read.

Each file updates the online fit (:class:`unmix.OnlineNMF`); after each one (or every
``--refresh`` files) ``result.h5`` (maps of the pixels so far, as they were computed
when their file arrived) and ``report.html`` in OUTDIR are rewritten atomically.  The
watch stops after ``--max-files`` files, after ``--timeout`` seconds without a new file,
or on Ctrl-C; then the files are read again for ``--epochs - 1`` more passes and once
more to recompute every pixel's maps against the final endmembers (``--no-refit``: keep
the maps as computed), and the final result and report are written.  Ctrl-C ends with
exit code 130 after saving what was fitted so far.  The scan grid of the maps is
``(lines, x)`` when every file has the same line width ``x``.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import time
from typing import Any

import click
import numpy as np

from .._backend import to_numpy
from ..engine import OnlineNMF
from ..io import load
from ..model import NonNegative, SumToOne
from ..report import write_report
from ._errors import EXIT_INPUT, EXIT_INTERRUPTED, EXIT_USAGE, Fail
from ._numbers import FiniteRange
from ._outdir import output_folder

__all__ = ["watch"]

logger = logging.getLogger("unmix")


class Stream:
    """The files taken so far, their line widths, and the maps computed as they came."""

    def __init__(self, dataset: str | None = None) -> None:
        self.dataset = dataset
        self.files: list[str] = []
        self.lines = 0
        self.width: int | None = None
        self.uniform = True
        self.maps: list[Any] = []
        self.seen: set[str] = set()
        self.sizes: dict[str, tuple[int, float]] = {}

    @property
    def spatial_shape(self) -> tuple[int, int] | None:
        return (self.lines, self.width) if self.uniform and self.width else None

    def ready(self, folder: str, pattern: str) -> list[str]:
        """New complete files (size and mtime unchanged since the last poll), name order."""
        out = []
        try:
            names = sorted(os.listdir(folder))
        except OSError as err:
            raise Fail(f"FOLDER {folder}: cannot list it ({err}).", EXIT_INPUT) from None
        for name in names:
            if name in self.seen or name.endswith(".part") or not fnmatch.fnmatch(name, pattern):
                continue
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
            except OSError:
                continue  # renamed or removed between the listing and now
            stamp = (st.st_size, st.st_mtime)
            if st.st_size > 0 and self.sizes.get(name) == stamp:
                out.append(name)
            else:
                self.sizes[name] = stamp
        return out


def read_block(path: str, dataset: str | None = None) -> tuple[Any, int, int]:
    """``(X (pixels, channels), lines, width)`` of one file of the stream."""
    try:
        image = load(path, dataset=dataset, checksum=False)
    except (OSError, ValueError, TypeError) as err:
        raise Fail(f"{path}: cannot read it ({err}).", EXIT_INPUT) from None
    try:
        shape = tuple(image.spatial_shape)
        X = image.unfold()
    finally:
        image.close()
    if len(shape) == 1:
        return X, 1, int(shape[0])
    if len(shape) == 2:
        return X, int(shape[0]), int(shape[1])
    return X, int(X.shape[0]), 1


def take(state: OnlineNMF, stream: Stream, path: str) -> None:
    """Feed one file to the online fit and record its lines and maps."""
    X, lines, width = read_block(path, stream.dataset)
    try:
        A = state.partial_fit(X)
    except ValueError as err:
        raise Fail(f"{path}: {err}", EXIT_USAGE) from None
    stream.maps.append(to_numpy(A))
    stream.files.append(path)
    stream.lines += lines
    if stream.width is None:
        stream.width = width
    stream.uniform = stream.uniform and width == stream.width
    logger.info("watch: %s (%d pixels), %d files so far", path, X.shape[0], len(stream.files))


def write(state: OnlineNMF, stream: Stream, where: str, A: Any, report: bool) -> None:
    """Write ``result.h5`` (and the report) of the current state into ``where``."""
    A = np.concatenate(stream.maps, axis=0) if A is None else A
    result = state.result(A, spatial_shape=stream.spatial_shape)
    result.context = {
        "source": "unmix watch",
        "files": [os.path.basename(f) for f in stream.files],
    }
    result.save(os.path.join(where, "result.h5"))
    if report:
        extra = {"files": len(stream.files), "pixels": int(A.shape[0])}
        write_report(where, {"online NMF": result}, title="unmix watch", extra=extra)


def finish(state: OnlineNMF, stream: Stream, epochs: int, refit: bool) -> Any:
    """More passes over the files, then every pixel's maps against the final endmembers."""
    for _ in range(epochs - 1):
        for path in stream.files:
            state.partial_fit(read_block(path, stream.dataset)[0])
    if not refit:
        return None
    maps = [state.transform(read_block(p, stream.dataset)[0]) for p in stream.files]
    return np.concatenate([to_numpy(A) for A in maps])


def poll(state: OnlineNMF, stream: Stream, kw: dict, where: str) -> str:
    """Take files until a stop rule holds; return why it stopped."""
    last = time.monotonic()
    since = 0
    while True:
        new = stream.ready(kw["folder"], kw["pattern"])
        for name in new:
            stream.seen.add(name)
            take(state, stream, os.path.join(kw["folder"], name))
            last, since = time.monotonic(), since + 1
            if since >= kw["refresh"]:
                write(state, stream, where, None, not kw["no_report"])
                since = 0
            if kw["max_files"] is not None and len(stream.files) >= kw["max_files"]:
                return "max-files"
        if kw["timeout"] is not None and time.monotonic() - last > kw["timeout"]:
            return "timeout"
        time.sleep(kw["interval"])


@click.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("-k", "k", type=click.IntRange(min=1), required=True, help="Number of components.")
@click.option("-o", "--outdir", default="unmix_output", show_default=True, help="Output folder.")
@click.option("--pattern", default="*.npy", show_default=True, help="Files to take (glob).")
@click.option(
    "--interval",
    type=FiniteRange(0.0),
    default=1.0,
    show_default=True,
    help="Seconds between polls.",
)
@click.option("--max-files", type=click.IntRange(min=1), help="Stop after this many files.")
@click.option(
    "--timeout",
    type=FiniteRange(0.0),
    default=600.0,
    show_default=True,
    help="Stop after this many seconds without a new file.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Passes over the files in all (passes after the first run when it stops).",
)
@click.option(
    "--forget",
    type=FiniteRange(0.0, 1.0, min_open=True),
    default=0.95,
    show_default=True,
    help="Forgetting factor of the online statistics.",
)
@click.option(
    "--refresh",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Rewrite result.h5 and the report every this many files.",
)
@click.option("--no-refit", is_flag=True, help="Keep the maps computed as the files came.")
@click.option("--sum-to-one", is_flag=True, help="Abundances on the simplex.")
@click.option("--dataset", help="HDF5 dataset path (files with several).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the start.")
@click.option("--no-report", is_flag=True, help="Skip the HTML report.")
@click.option("--force", is_flag=True, help="Overwrite a non-empty output directory.")
@click.option("-q", "--quiet", is_flag=True, help="No summary.")
def watch(folder: str, **kw: Any) -> None:
    """Unmix the files appearing in FOLDER as they come (online NMF), into OUTDIR."""
    if not os.path.isdir(folder):
        raise Fail(f"FOLDER {folder}: no such folder; create it or pass another.", EXIT_INPUT)
    kw["folder"] = folder
    constraints = [NonNegative(), SumToOne()] if kw["sum_to_one"] else None
    state = OnlineNMF(
        kw["k"], constraints=constraints, forget=kw["forget"], random_state=kw["seed"]
    )
    stream = Stream(kw["dataset"])
    with output_folder(kw["outdir"], force=kw["force"], resume=False) as where:
        try:
            why = poll(state, stream, kw, where.dir)
        except KeyboardInterrupt:
            if stream.files:
                write(state, stream, where.dir, None, not kw["no_report"])
            raise Fail(
                f"interrupted after {len(stream.files)} files; the result so far is in "
                f"{where.dir}.",
                EXIT_INTERRUPTED,
            ) from None
        if not stream.files:
            raise Fail(f"no file matching {kw['pattern']!r} came in {folder}.", EXIT_INPUT)
        A = finish(state, stream, kw["epochs"], not kw["no_refit"])
        write(state, stream, where.stage, A, not kw["no_report"])
    if not kw["quiet"]:
        click.echo(
            f"online NMF: {len(stream.files)} files, {state.n_seen} pixels fed, stopped by "
            f"{why}; {os.path.abspath(os.path.join(kw['outdir'], 'result.h5'))}"
        )
