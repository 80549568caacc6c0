"""The ``unmix`` command line: run, compare, inspect, demo, tree, select.

One module a command (``_run``, ``_compare``, ``_inspect``, ``_demo``, ``_tree``,
``_select``); what they share is in ``_common`` (errors and exit codes, output folders,
loading, fitting with a progress bar) and ``_config`` (the TOML schema).

Exit codes: 0 success, 1 the fit failed, 2 usage error, 3 unreadable input, 4 output
directory exists (use ``--force`` or ``--resume``), 130 interrupted (a checkpoint was
saved; continue with ``--resume``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import click

from .._version import __version__
from ._common import EXIT_EXISTS, EXIT_FIT, EXIT_INPUT, EXIT_INTERRUPTED
from ._compare import compare
from ._demo import demo
from ._inspect import inspect
from ._run import run
from ._select import select
from ._tree import tree

__all__ = ["EXIT_EXISTS", "EXIT_FIT", "EXIT_INPUT", "EXIT_INTERRUPTED", "entry", "main"]


# ----------------------------------------------------------------- commands
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="unmix")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """unmix: physically constrained linear unmixing of spectroscopic images."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


for _command in (run, compare, inspect, demo, tree, select):
    main.add_command(_command)


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
