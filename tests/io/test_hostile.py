"""Hostile and damaged input files: every failure is a clear error naming the file.

Generated cases: every reader x every kind of damage (truncation at several cut points,
zero bytes, a file of zeros, random bytes, the wrong extension), shapes that a tiny file
declares huge, data stored or linked outside the file's folder, pipes and devices, and the
Bruker ``.bcf`` parser that crashes the interpreter (run in a child process; only those
cases start one). Each case asserts the error class and words of its message, or a
correct result.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import shutil
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

import unmix.io as uio
from conftest import shared_path
from unmix.io import (
    CorruptFileError,
    ReaderCrashError,
    TooLargeError,
    UnsupportedFormatError,
    _bruker,
    check_allocation,
    load,
)

HAS_RSCIIO = importlib.util.find_spec("rsciio") is not None
needs_rsciio = pytest.mark.skipif(not HAS_RSCIIO, reason="rosettasciio not installed")
CUTS = (0.001, 0.01, 0.1, 0.25, 0.5, 0.9, 0.99)
RNG = np.random.default_rng(20240)


# ---------------------------------------------------------------------- source files
def _made(ext, save):
    def make(d):
        save(d / f"src{ext}", np.arange(4 * 5 * 30, dtype=np.float32).reshape(4, 5, 30))
        return d / f"src{ext}"

    return make


def _shared(*parts):
    def make(d):
        src = shared_path(*parts)
        dst = d / ("src" + os.path.splitext(src)[1])
        shutil.copy(src, dst)
        if dst.suffix == ".imzML":
            shutil.copy(src[:-6] + ".ibd", d / "src.ibd")
        return dst

    return make


def _save_h5(path, data):
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data, compression="gzip")


def _npz(path, data):
    np.savez(path, data=data, axis=np.linspace(1, 2, 30), axis_units=np.array("eV"))


#: reader -> (a valid file, what a truncated one's message says, and a garbage one's)
HDF5, RSCIIO = r"not a readable HDF5", r"RosettaSciIO could not read"
SOURCES = {
    "npy": (_made(".npy", np.save), r"not a readable \.npy|truncated", r"magic string"),
    "npz": (_made(".npz", _npz), r"not a readable \.npz|truncated", r"\(not a zip file\)"),
    "h5": (_made(".h5", _save_h5), HDF5, HDF5),
    "hspy": (_shared("eels", "LSMO_linescan.hspy"), HDF5, HDF5),
    "3ds": (_shared("stm", "Bias_spectroscopy.3ds"), r"truncated \.3ds|no :HEADER_END:", "no :"),
    "imzML": (_shared("msi", "Example_Continuous.imzML"), r"not a readable imzML|no <spec", "XML"),
    "dm4": (_shared("formats", "EELS_SI.dm4"), RSCIIO, RSCIIO),
    "emd": (_shared("formats", "EDS-STO.emd"), HDF5, RSCIIO),
    "bcf": (_shared("formats", "P45_the_default_job.bcf"), r"truncated B|not a B", r"not a Br"),
}
NEEDS_RSCIIO = {"dm4", "emd", "bcf"}


def _params(kinds):
    out = []
    for reader in SOURCES:
        marks = [needs_rsciio] if reader in NEEDS_RSCIIO else []
        out += [pytest.param(reader, k, marks=marks, id=f"{reader}-{k}") for k in kinds]
    return out


def _damaged(tmp_path, reader, kind):
    """A damaged copy of the reader's source file; returns its path."""
    src = SOURCES[reader][0](tmp_path)
    raw = src.read_bytes()
    dst = tmp_path / f"bad{src.suffix}"
    if kind.startswith("cut"):
        body = raw[: int(len(raw) * float(kind[3:]))]
    else:
        body = {"empty": b"", "zeros": bytes(len(raw)), "random": RNG.bytes(len(raw))}[kind]
    dst.write_bytes(body)
    if reader == "imzML":
        shutil.copy(tmp_path / "src.ibd", tmp_path / "bad.ibd")
    return dst


# --------------------------------------------------------- every reader x every damage
@pytest.mark.parametrize(
    ("reader", "kind"), _params([f"cut{c}" for c in CUTS] + ["zeros", "random"])
)
def test_truncated_or_garbage_file(tmp_path, reader, kind):
    bad = _damaged(tmp_path, reader, kind)
    says = SOURCES[reader][1 if kind.startswith("cut") else 2]
    with pytest.raises(ValueError, match=rf"{re.escape(str(bad))}.*({says})"):
        load(bad)


