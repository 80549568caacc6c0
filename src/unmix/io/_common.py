"""Helpers shared by the readers: errors, guards, memory budget, checksums, axes.

Every reader failure is a ``ValueError`` (or ``OSError``) whose message names the file and
what to do: :class:`CorruptFileError` (damaged, truncated, not the format it claims),
:class:`UnsupportedFormatError`, :class:`TooLargeError` (more data than memory holds),
:class:`UnsafeFileError` (data outside the file's folder) and :class:`ReaderCrashError`
(a third-party reader died in its child process). :func:`guarded` turns any other
exception a damaged file provokes (``struct.error``, ``IndexError``, ``KeyError``,
``UnicodeDecodeError``, ``MemoryError`` ...) into one of these.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import math
import os
import stat
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..spectral_image import Axis, SpectralImage

__all__ = [
    "CorruptFileError",
    "ReaderCrashError",
    "TooLargeError",
    "UnsafeFileError",
    "UnsupportedFormatError",
    "axes_from_json",
    "axes_to_json",
    "check_allocation",
    "check_file",
    "check_numeric",
    "guarded",
    "image_from_array",
    "memory_budget",
    "nbytes_of",
    "plain",
    "sha256_of",
    "sniff",
]

_logger = logging.getLogger(__name__)


class UnsupportedFormatError(ValueError):
    """The file's extension (or layout) is not one :func:`unmix.io.load` reads."""


class CorruptFileError(ValueError):
    """The file exists but cannot be decoded (truncated, not the format it claims)."""


class TooLargeError(ValueError):
    """The file declares more data than the memory budget (or than the file can hold)."""


class UnsafeFileError(ValueError):
    """The file stores or links data outside its own folder (``allow_external=True``)."""


class ReaderCrashError(CorruptFileError, OSError):
    """A third-party reader crashed (segfault, abort) in the child process it ran in."""


# --------------------------------------------------------------------- memory budget
#: the budget when neither /proc/meminfo nor psutil tells the available memory
FALLBACK_MEMORY = 8 << 30
#: the share of the available memory one read may take
MEMORY_SHARE = 0.8
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> int | None:
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as f:
            used = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0, int(limit) - used)


def _rlimit_available() -> int | None:
    """Address space left under the process's own limit (``ulimit -v``, ``prlimit --as``)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/status", encoding="ascii") as f:
            used = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (ImportError, OSError, ValueError, StopIteration):
        return None
    return max(0, int(soft) - used)


def available_memory() -> int:
    """Bytes of memory available now (``/proc/meminfo``, cgroup limit, address-space
    limit, psutil, or 8 GiB)."""
    found = [
        v
        for v in (_meminfo_available(), _cgroup_available(), _rlimit_available())
        if v is not None
    ]
    if not found:
        try:
            import psutil

            found = [int(psutil.virtual_memory().available)]
        except (ImportError, AttributeError, OSError):
            found = [FALLBACK_MEMORY]
    return min(found)


def memory_budget() -> int:
    """Bytes one read may allocate: ``$UNMIX_MEMORY_BUDGET`` (e.g. ``"4G"``) or 80 % of
    :func:`available_memory`."""
    text = os.environ.get("UNMIX_MEMORY_BUDGET", "").strip().lower().removesuffix("b")
    if text:
        try:
            return int(float(text[:-1] if text[-1:] in _UNITS else text) * _UNITS[text[-1:]])
        except (ValueError, KeyError):
            _logger.warning("UNMIX_MEMORY_BUDGET=%r is not a size; ignored", text)
    return int(available_memory() * MEMORY_SHARE)


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def nbytes_of(shape: Sequence[int], dtype: Any) -> int:
    """Bytes of an array of ``shape`` and ``dtype`` (Python integers: no overflow)."""
    return math.prod(int(s) for s in shape) * np.dtype(dtype).itemsize


def check_allocation(
    nbytes: int,
    what: str,
    budget: int | None = None,
    hint: str = "free memory, pass lazy=True (HDF5, Zarr, .npy keep the data on disk), "
    "or set UNMIX_MEMORY_BUDGET if more memory is really available",
) -> None:
    """Refuse to allocate ``nbytes`` for ``what`` beyond the memory budget.

    Parameters
    ----------
    nbytes : int
        Bytes the reader is about to allocate (from shapes the file declares).
    what : str
        The file and array, for the message (e.g. ``"x.npy: the array (10, 20) float32"``).
    budget : int, optional
        Bytes allowed; default :func:`memory_budget`.
    hint : str
        What the user can do, appended to the message.

    Raises
    ------
    TooLargeError
        ``nbytes`` is negative or above the budget.
    """
    nbytes = int(nbytes)
    if nbytes < 0:
        raise TooLargeError(f"{what} declares a negative size ({nbytes} bytes): damaged header")
    limit = memory_budget() if budget is None else int(budget)
    if nbytes > limit:
        if budget is not None:
            source = "the budget given"
        elif os.environ.get("UNMIX_MEMORY_BUDGET", "").strip():
            source = "set by UNMIX_MEMORY_BUDGET"
        else:
            source = f"{MEMORY_SHARE:.0%} of the available memory"
        raise TooLargeError(
            f"{what} needs {_size(nbytes)} in memory but the budget is {_size(limit)} "
            f"({source}); {hint}"
        )


def check_numeric(dtype: Any, what: str) -> None:
    """Refuse arrays of Python objects, strings, records or dates."""
    dtype = np.dtype(dtype)
    if dtype.hasobject or dtype.kind in "OSUVMm":
        raise UnsupportedFormatError(
            f"{what} holds {dtype} values, not numbers; a spectrum image must be a numeric "
            "array (convert it with numpy first)"
        )


# --------------------------------------------------------------------- file checks
_MAGIC = (
    (b"\x89HDF\r\n\x1a\n", "an HDF5", ".h5 or .hspy"),
    (b"\x93NUMPY", "a NumPy .npy", ".npy"),
    (b"PK\x03\x04", "a zip (NumPy .npz)", ".npz"),
    (b"PK\x05\x06", "a zip (NumPy .npz)", ".npz"),
    (b"AAMVHFSS", "a Bruker .bcf", ".bcf"),
)


def sniff(path: str) -> tuple[str, str] | None:
    """What the file's first bytes say it is: ``(description, extensions)``, or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(2056)
    except OSError:
        return None
    for magic, kind, ext in _MAGIC:
        if head.startswith(magic) or (kind == "an HDF5" and _hdf5_at_userblock(head, magic)):
            return kind, ext
    text = head[:1024].lstrip()
    if text.startswith(b"<?xml") and b"mzML" in head:
        return "an imzML (XML)", ".imzML"
    if text.startswith(b"Grid dim="):
        return "a Nanonis grid", ".3ds"
    return None


