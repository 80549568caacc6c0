"""A folder or a glob of 2-D images (one per channel) read as one (y, x, channel) image."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tifffile
from PIL import Image

import unmix
from unmix.blocks import ScanRows
from unmix.cli import entry
from unmix.io import CorruptFileError, ImageStack, UnsupportedFormatError

SHAPE = (20, 30, 12)
Q = 0.25 * np.arange(1, 13)  # 0.25 .. 3.0: natural order of the digits would misplace 0.5


@pytest.fixture(scope="module")
def cube():
    """Three planted components, float32 (y, x, channel)."""
    rng = np.random.default_rng(0)
    A = rng.gamma(1.0, size=(SHAPE[0] * SHAPE[1], 3))
    S = rng.gamma(2.0, size=(3, SHAPE[2]))
    return (A @ S).reshape(SHAPE).astype(np.float32)


def _write_tiffs(folder, cube, names):
    folder.mkdir(exist_ok=True)
    for j in np.random.default_rng(1).permutation(len(names)):  # written in any order
        tifffile.imwrite(folder / names[j], cube[:, :, j])
    return folder


@pytest.fixture
def tiffs(tmp_path, cube):
    return _write_tiffs(tmp_path / "scan", cube, [f"img_{j}.tif" for j in range(SHAPE[2])])


# ------------------------------------------------------------------ channel axis
def test_folder_with_a_csv_sidecar_gives_the_cube_and_its_axis(tiffs, cube):
    (tiffs / "channels.csv").write_text("q,1/nm\n" + "\n".join(f"{v}" for v in Q) + "\n")
    image = unmix.io.load(tiffs)
    assert image.shape == SHAPE and not image.is_lazy
    np.testing.assert_array_equal(image.data, cube)
    (axis,) = image.signal_axes
    assert (axis.name, axis.units) == ("q", "1/nm")
    np.testing.assert_allclose(axis.values, Q)
    md = image.metadata
    assert md["reader"] == "stack" and md["source"] == str(tiffs) and md["n_files"] == 12
    assert md["files"][:3] == ["img_0.tif", "img_1.tif", "img_2.tif"]
    assert md["channel_source"] == "sidecar channels.csv" and len(md["sha256"]) == 64
    tifffile.imwrite(tiffs / "img_3.tif", cube[:, :, 3] + 1)
    assert unmix.io.load(tiffs).metadata["sha256"] != md["sha256"]  # the bytes are hashed
    assert "sha256" not in unmix.io.load(tiffs, checksum=False).metadata


Q_TEXT = "\n".join(f"{v}" for v in Q)


@pytest.mark.parametrize(
    ("name", "text", "expect"),
    [
        ("axis.json", json.dumps({"name": "E", "units": "eV", "offset": 100, "scale": 5}),
         ("E", "eV", 100 + 5 * np.arange(12))),
        ("axis.json", json.dumps({"name": "q", "values": list(Q)}), ("q", "", Q)),
        ("channels.txt", "# EFTEM windows\nq (1/nm)\n" + Q_TEXT, ("q", "1/nm", Q)),
        ("channels.txt", Q_TEXT + "\n\n", ("channel", "", Q)),
    ],
)  # fmt: skip
def test_sidecar_forms(tiffs, name, text, expect):
    (tiffs / name).write_text(text)
    (signal,) = unmix.io.load(tiffs, checksum=False).signal_axes
    assert (signal.name, signal.units) == expect[:2]
    np.testing.assert_allclose(signal.values, expect[2])


def test_numbers_in_the_names_order_the_images_and_give_the_axis(tmp_path, cube):
    folder = _write_tiffs(tmp_path / "q", cube, [f"q_{v:g}nm.tif" for v in Q])
    image = unmix.io.load(folder, checksum=False)
    np.testing.assert_array_equal(image.data, cube)  # 0.25, 0.5, ... 3: by value
    np.testing.assert_allclose(image.signal_axes[0].values, Q)


def test_natural_order_img_2_before_img_10_and_a_constant_number_is_ignored(tmp_path, cube):
    folder = _write_tiffs(tmp_path / "n", cube, [f"run7_img_{j + 1}.tif" for j in range(12)])
    image = unmix.io.load(folder, checksum=False)
    np.testing.assert_array_equal(image.data, cube)
    np.testing.assert_allclose(image.signal_axes[0].values, np.arange(1, 13))
    assert image.metadata["files"][1:3] == ["run7_img_2.tif", "run7_img_3.tif"]


def test_two_varying_numbers_give_the_natural_order_and_an_index_axis(tmp_path, cube):
    names = [f"E{100 + 7 * j}_t{(5 * j) % 12}.tif" for j in range(12)]
    folder = _write_tiffs(tmp_path / "two", cube, names)
    image = unmix.io.load(folder, checksum=False)
    np.testing.assert_array_equal(image.data, cube)
    np.testing.assert_array_equal(image.signal_axes[0].values, np.arange(12))
    for pattern in ("E{value}_t*.tif", r"E(\d+)_"):  # a template, a regular expression
        image = unmix.io.load(folder, checksum=False, channel_pattern=pattern)
        np.testing.assert_allclose(image.signal_axes[0].values, 100 + 7 * np.arange(12))
        assert image.metadata["channel_source"] == f"channel_pattern {pattern!r}"


def test_a_glob_selects_images_among_other_files(tiffs, cube):
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tiffs / "overview.png")
    image = unmix.io.load(str(tiffs / "img_*.tif"), checksum=False)
    assert image.shape == SHAPE and image.metadata["source"] == str(tiffs / "img_*.tif")
    np.testing.assert_array_equal(image.data, cube)


# ------------------------------------------------------------------ formats
@pytest.mark.parametrize("fmt", ["png", "tif"])
def test_images_decoded_whole_are_cached_once(tmp_path, cube, fmt):
    counts = np.rint(cube * 1000).astype(np.uint16)
    (tmp_path / fmt).mkdir()
    for j in range(12):
        name = tmp_path / fmt / f"m{j + 1}.{fmt}"
        if fmt == "png":
            Image.fromarray(counts[:, :, j]).save(name)
        else:  # compressed: not memory-mappable
            tifffile.imwrite(name, counts[:, :, j], compression="zlib")
    image = unmix.io.load(tmp_path / fmt, checksum=False)
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image.data, counts)
    with unmix.io.load(tmp_path / fmt, lazy=True, checksum=False) as lazy:
        X = ScanRows(lazy.data, 2)
        for a, b in [(35, 95), (0, 30), (570, 600)]:
            np.testing.assert_array_equal(X[a:b], counts.reshape(-1, 12)[a:b])
        assert lazy.data.decodes == 12  # each image decoded once, then cached


def test_npy_stack_lists_at_most_100_names(tmp_path):
    (tmp_path / "npy").mkdir()
    for j in range(101):
        np.save(tmp_path / "npy" / f"f{j}.npy", np.full((2, 3), j, np.int16))
    image = unmix.io.load(tmp_path / "npy", lazy=True)
    assert image.shape == (2, 3, 101) and image.data[1, 2, 100] == 100
    md = image.metadata
    assert len(md["files"]) == 101 and md["files"][-1] == "... (101 files in all)"
    assert md["files"][99] == "f99.npy" and md["n_files"] == 101


def test_indexing_the_lazy_stack_matches_numpy(tiffs, cube):
    stack = unmix.io.load(tiffs, lazy=True, checksum=False).data
    assert isinstance(stack, ImageStack) and stack.chunks == (1, 30, 12)
    keys = [
        (2,),
        (slice(None), 3),
        (Ellipsis, 4),
        (slice(1, 5), slice(None, None, 2), [0, 3]),
        (-1, -1, -1),
        ([3, 1],),
        (slice(4, 4),),
    ]
    for key in keys:
        np.testing.assert_array_equal(stack[key], cube[key], err_msg=str(key))
    np.testing.assert_array_equal(np.asarray(stack), cube)


# ------------------------------------------------------------------ lazy reading
def test_one_scan_line_reads_that_row_of_each_image_only(tiffs, cube, monkeypatch):
    seen = []
    memmap = tifffile.memmap

    class Spy:
        def __init__(self, path, arr):
            self.path, self.arr, self.shape, self.dtype = path, arr, arr.shape, arr.dtype

        def __getitem__(self, key):
            seen.append((os.path.basename(self.path), key))
            return self.arr[key]

    monkeypatch.setattr(tifffile, "memmap", lambda path, **kw: Spy(path, memmap(path, **kw)))
    image = unmix.io.load(tiffs, lazy=True, checksum=False)
    X = ScanRows(image.data, 2)
    np.testing.assert_array_equal(X[30:60], cube[1])  # scan line 1: pixels 30 .. 59
    assert sorted(seen) == sorted((f"img_{j}.tif", slice(1, 2)) for j in range(12))
    assert image.data.reads == 30 * 12 and image.data.decodes == 0


def test_streamed_factorize_on_the_stack_equals_the_in_memory_cube(tiffs, cube):
    kw = {"solver": "hals", "random_state": 0, "max_iter": 30, "tol": 0, "block_size": 90}
    with unmix.io.load(tiffs, lazy=True, checksum=False) as image:
        streamed = unmix.factorize(ScanRows(image.data, 2), 3, **kw)
        assert image.data.decodes == 0  # memory-mapped rows, never a whole image
    memory = unmix.factorize(cube.reshape(-1, 12), 3, **kw)
    np.testing.assert_allclose(streamed.S, memory.S, rtol=1e-6)
    np.testing.assert_allclose(streamed.A, memory.A, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("extra", [[], ["--out-of-core"]])
def test_cli_run_on_a_folder(tiffs, tmp_path, extra):
    out = tmp_path / "out"
    assert entry(["run", str(tiffs), "-k", "3", "--no-report", "-q", "-o", str(out), *extra]) == 0
    result = unmix.load_result(out / "result.h5")
    assert result.maps().shape == (20, 30, 3) and result.S.shape == (3, 12)
    assert result.context["reader"] == "stack"


def test_the_cli_streams_a_lazy_stack_by_scan_lines(tiffs):
    from unmix.cli._load import unfolded

    with unmix.io.load(tiffs, lazy=True, checksum=False) as image:
        X = unfolded(image)
        assert isinstance(X, ScanRows) and X.line == 30 and X.shape == (600, 12)


# ------------------------------------------------------------------ errors
def _odd(kind):
    """A way to spoil the folder, and the error it must give."""
    return {
        "shape": (lambda f: tifffile.imwrite(f / "img_5.tif", np.zeros((21, 30), np.float32)),
                  UnsupportedFormatError, r"img_5\.tif: a 21x30 image.*same shape"),
        "dtype": (lambda f: tifffile.imwrite(f / "img_5.tif", np.zeros((20, 30), np.uint16)),
                  UnsupportedFormatError, r"img_5\.tif: uint16 pixels.*same data type"),
        "not an image": (lambda f: (f / "notes.txt").write_text("hi"),
                         UnsupportedFormatError, r"notes\.txt: not an image.*glob"),
        "damaged": (lambda f: (f / "img_5.tif").write_bytes(b"garbage" * 9),
                    CorruptFileError, r"img_5\.tif: not a readable tifffile image"),
        "3-D": (lambda f: np.save(f / "img_12.npy", np.zeros((20, 30, 2))),
                UnsupportedFormatError, r"img_12\.npy: holds an array of shape \(20, 30, 2\)"),
        "colour": (lambda f: Image.new("RGB", (30, 20)).save(f / "img_12.png"),
                   UnsupportedFormatError, r"img_12\.png: a RGB \(colour"),
        "sidecar": (lambda f: (f / "channels.txt").write_text("1\n2\n"),
                    CorruptFileError, r"channels\.txt: 2 channel values for 12 images"),
        "sidecar text": (lambda f: (f / "channels.csv").write_text("q,nm\n1\ntwo\n"),
                         CorruptFileError, r"channels\.csv: not a readable.*'two' is not"),
        "empty file": (lambda f: (f / "img_12.tif").write_bytes(b""),
                       CorruptFileError, r"img_12\.tif is empty"),
    }[kind]  # fmt: skip


@pytest.mark.parametrize(
    "kind",
    [
        "shape",
        "dtype",
        "not an image",
        "damaged",
        "3-D",
        "colour",
        "sidecar",
        "sidecar text",
        "empty file",
    ],
)
def test_an_odd_file_is_named_with_the_fix(tiffs, kind):
    spoil, error, match = _odd(kind)
    spoil(tiffs)
    with pytest.raises(error, match=match):
        unmix.io.load(tiffs, checksum=False)


def test_empty_folder_empty_glob_and_wrong_options(tmp_path, tiffs):
    (tmp_path / "none").mkdir()
    with pytest.raises(UnsupportedFormatError, match="the folder holds no images"):
        unmix.io.load(tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="no file matches this pattern"):
        unmix.io.load(str(tiffs / "scan_*.tif"))
    with pytest.raises(ValueError, match=r"dataset= do.*not apply to an image stack"):
        unmix.io.load(tiffs, dataset="data")
    with pytest.raises(ValueError, match="has 2 groups; give exactly one"):
        unmix.io.load(tiffs, channel_pattern=r"(img)_(\d+)")
    with pytest.raises(ValueError, match=r"img_0\.tif: its name gives no number"):
        unmix.io.load(tiffs, channel_pattern="q_{value}.tif")
    np.save(tmp_path / "x.npy", np.zeros((4, 5)))
    with pytest.raises(ValueError, match="channel_pattern= applies to stack files only"):
        unmix.io.load(tmp_path / "x.npy", channel_pattern="q_{value}.tif")


def test_a_3d_dm4_in_a_stack_is_refused(tmp_path):
    dm4 = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data")
    dm4 = os.path.join(os.environ.get("UNMIX_SHARED_DATA", dm4), "formats", "EELS_SI.dm4")
    if not os.path.exists(dm4):
        pytest.skip("the shared data are not here")
    (tmp_path / "dm").mkdir()
    os.symlink(os.path.abspath(dm4), tmp_path / "dm" / "EELS_SI.dm4")
    with pytest.raises(UnsupportedFormatError, match=r"EELS_SI\.dm4: holds an array of shape"):
        unmix.io.load(tmp_path / "dm")


def test_cli_channel_pattern_sets_the_axis(tmp_path, cube):
    names = [f"E{100 + 7 * j}_t{(5 * j) % 12}.tif" for j in range(12)]
    folder = _write_tiffs(tmp_path / "two", cube, names)
    out = tmp_path / "out"
    args = ["run", str(folder), "-k", "2", "--no-report", "-q", "--max-iter", "3"]
    assert entry([*args, "--channel-pattern", "E{value}_t*.tif", "-o", str(out)]) == 0
    (axis,) = unmix.load_result(out / "result.h5").context["signal_axes"]
    assert (axis["offset"], axis["scale"]) == (100.0, 7.0)  # not the index axis 0, 1, ...


@pytest.mark.parametrize("spelled", ["folder", "glob"])
def test_a_stack_above_the_budget_is_streamed_without_a_flag(tiffs, capsys, spelled):
    path = str(tiffs) if spelled == "folder" else str(tiffs / "img_*.tif")
    assert entry(["inspect", path, "--max-memory", "1K"]) == 0
    assert "data: streamed block by block" in capsys.readouterr().err
    assert entry(["inspect", path]) == 0
    assert "data: in memory" in capsys.readouterr().err
