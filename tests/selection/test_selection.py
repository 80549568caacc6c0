"""Rank selection: the criteria, component stability, select_rank, parallel runs, resume."""

from __future__ import annotations

import inspect
import itertools

import numpy as np
import pytest

import unmix
from unmix.datasets import make_mixture
from unmix.selection import CRITERIA, PLAUSIBILITY, _lambdas, _rank, select_lambdas, select_rank
from unmix.selection import _criteria as C
from unmix.selection._params import LAMBDA_PARAMETERS, PLAUSIBILITY_NAMES, RANK_PARAMETERS
from unmix.selection._plan import HoldoutSpec, holdout_entries
from unmix.selection._rank import recommend, voters
from unmix.selection._runner import Settings, fit_with_engine, plan_fits
from unmix.selection._stability import align_components, cluster_silhouettes

SHAPE = (16, 16)


@pytest.fixture(scope="module")
def planted():
    mix = make_mixture(3, spatial_shape=SHAPE, n_channels=40, snr_db=30, random_state=3)
    return np.asarray(mix.X, dtype=float)


@pytest.fixture(scope="module")
def selection(planted):
    return select_rank(planted, range(2, 6), n_restarts=4, spatial_shape=SHAPE, random_state=0)


# ------------------------------------------------------------------ criteria
def test_consensus_perfect_and_mixed():
    labels = np.array([[0, 0, 1, 1, 2, 2]] * 3)
    Cm = C.consensus_matrix(labels)
    assert set(np.unique(Cm)) == {0.0, 1.0}
    assert C.cophenetic_correlation(Cm) == pytest.approx(1.0)
    assert C.dispersion(Cm) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    noisy = C.consensus_matrix(rng.integers(0, 3, size=(6, 30)))
    assert C.dispersion(noisy) < 0.6
    assert C.cophenetic_correlation(noisy) < 0.99
    with pytest.raises(ValueError, match=r"labels must be \(runs, pixels\)"):
        C.consensus_matrix(np.zeros(5))
    with pytest.raises(ValueError, match="square consensus matrix"):
        C.cophenetic_correlation(np.zeros((3, 4)))


def test_pixel_labels_ignore_the_scale_split():
    rng = np.random.default_rng(1)
    A, S = rng.random((20, 3)), rng.random((3, 8))
    d = np.array([0.1, 10.0, 3.0])
    assert np.array_equal(C.pixel_labels(A, S), C.pixel_labels(A * d, S / d[:, None]))


def test_information_criteria_use_the_model_dimension():
    assert C.n_parameters(3, 100, 50) == 3 * (100 + 50 - 3) + 1
    a = C.information_criteria(10.0, 3, 100, 50)
    b = C.information_criteria(10.0, 4, 100, 50)
    assert b["bic"] - a["bic"] == pytest.approx((b["n_params"] - a["n_params"]) * np.log(100 * 50))
    assert b["aic"] > a["aic"]  # same error, more parameters


def test_laplace_pca_and_knee_find_the_planted_rank():
    rng = np.random.default_rng(2)
    X = rng.random((300, 4)) @ rng.random((4, 30)) + 0.01 * rng.standard_normal((300, 30))
    ks = [1, 2, 3, 4, 5, 6, 7]
    ev = C.laplace_pca_evidence(X, ks)
    assert ks[int(np.argmax(ev))] == 4
    err = [np.linalg.norm(X - _svd_rank(X, k)) for k in ks]
    assert C.knee_point(ks, err) == 4
    assert C.knee_point([1, 2], [1.0, 0.5]) is None


def _svd_rank(X, k):
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    return (U[:, :k] * s[:k]) @ Vt[:k]


def test_roughness_and_component_similarity():
    rng = np.random.default_rng(3)
    x = np.linspace(0, 1, 200)
    smooth = np.stack([np.exp(-((x - c) ** 2) / 0.005) for c in (0.2, 0.5, 0.8)])
    assert np.all(C.roughness(smooth) < 0.05)
    assert C.roughness(rng.standard_normal(5000)) == pytest.approx(1.0, abs=0.1)
    # a split component: the new endmember repeats an old one
    split = np.vstack([smooth, smooth[1] * 1.01 + 1e-3])
    out = C.component_similarity(smooth, split, repeat_deg=5.0)
    assert out["repeats"] and out["too_large"] and out["repeat_angle"] < 5.0
    # a new, distinct and smooth component is fine
    new = np.vstack([smooth, np.exp(-((x - 0.95) ** 2) / 0.005)])
    assert not C.component_similarity(smooth, new)["too_large"]
    # a noise-like new component
    noisy = np.vstack([smooth, np.abs(rng.standard_normal(200))])
    assert C.component_similarity(smooth, noisy)["noise_like"]


