"""MATLAB .mat spectrum images: cubes, (bands, pixels) matrices with their scan size in
MATLAB's column-major pixel order, v7.3 (HDF5), and the shared hyperspectral scenes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.io

import unmix
from conftest import shared_path
from unmix.cli import entry

H, W, L = 4, 6, 5  # not square: rows and columns cannot be swapped unnoticed


@pytest.fixture
def cube() -> np.ndarray:
    return np.random.default_rng(0).random((H, W, L))


def _matlab_y(cube: np.ndarray) -> np.ndarray:
    """The literature's Y (bands, pixels), pixels numbered down the columns as MATLAB's
    reshape(cube, [], L)' does."""
    return cube.reshape(H * W, L, order="F").T


def test_bands_by_pixels_with_lines_and_cols(tmp_path, cube):
    path = tmp_path / "scene.mat"
    wl = np.linspace(400, 900, L)
    scipy.io.savemat(path, {"Y": _matlab_y(cube), "lines": H, "cols": W, "wavelength": wl})
    image = unmix.load(path)
    assert image.spatial_shape == (H, W)
    np.testing.assert_array_equal(np.asarray(image.data), cube)
    np.testing.assert_allclose(image.signal_axes[0].values, wl)
    assert image.metadata["mat_variable"] == "Y" and image.metadata["reader"] == "matlab"


def test_pixels_by_bands_and_a_cube(tmp_path, cube):
    flat = tmp_path / "flat.mat"
    scipy.io.savemat(flat, {"X": _matlab_y(cube).T, "nRow": H, "nCol": W})
    np.testing.assert_array_equal(np.asarray(unmix.load(flat).data), cube)
    whole = tmp_path / "cube.mat"
    scipy.io.savemat(whole, {"indian_pines": cube, "gt": np.zeros((H, W))})
    np.testing.assert_array_equal(np.asarray(unmix.load(whole).data), cube)


def test_v73_hdf5_mat_reads_in_matlabs_index_order(tmp_path, cube):
    path = tmp_path / "v73.mat"
    with h5py.File(path, "w", userblock_size=512) as f:  # HDF5 keeps MATLAB's axes reversed
        f.create_dataset("cube", data=cube.transpose()).attrs["MATLAB_class"] = b"double"
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file".ljust(116) + b"\0" * 8 + b"\x00\x02IM")
    image = unmix.load(path)
    assert image.spatial_shape == (H, W)
    np.testing.assert_array_equal(np.asarray(image.data), cube)


def test_without_a_scan_size_the_spectra_are_a_list(tmp_path, cube):
    path = tmp_path / "lib.mat"
    scipy.io.savemat(path, {"datalib": _matlab_y(cube)})  # (bands, spectra), no size
    image = unmix.load(path)
    assert image.spatial_shape == (H * W,) and image.n_channels == L
    regridded = unmix.load(path, spatial_shape=(W, H))
    assert regridded.spatial_shape == (W, H)


def test_mistakes_name_the_variables(tmp_path, cube):
    path = tmp_path / "two.mat"
    scipy.io.savemat(path, {"Y": _matlab_y(cube), "lines": H + 1, "cols": W})
    with pytest.raises(ValueError, match=r"the scan is 5 x 6 = 30 pixels, but the data"):
        unmix.load(path)
    with pytest.raises(ValueError, match=r"no variable named 'nope'; it holds .*Y 5x24"):
        unmix.load(path, dataset="nope")
    empty = tmp_path / "scalars.mat"
    scipy.io.savemat(empty, {"a": 1.0})
    with pytest.raises(ValueError, match=r"no numeric variable of two or more dimensions"):
        unmix.load(empty)
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(ValueError, match=r"bad.mat"):
        unmix.load(bad)


@pytest.mark.parametrize(
    ("name", "shape"),
    [("samson", (95, 95, 156)), ("jasper_ridge", (100, 100, 198)), ("moffett", (50, 50, 184))],
)
def test_shared_scenes_match_their_ground_truth_order(name, shape):
    """The data README's recipe (Y.T.reshape(H, W, L, order='F')) and S_GT's pixel order."""
    path = shared_path("hsi", f"{name}.mat")
    image = unmix.load(path)
    assert image.data.shape == shape
    Y = scipy.io.loadmat(path)["Y"]
    np.testing.assert_array_equal(np.asarray(image.data), Y.T.reshape(*shape, order="F"))


def test_cli_runs_a_mat_scene(tmp_path):
    path = shared_path("hsi", "samson.mat")
    out = tmp_path / "out"
    assert entry(["run", path, "-k", "3", "-o", str(out), "-q", "--no-report"]) == 0
    res = unmix.load_result(str(out / "result.h5"))
    assert res.spatial_shape == (95, 95) and res.S.shape == (3, 156)
