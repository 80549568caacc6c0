"""Where a result file is: :func:`unmix.load_result` takes a file or an output folder."""

from __future__ import annotations

import os

__all__ = ["result_file", "save_path"]


def result_file(path: str) -> str:
    """``path`` itself, or for a folder (an output folder of the command line) its
    ``result.h5`` or its one ``result*.h5``; else an error that says what is there."""
    path = _as_path(path, "load_result takes the path of a result file or output folder")
    if not os.path.exists(path):
        raise FileNotFoundError(f"No result file at {path}.")
    if not os.path.isdir(path):
        return path
    names = sorted(n for n in os.listdir(path) if n.startswith("result") and n.endswith(".h5"))
    if "result.h5" in names:
        return os.path.join(path, "result.h5")
    if len(names) == 1:
        return os.path.join(path, names[0])
    found = ", ".join(names) if names else "no result*.h5 file"
    raise FileNotFoundError(f"{path} is a folder with {found}: give the path of one result file.")


def save_path(path: object) -> str:
    """Where ``Result.save(path)`` writes: ``path``, or ``path/result.h5`` for a folder."""
    path = _as_path(path, "save: path must be a file name or a folder")
    return os.path.join(path, "result.h5") if os.path.isdir(path) else path


def _as_path(path: object, what: str) -> str:
    """``path`` as a str, or a TypeError ``what; got ...`` (a Result: already loaded)."""
    if isinstance(path, (str, os.PathLike)):
        return os.fspath(path)
    loaded = " (already loaded)" if hasattr(path, "S") else ""
    raise TypeError(f"{what}; got {type(path).__name__}{loaded}: {path!r:.60}.")