@pytest.mark.parametrize(("reader", "kind"), _params(["empty"]))
def test_zero_byte_file(tmp_path, reader, kind):
    bad = _damaged(tmp_path, reader, kind)
    with pytest.raises(CorruptFileError, match=rf"{re.escape(str(bad))} is empty \(0 bytes\)"):
        load(bad)


@pytest.mark.parametrize("reader", [p for p in SOURCES if p not in NEEDS_RSCIIO])
def test_the_intact_source_reads(tmp_path, reader):
    image = load(SOURCES[reader][0](tmp_path))
    assert np.isfinite(image.unfold()).all() and image.n_pixels > 0


# ---------------------------------------------------------------- wrong extensions
WRONG_EXT = [
    ("npz", ".h5", r"looks like a zip \(NumPy \.npz\) file: rename it to \.npz"),
    ("npz", ".npy", r"looks like a zip \(NumPy \.npz\) file: rename it to \.npz"),
    ("h5", ".npz", r"looks like an HDF5 file: rename it to \.h5 or \.hspy"),
    ("h5", ".npy", r"looks like an HDF5 file: rename it to \.h5 or \.hspy"),
    ("npy", ".npz", r"looks like a NumPy \.npy file: rename it to \.npy"),
    ("npy", ".h5", r"looks like a NumPy \.npy file: rename it to \.npy"),
    ("3ds", ".h5", r"looks like a Nanonis grid file: rename it to \.3ds"),
    ("imzML", ".npy", r"looks like an imzML \(XML\) file: rename it to \.imzML"),
    ("h5", ".3ds", r"looks like an HDF5 file"),
    ("npz", ".imzML", r"not a readable imzML"),
    ("h5", ".hspy", r"no /Experiments/<title>/data: not a HyperSpy file"),
    pytest.param("bcf", ".h5", r"looks like a Bruker \.bcf", marks=needs_rsciio),
    pytest.param("npz", ".bcf", r"not a Bruker \.bcf file", marks=needs_rsciio),
    pytest.param("h5", ".dm4", r"RosettaSciIO could not read", marks=needs_rsciio),
]


@pytest.mark.parametrize(("reader", "ext", "says"), WRONG_EXT)
def test_wrong_extension(tmp_path, reader, ext, says):
    src = SOURCES[reader][0](tmp_path)
    bad = tmp_path / f"renamed{ext}"
    shutil.copy(src, bad)
    if ext == ".imzML":
        (tmp_path / "renamed.ibd").write_bytes(bytes(64))
    with pytest.raises(ValueError, match=rf"{re.escape(str(bad))}.*{says}"):
        load(bad)


def test_pipes_and_devices_are_refused_without_hanging(tmp_path):
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    with pytest.raises(UnsupportedFormatError, match=r"pipe\.npy is not a regular file"):
        load(fifo)
    dev = tmp_path / "zero.h5"
    dev.symlink_to("/dev/zero")
    with pytest.raises(UnsupportedFormatError, match=r"zero\.h5 is not a regular file"):
        load(dev)


# ---------------------------------------------------------- huge declared shapes
def _npy_header(shape, dtype="<f4"):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


HUGE = (100000, 100000, 1000)


def _huge_npy(path):
    path.write_bytes(_npy_header(HUGE) + bytes(900))


def _huge_npz(compression):
    def make(path):
        with zipfile.ZipFile(path, "w", compression=compression) as z:
            z.writestr("data.npy", _npy_header(HUGE) + bytes(900))

    return make


def _h5_dataset(group="", **kw):
    def make(path):
        with h5py.File(path, "w") as f:
            if group:
                f.attrs["file_format"] = "HyperSpy"
            ds = (f.create_group(group) if group else f).create_dataset("data", **kw)
            if "chunks" in kw:  # 20 of 100 chunks written
                ds[:20] = 1

    return make


