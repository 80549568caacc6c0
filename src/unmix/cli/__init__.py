"""The ``unmix`` command line: run, compare, inspect, demo, tree, select, target, watch,
bayes.

One module a command (``_run``, ``_compare``, ``_inspect``, ``_demo``, ``_tree``,
``_select``, ``_target``, ``_watch``, ``_bayes``); what they share is in ``_common``
(errors and exit codes, output folders, loading, fitting with a progress bar) and
``_config`` (the TOML schema).

Exit codes: 0 success, 1 the fit failed, 2 usage error, 3 unreadable input, 4 output
directory exists or is in use (use ``--force`` or ``--resume``, or another ``-o``), 130
interrupted (a checkpoint was saved; continue with ``--resume``).

:func:`entry` is the one error boundary (the ``unmix`` command calls it): every failure
ends as one ``Error: ...`` line on stderr and its exit code; a traceback only with
``unmix --debug ...``.  On the command line a warning is one ``Warning: ...`` line too.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings
from collections.abc import Sequence

import click

from .._backend import DeviceUnavailableError
from .._version import __version__
from ._allocator import keep_heap_top
from ._bayes import bayes
from ._common import (
    EXIT_EXISTS,
    EXIT_FIT,
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    MAX_MEMORY,
    catch_interrupts,
)
from ._compare import compare
from ._demo import demo
from ._inspect import inspect
from ._run import run
from ._select import select
from ._target import target
from ._tree import tree
from ._watch import watch

__all__ = [
    "EXIT_EXISTS",
    "EXIT_FIT",
    "EXIT_INPUT",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "entry",
    "main",
]


# ----------------------------------------------------------------- commands
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="unmix")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@MAX_MEMORY
def main(verbose: int, debug: bool) -> None:
    """unmix: physically constrained linear unmixing of spectroscopic images."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    handler = logging.StreamHandler()
    handler.setFormatter(_LogLines())
    logging.basicConfig(level=level, handlers=[handler])


class _LogLines(logging.Formatter):
    """A library warning logged reads like a warned one (``Warning: ...``); info and
    debug lines (``-v``, ``-vv``) keep their level and logger."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.capitalize()}: {record.getMessage()}"
        return super().format(record)


for _command in (run, compare, inspect, demo, tree, select, target, watch, bayes):
    main.add_command(_command)


def entry(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit code (the ``unmix`` command, ``python -m unmix``
    and the tests); every failure is one ``Error:`` line (a traceback with ``--debug``)."""
    args = list(argv) if argv is not None else sys.argv[1:]
    budget = os.environ.get("UNMIX_MEMORY_BUDGET")  # --max-memory sets it for one command
    if argv is None:  # the command's own process (not a caller's): see cli._allocator
        keep_heap_top()
    previous = catch_interrupts()
    try:
        with warnings.catch_warnings():
            if argv is None and not _debug(args):  # the command line: one line a warning
                warnings.showwarning = _show_warning
            main.main(args=args, prog_name="unmix", standalone_mode=False)
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("Error: interrupted.", err=True)
        return EXIT_INTERRUPTED
    except click.exceptions.Exit as err:
        return err.exit_code
    except Exception as err:  # the boundary: no traceback unless --debug
        if _debug(args):
            raise
        code, text = _classify(err)
        click.echo(f"Error: {text}", err=True)
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if budget is None:
            os.environ.pop("UNMIX_MEMORY_BUDGET", None)
        else:
            os.environ["UNMIX_MEMORY_BUDGET"] = budget
    return 0


def _debug(args: list[str]) -> bool:
    return "--debug" in args[: args.index("--") if "--" in args else len(args)]


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A library warning on the command line: ``Warning: <message>`` on stderr, without
    the library's file and source line (``unmix --debug`` shows them)."""
    click.echo(f"Warning: {message}", err=True)


def _classify(err: BaseException) -> tuple[int, str]:
    """The exit code and message of an exception no command mapped itself."""
    what = f"{err}".strip() or type(err).__name__
    if isinstance(err, MemoryError):
        return EXIT_INPUT, (
            "not enough memory for this input; crop or bin it (--step), stream it "
            "(unmix run --out-of-core), or use a machine with more memory."
        )
    if isinstance(err, DeviceUnavailableError):
        return EXIT_USAGE, what
    if isinstance(err, ImportError):  # an optional dependency the options need
        return EXIT_USAGE, f"missing dependency: {what}"
    if isinstance(err, (OSError, EOFError)):
        return EXIT_INPUT, f"cannot read or write: {what}"
    if isinstance(err, (ValueError, TypeError, KeyError, IndexError)):
        return EXIT_USAGE, f"{what} (rerun with --debug for the traceback)"
    return EXIT_FIT, (
        f"unexpected {type(err).__name__}: {what}. Rerun with --debug for the traceback "
        "and report it."
    )