# ----------------------------------------------------------------- stability
def test_align_components_undoes_permutations():
    rng = np.random.default_rng(4)
    S = rng.random((4, 30))
    perms = [np.arange(4), np.array([2, 0, 3, 1]), np.array([3, 2, 1, 0])]
    runs = [S[p] * (1 + 0.01 * rng.random((4, 1))) for p in perms]
    order, _ = align_components(runs)
    for r, p in enumerate(perms):
        assert np.array_equal(p[order[r]], np.arange(4))
    st = cluster_silhouettes(runs)
    assert st["min_cluster"] > 0.9
    unstable = [rng.random((4, 30)) for _ in range(4)]
    assert cluster_silhouettes(unstable)["min_cluster"] < st["min_cluster"] - 0.3


def test_holdout_patterns_partition_the_entries():
    n, m = 30, 20
    folds = [holdout_entries(HoldoutSpec("entries", 5, f, 9), n, m) for f in range(5)]
    flat = np.concatenate([r * m + c for r, c in folds])
    assert np.array_equal(np.sort(flat), np.arange(n * m))
    rows, cols = holdout_entries(HoldoutSpec("blocks", 2, 3, 9), n, m)
    assert rows.size == len(np.unique(rows)) * len(np.unique(cols))
    with pytest.raises(ValueError, match="holdout must be"):
        holdout_entries(HoldoutSpec("stripes", 2, 0, 0), n, m)


# ------------------------------------------------------------------ select_rank
def test_select_rank_recovers_the_planted_rank(selection):
    sel = selection
    assert sel.recommended == 3
    assert set(sel.picks) == set(CRITERIA)
    assert [r["k"] for r in sel.table] == [2, 3, 4, 5]
    for key in (
        "rel_error",
        "cv_error",
        "silhouette_min",
        "cophenetic",
        "dispersion",
        "aic",
        "bic",
        "laplace_pca",
        "new_component_angle",
    ):
        assert all(key in r for r in sel.table), key
    err = [r["rel_error"] for r in sel.table]
    assert all(a >= b - 1e-9 for a, b in itertools.pairwise(err))
    assert sel.picks["cv"] == 3 and sel.picks["bic"] == 3
    assert sel.consensus[3].shape == (256, 256)
    assert len(sel.runs[3]) == 4 and sel.best_fit().S.shape == (3, 40)
    assert sel.timings["n_fits"] == 4 * (4 + 2)
    assert sel.run_args() == "-k 3"


def test_recommendation_votes_and_boundary():
    ks = [2, 3, 4, 5, 6]
    picks = {"cv": 3, "bic": 6, "aic": 6, "laplace_pca": 6, "knee": 3, "silhouette": 4}
    assert voters(picks, ks) == {"cv": 3, "knee": 3, "silhouette": 4}
    assert recommend(picks, ks) == 3
    assert recommend({"cv": 4, "knee": 3}, ks) == 4  # a tie goes to cv
    assert recommend({"bic": None}, ks) == 2
    assert recommend({"bic": 6}, ks) == 6  # only a boundary pick: take it


def test_select_rank_rejects_bad_input(planted):
    with pytest.raises(ValueError, match=r"ks out of range: \[1\]"):
        select_rank(planted, [1, 2])
    with pytest.raises(ValueError, match="too few restarts"):
        select_rank(planted, [2, 3], n_restarts=2)
    with pytest.raises(ValueError, match="unknown criteria"):
        select_rank(planted, [2, 3], criteria=["magic"])
    with pytest.raises(ValueError, match="holdout='rows' is unknown"):
        select_rank(planted, [2, 3], holdout="rows")
    with pytest.raises(ValueError, match="spatial_shape"):
        select_rank(planted, [2, 3], spatial_shape=(3, 3))
    with pytest.raises(TypeError, match="ks must be integers"):
        select_rank(planted, ["a"])
    with pytest.raises(ValueError, match="Negative values"):
        select_rank(planted - planted.mean(), [2, 3])


def test_parallel_matches_serial(planted):
    kw = dict(n_restarts=3, criteria=["cv", "bic", "silhouette"], random_state=1, max_iter=200)
    serial = select_rank(planted, [2, 3], **kw)
    par = select_rank(planted, [2, 3], n_jobs=2, **kw)
    assert par.picks == serial.picks
    for a, b in zip(serial.table, par.table, strict=True):
        assert a["sse"] == pytest.approx(b["sse"], rel=1e-9)
        assert a["cv_error"] == pytest.approx(b["cv_error"], rel=1e-9)


