"""``--solver-option KEY=VALUE``: a solver's own options from the command line, added to
a TOML config's ``[factorize] solver_options``; bad pairs refused with the fix."""

from __future__ import annotations

import re

import numpy as np
import pytest

import unmix
from conftest import poisson_scan
from unmix.cli import entry


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    folder = tmp_path_factory.mktemp("solver_options")
    return folder, poisson_scan(folder, 8, 9, 30, seed=2)


def _run(path, out, *extra):
    args = ["run", path, "-k", "3", "--solver", "admm", "--seed", "0", *extra]
    return entry([*args, "-o", str(out), "-q", "--no-report"])


def test_solver_options_reach_the_solver_and_the_result(scan):
    folder, path = scan
    out = folder / "flags"
    opts = ["--solver-option", "inner=5", "--solver-option", "relax=1.0"]
    assert _run(path, out, *opts) == 0
    res = unmix.load_result(str(out / "result.h5"))
    assert res.spec["solver_options"] == {"inner": 5, "relax": 1.0}
    X = np.load(path).reshape(72, 30)
    ref = unmix.factorize(
        X,
        3,
        solver="admm",
        random_state=0,
        spatial_shape=(8, 9),
        solver_options={"inner": 5, "relax": 1.0},
    )
    assert res.n_iter == ref.n_iter
    np.testing.assert_allclose(res.objective, ref.objective, rtol=1e-9)


def test_flags_are_added_to_the_config_file_options(scan):
    folder, path = scan
    cfg = folder / "run.toml"
    cfg.write_text(
        f'[input]\nfile = "{path}"\n[factorize]\nk = 3\nsolver = "admm"\n'
        "solver_options = {inner = 7, inner_tol = 1e-2}\n"
        f'[output]\ndir = "{folder / "toml"}"\nreport = false\n'
    )
    assert entry(["run", "--config", str(cfg), "--solver-option", "inner=9", "-q"]) == 0
    res = unmix.load_result(str(folder / "toml" / "result.h5"))
    assert res.spec["solver_options"] == {"inner": 9, "inner_tol": 1e-2}


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("inner", r"--solver-option 'inner': use KEY=VALUE"),
        ("nope=1", r"solver 'admm' has no option 'nope'; its options: 'extrapolate', 'inner'"),
        ("relax=3", r"relax=3\.0 must lie in \(0, 2\)"),
    ],
)
def test_bad_solver_options_are_refused_with_the_fix(scan, capsys, pair, message):
    folder, path = scan
    code = _run(path, folder / f"bad_{pair.split('=')[0]}", "--solver-option", pair)
    assert code == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
