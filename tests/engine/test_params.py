"""The parameter table of factorize: one invalid value a row, refused on every surface.

Each row of :data:`unmix.engine.PARAMETERS` offers a value it refuses; the tests here
pass it through ``factorize``, the ``NMF`` estimator, a TOML config and the command line
and expect a clear refusal that names the parameter, and they check that the table, the
signatures, the config schema and the CLI flags name the same parameters.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

import unmix
from unmix._params import Instance
from unmix.cli import entry
from unmix.cli._config import TABLES, validate_config
from unmix.engine import PARAMETERS
from unmix.estimators import NMF

ROWS = sorted(PARAMETERS)
INVALID = {name: row.invalid() for name, row in PARAMETERS.items()}
#: rows that accept any value (checked where the value is used, e.g. against X's shape)
OPEN_ROWS = {"weights", "mask", "executor", "device"}


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(0).random((30, 12))


def test_table_names_every_keyword_of_factorize():
    names = [n for n in inspect.signature(unmix.factorize).parameters if n != "X"]
    assert sorted(names) == ROWS


def test_only_the_open_rows_have_no_invalid_value():
    assert {name for name, value in INVALID.items() if value is None} == OPEN_ROWS


def test_defaults_are_accepted():
    for name, row in PARAMETERS.items():
        if row.default is not None:
            assert row.accepts(row.default), name


def test_estimator_parameters_are_the_table_rows():
    params = set(inspect.signature(NMF).parameters) - {"n_components"}
    assert params == {name for name, row in PARAMETERS.items() if row.estimator}


def test_config_keys_are_the_table_rows():
    assert TABLES["factorize"] == {name for name, row in PARAMETERS.items() if row.toml}


def test_docstrings_document_every_row():
    for name in ROWS:
        assert f"    {name} : " in unmix.factorize.__doc__, name
    for name in inspect.signature(NMF).parameters:
        assert f"    {name} : " in NMF.__doc__, name


@pytest.mark.parametrize("name", [n for n in ROWS if INVALID[n] is not None])
def test_factorize_refuses(X, name):
    kwargs = {"k": 2} if name != "k" else {"k": INVALID["k"]}
    if name != "k":
        kwargs[name] = INVALID[name]
    with pytest.raises((ValueError, TypeError), match=rf"\b{name}="):
        unmix.factorize(X, **kwargs)


@pytest.mark.parametrize(
    "name", [n for n in ROWS if INVALID[n] is not None and PARAMETERS[n].estimator]
)
def test_estimator_refuses(X, name):
    with pytest.raises((ValueError, TypeError), match=rf"\b{name}="):
        NMF(2, **{name: INVALID[name]}).fit(X)


def _toml_value(value):
    return isinstance(value, (int, float, str, list)) and not (
        isinstance(value, float) and math.isnan(value)
    )


@pytest.mark.parametrize(
    "name",
    [n for n in ROWS if PARAMETERS[n].toml and _toml_value(INVALID[n])],
)
def test_config_refuses(name):
    cfg = {"input": {"file": "x.npy"}, "factorize": {"k": 2, name: INVALID[name]}}
    with pytest.raises(ValueError, match=rf"config \[factorize\]: {name}="):
        validate_config(cfg)


def _takes_dict(name: str) -> bool:
    return any(isinstance(r, Instance) and dict in r.types for r in PARAMETERS[name].rules)


@pytest.mark.parametrize(
    "name",
    # a row taking a dict has a repeatable KEY=VALUE flag: tests/cli/test_solver_options.py
    [n for n in ROWS if PARAMETERS[n].cli and not _takes_dict(n)],
)
def test_command_line_refuses(tmp_path, capsys, name):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(1).random((20, 8)))
    row = PARAMETERS[name]
    args = ["run", str(path), "-o", str(tmp_path / "out"), "-q", "--no-report"]
    if name != "k":
        args += ["-k", "2"]
    args += [row.cli, str(INVALID[name])]
    assert entry(args) == 2
    err = capsys.readouterr().err
    assert f"Error: {row.cli} {INVALID[name]}: {name}=" in err
    assert not (tmp_path / "out" / "result.h5").exists()


def test_command_line_takes_a_beta_value(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(1).random((20, 8)) + 0.1)
    out = tmp_path / "out"
    args = ["run", str(path), "-k", "2", "--loss", "1.5", "--max-iter", "3", "-q"]
    assert entry([*args, "--no-report", "-o", str(out)]) == 0
    assert unmix.load_result(out / "result.h5").spec["beta"] == 1.5


@pytest.mark.parametrize("beta", [-1.0, 3.5, 1e30])
def test_beta_outside_its_range_is_refused_on_every_surface(X, tmp_path, capsys, beta):
    with pytest.raises(ValueError, match=r"loss=.* is not allowed; .*>= 0 and <= 3"):
        unmix.factorize(X, 2, loss=beta)
    cfg = {"input": {"file": "x.npy"}, "factorize": {"k": 2, "loss": beta}}
    with pytest.raises(ValueError, match=r"config \[factorize\]: loss=.*>= 0 and <= 3"):
        validate_config(cfg)
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(1).random((20, 8)))
    args = ["run", str(path), "-k", "2", "-o", str(tmp_path / "out"), "-q", "--no-report"]
    assert entry([*args, "--loss", str(beta)]) == 2
    assert f"Error: --loss {beta}: loss=" in capsys.readouterr().err
