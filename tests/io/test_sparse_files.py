"""Sparse files: SciPy ``.npz`` archives and HDF5 CSR groups, read as sparse rows."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

import unmix
from unmix.io import CorruptFileError, UnsupportedFormatError


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(2)
    A = rng.gamma(1.0, 1.0, (8 * 9, 3))
    S = rng.gamma(1.0, 1.0, (3, 50)) * (rng.random((3, 50)) < 0.4)
    return rng.poisson(A @ S * 0.3)  # int64, mostly zeros


def _h5(path, M, **attrs):
    with h5py.File(path, "w") as f:
        g = f.create_group("counts")
        for key, value in attrs.items():
            g.attrs[key] = value
        for key in ("data", "indices", "indptr"):
            g[key] = getattr(M, key)
    return str(path)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_scipy_npz_is_read_sparse(tmp_path, counts, fmt):
    path = tmp_path / "x.npz"
    sp.save_npz(path, sp.csr_array(counts).asformat(fmt))
    image = unmix.load(str(path), spatial_shape=(8, 9))
    assert image.is_sparse and not image.is_lazy
    assert image.spatial_shape == (8, 9) and image.n_channels == 50
    X = image.unfold()
    assert sp.issparse(X) and X.format == "csr" and X.dtype == np.float32
    np.testing.assert_array_equal(X.toarray(), counts)


def test_npz_extra_members_give_grid_and_axis(tmp_path, counts):
    path = tmp_path / "x.npz"
    M = sp.csr_array(counts)
    np.savez(
        path,
        format=np.array(b"csr"),
        shape=np.array(M.shape),
        data=M.data,
        indices=M.indices,
        indptr=M.indptr,
        spatial_shape=np.array([8, 9]),
        axis=np.linspace(0.1, 5.0, 50),
        axis_name="Energy",
        axis_units="keV",
    )
    image = unmix.load(str(path))
    assert image.spatial_shape == (8, 9)
    assert image.signal_axes[0].units == "keV"
    assert image.signal_axes[0].values[-1] == pytest.approx(5.0)


def test_hdf5_csr_group(tmp_path, counts):
    M = sp.csr_array(counts)
    image = unmix.load(_h5(tmp_path / "x.h5", M, shape=M.shape, spatial_shape=(8, 9)))
    assert image.is_sparse and image.spatial_shape == (8, 9)
    np.testing.assert_array_equal(image.unfold().toarray(), counts)
    other = unmix.load(_h5(tmp_path / "y.h5", M, h5sparse_shape=M.shape), dataset="/counts")
    assert other.spatial_shape == (72,)


def test_sparse_image_is_never_densified_by_accident(tmp_path, counts):
    path = tmp_path / "x.npz"
    sp.save_npz(path, sp.csr_array(counts))
    image = unmix.load(str(path))
    with pytest.raises(TypeError, match="held sparse"):
        np.asarray(image.data)
    np.testing.assert_array_equal(image.data.toarray(), counts)  # explicit: allowed


@pytest.mark.parametrize(
    ("damage", "error", "match"),
    [
        ("indptr", CorruptFileError, "not a valid CSR matrix"),
        ("indices", CorruptFileError, "not a valid CSR matrix"),
        ("shape", CorruptFileError, "does not say its shape"),
        ("grid", CorruptFileError, "does not hold the 72 rows"),
    ],
)
def test_damaged_hdf5_csr_is_refused(tmp_path, counts, damage, error, match):
    M = sp.csr_array(counts)
    attrs = {"shape": M.shape, "spatial_shape": (7, 9) if damage == "grid" else (8, 9)}
    if damage == "shape":
        del attrs["shape"]
    path = _h5(tmp_path / "x.h5", M, **attrs)
    with h5py.File(path, "a") as f:
        if damage == "indptr":
            ip = f["counts/indptr"][...]
            ip[3] = ip[5] + 7
            f["counts/indptr"][...] = ip
        if damage == "indices":
            f["counts/indices"][0] = 50
    with pytest.raises(error, match=match):
        unmix.load(path)


def test_unsupported_sparse_format_is_named(tmp_path, counts):
    path = tmp_path / "x.npz"
    sp.save_npz(path, sp.csr_array(counts).tobsr())
    with pytest.raises(UnsupportedFormatError, match="reads CSR, CSC and COO"):
        unmix.load(str(path))


def test_fit_of_a_sparse_file_equals_the_fit_of_its_matrix(tmp_path, counts):
    path = tmp_path / "x.npz"
    sp.save_npz(path, sp.csr_array(counts.astype(np.float32)))
    image = unmix.load(str(path), spatial_shape=(8, 9))
    kw = dict(loss="kl", random_state=0, max_iter=30)
    r = unmix.factorize(image.unfold(), 3, spatial_shape=image.spatial_shape, **kw)
    ref = unmix.factorize(counts.astype(np.float32), 3, **kw)
    assert r.objective == pytest.approx(ref.objective, rel=1e-5)
