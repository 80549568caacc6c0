"""Scan lines read straight from the file (os.preadv) equal h5py's reads, and the
one-pass statistics equal NumPy's on every storage layout."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from unmix.blocks import ScanRows, data_stats
from unmix.blocks._h5direct import direct_lines

LAYOUTS = {
    "contiguous": {},
    "chunked by lines": {"chunks": (2, 7, 5)},
    "chunks cut the lines": {"chunks": (2, 3, 5)},
    "compressed": {"chunks": (2, 7, 5), "compression": "gzip"},
}


@pytest.fixture
def cube():
    rng = np.random.default_rng(0)
    X = rng.poisson(2.0, (9, 7, 5)).astype(np.float32)
    X[1, 2, 3], X[4, 0, 0], X[8, 6, 4] = np.nan, -1.5, np.inf
    return X


@pytest.mark.parametrize("layout", LAYOUTS)
def test_direct_lines_equal_h5py(tmp_path, cube, layout):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("d", data=cube, **LAYOUTS[layout])
    with h5py.File(path, "r") as f:
        d = f["d"]
        read = direct_lines(d)
        direct = layout in ("contiguous", "chunked by lines")
        assert (read is not None) == direct
        if direct:
            for a, b in [(0, 9), (0, 1), (3, 8), (5, 6), (7, 9)]:
                np.testing.assert_array_equal(read(a, b), cube[a:b])
        rows = ScanRows(d, 2)
        np.testing.assert_array_equal(rows[10:47], cube.reshape(63, 5)[10:47])
        got = data_stats(rows, block_bytes=64)
    flat = cube.reshape(63, 5)
    fin = np.isfinite(flat)
    clean = np.where(fin, flat, 0)
    assert got.n_nonfinite == 2 and got.n_negative == 1
    assert got.n_zero == int(np.count_nonzero(flat == 0))
    assert got.min == -1.5 and got.max == float(clean.max()) and not got.counts
    np.testing.assert_allclose(got.pixel_sums, clean.sum(axis=1), rtol=1e-6)
    np.testing.assert_allclose(got.channel_sums, clean.sum(axis=0), rtol=1e-6)


def test_unwritten_chunks_read_as_the_fill_value(tmp_path):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("d", shape=(6, 4, 3), dtype="f8", chunks=(2, 4, 3), fillvalue=7.0)
        d[0:2] = 1.0  # chunks 1 and 2 never written
    with h5py.File(path, "r") as f:
        read = direct_lines(f["d"])
        out = read(1, 6)
    assert np.all(out[0] == 1.0) and np.all(out[1:] == 7.0)


def test_counts_are_detected_from_whole_numbers(tmp_path):
    path = tmp_path / "x.h5"
    X = np.random.default_rng(1).poisson(3.0, (4, 5, 6)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("d", data=X)
        f.create_dataset("e", data=X + 0.5)
    with h5py.File(path, "r") as f:
        assert data_stats(ScanRows(f["d"], 2), block_bytes=50).counts
        assert not data_stats(ScanRows(f["e"], 2), block_bytes=50).counts
