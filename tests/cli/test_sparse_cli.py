"""The command line on sparse files: run fits the nonzeros; the rest says what works."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

import unmix
from unmix.blocks import SparsePixelData
from unmix.cli import entry

USAGE = 2


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 10 x 12 scan of low-dose counts (3 planted components) as .npz and HDF5 CSR."""
    rng = np.random.default_rng(4)
    A = rng.gamma(1.0, 1.0, (120, 3))
    S = rng.gamma(1.0, 1.0, (3, 64)) * (rng.random((3, 64)) < 0.4)
    X = sp.csr_array(rng.poisson(A @ S * 0.3).astype(np.float32))
    folder = tmp_path_factory.mktemp("sparse_cli")
    npz = folder / "counts.npz"
    sp.save_npz(npz, X)
    h5 = folder / "counts.h5"
    with h5py.File(h5, "w") as f:
        g = f.create_group("counts")
        g.attrs["shape"], g.attrs["spatial_shape"] = X.shape, (10, 12)
        for key in ("data", "indices", "indptr"):
            g[key] = getattr(X, key)
    return X, str(npz), str(h5), folder


def test_run_fits_a_sparse_file_without_densifying(files, monkeypatch):
    X, npz, _, folder = files
    calls = []
    real = SparsePixelData.x
    monkeypatch.setattr(SparsePixelData, "x", lambda s, b: calls.append(b) or real(s, b))
    out = folder / "run"
    args = ["run", npz, "-k", "3", "--loss", "kl", "--shape", "10x12", "--seed", "0"]
    assert entry([*args, "-o", str(out), "-q", "--no-report"]) == 0
    assert calls == []  # the fit itself (klcd) read no dense block
    res = unmix.load_result(str(out / "result.h5"))
    ref = unmix.factorize(X, 3, loss="kl", random_state=0, spatial_shape=(10, 12))
    assert res.objective == pytest.approx(ref.objective, rel=1e-9)
    assert res.maps().shape == (10, 12, 3)


def test_run_writes_the_report_of_a_sparse_file(files):
    _, _, h5, folder = files
    out = folder / "report"
    assert entry(["run", h5, "-k", "3", "-o", str(out), "-q"]) == 0
    assert (out / "report.html").stat().st_size > 0


def test_compare_fits_a_sparse_file_with_an_uncentered_svd_column(files, capsys):
    X, npz, _, folder = files
    out = folder / "compare"
    assert (
        entry(["compare", npz, "-k", "3", "--shape", "10x12", "--seed", "0", "-o", str(out)]) == 0
    )
    assert "sparse: the PCA column is an uncentered SVD" in capsys.readouterr().err
    nmf = unmix.load_result(str(out / "result_NMF.h5"))
    ref = unmix.factorize(X, 3, random_state=0, spatial_shape=(10, 12))
    assert nmf.objective == pytest.approx(ref.objective, rel=1e-6)
    assert (out / "result_SVD.h5").exists() and (out / "report.html").stat().st_size > 0


def test_inspect_summarizes_from_the_stored_values(files, capsys):
    _, _, h5, _ = files
    assert entry(["inspect", h5]) == 0
    text = capsys.readouterr().out
    assert "sparse:" in text and "integer counts" in text and "held sparse" in text


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["run", "{f}", "-k", "3", "--step", '{op="clip", lower=0.0}'], "--step operations"),
        (["run", "{f}", "-k", "3", "--mask-nonfinite"], "sparse matrix"),
    ],
)
def test_what_needs_dense_data_says_so(files, capsys, args, match):
    _, npz, _, folder = files
    out = folder / f"refused_{args[0]}"
    code = entry([a.replace("{f}", npz) for a in args] + ["-o", str(out)])
    assert code == USAGE
    assert match in capsys.readouterr().err
