"""Bruker ``.bcf`` files: the container checked first, the parser run in a child process.

RosettaSciIO's Bruker parser (compiled code) crashes the interpreter on some damaged files
(a segmentation fault on a file cut at 90 % or 99 %) and reads a file cut at 25 % as all
zeros. So:

1. :func:`check_sfs` checks the SFS container (AidAim single file system) first: its
   signature, chunk size and tree, and that the file holds all the chunks its header
   declares (a truncated copy is refused with the percentage it holds); the child then
   refuses chunks of the internal files that are blank (a pre-allocated file whose
   writing stopped: all zeros from there on);
2. :func:`read_isolated` runs the plugin's ``file_reader`` in a child Python process; a
   crash there becomes :class:`ReaderCrashError` (an ``OSError`` and a ``ValueError``)
   naming the file, a run past the time limit a :class:`CorruptFileError`. The child writes
   each array to a private temporary ``.npy`` (read back, or memory-mapped when lazy, then
   deleted) and the metadata as JSON: nothing is unpickled;
3. :func:`check_not_blank`: an all-zero spectrum image from such a file is refused.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np

from ._common import (
    CorruptFileError,
    ReaderCrashError,
    TooLargeError,
    check_allocation,
    nbytes_of,
)
from ._numpy import npy_header

__all__ = ["ISOLATED_EXTENSIONS", "ChildError", "check_not_blank", "check_sfs", "read_isolated"]

_logger = logging.getLogger(__name__)

#: extensions whose RosettaSciIO reader runs in a child process (it can crash)
ISOLATED_EXTENSIONS = {"bcf"}
_SFS_MAGIC = b"AAMVHFSS"
_CHUNK_BASE = 0x118  # chunk i starts at 0x118 + i * chunksize
#: seconds the child may take: a base plus one second per this many bytes of file
_TIME_BASE, _BYTES_PER_SECOND = 120.0, 4 << 20

_CHILD = r"""
import importlib, json, os, sys
import numpy as np

def plain(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, bytes):
        return o.decode("utf-8", "replace")
    if hasattr(o, "isoformat"):
        return o.isoformat()
    return repr(o)

def blank_chunks(src):
    # SFS chunks of an internal file whose header and start are all zero: never written
    from rsciio.bruker._api import SFS_reader
    stack, found = [SFS_reader(src).vfs], []
    while stack:
        for name, item in stack.pop().items():
            if isinstance(item, dict):
                stack.append(item)
                continue
            with open(src, "rb") as f:
                for p in item.pointers:
                    f.seek(int(p) - 0x20)
                    found += [name] if not any(f.read(0x60)) else []
    if found:
        raise ValueError(
            f"{len(found)} chunks of its internal file {found[0]!r} are blank (all zero): "
            "the file was not completely written")

api, src, out, kw = sys.argv[1:5]
try:
    if api == "rsciio.bruker":
        blank_chunks(src)
    dicts = importlib.import_module(api).file_reader(src, lazy=False, **json.loads(kw))
    signals = []
    for i, d in enumerate(dicts):
        np.save(os.path.join(out, f"{i}.npy"), np.asarray(d["data"]), allow_pickle=False)
        post = [sorted(getattr(getattr(f, "__code__", None), "co_names", ()))
                for f in d.get("post_process", [])]
        keep = {k: d.get(k) for k in ("axes", "metadata", "original_metadata")}
        signals.append({**keep, "post_names": post})
    with open(os.path.join(out, "signals.json"), "w") as f:
        json.dump(signals, f, default=plain)
except BaseException as exc:
    with open(os.path.join(out, "error.json"), "w") as f:
        json.dump({"type": type(exc).__name__, "message": str(exc)[:2000]}, f)
    sys.exit(3)
