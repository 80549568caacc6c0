"""HDF5 files whose data live in other files: refused outside the file's folder unless
``allow_external=True`` (links inside the folder stay allowed: detector master files).
"""

from __future__ import annotations

import importlib.util
import shutil

import h5py
import numpy as np
import pytest

from conftest import shared_path
from unmix.io import (
    CorruptFileError,
    UnsafeFileError,
    load,
)

HAS_RSCIIO = importlib.util.find_spec("rsciio") is not None
needs_rsciio = pytest.mark.skipif(not HAS_RSCIIO, reason="rosettasciio not installed")
CUTS = (0.001, 0.01, 0.1, 0.25, 0.5, 0.9, 0.99)
RNG = np.random.default_rng(20240)


# ------------------------------------------------- HDF5 data outside the folder
@pytest.fixture
def layout(tmp_path):
    """``tmp_path/outside.h5`` + ``raw.bin``, and the folder ``tmp_path/sub`` to read in."""
    data = np.arange(60, dtype="f8").reshape(3, 4, 5)
    with h5py.File(tmp_path / "outside.h5", "w") as f:
        f["d"] = data
    (tmp_path / "raw.bin").write_bytes(data.tobytes())
    sub = tmp_path / "sub"
    sub.mkdir()
    shutil.copy(tmp_path / "outside.h5", sub / "inside.h5")
    (sub / "nested").mkdir()
    shutil.copy(tmp_path / "outside.h5", sub / "nested" / "deep.h5")
    shutil.copy(tmp_path / "raw.bin", sub / "raw.bin")
    return tmp_path, data


def _master(folder, kind, target):
    path = folder / "master.h5"
    with h5py.File(path, "w") as f:
        if kind == "link":
            f["data"] = h5py.ExternalLink(target, "d")
        elif kind == "group_link":
            f.create_group("entry")["data"] = h5py.ExternalLink(target, "d")
        elif kind == "storage":
            f.create_dataset("data", shape=(3, 4, 5), dtype="f8", external=[(target, 0, 480)])
        elif kind == "vds":
            layout = h5py.VirtualLayout(shape=(3, 4, 5), dtype="f8")
            layout[:] = h5py.VirtualSource(target, "d", shape=(3, 4, 5))
            f.create_virtual_dataset("data", layout, fillvalue=-1)
    return path


U, C, LINK = UnsafeFileError, CorruptFileError, r"'data' is an external link to"
STORE, GONE = r"dataset '/data' stores its values in", r", which is missing \((HDF5|its)"
H5_CASES = [  # kind, target, allow_external, error (None: the data are read), message
    ("link", "../outside.h5", False, U, rf"{LINK} .*/outside\.h5 outside the file's folder"),
    ("group_link", "../outside.h5", False, U, r"'entry/data' is an external link to .*outside"),
    ("link", "/etc/passwd", False, U, rf"{LINK} /etc/passwd outside the file's folder"),
    ("storage", "../raw.bin", False, U, rf"{STORE} .*/raw\.bin outside"),
    ("storage", "/etc/passwd", False, U, rf"{STORE} /etc/passwd outside"),
    ("vds", "../outside.h5", False, U, r"virtual dataset '/data' takes its values from .*outside"),
    ("link", "../outside.h5", True, None, None),
    ("group_link", "../outside.h5", True, None, None),
    ("storage", "../raw.bin", True, None, None),
    ("vds", "../outside.h5", True, None, None),
    ("link", "inside.h5", False, None, None),
    ("link", "nested/deep.h5", False, None, None),
    ("group_link", "inside.h5", False, None, None),
    ("storage", "raw.bin", False, None, None),
    ("vds", "inside.h5", False, None, None),
    ("vds", "nested/deep.h5", False, None, None),
    ("link", "gone.h5", False, C, rf"{LINK} .*/gone\.h5{GONE}"),
    ("storage", "gone.bin", False, C, rf"{STORE} .*/gone\.bin{GONE}"),
    ("storage", "gone.bin", True, C, rf"{STORE} .*/gone\.bin{GONE}"),
    (
        "vds",
        "gone.h5",
        False,
        C,
        rf"virtual dataset '/data' takes its values from .*/gone\.h5{GONE}",
    ),
]


