"""inspect and run's report on a streamed file: the in-memory numbers, in bounded memory."""

from __future__ import annotations

import tracemalloc

import h5py
import numpy as np
import pytest

import unmix
import unmix.blocks._scanrows as scanrows
from unmix.cli import entry
from unmix.report import plot_pixel_fits, plot_residual_map
from unmix.report._model import default_pixels, relative_residuals


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """16 MiB of float32 (64 x 64 x 1024), with a NaN and negatives, chunked by lines."""
    rng = np.random.default_rng(2)
    data = rng.gamma(2.0, size=(64, 64, 1024)).astype(np.float32)
    data[3, 4, 5], data[10, 1:4, 7] = np.nan, -1.5
    path = tmp_path_factory.mktemp("insp") / "big.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data, chunks=(1, 64, 1024))
    return str(path)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """8 MiB of non-negative float32 (64 x 32 x 1024), chunked by lines."""
    rng = np.random.default_rng(4)
    data = (rng.gamma(1.0, size=(2048, 2)) @ rng.gamma(2.0, size=(2, 1024))).astype(np.float32)
    path = tmp_path_factory.mktemp("clean") / "clean.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data.reshape(64, 32, 1024), chunks=(1, 32, 1024))
    return str(path)


def _values(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("<SpectralImage")]


def test_streamed_inspect_prints_the_in_memory_statistics(big, capsys):
    assert entry(["inspect", big, "--in-memory"]) == 0
    mem = capsys.readouterr()
    assert entry(["inspect", big, "--max-memory", "4M"]) == 0
    ooc = capsys.readouterr()
    assert "streamed block by block" in ooc.err and "in memory (--in-memory)" in mem.err
    assert _values(ooc.out) == _values(mem.out)
    assert "3 negative values" in ooc.out and "1 NaN/Inf values" in ooc.out


def test_streamed_inspect_never_holds_an_array_of_the_files_size(big, capsys):
    size = 64 * 64 * 1024 * 4
    tracemalloc.start()
    try:
        assert entry(["inspect", big, "--max-memory", "4M"]) == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < size / 4, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB file"


def test_streamed_report_reads_the_file_once_and_shows_the_in_memory_figures(
    clean, tmp_path, monkeypatch
):
    reads = []
    real = scanrows.ScanRows.__getitem__

    def counted(self, key):
        out = real(self, key)
        reads.append(out.size)
        return out

    monkeypatch.setattr(scanrows.ScanRows, "__getitem__", counted)
    common = ["-k", "2", "--seed", "0", "--max-iter", "2", "--tol", "0", "-q"]
    assert entry(["run", clean, *common, "--max-memory", "4M", "-o", str(tmp_path / "ooc")]) == 0
    res = unmix.load_result(tmp_path / "ooc" / "result.h5")
    n = 64 * 32 * 1024
    with h5py.File(clean) as f:
        X = scanrows.ScanRows(f["data"], 2)
        reads.clear()
        rel, total = relative_residuals(res, X)
        chosen = default_pixels(res, X)
        plot_residual_map(res, X, tmp_path / "r.png")
        plot_pixel_fits(res, X, tmp_path / "p.png")
        # the residual map and the pixel choice: one pass; the fits: their 3 pixels
        assert n <= sum(reads) <= n + 3 * 1024
    with h5py.File(clean) as f:
        data = f["data"][...].reshape(2048, 1024)
    mem_rel, mem_total = relative_residuals(res, data)
    np.testing.assert_allclose(rel, mem_rel, rtol=1e-12)
    assert total == pytest.approx(mem_total, rel=1e-12)
    assert default_pixels(res, data) == chosen
    html = (tmp_path / "ooc" / "report.html").read_text()
    assert "Relative residual map" in html and "Data and model at selected pixels" in html