PART = {"shape": (100, 100, 8), "dtype": "f4", "chunks": (10, 10, 8)}
ABSENT = [
    ("a.npy", _huge_npy, False, r"truncated.*\(100000, 100000, 1000\) float32"),
    ("b.npy", _huge_npy, True, r"truncated.*\(100000, 100000, 1000\) float32"),
    ("c.npz", _huge_npz(zipfile.ZIP_STORED), False, r"member 'data\.npy'.*truncated"),
    ("d.npz", _huge_npz(zipfile.ZIP_DEFLATED), False, r"member 'data\.npy'.*truncated"),
    ("e.h5", _h5_dataset(shape=HUGE, dtype="f4"), False, r"'/data'.*was never written"),
    ("f.h5", _h5_dataset(shape=HUGE, dtype="f4"), True, r"'/data'.*was never written"),
    ("g.h5", _h5_dataset(**PART), False, r"only 20 of its 100 chunks written"),
    ("h.hspy", _h5_dataset("Experiments/x", shape=HUGE, dtype="f4"), False, r"never written"),
]


@pytest.mark.parametrize(("name", "make", "lazy", "says"), ABSENT)
def test_declared_but_absent_data_is_refused_before_allocation(tmp_path, name, make, lazy, says):
    path = tmp_path / name
    make(path)
    assert path.stat().st_size < 100_000
    with pytest.raises(CorruptFileError, match=rf"{name}: .*{says}"):
        load(path, lazy=lazy)


BUDGET = [  # all compress to a few KiB
    ("bomb.npz", lambda p, a: np.savez_compressed(p, data=a), r"its arrays needs 8\.0 MiB", None),
    ("big.npy", np.save, r"the array.*needs 8\.0 MiB", np.memmap),
    ("big.h5", _save_h5, r"dataset '/data'.*needs 8\.0 MiB", h5py.Dataset),
]


@pytest.mark.parametrize(("name", "save", "says", "lazy_type"), BUDGET)
def test_beyond_the_memory_budget(tmp_path, monkeypatch, name, save, says, lazy_type):
    path = tmp_path / name
    save(path, np.zeros((64, 64, 512), dtype=np.float32))
    monkeypatch.setenv("UNMIX_MEMORY_BUDGET", "1M")
    with pytest.raises(TooLargeError, match=rf"{name}: {says}.*budget is 1\.0 MiB"):
        load(path)
    if lazy_type is not None:  # kept on disk: allowed
        with load(path, lazy=True) as image:
            assert isinstance(image.data, lazy_type)


@pytest.mark.parametrize(
    ("array", "says"),
    [
        (np.array([[{"a": 1}, None]], dtype=object), r"holds Python objects \(pickled data\)"),
        (np.array([["a", "b"], ["c", "d"]]), r"holds <U1 values, not numbers"),
        (np.zeros((2, 3), dtype="M8[s]"), r"holds datetime64\[s\] values, not numbers"),
        (np.zeros((2, 3), dtype=[("a", "f4")]), r"holds \[\('a', '<f4'\)\] values"),
    ],
)
def test_npy_that_is_not_numbers_is_refused(tmp_path, array, says):
    np.save(tmp_path / "odd.npy", array, allow_pickle=True)
    with pytest.raises(UnsupportedFormatError, match=rf"odd\.npy {says}"):
        load(tmp_path / "odd.npy")


def test_check_allocation_budget():
    check_allocation(10, "x", budget=10)
    with pytest.raises(TooLargeError, match=r"thing needs 1\.0 KiB.*budget is 10 bytes"):
        check_allocation(1024, "thing", budget=10)
    with pytest.raises(TooLargeError, match=r"negative size"):
        check_allocation(-1, "thing", budget=10)
    assert uio.memory_budget() > 0


