"""The CLI's error type and exit codes (shared by every command module).

Exit codes: 0 success, 1 the fit failed, 2 usage error, 3 unreadable input, 4 output
directory exists (use ``--force`` or ``--resume``), 130 interrupted (a checkpoint was
saved; continue with ``--resume``).
"""

from __future__ import annotations

import click

__all__ = ["EXIT_EXISTS", "EXIT_FIT", "EXIT_INPUT", "EXIT_INTERRUPTED", "EXIT_USAGE", "Fail"]

EXIT_FIT, EXIT_USAGE, EXIT_INPUT, EXIT_EXISTS, EXIT_INTERRUPTED = 1, 2, 3, 4, 130


class Fail(click.ClickException):
    """A failure shown as one ``Error:`` line, ending the command with exit code ``code``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code
