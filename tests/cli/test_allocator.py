"""The ``unmix`` command keeps the top of glibc's heap (``cli._allocator``): freed
temporaries are not returned to the system every iteration."""

from __future__ import annotations

import os
import platform
import sys

import pytest

from unmix.cli import _allocator, entry


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_the_command_sets_the_pad_unless_the_environment_speaks(monkeypatch):
    for key in [k for k in os.environ if k.startswith("MALLOC_")]:
        monkeypatch.delenv(key)
    assert _allocator.keep_heap_top() is True
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert _allocator.keep_heap_top() is False  # the user's setting wins


def test_only_the_command_line_process_changes_the_allocator(monkeypatch):
    calls = []
    monkeypatch.setattr("unmix.cli.keep_heap_top", lambda: calls.append(1) or True)
    assert entry(["--version"]) == 0  # a caller's process (tests, scripts): untouched
    assert calls == []
    monkeypatch.setattr(sys, "argv", ["unmix", "--version"])
    assert entry() == 0
    assert calls == [1]
