"""The ``unmix`` command's memory allocator setting (glibc only).

The fits allocate and free temporaries of the data's size every iteration (the model
``A S``, ratios, gradients: megabytes to tens of megabytes).  glibc returns the freed top
of its heap to the system as soon as it exceeds the trim threshold, so the next iteration
takes the same pages back one page fault at a time: on this project's 2-core machine
``unmix tree FILE --loss kl --smooth 1`` on the EELS map spent 26 of its 52 s in the
kernel, ``unmix run`` on the Raman map with ``--loss kl --laplacian 0.01`` 2.7 of 5.7 s.
Keeping :data:`TOP_PAD` bytes at the top of the heap (``mallopt(M_TOP_PAD)``, what the
environment variable ``MALLOC_TOP_PAD_`` sets) removes that: 23 s and 3.3 s, the peak
resident memory unchanged (the pad is address space, kept only once used).

Only the command line sets it, in its own process, and only where the user's environment
says nothing about the allocator (any ``MALLOC_*`` variable); a library does not change
its host's allocator.  Python code calling :func:`unmix.factorize` gets the same effect
from ``MALLOC_TOP_PAD_=67108864`` in its environment.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

__all__ = ["TOP_PAD", "keep_heap_top"]

logger = logging.getLogger("unmix")

#: bytes kept at the top of the heap (64 MiB; 16 MiB still left 15 of the tree's 40 s in
#: the kernel)
TOP_PAD = 64 << 20
_M_TOP_PAD = -2  # glibc's malloc.h


def keep_heap_top() -> bool:
    """Ask glibc's allocator to keep :data:`TOP_PAD` bytes at the top of the heap; True
    when it was set (Linux with glibc, no ``MALLOC_*`` variable in the environment)."""
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt  # musl and others have none: AttributeError
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = mallopt(_M_TOP_PAD, TOP_PAD) == 1
    logger.debug("mallopt(M_TOP_PAD, %d): %s", TOP_PAD, "set" if done else "refused")
    return done