def _hdf5_at_userblock(head: bytes, magic: bytes) -> bool:
    return any(head[o : o + len(magic)] == magic for o in (512, 1024, 2048))


def check_file(path: str) -> None:
    """Refuse what is not a regular non-empty file (a FIFO would hang, a device never end).

    A directory passes (a Zarr store is one).
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise CorruptFileError(f"{path}: cannot stat the file ({exc})") from exc
    if stat.S_ISDIR(st.st_mode):
        return
    if not stat.S_ISREG(st.st_mode):
        raise UnsupportedFormatError(
            f"{path} is not a regular file (a device, pipe or socket); copy the data into "
            "a file first"
        )
    if st.st_size == 0:
        raise CorruptFileError(
            f"{path} is empty (0 bytes): the acquisition or the copy did not complete; "
            "copy it again"
        )


# ------------------------------------------------------------------------- guard
#: exceptions that pass :func:`guarded` unchanged (they are the environment's, not the file's)
_PASS = (ImportError, KeyboardInterrupt, SystemExit, GeneratorExit)
_OURS = (CorruptFileError, UnsupportedFormatError, TooLargeError, UnsafeFileError)


def _rewrap(exc: BaseException, path: str, what: str) -> BaseException | None:
    """The exception to raise instead of ``exc`` (None: re-raise ``exc`` as it is)."""
    if isinstance(exc, _PASS) or isinstance(exc, _OURS):
        return None
    if isinstance(exc, MemoryError):
        return TooLargeError(
            f"{path}: ran out of memory while reading {what} ({exc}); free memory or read "
            "a part of the file (lazy=True where the format allows it)"
        )
    if isinstance(exc, (OSError, ValueError, TypeError)) and path in str(exc):
        return None  # already names the file (the readers' own messages)
    if isinstance(exc, OSError):
        return CorruptFileError(f"{path}: reading the file failed ({type(exc).__name__}: {exc})")
    return CorruptFileError(
        f"{path}: not a readable {what} ({type(exc).__name__}: {exc}); the file is damaged, "
        "truncated, or not the format its extension says"
    )


def guarded(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a reader ``fn(path, ...)``: any surprise becomes a clear error naming path.

    The arguments are bound first, so a wrong keyword stays a ``TypeError`` of the caller.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def reader(path: str, *args: Any, **kw: Any) -> Any:
            sig.bind(path, *args, **kw)
            try:
                return fn(path, *args, **kw)
            except BaseException as exc:
                new = _rewrap(exc, str(path), what)
                if new is None:
                    raise
                raise new from exc

        return reader

    return decorate


def sha256_of(path: str, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, or of a directory (a Zarr store): sorted relative paths + bytes."""
    h = hashlib.sha256()
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                h.update(os.path.relpath(full, path).replace(os.sep, "/").encode())
                _feed(h, full, chunk)
        return h.hexdigest()
    _feed(h, path, chunk)
    return h.hexdigest()


