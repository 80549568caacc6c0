"""`unmix compare` on the EELS map: the constrained column shows the physics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import unmix
from conftest import poisson_scan, shared_path
from unmix.cli import entry
from unmix.cli._demo import edge_names


@pytest.mark.slow
def test_constrained_column_matches_nmf_background_cu_and_zn(tmp_path):
    path = shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy")
    out = tmp_path / "cmp"
    assert entry(["compare", path, "-k", "3", "--seed", "0", "-q", "-o", str(out)]) == 0
    nmf = unmix.load_result(out / "result_NMF.h5")
    con = unmix.load_result(out / "result_constrained_NMF.h5")
    axis = unmix.load(path).signal_axes[0].values
    assert sorted(edge_names(np.asarray(nmf.S), axis)) == [
        "Cu L2,3 edge",
        "Zn L2,3 edge",
        "background",
    ]
    a = np.asarray(nmf.S, float)
    b = np.asarray(con.S, float)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    ang = np.degrees(np.arccos(np.clip(a @ b.T, -1, 1)))
    rows, cols = linear_sum_assignment(ang)
    assert ang[rows, cols].max() <= 10.0, ang
    assert con.spec["filters"] or con.spec["penalties"]  # it is constrained


def test_a_preset_names_the_constrained_column_and_nmf_stays_plain(tmp_path):
    """``compare --preset blind-unmixing`` made the NMF column the preset's fit and the
    constrained column the preset without its MinVolume term plus map smoothing."""
    rng = np.random.default_rng(0)
    cube = rng.poisson(20 * rng.random((6, 7, 3)) @ rng.random((3, 24))).astype("f8")
    path = tmp_path / "x.npy"
    np.save(path, cube)
    out = tmp_path / "out"
    args = ["compare", str(path), "-k", "3", "--preset", "blind-unmixing", "--seed", "0"]
    assert entry([*args, "-q", "-o", str(out)]) == 0
    nmf = unmix.load_result(str(out / "result_NMF.h5"))
    con = unmix.load_result(str(out / "result_constrained_NMF.h5"))
    api = unmix.factorize(cube.reshape(-1, 24), 3, preset="blind-unmixing", random_state=0)
    assert nmf.spec["penalties"] == [] and nmf.spec["preprocessing"] == []
    for key in ("solver", "constraints", "penalties", "preprocessing", "init"):
        assert con.spec[key] == api.spec[key], key
    assert con.objective == pytest.approx(api.objective, rel=1e-5)


def test_compare_summary_puts_the_columns_on_one_scale(tmp_path, capsys):
    """``unmix compare --sum-to-one`` printed each column's objective: the constrained
    column's is of unit-norm pixels (0.05 beside NMF's 79,512 on the XRD map).  Each line
    now gives the relative residual on X and says when its objective is of the
    preprocessed data."""
    from unmix.report import relative_residuals

    path = poisson_scan(tmp_path, 12, 12, 20, seed=3)
    out = tmp_path / "cmp"
    args = ["compare", path, "-k", "3", "--sum-to-one", "--seed", "0"]
    assert entry([*args, "-o", str(out)]) == 0
    lines = {line.split(":")[0].strip(): line for line in capsys.readouterr().out.splitlines()}
    assert "(of X after NormalizePixels)" in lines["constrained NMF"]
    assert "(of X after" not in lines["NMF"]
    X = np.load(path).reshape(-1, 20)
    for name in ("PCA", "NMF", "constrained NMF"):
        res = unmix.load_result(str(out / f"result_{name.replace(' ', '_')}.h5"))
        total = relative_residuals(res, X)[1]
        assert f"relative residual {total:.4g}," in lines[name]


@pytest.mark.parametrize(
    "rel, noted",
    [
        (("raman", "raman_renishaw_streamline_49x45.npz"), True),
        (("eels", "CuZn_EELS_mapping_tutorial.hspy"), False),
    ],
)
def test_compare_notes_a_constrained_column_that_costs_structure(tmp_path, capsys, rel, noted):
    """The default constrained column (maps smoothed by a 1-pixel Gaussian) fits the
    Raman map, whose bright features are a pixel wide, 40x worse than NMF (relative
    residual 0.50 against 0.0126): the summary says so, with what to try.  On the EELS
    map (0.031 against 0.025) it says nothing."""
    out = tmp_path / "cmp"
    args = ["compare", shared_path(*rel), "-k", "3", "--seed", "0"]
    assert entry([*args, "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert ("Note: the constrained column fits X" in err) == noted
    if noted:
        assert "(GaussianMapFilter)" in err and "map smoothing blurs" in err
        assert "a smaller --smooth" in err
