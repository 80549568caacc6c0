"""``unmix tree`` takes the model flags of ``unmix run`` (issue 12, item 9)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import unmix
from unmix.cli import entry, main
from unmix.hierarchy import load_tree


@pytest.fixture(scope="module")
def scan4d(tmp_path_factory):
    """A (y, x, ky, kx) = 12 x 12 scan of 8 x 8 patterns: three planted pattern types in
    three regions, Poisson counts; returns the folder, the file and every pixel's region."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:8, 0:8]
    blobs = [(1.5, 1.5), (5.5, 5.5), (1.5, 5.5)]
    P = np.stack([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0) for cy, cx in blobs])
    P = 30.0 * (P + 0.1)
    row, col = np.mgrid[0:12, 0:12]
    region = np.where(col < 5, 0, np.where(row < 6, 1, 2))
    folder = tmp_path_factory.mktemp("tree_terms")
    path = folder / "scan4d.npy"
    np.save(path, rng.poisson(P[region]).astype(np.float32))
    return folder, str(path), region.reshape(-1)


def test_tree_with_kl_map_smoothing_and_a_median_pattern_filter(scan4d):
    folder, path, region = scan4d
    out = folder / "kl_tree"
    args = ["tree", path, "--leaves", "3", "--loss", "kl", "--smooth", "1"]
    assert entry([*args, "--median-filter", "3", "-o", str(out), "-q", "--no-report"]) == 0
    model = json.loads((out / "tree.json").read_text())["params"]["model"]
    assert model["loss"] == "kl"
    assert [t["type"] for t in model["regularizers"]] == ["GaussianMapFilter", "SpectralSmoothing"]
    assert model["regularizers"][1]["method"] == "median" and model["regularizers"][1]["size"] == 3
    assert model["constraints"] is None  # filters alone: each split holds its scale
    assert model["split"] == "whole grid, weighted by membership"
    tree = load_tree(out / "result.h5")
    assert tree.n_leaves == 3
    purity = [np.bincount(region[tree.assignment == leaf], minlength=3) for leaf in tree.leaves]
    assert sorted(int(np.argmax(p)) for p in purity) == [0, 1, 2]
    assert all(p.max() >= 0.95 * p.sum() for p in purity)  # a leaf a planted region


def test_run_takes_the_same_median_filter_flag(scan4d):
    folder, path, _ = scan4d
    out = folder / "run_median"
    args = ["run", path, "-k", "3", "--median-filter", "3", "--max-iter", "20"]
    assert entry([*args, "-o", str(out), "-q", "--no-report"]) == 0
    spec = unmix.load_result(str(out / "result.h5")).spec
    assert {"type": "SpectralSmoothing", "method": "median", "size": 3}.items() <= next(
        t for t in spec["filters"] if t["type"] == "SpectralSmoothing"
    ).items()


def test_tree_refuses_terms_with_stability_ranks(scan4d):
    folder, path, _ = scan4d
    args = ["tree", path, "--leaves", "3", "--loss", "kl", "--stability"]
    res = CliRunner().invoke(main, [*args, "-o", str(folder / "bad"), "-q", "--no-report"])
    assert res.exit_code == 2
    assert "--stability" in res.output and "(--loss)" in res.output
    assert "drop --stability, or the model flags" in res.output  # in the CLI's own words


@pytest.mark.parametrize(("flag", "term"), [("0.05", "Orthogonality"), (None, "MaxActive")])
def test_tree_takes_the_orthogonal_flag(scan4d, flag, term):
    """``--orthogonal COS``: every split's endmembers at most COS apart in cosine (the
    bound held by the growing penalty, the splits given the engine's budget for it);
    ``--orthogonal`` alone: each channel in one endmember of a split (exact)."""
    folder, path, region = scan4d
    out = folder / f"orthogonal_{term}"
    args = ["tree", path, "--leaves", "3", "--orthogonal", *([flag] if flag else [])]
    res = CliRunner().invoke(main, [*args, "-o", str(out), "-q", "--no-report"])
    assert res.exit_code == 0, res.output
    assert "Warning" not in res.output
    model = json.loads((out / "tree.json").read_text())["params"]["model"]
    terms = [t["type"] for t in model["constraints"] or []] + [
        t["type"] for t in model["regularizers"]
    ]
    assert term in terms
    tree = load_tree(out / "result.h5")
    assert tree.n_leaves == 3
    for split in tree.splits.values():
        S = np.asarray(split["S"], dtype=float)
        cos = S[0] @ S[1] / np.linalg.norm(S[0]) / np.linalg.norm(S[1])
        assert cos <= (0.05 * (1 + 1e-3) if flag else 1e-12)
    purity = [np.bincount(region[tree.assignment == leaf], minlength=3) for leaf in tree.leaves]
    assert sorted(int(np.argmax(p)) for p in purity) == [0, 1, 2]


def test_tree_shows_its_leaves_growing_unless_quiet(scan4d, capsys):
    """A bar of the leaves grown (slow model splits: KL with --orthogonal took 56 s on the
    EELS map with no sign of life); none with -q."""
    folder, path, _ = scan4d
    args = ["tree", path, "--leaves", "3", "--loss", "kl", "--no-report"]
    assert entry([*args, "-o", str(folder / "bar")]) == 0
    assert "growing" in capsys.readouterr().err
    assert entry([*args, "-o", str(folder / "quiet"), "-q"]) == 0
    assert "growing" not in capsys.readouterr().err


def test_tree_takes_the_max_iter_its_warnings_advise(scan4d, capsys):
    """A split fit at its iteration limit warns "Raise max_iter (CLI: --max-iter ...)";
    ``unmix tree`` had no such flag (300 iterations a split, 5000 with --orthogonal)."""
    folder, path, _ = scan4d
    out = folder / "short_tree"
    args = ["tree", path, "--leaves", "3", "--smooth", "1", "--max-iter", "3"]
    assert entry([*args, "-o", str(out), "--no-report"]) == 0
    err = capsys.readouterr().err
    assert "reached max_iter=3 " in err and "max_iter=300" not in err, err
    # each split's warning names its node (the root holds all 144 pixels)
    assert "node 0 (144 pixels), its rank-2 split: The fit reached max_iter=3 " in err, err
    assert json.loads((out / "tree.json").read_text())["params"]["max_iter"] == 3