def _feed(h: Any, path: str, chunk: int) -> None:
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)


def read_into_memory(path: str, signal: Any, lazy: bool, kind: str, items: str) -> None:
    """A container whose arrays are named by ``dataset=`` and read whole: refuse
    ``signal=`` and say that ``lazy=True`` is ignored (``kind`` ".npz", ``items`` its
    arrays' word: "members", "variables")."""
    if signal is not None:
        raise ValueError(
            f"{path}: signal= is not used for {kind} files; use dataset= (the name of one "
            f"of its {items})"
        )
    if lazy:
        _logger.info("%s: %s %s are read into memory (lazy=True is ignored)", path, kind, items)


def default_signal_ndim(ndim: int) -> int:
    """2-D and 3-D arrays hold spectra, 4-D and 5-D arrays 2-D patterns (4D-STEM)."""
    return 1 if ndim <= 3 else 2


def image_from_array(
    data: Any,
    path: str,
    *,
    signal_ndim: int | None = None,
    axes: Sequence[Axis] | None = None,
    metadata: dict[str, Any] | None = None,
    file: Any = None,
) -> SpectralImage:
    """A SpectralImage from an array in the package's shape conventions.

    2-D ``(pixels, channels)``, 3-D ``(rows, cols, channels)``, 4-D
    ``(rows, cols, det_y, det_x)``; ``signal_ndim`` overrides the split.
    """
    ndim = len(data.shape)
    if axes is not None:
        spatial = [a for a in axes if a.navigate]
        signal = [a for a in axes if not a.navigate]
        return SpectralImage(data, spatial, signal, metadata, file=file)
    if ndim < 2:
        raise UnsupportedFormatError(
            f"{path}: the array has shape {tuple(data.shape)}; a spectrum image needs at "
            "least 2 dimensions (pixels, channels); reshape a single spectrum to (1, n)"
        )
    sig = default_signal_ndim(ndim) if signal_ndim is None else int(signal_ndim)
    if not 1 <= sig <= 2 or not 1 <= ndim - sig <= 3:
        raise UnsupportedFormatError(
            f"{path}: cannot split an array of shape {tuple(data.shape)} into 1-3 spatial "
            f"and {sig} signal dimensions; pass signal_ndim=1 or 2"
        )
    return SpectralImage(data, metadata=metadata, signal_ndim=sig, file=file)


def axes_to_json(axes: Sequence[Axis]) -> str:
    return json.dumps([a.to_dict() for a in axes])


def axes_from_json(text: Any, shape: tuple[int, ...], path: str) -> list[Axis]:
    """Axes stored by the unmix writers (a JSON list of :meth:`Axis.to_dict`)."""
    if isinstance(text, bytes):
        text = text.decode()
    try:
        items = text if isinstance(text, (list, tuple)) else json.loads(str(text))
        axes = [Axis.from_dict(d) for d in items]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CorruptFileError(f"{path}: unreadable axes description ({exc})") from exc
    if tuple(a.size for a in axes) != tuple(shape):
        raise CorruptFileError(
            f"{path}: the stored axes have sizes {[a.size for a in axes]} but the data has "
            f"shape {tuple(shape)}"
        )
    return axes


def plain(value: Any) -> Any:
    """NumPy scalars and byte strings as plain Python values (metadata stays readable)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype.kind in "SUO" and value.size < 64:
        return [plain(v) for v in value.tolist()]
    return value


def choose(
    names: Sequence[str],
    wanted: str | int | None,
    path: str,
    what: str,
    keyword: str,
    describe: Sequence[str] | None = None,
) -> int:
    """Index of ``wanted`` among ``names`` (by name or index), with a listing on failure."""
    listing = "; ".join(describe or names)
    how = "one of these names" if keyword == "dataset" else "one of these names or an index"
    if isinstance(wanted, int) and not isinstance(wanted, bool):
        if -len(names) <= wanted < len(names):
            return wanted % len(names)
        raise ValueError(f"{path}: {keyword}={wanted} is out of range; it holds {listing}")
    if wanted is not None:
        low = str(wanted).lower()
        hits = [i for i, n in enumerate(names) if n == wanted]
        hits = hits or [i for i, n in enumerate(names) if n.lower() == low]
        hits = hits or [i for i, n in enumerate(names) if low in n.lower()]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise ValueError(
                f"{path}: {keyword}={wanted!r} matches {len(hits)} {what}s; it holds "
                f"{listing}. Pass {keyword}= {how}, spelled out in full"
            )
        raise ValueError(
            f"{path}: no {what} named {wanted!r}; it holds {listing}. Pass {keyword}= {how}"
        )
    raise ValueError(f"{path} holds several {what}s: {listing}. Pass {keyword}= {how}")