def test_interrupted_selection_resumes(planted, tmp_path):
    kw = dict(n_restarts=3, criteria=["cv", "silhouette"], random_state=2, max_iter=200)
    ck = tmp_path / "ck"
    seen = []

    def stop_after_four(done, total, key):
        seen.append(key)
        if len(seen) == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        select_rank(planted, [2, 3, 4], checkpoint=ck, progress=stop_after_four, **kw)
    assert len(list((ck / "fits").glob("*.npz"))) >= 4
    calls = []
    resumed = select_rank(
        planted, [2, 3, 4], checkpoint=ck, progress=lambda *a: calls.append(a), **kw
    )
    assert resumed.timings["n_fits_resumed"] >= 4
    assert calls[0][0] > 4 and calls[-1][0] == calls[-1][1] == 15
    straight = select_rank(planted, [2, 3, 4], **kw)
    assert resumed.picks == straight.picks
    for a, b in zip(resumed.table, straight.table, strict=True):
        assert a["sse"] == pytest.approx(b["sse"], rel=1e-9)
    with pytest.raises(ValueError, match="belongs to other data"):
        select_rank(planted * 2, [2, 3, 4], checkpoint=ck, **kw)
    fresh = select_rank(planted * 2, [2, 3, 4], checkpoint=ck, resume=False, **kw)
    assert fresh.timings["n_fits_resumed"] == 0 and fresh.picks == straight.picks


def test_engine_path_fits_with_mask_and_weights(planted):
    planted = np.clip(planted, 0.0, None)  # the engine's NMF needs X >= 0
    spec = plan_fits([3], 2, 1, "entries", 0.1, 0)
    recs = {s.key: fit_with_engine(planted, s, Settings(max_iter=100)) for s in spec}
    full, boot, cv = recs["k3/r0"], recs["k3/r1"], recs["k3/cv0"]
    assert full.A.shape == (256, 3) and np.isfinite(full.sse)
    assert boot.S.shape == (3, 40)
    assert cv.A is None and cv.heldout_n == pytest.approx(256 * 40 / 10, abs=1)
    assert 0 < np.sqrt(cv.heldout_sse / cv.heldout_ss) < 0.2
    sel = select_rank(
        planted,
        [2, 3],
        n_restarts=3,
        criteria=["cv", "bic"],
        fit_options={"solver": "hals"},
        max_iter=100,
    )
    assert sel.picks["cv"] == 3


@pytest.mark.parametrize(
    "fit_options",
    [{"loss": "kl"}, {"constraints": [unmix.NonNegative(), unmix.SumToOne()]}],
    ids=["kl", "sum-to-one"],
)
def test_fit_options_take_the_models_own_solver(fit_options, monkeypatch):
    """``fit_options`` are keywords of ``factorize``: a model HALS cannot fit gets its own
    solver (KL-CD, BPP), where every fit raised "solver='hals' does not support ...".
    Held-out and bootstrap fits included (a mask, pixel weights)."""
    import unmix.selection._runner as runner

    seen = []
    real = runner.factorize

    def spy(*args, **kw):
        res = real(*args, **kw)
        seen.append(res.spec["solver"])
        return res

    monkeypatch.setattr(runner, "factorize", spy)
    mx = make_mixture(
        3, spatial_shape=(12, 12), n_channels=40, noise="poisson", scale=20.0, random_state=1
    )
    sel = select_rank(
        mx.X, [2, 3, 4], n_restarts=3, criteria=["cv", "bic"], fit_options=fit_options
    )
    assert set(seen) == ({"klcd"} if "loss" in fit_options else {"bpp"})
    assert sel.picks["cv"] == 3


def test_torch_input_runs_the_same_batched_fits(planted):
    torch = pytest.importorskip("torch")
    kw = dict(n_restarts=3, criteria=["cv", "bic", "silhouette"], max_iter=200)
    ref = select_rank(planted, [2, 3, 4], **kw)
    tsel = select_rank(torch.from_numpy(planted), [2, 3, 4], **kw)
    assert tsel.picks == ref.picks
    assert isinstance(tsel.runs[3][0].S, torch.Tensor)
    for a, b in zip(ref.table, tsel.table, strict=True):
        assert a["sse"] == pytest.approx(b["sse"], rel=1e-6)
        assert a["cv_error"] == pytest.approx(b["cv_error"], rel=1e-6)
    assert tsel.uncertainty().S_std.shape == (3, 40)


