"""Result: HDF5 round trip (atomic save), reconstruct() and maps()."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

import unmix
from unmix.datasets import make_mixture

SHAPE = (20, 25)
N_CHANNELS = 40


@pytest.fixture(scope="module")
def raw_mixture():
    return make_mixture(3, spatial_shape=SHAPE, n_channels=N_CHANNELS, snr_db=40, random_state=0)


@pytest.fixture(scope="module")
def X(raw_mixture) -> np.ndarray:
    X = np.clip(raw_mixture.X, 0.0, None)
    X.flags.writeable = False
    return X


@pytest.fixture(scope="module")
def result(X):
    return unmix.factorize(
        X, 3, solver="hals", regularizers=[unmix.L1(1e-3)], max_iter=40, random_state=0
    )


def _assert_same_result(a: unmix.Result, b: unmix.Result) -> None:
    np.testing.assert_array_equal(np.asarray(a.A), np.asarray(b.A))
    np.testing.assert_array_equal(np.asarray(a.S), np.asarray(b.S))
    assert a.A.dtype == b.A.dtype
    assert set(a.history) == set(b.history)
    for key in a.history:
        np.testing.assert_array_equal(a.history[key], b.history[key])
    assert a.spec == b.spec
    assert a.timings == b.timings
    assert a.objective == b.objective
    assert a.n_iter == b.n_iter
    assert a.converged == b.converged
    assert a.stop_reason == b.stop_reason
    assert a.restarts == b.restarts
    assert a.spatial_shape == b.spatial_shape
    assert a.signal_shape == b.signal_shape


def test_save_load_round_trip(result, tmp_path):
    path = tmp_path / "fit.h5"
    assert result.save(path) == str(path)
    loaded = unmix.load_result(path)
    assert set(result.history) == {"objective", "fit", "time", "phase", "L1(A)"}
    _assert_same_result(result, loaded)
    assert loaded.k == 3
    assert os.listdir(tmp_path) == ["fit.h5"]  # no temporary file left behind


def test_round_trip_float32(X, tmp_path):
    r = unmix.factorize(X.astype(np.float32), 2, max_iter=10, random_state=0)
    r.save(tmp_path / "r32.h5")
    loaded = unmix.load_result(tmp_path / "r32.h5")
    assert loaded.A.dtype == np.float32
    _assert_same_result(r, loaded)


def test_round_trip_spec_with_shapes(X, tmp_path):
    r = unmix.factorize(
        X, 2, max_iter=5, random_state=0, spatial_shape=SHAPE, signal_shape=(N_CHANNELS,)
    )
    r.save(tmp_path / "shaped.h5")
    loaded = unmix.load_result(tmp_path / "shaped.h5")
    assert loaded.spatial_shape == SHAPE  # the attribute itself is restored
    assert loaded.spec == r.spec


def test_save_overwrites_existing_file(result, X, tmp_path):
    path = tmp_path / "fit.h5"
    other = unmix.factorize(X, 2, max_iter=5, random_state=1)
    other.save(path)
    result.save(path)
    assert unmix.load_result(path).k == 3


def _failing_create_dataset(self, name, *args, **kwargs):
    raise OSError(f"simulated disk full while writing {name!r}")


def test_save_is_atomic_for_a_new_file(result, tmp_path, monkeypatch):
    path = tmp_path / "fit.h5"
    monkeypatch.setattr(h5py.Group, "create_dataset", _failing_create_dataset)
    with pytest.raises(OSError, match="simulated disk full"):
        result.save(path)
    assert not path.exists()
    assert os.listdir(tmp_path) == []  # no partial or temporary file remains


def test_save_is_atomic_for_an_existing_file(result, X, tmp_path, monkeypatch):
    path = tmp_path / "fit.h5"
    old = unmix.factorize(X, 2, max_iter=5, random_state=1)
    old.save(path)
    before = path.read_bytes()
    monkeypatch.setattr(h5py.Group, "create_dataset", _failing_create_dataset)
    with pytest.raises(OSError, match="simulated disk full"):
        result.save(path)
    assert path.read_bytes() == before  # the old file is intact
    assert os.listdir(tmp_path) == ["fit.h5"]
    monkeypatch.undo()
    assert unmix.load_result(path).k == 2


def test_load_rejects_other_hdf5_files(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(ValueError, match=r"other\.h5 is not an unmix result file"):
        unmix.load_result(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.h5"):
        unmix.load_result(tmp_path / "missing.h5")


# --------------------------------------------------------- reconstruct / maps
def test_load_from_an_output_folder(result, tmp_path):
    """The folder ``unmix run -o DIR`` writes: its ``result.h5``, or its one
    ``result*.h5`` (``unmix compare`` writes one a column); else the files are named."""
    for name in ("run", "one", "two", "empty"):
        (tmp_path / name).mkdir()
    result.save(tmp_path / "run" / "result.h5")
    _assert_same_result(unmix.load_result(tmp_path / "run"), result)
    result.save(tmp_path / "one" / "result_NMF.h5")
    _assert_same_result(unmix.load_result(tmp_path / "one"), result)
    result.save(tmp_path / "two" / "result_NMF.h5")
    result.save(tmp_path / "two" / "result_PCA.h5")
    with pytest.raises(FileNotFoundError, match=r"folder with result_NMF\.h5, result_PCA"):
        unmix.load_result(tmp_path / "two")
    with pytest.raises(FileNotFoundError, match=r"folder with no result\*\.h5 file"):
        unmix.load_result(tmp_path / "empty")


def test_reconstruct_adds_the_mean_back(raw_mixture, tmp_path):
    X = raw_mixture.X  # PCA: negative entries are fine
    r = unmix.factorize(X, 3, solver="svd", preprocessing=[unmix.Center()])
    mean = X.mean(axis=0)
    np.testing.assert_allclose(r.mean, mean, atol=1e-12)
    Y = r.reconstruct()
    np.testing.assert_allclose(Y, r.A @ r.S + mean, atol=1e-12)
    assert np.linalg.norm(Y - X) / np.linalg.norm(X) < 0.03
    # the model without the mean is far off: the mean was really added back
    assert np.linalg.norm(r.A @ r.S - X) / np.linalg.norm(X) > 0.5
    # and it survives a round trip through the file
    r.save(tmp_path / "pca.h5")
    loaded = unmix.load_result(tmp_path / "pca.h5")
    np.testing.assert_allclose(loaded.mean, mean, atol=1e-12)
    np.testing.assert_allclose(loaded.reconstruct(), Y, atol=1e-12)


def test_reconstruct_without_preprocessing(result):
    np.testing.assert_allclose(result.reconstruct(), result.A @ result.S, atol=1e-12)
    assert result.mean is None


def test_maps_reshape_to_spatial_shape(X, tmp_path):
    r = unmix.factorize(X, 3, max_iter=10, random_state=0, spatial_shape=SHAPE)
    maps = r.maps()
    assert maps.shape == (*SHAPE, 3)
    np.testing.assert_array_equal(maps[4, 7], r.A[4 * SHAPE[1] + 7])
    np.testing.assert_array_equal(maps.reshape(-1, 3), r.A)
    r.save(tmp_path / "maps.h5")
    assert unmix.load_result(tmp_path / "maps.h5").maps().shape == (*SHAPE, 3)


def test_maps_without_spatial_shape_are_the_unfolded_maps(result):
    assert result.maps().shape == (SHAPE[0] * SHAPE[1], 3)


def test_endmembers_reshape_to_signal_shape(X):
    r = unmix.factorize(X, 2, max_iter=5, random_state=0, signal_shape=(5, 8))
    assert r.endmembers().shape == (2, 5, 8)
    np.testing.assert_array_equal(r.endmembers().reshape(2, -1), r.S)


@pytest.mark.parametrize(
    "steps", [[unmix.NormalizePixels()], [unmix.PoissonScaling()], [unmix.NormalizePixels("l2")]]
)
def test_preprocessing_survives_save_and_load(tmp_path, steps):
    rng = np.random.default_rng(0)
    X = rng.random((3, 40)).T @ rng.random((3, 30)) * rng.uniform(1, 9, (40, 1))
    r = unmix.factorize(X, 3, preprocessing=steps, random_state=0, max_iter=200)
    r.save(tmp_path / "r.h5")
    back = unmix.load_result(tmp_path / "r.h5")
    np.testing.assert_allclose(back.reconstruct(), r.reconstruct(), rtol=1e-12)
    np.testing.assert_allclose(r.reconstruct(slice(5, 9)), r.reconstruct()[5:9], rtol=1e-12)
    assert np.linalg.norm(r.reconstruct() - X) < 0.05 * np.linalg.norm(X)


def test_link_applied_in_reconstruct_and_restored(tmp_path):
    rng = np.random.default_rng(0)
    X = 1 / (1 + np.exp(-(rng.random((200, 2)) @ (3 * rng.random((2, 30))) - 1.5)))
    r = unmix.factorize(
        X, 2, solver="gradient", link=unmix.Logistic(shift=1.5), max_iter=800, random_state=0
    )
    assert np.linalg.norm(r.reconstruct() - X) < 0.05 * np.linalg.norm(X)
    r.save(tmp_path / "r.h5")
    back = unmix.load_result(tmp_path / "r.h5")
    assert back.link == unmix.Logistic(shift=1.5)
    np.testing.assert_allclose(back.reconstruct(), r.reconstruct(), rtol=1e-12)


def test_maps_are_written_in_chunks_of_whole_scan_lines(tmp_path, X):
    r = unmix.factorize(X, 3, max_iter=5, spatial_shape=SHAPE, random_state=0)
    from unmix.result import _write_maps

    with h5py.File(tmp_path / "maps.h5", "w") as f:  # chunks of ~1000 bytes: 41 rows
        _write_maps(f, r.A, SHAPE, target=1000)
        assert f["A"].chunks == (25, 3)  # rounded down to one scan line of 25 pixels
        np.testing.assert_array_equal(f["A"][()], r.A)
    with h5py.File(r.save(tmp_path / "r.h5"), "r") as f:  # the default: 1 MiB chunks
        assert f["A"].chunks[0] == X.shape[0]


def test_device_maps_are_saved_block_by_block(tmp_path, X):
    torch = pytest.importorskip("torch")
    r = unmix.factorize(torch.tensor(X, dtype=torch.float32), 3, max_iter=5, random_state=0)
    back = unmix.load_result(r.save(tmp_path / "r.h5"))
    assert back.A.dtype == np.float32
    np.testing.assert_array_equal(back.A, r.A.numpy())


def test_save_into_a_folder_writes_the_file_load_result_finds(result, tmp_path):
    """A folder was renamed over (IsADirectoryError about a temporary name)."""
    written = result.save(tmp_path)
    assert written == str(tmp_path / "result.h5")
    back = unmix.load_result(tmp_path)
    np.testing.assert_allclose(np.asarray(back.S), np.asarray(result.S))
    with pytest.raises(TypeError, match=r"save: path must be a file name or a folder; got None"):
        result.save(None)


def test_load_result_of_a_loaded_result_says_so(result):
    with pytest.raises(TypeError, match=r"load_result takes the path .*got Result \(already"):
        unmix.load_result(result)
