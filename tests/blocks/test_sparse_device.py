"""Sparse X as a torch tensor: fitted on its device, the SciPy CSR answer, from the nonzeros."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import unmix
from conftest import low_dose_counts
from unmix.blocks import DeviceSparsePixelData, as_device_csr, is_device_sparse
from unmix.engine import fit_maps
from unmix.estimators import NMF

torch = pytest.importorskip("torch")

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]


@pytest.fixture(scope="module")
def counts() -> np.ndarray:
    """Low-dose Poisson counts of 3 planted components (``conftest.low_dose_counts``)."""
    return low_dose_counts()


def _tensor(D: np.ndarray, layout: str = "csr", device: str = "cpu", dtype=None):
    T = torch.as_tensor(D, dtype=dtype, device=device)
    return {"csr": T.to_sparse_csr, "csc": T.to_sparse_csc, "coo": T.to_sparse_coo}[layout]()


def _host(a) -> np.ndarray:
    return a.detach().cpu().numpy()


def _fit(X, **kw):
    return unmix.factorize(X, 3, random_state=0, max_iter=40, tol=0, **kw)


CASES = [
    pytest.param({"solver": "hals"}, id="hals"),
    pytest.param({"solver": "mu"}, id="mu"),
    pytest.param({"solver": "bpp"}, id="bpp"),
    pytest.param({"solver": "mu", "loss": "kl"}, id="mu-kl"),
    pytest.param(
        {"solver": "admm", "constraints": [unmix.NonNegative(), unmix.SumToOne()]}, id="admm-sto"
    ),
    pytest.param({"solver": "hals", "regularizers": [unmix.L1(0.1)]}, id="hals-l1"),
    pytest.param({"solver": "mu", "loss": "kl", "regularizers": [unmix.L1(0.1)]}, id="mu-kl-l1"),
    pytest.param(
        {
            "solver": "hals",
            "regularizers": [unmix.SpatialSmoothness(0.1)],
            "spatial_shape": (16, 15),
        },
        id="hals-grid",
    ),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES)
def test_same_answer_as_scipy_csr(counts, case, device):
    ref = _fit(sp.csr_array(counts), **case)
    got = _fit(_tensor(counts, device=device), **case)
    assert isinstance(got.A, torch.Tensor) and got.A.device.type == device
    assert got.S.device.type == device
    assert got.n_iter == ref.n_iter
    np.testing.assert_allclose(_host(got.S), ref.S, rtol=1e-7, atol=1e-9 * np.abs(ref.S).max())
    np.testing.assert_allclose(_host(got.A), ref.A, rtol=1e-7, atol=1e-9 * np.abs(ref.A).max())
    assert got.objective == pytest.approx(ref.objective, rel=1e-9)


@pytest.mark.parametrize("layout", ["csr", "csc", "coo"])
def test_every_torch_layout_and_integer_counts(counts, layout):
    ref = _fit(sp.csr_array(counts.astype(np.float32)))
    got = _fit(_tensor(counts.astype(np.int64), layout))  # integer counts: float32
    assert got.A.dtype == torch.float32 and got.S.dtype == torch.float32
    np.testing.assert_allclose(_host(got.S), ref.S, rtol=1e-5, atol=1e-6 * np.abs(ref.S).max())


@pytest.mark.parametrize(("solver", "loss"), [("hals", "frobenius"), ("mu", "kl")])
def test_float32_stays_float32_and_objective_falls(counts, solver, loss):
    r = _fit(_tensor(counts, dtype=torch.float32), solver=solver, loss=loss)
    assert r.A.dtype == torch.float32 and r.S.dtype == torch.float32
    assert bool((r.A >= 0).all()) and bool((r.S >= 0).all())
    obj = np.asarray(r.history["objective"])
    assert np.all(np.diff(obj) <= 1e-6 * np.abs(obj[:-1]))


@pytest.mark.parametrize(
    ("solver", "loss"), [("hals", "frobenius"), ("mu", "frobenius"), ("mu", "kl")]
)
def test_weights_and_mask_as_scipy(counts, solver, loss):
    rng = np.random.default_rng(0)
    n, m = counts.shape
    mask = rng.random(counts.shape) > 0.1
    pw, cw = rng.random(n) + 0.5, rng.random(m) + 0.5
    cases = [
        ({"mask": mask}, {"mask": torch.from_numpy(mask)}),
        (
            {"weights": unmix.Weights(pixels=pw, channels=cw)},
            {"weights": unmix.Weights(pixels=torch.from_numpy(pw), channels=torch.from_numpy(cw))},
        ),
    ]
    if solver == "mu":  # full weights: per-entry work, one dense block at a time
        full = np.outer(pw, cw)
        cases.append(({"weights": full}, {"weights": torch.from_numpy(full)}))
    for kw, tkw in cases:
        ref = _fit(sp.csr_array(counts), solver=solver, loss=loss, **kw)
        got = _fit(_tensor(counts), solver=solver, loss=loss, **tkw)
        assert got.objective == pytest.approx(ref.objective, rel=1e-9)


def test_fit_never_densifies_the_whole_matrix(counts, monkeypatch):
    """The KL pass reads the nonzeros only: no block is made dense."""

    def dense(self, block):
        raise AssertionError("a block was made dense")

    monkeypatch.setattr(DeviceSparsePixelData, "x", dense)
    monkeypatch.setattr(DeviceSparsePixelData, "raw", dense)
    for solver, loss in [("mu", "kl"), ("hals", "frobenius")]:
        r = unmix.factorize(_tensor(counts), 3, solver=solver, loss=loss, random_state=0)
        assert r.n_iter > 0


def test_products_and_rows_match_dense(counts):
    X = as_device_csr(_tensor(counts))
    data = DeviceSparsePixelData(X, unmix._backend.backend_of(X.values), block_size=50)
    D = torch.from_numpy(counts)
    M = torch.rand(counts.shape[1], 4, dtype=torch.float64)
    for b in data.blocks:
        Db = D[b.slice]
        Aw = torch.rand(Db.shape[0], 4, dtype=torch.float64)
        torch.testing.assert_close(data.x_times(b, M), Db @ M)
        torch.testing.assert_close(data.t_times(b, Aw), Aw.T @ Db)
        v = torch.rand(data.values(b).shape[0], dtype=torch.float64)  # another pattern's values
        R = torch.zeros_like(Db)
        R[Db != 0] = v  # CSR order is row-major order
        torch.testing.assert_close(data.values_t_times(b, v, Aw), R.T @ Aw)
        torch.testing.assert_close(data.values_times(b, v, M), R @ M)
    idx = [5, 0, 239, 5]
    torch.testing.assert_close(data.rows(idx), D[idx])
    assert data.mean() == pytest.approx(counts.mean())
    assert is_device_sparse(_tensor(counts, "coo")) and not is_device_sparse(D)


def test_estimator_and_fit_maps_take_torch_sparse(counts):
    X = _tensor(counts)
    est = NMF(n_components=3, random_state=0)
    W = est.fit_transform(X)
    assert isinstance(W, torch.Tensor)
    ref = fit_maps(sp.csr_array(counts), est.result_.S.numpy())
    got = fit_maps(X, est.result_.S)
    np.testing.assert_allclose(_host(got), ref, rtol=1e-6, atol=1e-9)


def test_device_moves_the_tensor_when_asked(counts):
    r = unmix.factorize(_tensor(counts), 3, random_state=0, device="cpu")  # SciPy CSR, host
    assert isinstance(r.A, np.ndarray)
    r = unmix.factorize(_tensor(counts), 3, random_state=0, device="torch")
    assert isinstance(r.A, torch.Tensor)


@pytest.mark.parametrize(
    ("change", "kw", "exc", "match"),
    [
        ("negative", {}, ValueError, "1 negative entries"),
        ("nan", {}, ValueError, "1 stored NaN or Inf"),
        (None, {"preprocessing": [unmix.PoissonScaling()]}, ValueError, "torch sparse X"),
        (None, {"device": "cupy"}, ValueError, "a torch device is needed"),
        (None, {"preprocessing": ["poisson"]}, TypeError, "takes step objects"),
    ],
)
def test_clear_errors(counts, change, kw, exc, match):
    D = torch.from_numpy(counts.copy())
    if change == "negative":
        D[3, 5] = -1.0
    elif change == "nan":
        D[3, 5] = float("nan")
    with pytest.raises(exc, match=match):
        unmix.factorize(D.to_sparse_csr(), 3, **kw)


def test_negative_entry_outside_the_mask_is_allowed(counts):
    D = torch.from_numpy(counts.copy())
    D[3, 5] = -1.0
    mask = torch.ones(D.shape, dtype=torch.bool)
    mask[3, 5] = False
    r = unmix.factorize(D.to_sparse_csr(), 3, random_state=0, mask=mask, max_iter=5)
    assert bool((r.A >= 0).all())


def test_preprocessing_strings_refused_for_dense_too(counts):
    with pytest.raises(TypeError, match="got 'center'"):
        unmix.factorize(counts, 3, preprocessing=["center"])


def test_unsorted_and_duplicate_csr_entries_are_summed():
    crow = torch.tensor([0, 3, 5, 5, 6])
    col = torch.tensor([4, 1, 4, 0, 3, 2])  # row 0: unsorted with a duplicate
    val = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    T = torch.sparse_csr_tensor(crow, col, val, size=(4, 5), check_invariants=False)
    X = as_device_csr(T)
    expected = torch.zeros(4, 5)
    expected[0, 4], expected[0, 1], expected[1, 0], expected[1, 3], expected[3, 2] = 4, 2, 4, 5, 6
    torch.testing.assert_close(X.to_dense(), expected)
    assert X.nnz == 5 and X.indices.dtype == torch.int32
    ok = torch.sparse_csr_tensor(crow, torch.tensor([1, 3, 4, 0, 3, 2]), val, size=(4, 5))
    Y = as_device_csr(ok)  # sorted rows (a fall across rows only): taken as they are
    assert Y.values.data_ptr() == ok.values().data_ptr()
