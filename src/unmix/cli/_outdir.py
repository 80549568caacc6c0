"""The output folder of a command: one run at a time, its files written as one unit.

A command that writes results takes the folder with :func:`output_folder`:

- a **lock** (``.unmix.lock``, holding the owner's pid and host) keeps a second run out of
  a busy folder (exit 4); a lock whose process is gone is stale and is taken over;
- the command writes into a **staging folder** inside it (``.unmix-stage-PID``); only when
  the command succeeds are the staged files moved into place (each by an atomic rename),
  after the files of the previous run (listed in ``.unmix-files``) are removed, so the
  result, the figures and the report in the folder always come from one run;
- **stale temporaries** (staging folders and ``*.tmp`` files of runs that were killed)
  are removed when the folder is taken;
- a folder the command **created** and that is still empty when it fails (bad input, a
  memory budget too small) is removed: a mistake leaves nothing behind.

Checkpoints stay in the folder itself (``--resume`` finds them after a kill).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import click

from ._common import EXIT_EXISTS, Fail

__all__ = ["LOCK", "MANIFEST", "Output", "output_folder"]

logger = logging.getLogger("unmix")

LOCK = ".unmix.lock"
MANIFEST = ".unmix-files"
_STAGE = ".unmix-stage-"
#: names that belong to the folder's machinery, never to a run's results
_KEEP = (LOCK, MANIFEST)


@dataclass(frozen=True)
class Output:
    """Where a command writes: ``stage`` (its files, moved into ``dir`` on success) and
    ``dir`` (the folder itself: checkpoints)."""

    dir: str
    stage: str


@contextlib.contextmanager
def output_folder(path: str, *, force: bool, resume: bool, lead: bool = True) -> Iterator[Output]:
    """Take ``path`` for one command: check, lock, clean, stage; publish on success.

    ``force`` lets a finished folder be overwritten, ``resume`` continues in it; without
    either a non-empty folder is refused (exit 4).  ``lead=False`` (an MPI rank other than
    0): nothing is locked or written, the ranks only learn the paths.
    """
    if not lead:
        yield Output(path, path)
        return
    created = not os.path.exists(path)
    _check_target(path, force=force, resume=resume)
    _lock(path)
    stage = os.path.join(path, f"{_STAGE}{os.getpid()}")
    published = False
    try:
        _clean_stale(path)
        os.makedirs(stage)
        yield Output(path, stage)
        _publish(stage, path)
        published = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        _unlock(path)
        if created and not published:  # a failed command leaves no empty folder behind
            with contextlib.suppress(OSError):  # (one with a checkpoint in it stays)
                os.rmdir(path)


# ------------------------------------------------------------------- checks
def _checkpoints(names: list[str]) -> list[str]:
    """The checkpoints among a folder's entries (``run``: checkpoint.h5, ``select``:
    checkpoint/)."""
    return [n for n in names if n.split(".")[0] == "checkpoint"]


def _check_target(path: str, *, force: bool, resume: bool) -> None:
    if os.path.exists(path) and not os.path.isdir(path):
        raise Fail(f"-o {path}: this is a file, not a folder; choose another -o.", EXIT_EXISTS)
    entries = []
    if os.path.isdir(path):
        entries = [n for n in os.listdir(path) if n not in _KEEP and not n.startswith(_STAGE)]
    if entries and not (force or resume):
        raise Fail(
            f"{path} exists and is not empty; use --force to overwrite "
            "or --resume to continue an interrupted run.",
            EXIT_EXISTS,
        )
    if resume and not _checkpoints(entries):
        if entries and not force:
            held = ", ".join(sorted(entries)[:4]) + (", ..." if len(entries) > 4 else "")
            raise Fail(
                f"--resume: {path} holds no checkpoint to resume from (it holds {held}; "
                "a finished run leaves none). Use --force to overwrite it, or another -o "
                "for a new run.",
                EXIT_EXISTS,
            )
        click.echo(f"Warning: --resume: no checkpoint in {path}; starting a new run.", err=True)
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".unmix-probe-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as err:
        raise Fail(
            f"-o {path}: cannot write there ({err.strerror or err}); choose a folder you "
            "can write to.",
            EXIT_EXISTS,
        ) from None


# --------------------------------------------------------------------- lock
def _lock(path: str) -> None:
    """Create the lock file atomically; take over a stale one (its process is gone)."""
    lock = os.path.join(path, LOCK)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(lock)
            if owner is not None and _alive(owner):
                raise Fail(
                    f"{path} is in use by another unmix run (pid {owner['pid']} on "
                    f"{owner['host']}); wait for it to finish or choose another -o. "
                    f"If no such run exists, delete {lock}.",
                    EXIT_EXISTS,
                ) from None
            logger.warning("Taking over the stale lock %s (%s)", lock, owner)
            with contextlib.suppress(FileNotFoundError):
                os.remove(lock)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname()}, f)
        return
    raise Fail(f"{path}: could not take the lock {lock}; try again.", EXIT_EXISTS)


def _owner(lock: str) -> dict | None:
    try:
        with open(lock) as f:
            owner = json.load(f)
        return owner if isinstance(owner, dict) and isinstance(owner.get("pid"), int) else None
    except (OSError, ValueError):
        return None


def _alive(owner: dict) -> bool:
    """Whether the lock's process still runs (another host's lock counts as alive)."""
    if owner.get("host") != socket.gethostname():
        return True
    pid = owner["pid"]
    if pid == os.getpid():
        return False  # our own leftover (e.g. an earlier command in this process)
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno == errno.EPERM
    return True


def _unlock(path: str) -> None:
    lock = os.path.join(path, LOCK)
    owner = _owner(lock)
    if owner is not None and owner["pid"] == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            os.remove(lock)


# ------------------------------------------------------------ clean, publish
def _clean_stale(path: str) -> None:
    """Remove staging folders and temporary files left by killed runs (we hold the lock)."""
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if name.startswith(_STAGE):
            shutil.rmtree(full, ignore_errors=True)
        elif name.endswith(".tmp") and os.path.isfile(full):
            os.remove(full)
            logger.info("Removed the stale temporary %s", full)


def _publish(stage: str, path: str) -> None:
    """Replace the previous run's files by the staged ones; record them in the manifest."""
    for name in _previous(path):
        full = os.path.join(path, name)
        if os.path.isdir(full):
            shutil.rmtree(full, ignore_errors=True)
        elif os.path.exists(full):
            os.remove(full)
    names = sorted(os.listdir(stage))
    for name in names:
        target = os.path.join(path, name)
        if os.path.isdir(target):
            shutil.rmtree(target)
        os.replace(os.path.join(stage, name), target)
    with open(os.path.join(path, MANIFEST), "w", encoding="utf-8") as f:
        json.dump(names, f)


def _previous(path: str) -> list[str]:
    try:
        with open(os.path.join(path, MANIFEST), encoding="utf-8") as f:
            names = json.load(f)
    except (OSError, ValueError):
        return []
    return [n for n in names if isinstance(n, str) and os.sep not in n and n not in _KEEP]
