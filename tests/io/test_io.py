"""Readers: every shared dataset, round trips, corrupt and truncated files."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil

import h5py
import numpy as np
import pytest

import unmix.io as uio
from conftest import shared_path
from unmix.io import CorruptFileError, UnsupportedFormatError, load, save
from unmix.spectral_image import Axis, SpectralImage

HAS_RSCIIO = importlib.util.find_spec("rsciio") is not None
needs_rsciio = pytest.mark.skipif(not HAS_RSCIIO, reason="rosettasciio not installed")


# ------------------------------------------------------------------ shared datasets
# file, spatial shape, signal shape, dtype, signal type, (axis name, units, first, last)
SHARED = [
    ("eels/CuZn_EELS_mapping_tutorial.hspy", (50, 40), (162,), "int16", "EELS",
     ("Energy loss", "eV", 700.0, 1988.0)),
    ("eels/LSMO_linescan.hspy", (40,), (586,), "float32", "EELS",
     ("Energy loss", "eV", 428.5, 721.0)),
    ("eels/LSMO_linescan_low_loss.hspy", (40,), (1024,), "float32", "EELS",
     ("Energy loss", "eV", -50.0, 461.5)),
    ("eds/eds_sem_bruker_P45_75x100.npz", (75, 100), (2048,), "uint8", "EDS",
     ("Energy", "keV", -0.472397235, 19.999649765)),
    ("eds/eds_tem_bruker_64x64.npz", (64, 64), (2048,), "uint8", "EDS",
     ("Energy", "keV", -0.47544754, 19.99659946)),
    ("eds/eds_tem_jeol_64x64_ds8.npz", (64, 64), (1024,), "uint8", "EDS",
     ("Energy", "keV", -0.960661325, 39.953855395)),
    ("raman/raman_renishaw_streamline_49x45.npz", (49, 45), (394,), "float32", "Raman",
     ("Raman Shift", "1/cm", 924.1953125, 1667.6943359375)),
    ("xrd/xrd_aps34ide_143x2000.npz", (143,), (2000,), "float32", "XRD",
     ("2theta", "deg", 0.00575, 22.99425)),
    ("stm/Bias_spectroscopy.3ds", (20, 20), (128,), "float32", "STS", ("Bias", "V", 0.2, -0.1)),
    ("msi/Example_Continuous.imzML", (3, 3), (8399,), "float32", "MSI",
     ("m/z", "m/z", 100.083336, 799.9167)),
    pytest.param("formats/EELS_SI.dm4", (2, 2), (2048,), "float32", "EELS",
                 ("Energy loss", "eV", 300.0, 2347.0), marks=needs_rsciio),
    pytest.param("formats/P45_the_default_job.bcf", (75, 100), (2048,), "uint8", "EDS",
                 ("Energy", "keV", -0.472397235, 19.999649765), marks=needs_rsciio),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("rel", "spatial", "signal", "dtype", "kind", "axis"), SHARED)
def test_shared_dataset(rel, spatial, signal, dtype, kind, axis):
    path = shared_path(*rel.split("/"))
    si = load(path)
    assert si.spatial_shape == spatial
    assert si.signal_shape == signal
    assert si.dtype == np.dtype(dtype)
    assert si.metadata["signal_type"] == kind
    ax = si.signal_axes[0]
    name, units, first, last = axis
    assert (ax.name, ax.units, ax.navigate) == (name, units, False)
    np.testing.assert_allclose(ax.values[[0, -1]], [first, last], rtol=1e-6, atol=1e-6)
    assert all(a.navigate for a in si.spatial_axes)
    X = si.unfold()
    assert X.shape == (int(np.prod(spatial)), int(np.prod(signal)))
    assert np.isfinite(X).all()
    assert si.metadata["source"] == os.path.abspath(path)
    assert len(si.metadata["sha256"]) == 64


@pytest.mark.slow
def test_eels_cuzn_axes_and_values():
    path = shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy")
    si = load(path)
    e = si.signal_axes[0]
    assert (e.offset, e.scale, e.size) == (700.0, 8.0, 162)
    assert [(a.name, a.units) for a in si.spatial_axes] == [("y", "nm"), ("x", "nm")]
    assert si.spatial_axes[0].scale == pytest.approx(0.9213861)
    assert si.metadata["instrument"]["TEM"]["beam_energy"] == 200.0
    with h5py.File(path, "r") as f:
        raw = f["Experiments/EELS Spectrum Image/data"][()]
    np.testing.assert_array_equal(si.data, raw)
    with open(path, "rb") as f:
        assert si.metadata["sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert "sha256" not in load(path, checksum=False).metadata


@pytest.mark.slow
def test_eds_npz_values_and_uniform_kev_axis():
    path = shared_path("eds", "eds_tem_bruker_64x64.npz")
    si = load(path)
    with np.load(path) as z:
        np.testing.assert_array_equal(si.data, z["data"])
        np.testing.assert_allclose(si.signal_axes[0].values, z["axis"], atol=1e-9)
    assert si.signal_axes[0].is_uniform
    assert si.signal_axes[0].scale == pytest.approx(0.010001)


@pytest.mark.slow
def test_xrd_list_of_patterns_can_be_regridded():
    path = shared_path("xrd", "xrd_aps34ide_143x2000.npz")
    si = load(path, spatial_shape=(11, 13))
    assert si.spatial_shape == (11, 13)
    assert len(si.metadata["extra"]["files"]) == 143


@pytest.mark.slow
def test_stm_grid_axes_and_point_parameters():
    path = shared_path("stm", "Bias_spectroscopy.3ds")
    si = load(path)
    bias = si.signal_axes[0]
    assert bias.scale == pytest.approx(-0.3 / 127)
    assert si.metadata["quantity"] == "Current" and si.metadata["units"] == "A"
    assert len(si.metadata["channels"]) == 10
    for key in ("x", "y", "z"):
        assert si.metadata[key].shape == (20, 20)
    # the spatial axes sit on the recorded tip positions (x fastest, in nm)
    np.testing.assert_allclose(si.spatial_axes[1].values, si.metadata["x"][0] * 1e9, atol=1e-3)
    np.testing.assert_allclose(si.spatial_axes[0].values, si.metadata["y"][:, 0] * 1e9, atol=1e-3)
    swept = load(path, signal="Bias (V)")  # the recorded bias follows the axis
    np.testing.assert_allclose(swept.data[3, 4], bias.values, atol=1e-6)
    assert load(path, signal="Frequency").metadata["channel"] == "Frequency Shift (Hz)"
    with pytest.raises(ValueError, match=r"no channel named 'nope'.*Current \(A\)"):
        load(path, signal="nope")


@pytest.mark.slow
def test_imzml_continuous_against_raw_ibd_and_binning():
    path = shared_path("msi", "Example_Continuous.imzML")
    si = load(path)
    ibd = os.path.abspath(path[:-6] + ".ibd")
    raw = np.fromfile(ibd, dtype="<f4", offset=16)
    mz, first = raw[:8399], raw[8399 : 2 * 8399]
    np.testing.assert_allclose(si.signal_axes[0].values, mz, rtol=1e-7)
    np.testing.assert_array_equal(si.data[0, 0], first)  # pixel x=1, y=1
    assert si.spatial_axes[1].units == "µm" and si.spatial_axes[1].scale == 100.0
    assert ibd in si.metadata["sha256_companions"]
    binned = load(path, mz_bins=100)
    assert binned.signal_shape == (100,) and binned.signal_axes[0].is_uniform
    np.testing.assert_allclose(binned.data.sum(-1), si.data.sum(-1), rtol=1e-5)


@pytest.mark.slow
@needs_rsciio
def test_bcf_spectrum_image_is_chosen_and_matches_npz():
    si = load(shared_path("formats", "P45_the_default_job.bcf"))
    assert si.metadata["title"] == "EDX"
    assert len(si.metadata["contents"]) == 3  # BSE, SE images and the EDX cube
    with np.load(shared_path("eds", "eds_sem_bruker_P45_75x100.npz")) as z:
        np.testing.assert_array_equal(si.data, z["data"])
    assert load(shared_path("formats", "P45_the_default_job.bcf"), signal="EDX").shape == si.shape
    bse = load(shared_path("formats", "P45_the_default_job.bcf"), signal="BSE")
    assert bse.n_pixels == 1 and len(bse.signal_shape) == 2  # an image: one 2-D pattern


@pytest.mark.slow
@needs_rsciio
def test_dm4_spectrum_image_is_transposed_to_spatial_first():
    si = load(shared_path("formats", "EELS_SI.dm4"))
    assert [a.name for a in si.axes] == ["y", "x", "Energy loss"]
    assert si.metadata["reader"] == "rsciio:DigitalMicrograph"


@pytest.mark.slow
@needs_rsciio
def test_emd_without_spectrum_image_lists_its_content():
    path = shared_path("formats", "EDS-STO.emd")
    with pytest.raises(
        ValueError, match=r"EDS-STO.emd holds no spectrum image.*SuperXG21.*one-pixel"
    ):
        load(path)
    with pytest.raises(ValueError, match=r"EDS-STO.emd: signal='EDS' matches 5 signals"):
        load(path, signal="EDS")
    one = load(path, signal=4)
    assert (one.spatial_shape, one.signal_shape) == ((1,), (4096,))
    assert one.signal_axes[0].units == "keV"


@pytest.mark.slow
def test_hspy_image_without_navigation_is_one_pattern():
    """A single image is one 2-D pattern (sliding_window_fft makes spectra from it)."""
    image = load(shared_path("eels", "CuZn_HAADF.hspy"))
    assert (image.spatial_shape, image.signal_shape) == ((1,), (50, 40))


@pytest.mark.slow
def test_hspy_lazy_keeps_the_file_open_until_closed():
    path = shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy")
    with load(path, lazy=True) as si:
        assert si.is_lazy and isinstance(si.data, h5py.Dataset)
        np.testing.assert_array_equal(si.unfold(), load(path).unfold())
        ds = si.data
    assert not ds.id.valid


@pytest.mark.slow
def test_hspy_with_several_experiments(tmp_path):
    src = shared_path("eels", "LSMO_linescan.hspy")
    low = shared_path("eels", "LSMO_linescan_low_loss.hspy")
    dst = tmp_path / "both.hspy"
    shutil.copy(src, dst)
    with h5py.File(dst, "a") as f, h5py.File(low, "r") as g:
        g.copy("Experiments/EELS Spectrum Image (low-loss)", f["Experiments"])
    with pytest.raises(ValueError, match=r"both.hspy holds several experiments.*low-loss"):
        load(dst)
    assert load(dst, signal="low-loss").signal_shape == (1024,)
    assert load(dst, signal="EELS Spectrum Image (high-loss)").signal_shape == (586,)


# ------------------------------------------------------------------------ round trips
def synthetic() -> SpectralImage:
    rng = np.random.default_rng(1)
    data = rng.poisson(5.0, (3, 4, 6)).astype(np.float32)
    return SpectralImage(
        data,
        [Axis("y", 3, 0.25, 1.0, "µm"), Axis("x", 4, 0.25, 0.0, "µm")],
        [Axis.from_values("Raman Shift", [100, 101, 103, 106, 110, 115], "1/cm")],
        {"title": "synthetic", "signal_type": "Raman", "quantity": "Counts"},
    )


@pytest.mark.parametrize("ext", ["npz", "h5", "hdf5", "zarr"])
def test_round_trip(tmp_path, ext):
    if ext == "zarr":
        pytest.importorskip("zarr")
    si = synthetic()
    path = tmp_path / f"cube.{ext}"
    save(si, path)
    back = load(path)
    np.testing.assert_array_equal(back.data, si.data)
    assert back.dtype == si.dtype
    assert back.axes == si.axes
    assert not back.signal_axes[0].is_uniform
    for key in ("title", "signal_type", "quantity"):
        assert back.metadata[key] == si.metadata[key]
    if ext != "npz":
        with load(path, lazy=True) as lazy:
            assert lazy.is_lazy
            np.testing.assert_array_equal(lazy.unfold(), si.unfold())


def test_npy_shape_conventions(tmp_path):
    for shape, spatial, signal in [
        ((10, 7), (10,), (7,)),
        ((3, 4, 7), (3, 4), (7,)),
        ((2, 3, 8, 9), (2, 3), (8, 9)),
    ]:
        path = tmp_path / f"a{len(shape)}.npy"
        data = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
        np.save(path, data)
        si = load(path)
        assert (si.spatial_shape, si.signal_shape) == (spatial, signal)
        np.testing.assert_array_equal(si.data, data)
        assert isinstance(load(path, lazy=True).data, np.memmap)
    volume = load(tmp_path / "a4.npy", signal_ndim=1)
    assert (volume.spatial_shape, volume.signal_shape) == ((2, 3, 8), (9,))
    np.save(tmp_path / "one.npy", np.zeros(5))
    with pytest.raises(UnsupportedFormatError, match=r"one.npy.*at least 2 dimensions"):
        load(tmp_path / "one.npy")


def test_hdf5_dataset_choice(tmp_path):
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f["axis"] = np.arange(5.0)
        f["raw/counts"] = np.zeros((2, 3, 5))
        f["processed/counts"] = np.ones((2, 3, 5))
    with pytest.raises(ValueError, match=r"two.h5 holds several datasets.*processed/counts"):
        load(path)
    assert load(path, dataset="processed/counts").data.sum() == 30
    with pytest.raises(ValueError, match=r"no dataset 'nope'"):
        load(path, dataset="nope")
    single = tmp_path / "one.h5"
    with h5py.File(single, "w") as f:
        f["axis"] = np.arange(5.0)
        f["cube"] = np.zeros((2, 3, 5))
    assert load(single).spatial_shape == (2, 3)


def test_hyperspy_saved_file_reads_back(tmp_path):
    pytest.importorskip("hyperspy")
    si = synthetic()
    path = tmp_path / "s.hspy"
    si.to_hyperspy().save(path)
    back = load(path)
    np.testing.assert_array_equal(back.data, si.data)
    assert back.axes == si.axes


# ------------------------------------------------------------ corrupt, truncated, unknown
def truncated_copy(src, dst, fraction=0.6):
    with open(src, "rb") as f:
        raw = f.read()
    with open(dst, "wb") as f:
        f.write(raw[: int(len(raw) * fraction)])
    return dst


def test_truncated_npz(tmp_path):
    src = tmp_path / "full.npz"
    save(synthetic(), src)
    bad = truncated_copy(src, tmp_path / "cut.npz")
    with pytest.raises(ValueError, match=r"cut.npz: not a readable .npz"):
        load(bad)


def test_truncated_npy(tmp_path):
    np.save(tmp_path / "full.npy", np.zeros((20, 30)))
    bad = truncated_copy(tmp_path / "full.npy", tmp_path / "cut.npy")
    with pytest.raises(ValueError, match=r"cut.npy: not a readable .npy"):
        load(bad)


def test_h5_that_is_not_hdf5(tmp_path):
    bad = tmp_path / "text.h5"
    bad.write_text("this is not HDF5\n")
    with pytest.raises(ValueError, match=r"text.h5: not a readable HDF5 file"):
        load(bad)


@pytest.mark.slow
def test_truncated_3ds(tmp_path):
    bad = truncated_copy(shared_path("stm", "Bias_spectroscopy.3ds"), tmp_path / "cut.3ds")
    with pytest.raises(CorruptFileError, match=r"cut.3ds: truncated .3ds.*expected 2076800 bytes"):
        load(bad)
    header_only = truncated_copy(bad, tmp_path / "head.3ds", 0.001)
    with pytest.raises(ValueError, match=r"head.3ds: no :HEADER_END:"):
        load(header_only)


@pytest.mark.slow
def test_garbage_and_broken_imzml(tmp_path):
    bad = tmp_path / "junk.imzML"
    bad.write_bytes(b"\x00\x01 not xml <<<")
    (tmp_path / "junk.ibd").write_bytes(b"\x00" * 32)
    with pytest.raises(ValueError, match=r"junk.imzML: not a readable imzML"):
        load(bad)
    src = shared_path("msi", "Example_Continuous.imzML")
    shutil.copy(src, tmp_path / "noibd.imzML")
    with pytest.raises(FileNotFoundError, match=r"noibd.ibd is missing"):
        load(tmp_path / "noibd.imzML")
    shutil.copy(src, tmp_path / "short.imzML")
    truncated_copy(src[:-6] + ".ibd", tmp_path / "short.ibd")
    with pytest.raises(ValueError, match=r"short.ibd: truncated"):
        load(tmp_path / "short.imzML")


@needs_rsciio
def test_garbage_instrument_file(tmp_path):
    bad = tmp_path / "junk.dm4"
    bad.write_bytes(os.urandom(256))
    with pytest.raises(ValueError, match=r"junk.dm4: RosettaSciIO could not read"):
        load(bad)


def test_unknown_extension_and_missing_file(tmp_path):
    odd = tmp_path / "data.xyz123"
    odd.write_text("?")
    with pytest.raises(UnsupportedFormatError, match=r"data.xyz123.*supported:.*\.3ds.*\.npz"):
        load(odd)
    with pytest.raises(FileNotFoundError, match=r"nothere.npz: no such file"):
        load(tmp_path / "nothere.npz")
    exts = uio.supported_extensions()
    assert {"npy", "npz", "h5", "hspy", "zarr", "3ds", "imzml"} <= set(exts)
    if HAS_RSCIIO:
        assert {"dm3", "dm4", "emd", "bcf", "mib", "blo", "wdf", "msa"} <= set(exts)


# --------------------------------------------------------------- processed-mode imzML
def write_processed_imzml(path, spectra):
    """A minimal processed imzML (float64 m/z, float32 intensities) and its .ibd."""
    ibd = bytearray(bytes(16))
    entries = []
    for (x, y), (mz, inten) in spectra.items():
        mz = np.asarray(mz, "<f8").tobytes()
        it = np.asarray(inten, "<f4").tobytes()
        n = len(inten)
        entries.append((x, y, n, len(ibd), len(mz), len(ibd) + len(mz), len(it)))
        ibd += mz + it
    arr = (
        '<binaryDataArray encodedLength="0"><referenceableParamGroupRef ref="{g}"/>'
        '<cvParam accession="IMS:1000103" value="{n}"/>'
        '<cvParam accession="IMS:1000102" value="{o}"/>'
        '<cvParam accession="IMS:1000104" value="{e}"/><binary/></binaryDataArray>'
    )
    body = "".join(
        f'<spectrum id="s{i}" index="{i}"><scanList><scan>'
        f'<cvParam accession="IMS:1000050" value="{x}"/>'
        f'<cvParam accession="IMS:1000051" value="{y}"/></scan></scanList>'
        "<binaryDataArrayList>"
        + arr.format(g="mz", n=n, o=o1, e=e1)
        + arr.format(g="int", n=n, o=o2, e=e2)
        + "</binaryDataArrayList></spectrum>"
        for i, (x, y, n, o1, e1, o2, e2) in enumerate(entries)
    )
    xml = (
        '<?xml version="1.0"?><mzML xmlns="http://psi.hupo.org/ms/mzml"><fileDescription>'
        '<fileContent><cvParam accession="IMS:1000031" name="processed"/></fileContent>'
        "</fileDescription><referenceableParamGroupList>"
        '<referenceableParamGroup id="mz"><cvParam accession="MS:1000514"/>'
        '<cvParam accession="MS:1000523"/><cvParam accession="MS:1000576"/>'
        '</referenceableParamGroup><referenceableParamGroup id="int">'
        '<cvParam accession="MS:1000515"/><cvParam accession="MS:1000521"/>'
        "</referenceableParamGroup></referenceableParamGroupList>"
        f"<run><spectrumList>{body}</spectrumList></run></mzML>"
    )
    path.write_text(xml)
    path.with_suffix(".ibd").write_bytes(bytes(ibd))


def test_processed_imzml_is_binned_onto_a_common_grid(tmp_path):
    path = tmp_path / "proc.imzML"
    spectra = {
        (1, 1): ([100.0, 150.0, 199.0], [1.0, 2.0, 3.0]),
        (2, 1): ([101.0, 120.0], [4.0, 5.0]),
        (2, 2): ([200.0], [6.0]),  # pixel (1, 2) is never measured
    }
    write_processed_imzml(path, spectra)
    with pytest.raises(UnsupportedFormatError, match=r"proc.imzML is a processed.*mz_bins"):
        load(path)
    si = load(path, mz_bins=4)
    assert si.spatial_shape == (2, 2) and si.signal_shape == (4,)
    np.testing.assert_allclose(si.signal_axes[0].values, [112.5, 137.5, 162.5, 187.5])
    np.testing.assert_allclose(si.data[0, 0], [1, 0, 2, 3])
    np.testing.assert_allclose(si.data[0, 1], [9, 0, 0, 0])
    np.testing.assert_allclose(si.data[1, 1], [0, 0, 0, 6])
    np.testing.assert_array_equal(si.metadata["pixel_mask"], [[True, True], [False, True]])
    part = load(path, mz_bins=2, mz_range=(100.0, 150.0))
    np.testing.assert_allclose(part.data[0, 0], [1, 2])


def test_zarr_group_dataset_choice(tmp_path):
    zarr = pytest.importorskip("zarr")
    root = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    for name, fill in (("a", 1.0), ("b", 2.0)):
        arr = root.create_array(name, shape=(2, 3, 4), dtype="f4")
        arr[...] = fill
    with pytest.raises(ValueError, match=r"g.zarr holds several arrays.*\ba\b.*\bb\b"):
        load(tmp_path / "g.zarr")
    assert load(tmp_path / "g.zarr", dataset="b").data.max() == 2.0


@pytest.mark.slow
@needs_rsciio
def test_plugin_keyword_forces_rosettasciio():
    path = shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy")
    via = load(path, plugin="HSPY")
    assert via.metadata["reader"] == "rsciio:HSPY"
    np.testing.assert_array_equal(via.data, load(path).data)
    assert via.axes == load(path).axes


def test_format_options_the_reader_does_not_take():
    """signal_ndim on a file that says its axes is checked against them; mz_bins on a
    file without an m/z axis is refused, naming the option."""
    path = shared_path("stm", "Bias_spectroscopy.3ds")
    assert load(path, signal_ndim=1).signal_shape == load(path).signal_shape
    with pytest.raises(ValueError, match=r"signal has 1 axes .* not signal_ndim=2"):
        load(path, signal_ndim=2)
    with pytest.raises(ValueError, match=r"mz_bins= applies to imzml files only"):
        load(path, mz_bins=500)
