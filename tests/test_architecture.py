"""The shape of the house (issue: five wings, no cycles): checked on every run.

Uses the project's shape tool (``../shared/tools/house.py``: import cycles counting
imports written inside functions, long functions, large modules, private names imported
across modules) when it is there; skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "src", "unmix")
TOOL = os.path.join(HERE, "..", "..", "shared", "tools", "house.py")
WINGS = ("model", "blocks", "executors", "engine", "cli", "io", "preprocessing")
WINGS += ("hierarchy", "selection", "report", "datasets")


@pytest.fixture(scope="module")
def house():
    if not os.path.exists(TOOL):
        pytest.skip(f"shape tool {TOOL} not available")
    spec = importlib.util.spec_from_file_location("house", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mods, top, inner, private, long_fns = mod.graph(SRC)
    both = {m: top[m] | inner[m] for m in mods}
    return {
        "mods": mods,
        "cycles": mod.sccs(list(mods), both),
        "private": private,
        "long": long_fns,
    }


def test_no_import_cycles_counting_imports_inside_functions(house):
    assert house["cycles"] == []


def test_no_function_over_100_lines(house):
    assert [(n, f) for n, f in house["long"] if n > 100] == []


def test_no_module_over_600_lines(house):
    big = {}
    for name, path in house["mods"].items():
        with open(path, encoding="utf-8") as f:
            n = sum(1 for _ in f)
        if n > 600:
            big[name] = n
    assert big == {}


def test_at_most_five_private_names_imported_across_modules(house):
    assert len(house["private"]) <= 5, house["private"]


def test_the_wings_are_packages():
    for wing in WINGS:
        assert os.path.exists(os.path.join(SRC, wing, "__init__.py")), wing
