"""SpectralImage and Axis: shapes, (un)folding, validation, HyperSpy round trips."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from unmix.spectral_image import Axis, SpectralImage

HAS_HYPERSPY = importlib.util.find_spec("hyperspy") is not None
needs_hyperspy = pytest.mark.skipif(not HAS_HYPERSPY, reason="hyperspy not installed")


def cube(shape=(4, 5, 7), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def calibrated(data: np.ndarray | None = None) -> SpectralImage:
    data = cube() if data is None else data
    energy = np.linspace(100.0, 160.0, data.shape[-1]) ** 1.1  # non-uniform
    return SpectralImage(
        data,
        [Axis("y", data.shape[0], 0.5, 1.0, "nm"), Axis("x", data.shape[1], 0.5, -2.0, "nm")],
        [Axis.from_values("Energy", energy, "eV")],
        {"title": "synthetic", "signal_type": "EELS", "quantity": "Counts"},
    )


def test_axis_values_uniform_and_not():
    ax = Axis("E", 5, scale=2.0, offset=10.0, units="eV", navigate=False)
    np.testing.assert_allclose(ax.values, [10, 12, 14, 16, 18])
    assert ax.is_uniform
    assert Axis.from_values("E", ax.values, "eV") == ax
    bent = Axis.from_values("E", [1.0, 2.0, 4.0, 8.0], "eV")
    assert not bent.is_uniform
    np.testing.assert_allclose(bent.values, [1, 2, 4, 8])
    assert Axis.from_dict(bent.to_dict()) == bent
    assert Axis.from_values("V", [0.2, 0.1, 0.0, -0.1]).scale == pytest.approx(-0.1)
    with pytest.raises(ValueError, match="3 coordinates for size 4"):
        Axis("E", 4, array=np.arange(3.0))


def test_shapes_and_properties():
    si = calibrated()
    assert si.spatial_shape == (4, 5)
    assert si.signal_shape == (7,)
    assert (si.n_pixels, si.n_channels) == (20, 7)
    assert not si.is_lazy
    assert [a.navigate for a in si.axes] == [True, True, False]
    assert "synthetic" in repr(si) and "EELS" in repr(si)
    prov = si.provenance()
    assert prov["signal_axes"][0]["name"] == "Energy" and "values" in prov["signal_axes"][0]


def test_default_axes_follow_the_shape_conventions():
    assert SpectralImage(np.zeros((6, 3))).spatial_shape == (6,)
    assert SpectralImage(np.zeros((2, 6, 3))).signal_shape == (3,)
    four_d = SpectralImage(np.zeros((2, 3, 4, 5)), signal_ndim=2)
    assert (four_d.spatial_shape, four_d.signal_shape) == ((2, 3), (4, 5))
    assert [a.name for a in four_d.axes] == ["y", "x", "det_y", "det_x"]


def test_unfold_is_a_view_in_pixel_c_order():
    si = calibrated()
    X = si.unfold()
    assert X.shape == (20, 7)
    assert np.shares_memory(X, si.data)
    np.testing.assert_array_equal(X[7], si.data[1, 2])  # pixel 7 = row 1, col 2


def test_fold_maps_and_endmembers_invert_unfold():
    si = calibrated()
    X = si.unfold()
    np.testing.assert_array_equal(si.fold_maps(X), si.data)
    A = X[:, :3]
    assert si.fold_maps(A).shape == (4, 5, 3)
    np.testing.assert_array_equal(si.fold_maps(A)[1, 2], A[7])
    assert si.fold_maps(X[:, 0]).shape == (4, 5)
    assert si.fold_endmembers(X[:2]).shape == (2, 7)
    stem = SpectralImage(cube((3, 4, 5, 6)), signal_ndim=2)
    Xs = stem.unfold()
    assert Xs.shape == (12, 30)
    np.testing.assert_array_equal(stem.fold_endmembers(Xs[:2]), stem.data.reshape(12, 5, 6)[:2])
    with pytest.raises(ValueError, match="20 pixels"):
        si.fold_maps(np.zeros((19, 3)))
    with pytest.raises(ValueError, match="7 \\(signal shape"):
        si.fold_endmembers(np.zeros((3, 8)))


def test_fold_works_on_torch_tensors():
    torch = pytest.importorskip("torch")
    si = calibrated()
    A = torch.zeros(20, 3)
    assert tuple(si.fold_maps(A).shape) == (4, 5, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"signal_axes": [Axis("a", 5), Axis("b", 7), Axis("c", 1)]}, "1 or 2 signal axes"),
        ({"spatial_axes": [Axis("y", 4), Axis("x", 6)]}, "axis 'x' has size 6"),
        ({"spatial_axes": [], "signal_axes": [Axis("E", 7)]}, "1 to 3 spatial axes"),
    ],
)
def test_invalid_axes_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SpectralImage(cube(), **kwargs)


def test_with_spatial_shape_regrids_pixels():
    si = SpectralImage(cube((12, 7)))
    grid = si.with_spatial_shape((3, 4))
    assert grid.spatial_shape == (3, 4)
    np.testing.assert_array_equal(grid.unfold(), si.unfold())
    with pytest.raises(ValueError, match="holds 10 pixels"):
        si.with_spatial_shape((2, 5))


@needs_hyperspy
def test_hyperspy_round_trip_1d_signal():
    si = calibrated()
    s = si.to_hyperspy()
    assert type(s).__name__ == "Signal1D"
    assert s.axes_manager.navigation_shape == (5, 4)  # HyperSpy lists x first
    assert s.metadata.General.title == "synthetic"
    back = SpectralImage.from_hyperspy(s)
    assert back.axes == si.axes
    np.testing.assert_array_equal(back.data, si.data)
    assert back.metadata["signal_type"] == "EELS"


@needs_hyperspy
def test_hyperspy_round_trip_2d_signal_and_lazy():
    si = SpectralImage(cube((2, 3, 4, 5)), signal_ndim=2, metadata={"title": "4D"})
    s = si.to_hyperspy()
    assert type(s).__name__ == "Signal2D"
    assert s.axes_manager.signal_shape == (5, 4)
    back = SpectralImage.from_hyperspy(s)
    assert back.signal_shape == (4, 5) and back.axes == si.axes
    da = pytest.importorskip("dask.array")
    lazy = SpectralImage(da.from_array(si.data), si.spatial_axes, si.signal_axes)
    assert lazy.is_lazy
    assert "Lazy" in type(lazy.to_hyperspy()).__name__
    np.testing.assert_array_equal(lazy.unfold(), si.unfold())
    np.testing.assert_array_equal(lazy.unfold(load=False).compute(), si.unfold())


@needs_hyperspy
def test_from_hyperspy_single_spectrum_is_one_pixel():
    import hyperspy.api as hs

    s = hs.signals.Signal1D(np.arange(10.0))
    si = SpectralImage.from_hyperspy(s)
    assert (si.spatial_shape, si.signal_shape) == ((1,), (10,))
