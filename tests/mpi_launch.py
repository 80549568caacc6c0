"""Launching test helpers under ``mpiexec`` (shared by the MPI test modules).

``mpiexec`` comes from the MPICH wheel next to the interpreter (``pip install
"unmix[mpi]"``); every run has stdin from /dev/null and one BLAS thread, as in CI.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HELPERS = Path(__file__).parent / "helpers"
MPIEXEC = shutil.which("mpiexec", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
needs_mpiexec = pytest.mark.skipif(
    MPIEXEC is None or importlib.util.find_spec("mpi4py") is None,
    reason="no mpi4py/mpiexec (pip install 'unmix[mpi]')",
)


def mpiexec(n: int, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m mpi4py ARGS`` on ``n`` ranks; the completed process (not checked)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [MPIEXEC, "-n", str(n), sys.executable, "-m", "mpi4py", *args]
    return subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
