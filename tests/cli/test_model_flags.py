"""Issue 12's models from the command line and from TOML: data graph and robust loss."""

from __future__ import annotations

import numpy as np
import pytest

import unmix
from unmix.cli import entry


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    rng = np.random.default_rng(1)
    A = rng.gamma(1.0, size=(8 * 9, 3))
    S = rng.gamma(2.0, size=(3, 30)) * 5
    X = rng.poisson(A @ S).reshape(8, 9, 30).astype(np.float64)
    folder = tmp_path_factory.mktemp("model_flags")
    path = folder / "scan.npy"
    np.save(path, X)
    return folder, str(path)


def _spec_terms(out):
    res = unmix.load_result(str(out / "result.h5"))
    return res, [t["type"] for t in res.spec["penalties"]]


def test_graph_smooth_flag_adds_the_data_graph_term(scan):
    folder, path = scan
    out = folder / "graph"
    args = ["run", path, "-k", "3", "--graph-smooth", "0.1", "--seed", "0"]
    assert entry([*args, "-o", str(out), "-q", "--no-report"]) == 0
    _, types = _spec_terms(out)
    assert "GraphSmoothness" in types


def test_toml_names_graph_smoothness_and_the_l21_loss(scan):
    folder, path = scan
    cfg = folder / "run.toml"
    cfg.write_text(
        f'[input]\nfile = "{path}"\n[factorize]\nk = 3\nloss = "l21"\nsolver = "hals"\n'
        'regularizers = [{type = "GraphSmoothness", lam = 0.05, n_neighbors = 5}]\n'
        f'[output]\ndir = "{folder / "toml"}"\nreport = false\n'
    )
    assert entry(["run", "--config", str(cfg), "-q"]) == 0
    res, types = _spec_terms(folder / "toml")
    assert types == ["GraphSmoothness"] and res.spec["loss"] == "l21"
    obj = np.asarray(res.history["objective"])
    assert np.all(np.diff(obj) <= 1e-9 * abs(obj[0]))  # the l2,1 objective never rises