# ------------------------------------------------------------------- imzML
def write_imzml(path, spectra, *, zlib_int=False, lie=None):
    """A processed imzML: ``spectra`` lists ((x, y), (mz, intensities)); ``lie`` alters
    the declared ``n`` (length), ``o`` (offset), ``e`` (encoded length) of the first
    intensity array."""
    ibd = bytearray(bytes(16))
    rows = []
    for (x, y), (mz, inten) in spectra:
        m = np.asarray(mz, "<f8").tobytes()
        it = np.asarray(inten, "<f4").tobytes()
        it = zlib.compress(it) if zlib_int else it
        n = len(inten)
        rows.append([x, y, n, len(ibd), len(m), len(ibd) + len(m), len(it), n])
        ibd += m + it
    for key, value in (lie or {}).items():
        rows[0][{"n": 7, "o": 5, "e": 6}[key]] = value
    arr = (
        '<binaryDataArray><referenceableParamGroupRef ref="{g}"/>'
        '<cvParam accession="IMS:1000103" value="{n}"/>'
        '<cvParam accession="IMS:1000102" value="{o}"/>'
        '<cvParam accession="IMS:1000104" value="{e}"/><binary/></binaryDataArray>'
    )
    body = "".join(
        f'<spectrum id="s{i}"><scanList><scan><cvParam accession="IMS:1000050" value="{x}"/>'
        f'<cvParam accession="IMS:1000051" value="{y}"/></scan></scanList>'
        "<binaryDataArrayList>"
        + arr.format(g="mz", n=n, o=o1, e=e1)
        + arr.format(g="int", n=n2, o=o2, e=e2)
        + "</binaryDataArrayList></spectrum>"
        for i, (x, y, n, o1, e1, o2, e2, n2) in enumerate(rows)
    )
    comp = "MS:1000574" if zlib_int else "MS:1000576"
    path.write_text(
        '<?xml version="1.0"?><mzML><fileDescription><fileContent>'
        '<cvParam accession="IMS:1000031"/></fileContent></fileDescription>'
        '<referenceableParamGroupList><referenceableParamGroup id="mz">'
        '<cvParam accession="MS:1000514"/><cvParam accession="MS:1000523"/>'
        '</referenceableParamGroup><referenceableParamGroup id="int">'
        f'<cvParam accession="MS:1000515"/><cvParam accession="MS:1000521"/>'
        f'<cvParam accession="{comp}"/></referenceableParamGroup>'
        f"</referenceableParamGroupList><run><spectrumList>{body}</spectrumList></run></mzML>"
    )
    path.with_suffix(".ibd").write_bytes(bytes(ibd))
    return path


def _spectra(coords):
    return [(xy, ([100.0, 150.0, 199.0], [1.0, 2.0, 3.0])) for xy in coords]


IMZML_CASES = [
    ("grid", _spectra([(1, 1), (2, 1), (300000, 1)]), {}, r"span a 1 x 300000 grid.*x=300000"),
    ("grid_y", _spectra([(1, 1), (1, 90000)]), {}, r"span a 90000 x 1 grid"),
    ("twice", _spectra([(1, 1), (2, 1), (1, 1)]), {}, r"1 pixel positions hold several"),
    ("offset", _spectra([(1, 1), (2, 1)]), {"lie": {"o": 10**9}}, r"truncated: 12 bytes"),
    ("length", _spectra([(1, 1)]), {"lie": {"n": 10**12, "e": 4 * 10**12}}, r"truncated"),
    ("encoded", _spectra([(1, 1)]), {"lie": {"e": 5}}, r"declared 5 bytes long"),
    ("bomb", _spectra([(1, 1)]), {"zlib_int": True, "lie": {"n": 2}}, r"inflates to more"),
    ("short_zlib", _spectra([(1, 1)]), {"zlib_int": True, "lie": {"n": 5}}, r"instead of"),
    ("bad_zlib", _spectra([(1, 1)]), {"lie": {"e": 12}, "zlib_int": True}, r"inflate"),
    ("negative", _spectra([(-5, 1), (1, 1)]), {}, None),
]


@pytest.mark.parametrize(("name", "spectra", "opts", "says"), IMZML_CASES)
def test_hostile_imzml(tmp_path, name, spectra, opts, says):
    path = write_imzml(tmp_path / f"{name}.imzML", spectra, **opts)
    if says is None:
        image = load(path, mz_bins=3)
        assert image.spatial_shape == (1, 7)
        return
    with pytest.raises(CorruptFileError, match=rf"{name}\.(imzML|ibd).*{says}"):
        load(path, mz_bins=3)


def test_imzml_entity_expansion_is_refused(tmp_path):
    ents = "".join(f'<!ENTITY e{i} "{f"&e{i - 1};" * 10}">' for i in range(1, 10))
    path = tmp_path / "lol.imzML"
    path.write_text(f'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY e0 "lol">{ents}]><m a="&e9;"/>')
    (tmp_path / "lol.ibd").write_bytes(bytes(16))
    with pytest.raises(CorruptFileError, match=r"lol\.imzML: not a readable imzML"):
        load(path)