def test_block_holdout_bi_cross_validation(planted):
    sel = select_rank(planted, [2, 3, 4, 5], n_restarts=1, criteria=["cv"], holdout="blocks")
    assert sel.picks == {"cv": 3}
    cv = [r["cv_error"] for r in sel.table]
    assert cv[1] < 0.5 * cv[0]  # k = 3 predicts the held-out block far better than k = 2


# ------------------------------------------------------------ parameter tables
@pytest.mark.parametrize(
    ("function", "rows"),
    [(select_rank, RANK_PARAMETERS), (select_lambdas, LAMBDA_PARAMETERS)],
    ids=["select_rank", "select_lambdas"],
)
def test_every_parameter_has_a_row_and_every_row_is_a_parameter(function, rows):
    signature = inspect.signature(function).parameters
    assert set(signature) - {"X"} == set(rows)
    for name, row in rows.items():
        assert row.name == name
        if signature[name].default is not inspect.Parameter.empty:
            assert row.default == signature[name].default, name
        assert f"\n    {name} : {row.type_doc}\n" in function.__doc__, name
    assert "{parameters}" not in function.__doc__
    assert set(PLAUSIBILITY_NAMES) == set(PLAUSIBILITY)


def _refused(rows):
    """One refused value per row that can offer one."""
    return [
        pytest.param(name, row.invalid(), id=name)
        for name, row in rows.items()
        if row.invalid() is not None
    ]


def _no_fits(*args, **kwargs):
    raise AssertionError("a refused parameter reached the fits")


@pytest.mark.parametrize(("name", "value"), _refused(RANK_PARAMETERS))
def test_select_rank_names_each_refused_parameter(planted, monkeypatch, name, value):
    monkeypatch.setattr(_rank, "run_fits", _no_fits)
    with pytest.raises((ValueError, TypeError), match=rf"\b{name}="):
        select_rank(planted, [2, 3], **{name: value})


@pytest.mark.parametrize(("name", "value"), _refused(LAMBDA_PARAMETERS))
def test_select_lambdas_names_each_refused_parameter(planted, monkeypatch, name, value):
    monkeypatch.setattr(_lambdas, "_run_stages", _no_fits)
    args = {"k": 3, name: value}
    with pytest.raises((ValueError, TypeError), match=rf"\b{name}="):
        select_lambdas(planted, **args)


# ---------------------------------------------------------------- noise model
def test_counts_are_fitted_as_counts_by_default():
    from unmix.preprocessing import is_counts

    mx = unmix.datasets.make_mixture(
        3, spatial_shape=(20, 25), n_channels=40, noise="poisson", scale=20.0, random_state=4
    )
    assert is_counts(mx.X) and not is_counts(mx.X + 0.5) and not is_counts(-mx.X)
    sel = unmix.select_rank(mx.X, range(2, 6), n_restarts=4, random_state=0)
    assert sel.settings["noise"] == "poisson"
    assert sel.recommended == 3
    gauss = unmix.select_rank(mx.X + 0.25, range(2, 4), n_restarts=3, random_state=0)
    assert gauss.settings["noise"] == "gaussian"


@pytest.mark.slow
def test_raw_eels_map_gives_its_three_components():
    from conftest import shared_path

    img = unmix.load(shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy"))
    sel = unmix.select_rank(img.unfold(), range(2, 8), spatial_shape=img.spatial_shape)
    assert sel.settings["noise"] == "poisson"  # raw counts, by the one rule
    assert sel.recommended == 3


def test_default_ranks_are_cut_to_what_a_small_x_allows():
    """9 pixels (the imzML example's size): the default 2..11 failed with 'ks out of
    range' and suggested the same out-of-range ranks."""
    rng = np.random.default_rng(0)
    X = rng.random((9, 3)) @ rng.random((3, 40))
    sel = select_rank(X, n_restarts=3, cv_repeats=1, max_iter=50, criteria=["cv", "knee"])
    assert sel.ks == list(range(2, 9))
    with pytest.raises(ValueError, match=r"ks out of range: \[9\].*e\.g\. ks=range\(2, 9\)"):
        select_rank(X, [2, 9], n_restarts=3)


def test_too_small_x_for_any_rank_says_so():
    X = np.random.default_rng(0).random((2, 40))
    with pytest.raises(ValueError, match=r"too small to choose a rank.*at least 3 pixels"):
        select_rank(X)
