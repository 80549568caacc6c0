"""Atomic file writes: write a temporary file beside the target, then rename it over.

A kill or an error during the write leaves the previous file (or none), never a half
written one; the temporary file is removed on errors.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["atomic_path", "check_write_target"]


def check_write_target(path: str | os.PathLike, what: str = "") -> str:
    """The folder a file ``path`` can be written into; a clear error when ``path`` is a
    folder or its folder does not exist (``what`` names the file in the message)."""
    path = os.fspath(path)
    what = what or f"cannot write {path}"
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what}: it is a folder; give a file name (e.g. inside it).")
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"{what}: its folder {folder} does not exist; create it first (os.makedirs) "
            "or write somewhere else."
        )
    return folder


@contextmanager
def atomic_path(
    path: str | os.PathLike, *, prefix: str = "tmp", suffix: str = ".tmp"
) -> Iterator[str]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path``.

    Examples
    --------
    >>> with atomic_path("result.h5", suffix=".h5.tmp") as tmp:  # doctest: +SKIP
    ...     write_everything(tmp)
    """
    path = os.fspath(path)
    folder = check_write_target(path)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