# ------------------------------------------------------------------- Nanonis .3ds
NANONIS = [
    ("Grid dim=100000 x 100000", r"truncated \.3ds file: expected 51920000000000 bytes"),
    ("Grid dim=0 x 5", r"impossible \.3ds header values"),
    ("Grid dim=-3 x 5", r"impossible \.3ds header values"),
    ("Points=0", r"impossible \.3ds header values|does not match"),
    ("# Parameters (4 byte)=0", r"impossible \.3ds header values"),
    ("Grid settings=nan;0;1e-8;1e-8;0", r"impossible \.3ds header values"),
    ("Channels=", r"names no channels|lacks"),
    ("Grid dim=20 x 20 x 3", r"unreadable \.3ds header value"),
]


@pytest.mark.parametrize(("line", "says"), NANONIS)
def test_hostile_3ds_header(tmp_path, line, says):
    src = shared_path("stm", "Bias_spectroscopy.3ds")
    raw = Path(src).read_bytes()
    head, sep, body = raw.partition(b":HEADER_END:")
    key = line.split("=")[0].encode()
    lines = [ln for ln in head.split(b"\r\n") if not ln.startswith(key + b"=")]
    head = b"\r\n".join([line.encode(), *lines])
    if line.startswith("Grid dim=100000"):
        body = body[:1000]
    bad = tmp_path / "bad.3ds"
    bad.write_bytes(head + sep + body)
    with pytest.raises(CorruptFileError, match=rf"bad\.3ds.*({says})"):
        load(bad)


# ------------------------------------------------------------------- zarr
def test_zarr_stores(tmp_path, monkeypatch):
    zarr = pytest.importorskip("zarr")
    junk = tmp_path / "junk.zarr"
    junk.mkdir()
    (junk / "zarr.json").write_text("{garbage")
    with pytest.raises(CorruptFileError, match=r"junk\.zarr: not a readable Zarr store"):
        load(junk)
    big = tmp_path / "big.zarr"
    zarr.open_array(str(big), mode="w", shape=(1000, 1000, 1000), dtype="f4", chunks=(10, 10, 10))
    monkeypatch.setenv("UNMIX_MEMORY_BUDGET", "64M")
    with pytest.raises(TooLargeError, match=r"big\.zarr: array \(1000, 1000, 1000\) float32"):
        load(big)


# ------------------------------------------------------------------- imzML .ibd
def _flip(raw, at):
    return raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1 :]


