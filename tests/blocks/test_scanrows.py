"""ScanRows (X of a 3-D / 4-D file read by scan lines), one-pass statistics, row samples."""

from __future__ import annotations

import itertools

import h5py
import numpy as np
import pytest

import unmix
from unmix.blocks import ScanRows, block_ranges, data_stats, is_streamable, sample_rows
from unmix.preprocessing import is_counts


@pytest.fixture
def cube(tmp_path):
    """A 12 x 10 x 30 float32 cube with NaNs, an Inf, negatives and zeros, chunked by lines."""
    rng = np.random.default_rng(3)
    data = rng.normal(2.0, 1.0, (12, 10, 30)).astype(np.float32)
    data[data < 0.5] = 0.0
    data[1, 2, 3], data[5, 5, 5], data[7, 0, 29] = np.nan, np.inf, -4.0
    path = tmp_path / "cube.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data, chunks=(1, 10, 30))
    f = h5py.File(path, "r")
    yield data, f["data"]
    f.close()


def test_scan_rows_are_the_unfolded_rows_of_a_3d_and_4d_dataset(cube, tmp_path):
    data, ds = cube
    X = ScanRows(ds, 2)
    ref = data.reshape(120, 30)
    assert X.shape == (120, 30) and is_streamable(X)
    for a, b in [(0, 120), (7, 33), (95, 96), (119, 120)]:
        np.testing.assert_array_equal(X[a:b], ref[a:b])
    np.testing.assert_array_equal(X[57], ref[57])
    np.testing.assert_array_equal(X[-1, 3:9], ref[-1, 3:9])
    pats = np.arange(4 * 5 * 6 * 7, dtype=np.float32).reshape(4, 5, 6, 7)
    with h5py.File(tmp_path / "p.h5", "w") as f:
        f["p"] = pats
        np.testing.assert_array_equal(ScanRows(f["p"], 2)[6:13], pats.reshape(20, 42)[6:13])
    with pytest.raises(ValueError, match="n_spatial=3 for an array of shape"):
        ScanRows(ds, 3)


def test_block_ranges_cover_the_rows_once_in_whole_scan_lines(cube):
    X = ScanRows(cube[1], 2)
    ranges = block_ranges(X, block_bytes=30 * 4 * 25)  # 25 pixels: 2 lines of 10
    assert ranges[0] == (0, 20) and ranges[-1][1] == 120
    assert all(b == c for (_, b), (c, _) in itertools.pairwise(ranges))
    assert all(a % 10 == 0 for a, _ in ranges)


def test_streamed_statistics_equal_the_in_memory_ones(cube):
    data, ds = cube
    X = ScanRows(ds, 2)
    stats = data_stats(X, block_bytes=3000)
    ref = data.reshape(120, 30).astype(float)
    fin = np.isfinite(ref)
    assert X.reads == ref.size  # one pass
    assert stats.n_values == ref.size and stats.n_nonfinite == 2
    assert stats.n_negative == int(np.sum(ref[fin] < 0)) and stats.n_zero == int(np.sum(ref == 0))
    assert stats.min == ref[fin].min() and stats.max == ref[fin].max()
    # float32 blocks are summed by BLAS in float32, the blocks' sums in float64
    assert stats.mean == pytest.approx(ref[fin].mean(), rel=1e-6)
    clean = np.where(fin, ref, 0.0)
    np.testing.assert_allclose(stats.pixel_sums, clean.sum(axis=1), rtol=1e-6)
    np.testing.assert_allclose(stats.mean_spectrum, clean.mean(axis=0), rtol=1e-6)
    assert stats.counts is False
    counts = np.random.default_rng(0).poisson(2.0, (40, 9)).astype(float)
    assert data_stats(counts, block_bytes=100).counts is is_counts(counts) is True


def test_sample_rows_is_seeded_reproducible_and_reads_once(cube):
    data, ds = cube
    X = ScanRows(ds, 2)
    idx, rows = sample_rows(X, 17, seed=5, block_bytes=2000)
    assert X.reads <= 120 * 30  # at most one pass (blocks without a drawn row are skipped)
    again, _ = sample_rows(ScanRows(ds, 2), 17, seed=5)
    other, _ = sample_rows(ScanRows(ds, 2), 17, seed=6)
    np.testing.assert_array_equal(idx, again)
    assert not np.array_equal(idx, other)
    assert idx.size == 17 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(rows, data.reshape(120, 30)[idx])


def test_factorize_streams_a_3d_dataset_through_scan_rows(cube):
    data, ds = cube
    clean = np.nan_to_num(np.abs(data), posinf=1.0)
    mem = unmix.factorize(clean.reshape(120, 30), 2, max_iter=5, random_state=0)
    with h5py.File(ds.file.filename.replace("cube", "clean"), "w") as f:
        f["d"] = clean
        res = unmix.factorize(ScanRows(f["d"], 2), 2, max_iter=5, random_state=0)
    np.testing.assert_allclose(res.S, mem.S, rtol=1e-4, atol=1e-5 * np.abs(mem.S).max())


def test_blocks_smaller_than_a_scan_line_read_each_line_once(tmp_path):
    pats = np.arange(6 * 8 * 5 * 5, dtype=np.float32).reshape(6, 8, 5, 5)
    with h5py.File(tmp_path / "p.h5", "w") as f:
        f["p"] = pats
        X = ScanRows(f["p"], 2)
        got = np.concatenate([X[a : a + 3] for a in range(0, 48, 3)])  # 3-pixel blocks
    np.testing.assert_array_equal(got, pats.reshape(48, 25))
    assert X.reads == pats.size