@pytest.mark.parametrize(("kind", "target", "allow", "error", "says"), H5_CASES)
def test_hdf5_data_in_other_files(layout, monkeypatch, kind, target, allow, error, says):
    tmp, data = layout
    path = _master(tmp / "sub", kind, target)
    monkeypatch.chdir(tmp / "sub" / "nested")  # relative paths resolve next to the file
    name = "entry/data" if kind == "group_link" else "data"
    if error is None:
        np.testing.assert_array_equal(load(path, dataset=name, allow_external=allow).data, data)
        return
    if error is UnsafeFileError:
        says += r".*; pass allow_external=True \(CLI: --allow-external\) if you trust it\."
    with pytest.raises(error, match=rf"master\.h5: {says}"):
        load(path, dataset=name, allow_external=allow)


def test_short_external_storage_is_refused(layout):
    tmp, _ = layout
    (tmp / "sub" / "short.bin").write_bytes(bytes(100))
    path = _master(tmp / "sub", "storage", "short.bin")
    with pytest.raises(CorruptFileError, match=r"needs 480 bytes.*they hold 100"):
        load(path)


def test_symlink_inside_the_folder_pointing_outside(layout):
    tmp, _ = layout
    (tmp / "sub" / "alias.h5").symlink_to(tmp / "outside.h5")
    path = _master(tmp / "sub", "link", "alias.h5")
    with pytest.raises(UnsafeFileError, match=r"external link to .*/outside\.h5 outside"):
        load(path, dataset="data")


def test_linked_file_that_links_outside(layout):
    tmp, _ = layout
    _master(tmp / "sub" / "nested", "link", "../../outside.h5")
    path = _master(tmp / "sub", "link", "nested/master.h5")
    with pytest.raises(UnsafeFileError, match=r"sub/master\.h5: 'data' is an external link"):
        load(path, dataset="data")


def test_hyperspy_metadata_dataset_stored_outside(layout):
    tmp, _ = layout
    path = tmp / "sub" / "x.hspy"
    with h5py.File(path, "w") as f:
        f.attrs["file_format"] = "HyperSpy"
        g = f.create_group("Experiments/x")
        g["data"] = np.ones((2, 3))
        g.create_dataset(
            "metadata/leak", shape=(10,), dtype="u1", external=[("/etc/passwd", 0, 10)]
        )
    with pytest.raises(UnsafeFileError, match=r"'/Experiments/x/metadata/leak' stores its values"):
        load(path)


@needs_rsciio
def test_rosettasciio_hdf5_file_linking_outside(layout):
    tmp, _ = layout
    path = tmp / "sub" / "linked.emd"
    shutil.copy(shared_path("formats", "EDS-STO.emd"), path)
    with h5py.File(path, "r+") as f:
        f["leak"] = h5py.ExternalLink("/etc/passwd", "x")
    with pytest.raises(UnsafeFileError, match=r"linked\.emd: 'leak' is an external link"):
        load(path)


def test_hyperspy_axis_dataset_of_the_wrong_length(tmp_path):
    path = tmp_path / "axis.hspy"
    with h5py.File(path, "w") as f:
        f.attrs["file_format"] = "HyperSpy"
        g = f.create_group("Experiments/x")
        g["data"] = np.ones((2, 3))
        for i, nav in enumerate((True, False)):
            g.create_group(f"axis-{i}").attrs.update(navigate=nav, _type="DataAxis")
        g["axis-1/axis"] = np.arange(10**5, dtype="f8")
    with pytest.raises(CorruptFileError, match=r"axis-1/axis has shape \(100000,\)"):
        load(path)