IBD_DAMAGE = [
    ("cut", lambda raw: raw[: len(raw) // 2], r"src\.ibd: truncated"),
    ("empty", lambda raw: b"", r"src\.ibd is empty \(0 bytes\)"),
    ("zeros", lambda raw: bytes(len(raw)), r"src\.ibd: starts with UUID 0{32}, not 554a27fa"),
    ("random", lambda raw: RNG.bytes(len(raw)), r"src\.ibd: (starts with UUID|an m/z array)"),
    ("flipped", lambda raw: _flip(raw, len(raw) // 2), r"src\.ibd: its SHA1 is .* not a5be532d"),
    ("longer", lambda raw: raw + b"x", r"src\.ibd: its SHA1 is"),
    ("other_uuid", lambda raw: _flip(raw, 3), r"belongs to another acquisition"),
]


@pytest.mark.parametrize(("kind", "damage", "says"), IBD_DAMAGE, ids=[d[0] for d in IBD_DAMAGE])
def test_damaged_ibd(tmp_path, kind, damage, says):
    path = _shared("msi", "Example_Continuous.imzML")(tmp_path)
    ibd = tmp_path / "src.ibd"
    ibd.write_bytes(damage(ibd.read_bytes()))
    with pytest.raises(CorruptFileError, match=says):
        load(path)
    if kind == "flipped":  # verify=False: the writer's checksum is not trusted
        assert load(path, verify=False).spatial_shape == (3, 3)


# ------------------------------------------------------------------- Bruker .bcf
def _bcf(tmp_path, how, fraction):
    raw = Path(shared_path("formats", "P45_the_default_job.bcf")).read_bytes()
    n = int(len(raw) * fraction)
    if how == "cut":
        body = raw[:n]
    elif how == "zero_tail":  # pre-allocated file whose writing stopped
        body = raw[:n] + bytes(len(raw) - n)
    elif how == "random_tail":
        body = raw[:n] + np.random.default_rng(1).bytes(len(raw) - n)
    else:  # "flip": bytes flipped after n
        body = bytearray(raw)
        for i in np.random.default_rng(7).integers(n, len(raw), 200):
            body[i] ^= 0xFF
    path = tmp_path / f"{how}{int(fraction * 100)}.bcf"
    path.write_bytes(bytes(body))
    return path


@needs_rsciio
@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.9, 0.99])
def test_truncated_bcf_refused_before_parsing(tmp_path, fraction, monkeypatch):
    path = _bcf(tmp_path, "cut", fraction)

    def no_child(*a, **k):
        raise AssertionError("the container check must refuse it first")

    monkeypatch.setattr(_bruker, "_run_child", no_child)
    pct = f"{fraction * 100:.0f} %"
    with pytest.raises(
        CorruptFileError, match=rf"cut{int(fraction * 100)}\.bcf: truncated.*{pct}"
    ):
        load(path)


@needs_rsciio
@pytest.mark.parametrize(
    ("how", "fraction", "error", "says"),
    [
        ("zero_tail", 0.9, CorruptFileError, r"chunks of its internal file .* are blank"),
        ("random_tail", 0.6, ReaderCrashError, r"the Bruker reader crashed \(SIG"),
        ("flip", 0.3, ReaderCrashError, r"the Bruker reader crashed \(SIG"),
    ],
)
def test_damaged_bcf_in_a_child_process(tmp_path, how, fraction, error, says):
    path = _bcf(tmp_path, how, fraction)
    with pytest.raises(error, match=rf"{path.name}.*{says}"):
        load(path)


@needs_rsciio
@pytest.mark.parametrize("lazy", [False, True])
def test_intact_bcf_through_the_child_process(tmp_path, monkeypatch, lazy):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    image = load(shared_path("formats", "P45_the_default_job.bcf"), lazy=lazy)
    assert image.data.shape == (75, 100, 2048) and int(image.data.sum()) == 165941
    assert image.metadata["signal_type"] == "EDS"
    assert image.signal_axes[0].units == "keV"
    assert isinstance(image.data, np.memmap) == lazy
    assert list(tmp_path.iterdir()) == []  # the child's files are gone


def _fake_reader(tmp_path, monkeypatch, body):
    (tmp_path / "fake_reader.py").write_text(f"def file_reader(path, lazy=False):\n    {body}\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    path = tmp_path / "x.bcf"
    path.write_bytes(b"x")
    return str(path)


CHILD = [
    ("import ctypes; ctypes.string_at(0)", ReaderCrashError, r"the Fake reader crashed \(SIGSEGV"),
    ("import time; time.sleep(60)", CorruptFileError, r"the Fake reader did not finish in 1 s"),
    ("raise MemoryError()", TooLargeError, r"the Fake reader ran out of memory"),
    ("import os; os.abort()", OSError, r"the Fake reader crashed \(SIGABRT"),
]


@pytest.mark.parametrize(("body", "error", "says"), CHILD, ids=["segv", "hang", "memory", "abort"])
def test_what_the_child_process_turns_into_errors(tmp_path, monkeypatch, body, error, says):
    path = _fake_reader(tmp_path, monkeypatch, body)
    monkeypatch.setattr(_bruker, "_TIME_BASE", 1.0)
    with pytest.raises(error, match=rf"x\.bcf: {says}"):
        _bruker.read_isolated(path, "fake_reader", "Fake", False, {})


def test_all_zero_spectrum_image_is_refused():
    with pytest.raises(CorruptFileError, match=r"x\.bcf: every value .* is zero"):
        _bruker.check_not_blank(np.zeros((3, 4, 5)), "x.bcf")
    _bruker.check_not_blank(np.eye(3), "x.bcf")


def test_sfs_header_declaring_absurd_chunks(tmp_path):
    raw = bytearray(Path(shared_path("formats", "P45_the_default_job.bcf")).read_bytes())
    struct.pack_into("<I", raw, 0x128, 7)  # chunk size 7 bytes
    path = tmp_path / "odd.bcf"
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError, match=r"odd\.bcf: damaged Bruker \.bcf header"):
        _bruker.check_sfs(str(path))
