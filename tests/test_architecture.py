"""The shape of the house (issue: five wings, no cycles): checked on every run.

Uses the project's shape tool (``../shared/tools/house.py``: import cycles counting
imports written inside functions, long functions, large modules, private names imported
across modules) when it is there; skipped otherwise.
"""

from __future__ import annotations

import ast
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


# ----------------------------------------------------- terms by capability, not by class
EXEMPT = ("cli", "report", "io")  # the user surface may name classes for messages


def _sources():
    for root, _, files in os.walk(SRC):
        rel = os.path.relpath(root, SRC)
        if rel.split(os.sep)[0] in EXEMPT:
            continue
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(root, f)
                with open(path, encoding="utf-8") as fh:
                    yield os.path.relpath(path, SRC), ast.parse(fh.read())


def _term_classes():
    import unmix.model as model

    base = (model.Term, model.Constraint, model.Penalty, model.Filter)
    return {
        name
        for name in model.__all__
        if isinstance(getattr(model, name), type)
        and issubclass(getattr(model, name), model.Term)
        and getattr(model, name) not in base
    }


def _private_term_attributes():
    """The private attributes the built-in terms keep (set in unmix/model)."""
    names = set()
    for rel, tree in _sources():
        if not rel.startswith("model"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "__setattr__":
                arg = node.args[1] if len(node.args) > 1 else None
                if isinstance(arg, ast.Constant) and str(arg.value).startswith("_"):
                    names.add(arg.value)
    return names - {"_ctx"}


#: the kinds terms used to declare (and solvers compared) before capabilities
TERM_KINDS = {"nonneg", "simplex", "box", "fixed", "unitnorm", "orthogonal", "penalty", "filter"}


def _str(node):
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _is_name_of_type(node):
    return isinstance(node, ast.Attribute) and node.attr == "__name__"


def test_no_solver_or_set_up_asks_what_a_term_is():
    classes = _term_classes()
    private = _private_term_attributes()
    assert {"_fixed", "_values", "_lo", "_hi"} <= private
    found = []
    for rel, tree in _sources():
        in_model = rel.startswith("model")
        for node in ast.walk(tree):
            where = f"{rel}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                if any(_is_name_of_type(s) for s in sides):
                    found.append(f"{where} compares a __name__")
                kind = any(isinstance(s, ast.Attribute) and s.attr == "kind" for s in sides)
                if kind and TERM_KINDS & {c.value for c in ast.walk(node) if _str(c)}:
                    found.append(f"{where} compares a term's kind")
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance":
                types = node.args[1]
                elts = types.elts if isinstance(types, ast.Tuple) else [types]
                named = {getattr(e, "id", getattr(e, "attr", "")) for e in elts}
                if named & classes:
                    found.append(f"{where} isinstance of {sorted(named & classes)}")
            if isinstance(node, ast.Attribute) and node.attr in ("kinds", "kinds_A", "kinds_S"):
                found.append(f"{where} uses {node.attr}")
            if (
                not in_model
                and isinstance(node, ast.Attribute)
                and node.attr in private
                and not (isinstance(node.value, ast.Name) and node.value.id == "self")
            ):
                found.append(f"{where} reads a term's {node.attr}")
    assert found == []


def test_terms_have_no_kind_attribute():
    import unmix.model as model

    for name in _term_classes():
        assert not hasattr(getattr(model, name), "kind"), name