"""


class ChildError(Exception):
    """The reader raised an exception in the child process (``"Type: message"``)."""


def check_sfs(path: str) -> None:
    """Refuse a ``.bcf`` whose SFS container is not whole (see the module docstring)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(0x150)
    if len(head) < 0x14C or not head.startswith(_SFS_MAGIC):
        raise CorruptFileError(
            f"{path}: not a Bruker .bcf file (no SFS container signature at its start); "
            "the file is damaged or not the format its extension says"
        )
    _, chunk = struct.unpack_from("<fI", head, 0x124)
    tree, n_items, n_chunks = struct.unpack_from("<III", head, 0x140)
    if not 0x220 <= chunk <= 1 << 26 or not 0 < n_items <= 1 << 20 or tree >= n_chunks:
        raise CorruptFileError(
            f"{path}: damaged Bruker .bcf header (chunk size {chunk}, {n_items} items, tree "
            f"at chunk {tree} of {n_chunks}); export the data again from Esprit"
        )
    need = _CHUNK_BASE + n_chunks * chunk
    if size < need:
        raise CorruptFileError(
            f"{path}: truncated Bruker .bcf: its header declares {n_chunks} chunks of "
            f"{chunk} bytes ({need} bytes) but the file has {size} bytes "
            f"({100 * size / need:.0f} %); the copy or the export stopped early: copy it "
            "again from the acquisition computer"
        )


def read_isolated(
    path: str, api: str, name: str, lazy: bool, kw: dict[str, Any]
) -> list[dict[str, Any]]:
    """The signal dicts of ``api.file_reader(path, **kw)``, parsed in a child process.

    Arrays come back as NumPy arrays (memory-mapped from a deleted temporary file when
    ``lazy`` on POSIX); ``post_process`` functions as ``post_names`` (their names).
    """
    try:
        args = json.dumps(kw)
    except TypeError as exc:
        raise TypeError(f"{path}: keywords for the {name} reader must be JSON values") from exc
    out = tempfile.mkdtemp(prefix="unmix-read-")
    try:
        _run_child(path, api, name, out, args)
        with open(os.path.join(out, "signals.json"), encoding="utf-8") as f:
            signals = json.load(f)
        for i, s in enumerate(signals):
            s["data"] = _load_array(os.path.join(out, f"{i}.npy"), path, lazy)
        return signals
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _run_child(path: str, api: str, name: str, out: str, args: str) -> None:
    limit = _TIME_BASE + os.path.getsize(path) / _BYTES_PER_SECOND
    cmd = [sys.executable, "-c", _CHILD, api, path, out, args]
    _logger.debug("%s: parsing with the %s reader in a child process", path, name)
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=limit, check=False)
    except subprocess.TimeoutExpired as exc:
        raise CorruptFileError(
            f"{path}: the {name} reader did not finish in {limit:.0f} s and was stopped; "
            "the file is probably damaged"
        ) from exc
    if proc.returncode == 0:
        return
    error = os.path.join(out, "error.json")
    if proc.returncode == 3 and os.path.exists(error):
        with open(error, encoding="utf-8") as f:
            err = json.load(f)
        if err["type"] == "MemoryError":
            raise TooLargeError(f"{path}: the {name} reader ran out of memory; free memory")
        raise ChildError(f"{err['type']}: {err['message']}")
    _logger.debug("%s: the child's stderr: %s", path, proc.stderr.decode(errors="replace"))
    raise ReaderCrashError(
        f"{path}: the {name} reader crashed ({_describe(proc.returncode)}); the file is "
        "probably truncated or damaged: copy it again from the acquisition computer, or "
        "export it again"
    )


def _describe(code: int) -> str:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


def _load_array(npy: str, path: str, lazy: bool) -> np.ndarray:
    with open(npy, "rb") as f:
        shape, dtype, _ = npy_header(f, path)
    if lazy and os.name == "posix":  # the mapping outlives the deleted file
        return np.load(npy, mmap_mode="r", allow_pickle=False)
    check_allocation(nbytes_of(shape, dtype), f"{path}: the array {shape} {dtype}")
    return np.load(npy, allow_pickle=False)


def check_not_blank(data: Any, path: str) -> None:
    """Refuse an all-zero spectrum image (what a truncated ``.bcf`` may read as)."""
    if isinstance(data, np.ndarray) and data.size and not np.any(data):
        raise CorruptFileError(
            f"{path}: every value of the spectrum image is zero: the file is truncated or "
            "damaged (a complete acquisition has counts); copy it again"
        )
