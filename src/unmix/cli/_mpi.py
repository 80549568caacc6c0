"""The ``--mpi`` / ``--groups`` options shared by ``unmix run``, ``tree`` and ``select``.

(A module of its own: the command modules import it at import time, before
:mod:`unmix.cli` has finished registering them.)
"""

from __future__ import annotations

from typing import Any

import click

__all__ = ["mpi_executor", "mpi_options"]


def mpi_options(command: str, work: str, shared: str):
    """The ``--mpi`` and ``--groups`` options of a command that runs many fits."""

    def deco(f):
        f = click.option(
            "--groups",
            type=int,
            help=f"With --mpi: groups of ranks sharing the {shared} (default one per rank).",
        )(f)
        return click.option(
            "--mpi",
            is_flag=True,
            help=f"{work} over MPI ranks (mpiexec -n N unmix {command} --mpi ...); rank 0 writes.",
        )(f)

    return deco


def mpi_executor(mpi: bool, groups: int | None = None, *, command: str = "run") -> Any:
    """The MPI executor of ``--mpi`` (None without), or a usage error."""
    if not mpi:
        if groups is not None:
            raise click.UsageError(
                f"--groups needs --mpi (mpiexec -n N unmix {command} --mpi ...)."
            )
        return None
    try:
        from ..executors.mpi import MPIExecutor

        return MPIExecutor()
    except ImportError as err:
        raise click.UsageError(f"--mpi needs mpi4py: pip install 'unmix[mpi]' ({err})") from err
