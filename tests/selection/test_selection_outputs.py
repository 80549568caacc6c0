"""Selection outputs: lambda search, uncertainty bands, saving, the HTML page and the CLI."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from unmix.cli import entry
from unmix.cli._config import factorize_options, load_config
from unmix.cli._select import parse_ks
from unmix.datasets import make_mixture
from unmix.selection import (
    LambdaSearch,
    RankSelection,
    Uncertainty,
    select_lambdas,
    select_rank,
    uncertainty_from_runs,
    write_selection_report,
)

SHAPE = (12, 12)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def planted():
    mix = make_mixture(3, spatial_shape=SHAPE, n_channels=30, snr_db=30, random_state=5)
    return np.clip(np.asarray(mix.X, dtype=float), 0.0, None)


@pytest.fixture(scope="module")
def sel(planted):
    return select_rank(planted, [2, 3, 4], n_restarts=4, spatial_shape=SHAPE, max_iter=300)


# ---------------------------------------------------------------- lambdas
def test_grid_search_is_staged_and_includes_no_regularization(planted):
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # engine warnings go to the trials
        lam = select_lambdas(
            planted,
            3,
            params=("smoothness", "sparsity"),
            n_trials=3,
            spatial_shape=SHAPE,
            plausibility="smoothness",
            max_iter=100,
            progress=lambda d, t, tr: seen.append((d, t)),
        )
    stages = [t["stage"] for t in lam.trials]
    assert stages == ["baseline"] + ["sparsity"] * 3 + ["smoothness"] * 3
    assert lam.trials[0]["params"] == {"sparsity": 0.0, "smoothness": 0.0}
    assert seen[-1] == (7, 7)
    # the smoothness stage keeps the best sparsity found before it
    best_sparsity = min(lam.trials[:4], key=lambda t: t["score"])["params"]["sparsity"]
    assert {t["params"]["sparsity"] for t in lam.trials[4:]} == {best_sparsity}
    assert lam.best_score == min(t["score"] for t in lam.trials)
    for t in lam.trials:
        assert t["score"] == pytest.approx(t["cv_error"] * (1 + 0.1 * t["implausibility"]))
        assert 0 <= t["implausibility"] <= 1
    # a strong sparsity wrecks the held-out error
    worst = max(lam.trials[1:4], key=lambda t: t["params"]["sparsity"])
    assert worst["cv_error"] > lam.trials[0]["cv_error"]
    cfg = lam.factorize_config()
    assert cfg["k"] == 3 and {"type": "UnitNorm"} in cfg["constraints"]
    assert "sparsity" in lam.to_markdown()


def test_random_and_bayes_search_stay_in_range(planted):
    lam = select_lambdas(
        planted,
        3,
        params={"sparsity": (1e-3, 1e-2)},
        method="random",
        n_trials=3,
        max_iter=60,
        plausibility=lambda res: 0.5,
    )
    vals = [t["params"]["sparsity"] for t in lam.trials[1:]]
    assert len(vals) == 3 and all(1e-3 <= v <= 1e-2 for v in vals)
    assert all(t["implausibility"] == 0.5 for t in lam.trials)
    pytest.importorskip("optuna")
    bayes = select_lambdas(
        planted, 3, params={"sparsity": (1e-3, 1e-1)}, method="bayes", n_trials=3, max_iter=60
    )
    assert bayes.method == "bayes" and len(bayes.trials) == 4
    assert all(1e-3 <= t["params"]["sparsity"] <= 1e-1 for t in bayes.trials[1:])


def test_lambda_search_rejects_bad_options(planted):
    with pytest.raises(ValueError, match="method='anneal' is unknown"):
        select_lambdas(planted, 3, method="anneal")
    with pytest.raises(ValueError, match="unknown strengths"):
        select_lambdas(planted, 3, params=("tv",))
    with pytest.raises(ValueError, match="needs spatial_shape"):
        select_lambdas(planted, 3, params=("smoothness",))
    with pytest.raises(ValueError, match="0 < low < high"):
        select_lambdas(planted, 3, params={"sparsity": (1.0, 0.1)})
    with pytest.raises(ValueError, match="plausibility='pretty' is unknown"):
        select_lambdas(planted, 3, plausibility="pretty")


# ------------------------------------------------------------ uncertainty
def test_uncertainty_bands_cover_the_median_and_round_trip(sel, tmp_path):
    unc = sel.uncertainty()
    assert unc.k == 3 and unc.n_runs == 4
    assert np.all(unc.S_lower <= unc.S_median + 1e-12)
    assert np.all(unc.S_median <= unc.S_upper + 1e-12)
    assert unc.maps("std").shape == (*SHAPE, 3) and np.all(unc.A_std >= 0)
    assert np.all(unc.relative_band_width() < 0.5)  # planted data: tight bands
    for name in ("u.npz", "u.h5"):
        back = Uncertainty.load(unc.save(tmp_path / name))
        assert np.array_equal(back.S_upper, unc.S_upper) and back.spatial_shape == SHAPE
    assert (tmp_path / "u.png").exists() is False
    assert open(unc.plot(tmp_path / "u.png"), "rb").read(8) == PNG
    with pytest.raises(ValueError, match="at least two runs"):
        uncertainty_from_runs(sel.runs[3][:1])
    with pytest.raises(ValueError, match="level must be"):
        uncertainty_from_runs(sel.runs[3], level=1.5)
    with pytest.raises(ValueError, match="which must be"):
        unc.maps("max")


def test_uncertainty_aligns_permuted_and_rescaled_runs():
    rng = np.random.default_rng(0)
    A, S = rng.random((50, 3)), rng.random((3, 20))

    class Run:
        def __init__(self, A, S):
            self.A, self.S = A, S

    d = np.array([2.0, 0.5, 3.0])
    runs = [Run(A, S), Run((A * d)[:, [2, 0, 1]], (S / d[:, None])[[2, 0, 1]])]
    unc = uncertainty_from_runs(runs, reference=0)
    assert np.allclose(unc.S_std, 0, atol=1e-12) and np.allclose(unc.A_std, 0, atol=1e-12)
    assert np.allclose(unc.S_median, S)


# ---------------------------------------------------------- save / report
def test_save_load_markdown_and_html(sel, tmp_path):
    for name in ("s.json", "s.h5"):
        back = RankSelection.load(sel.save(tmp_path / name))
        assert back.recommended == sel.recommended and back.picks == sel.picks
        assert back.table[1]["rel_error"] == pytest.approx(sel.table[1]["rel_error"])
    assert RankSelection.load(tmp_path / "s.h5").consensus[3].shape == (144, 144)
    with pytest.raises(ValueError, match="save a selection to"):
        sel.save(tmp_path / "s.txt")
    md = sel.to_markdown()
    assert f"**{sel.recommended}**" in md and md.count("\n| ") >= 3 + len(sel.picks)
    figs = sel.plot(tmp_path / "figs")
    assert set(figs) == {"criteria", "consensus", "stability", "uncertainty"}
    assert all(open(p, "rb").read(8) == PNG for p in figs.values())
    lam = LambdaSearch(
        k=3,
        method="grid",
        names=["sparsity"],
        best={"sparsity": 0.01},
        best_score=0.1,
        scale=1.0,
        trials=[
            {
                "params": {"sparsity": s},
                "score": 0.1 + s,
                "stage": "sparsity",
                "cv_error": 0.1,
                "implausibility": 0.0,
            }
            for s in (0.01, 0.1)
        ],
    )
    page = write_selection_report(tmp_path / "rep", sel, lambdas=lam).read_text()
    assert page.count("data:image/png;base64,") == 5
    assert "<script" not in page and "http://" not in page.replace("http://www.w3", "")
    assert f"Recommended k = {sel.recommended}" in page


# --------------------------------------------------------------------- CLI
def test_parse_ks():
    assert parse_ks("2:5") == [2, 3, 4, 5]
    assert parse_ks("2:8:3") == [2, 5, 8]
    assert parse_ks("3,5,8") == [3, 5, 8]
    with pytest.raises(Exception, match="FIRST:LAST"):
        parse_ks("5:2")


def test_cli_select_writes_a_config_that_run_accepts(planted, tmp_path, capsys):
    path = tmp_path / "cube.npz"
    np.savez(path, data=planted.reshape(*SHAPE, -1))
    out = tmp_path / "sel"
    args = [
        "select",
        str(path),
        "--ks",
        "2:4",
        "--restarts",
        "3",
        "--max-iter",
        "200",
        "--lambdas",
        "sparsity",
        "--lambda-trials",
        "2",
        "-o",
        str(out),
        "-q",
    ]
    assert entry(args) == 0
    printed = capsys.readouterr().out
    assert "recommended k = 3" in printed and "sparsity =" in printed
    for name in (
        "selection.json",
        "selection.h5",
        "selection.html",
        "uncertainty.h5",
        "selected.toml",
    ):
        assert (out / name).exists(), name
    cfg = load_config(str(out / "selected.toml"))
    assert cfg["factorize"]["k"] == 3 and cfg["input"]["file"] == str(path)
    opts = factorize_options(cfg["factorize"])
    assert [type(c).__name__ for c in opts["constraints"]] == ["NonNegative", "UnitNorm"]
    assert entry(args) == 4  # output exists
    assert (
        entry(
            [
                "run",
                "--config",
                str(out / "selected.toml"),
                "--max-iter",
                "20",
                "-o",
                str(tmp_path / "run"),
                "-q",
                "--no-report",
            ]
        )
        == 0
    )
    assert (tmp_path / "run" / "result.h5").exists()
    assert entry(["select", str(path), "--ks", "x"]) == 2
