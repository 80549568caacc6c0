"""The command line: ``unmix demo``."""

from __future__ import annotations

import functools

import pytest

import unmix
import unmix.cli
import unmix.core

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OUTPUTS = ("result.h5", "endmembers.png", "maps.png", "loss.png")


def _snapshot(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _check_outputs(folder) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(OUTPUTS)
    for name in OUTPUTS:
        if name.endswith(".png"):
            data = (folder / name).read_bytes()
            assert data.startswith(PNG_SIGNATURE), name
            assert len(data) > 1000, name


def test_demo(tmp_path, capsys):
    out = tmp_path / "out"
    assert unmix.cli.main(["demo", "-o", str(out)]) == 0
    _check_outputs(out)
    printed = capsys.readouterr().out
    for name in ("background", "Cu L2,3 edge", "Zn L2,3 edge"):
        assert name in printed
    assert "components: " in printed
    result = unmix.load_result(out / "result.h5")
    assert result.k == 3
    assert result.A.shape == (50 * 40, 3)
    assert result.S.shape == (3, 162)
    assert result.maps().shape == (50, 40, 3)
    assert result.spec["solver"] == "hals"

    # a second run into the same, now non-empty, folder refuses and touches nothing
    before = _snapshot(out)
    assert unmix.cli.main(["demo", "-o", str(out)]) == 2
    captured = capsys.readouterr()
    assert "--force" in captured.err
    assert _snapshot(out) == before


@pytest.fixture
def fast_factorize(monkeypatch):
    """Make the demo's fit short; ``calls`` records the max_iter of every fit."""
    real = unmix.core.factorize
    calls: list[int] = []
    state = {"max_iter": 2}  # tests may change it

    @functools.wraps(real)
    def short(*args, **kwargs):
        kwargs["max_iter"] = state["max_iter"]
        calls.append(state["max_iter"])
        return real(*args, **kwargs)

    monkeypatch.setattr(unmix.core, "factorize", short)
    monkeypatch.setattr(unmix.cli, "factorize", short, raising=False)
    return state, calls


def test_demo_force_overwrites(tmp_path, capsys, fast_factorize):
    state, calls = fast_factorize
    out = tmp_path / "out"
    out.mkdir()
    for name in OUTPUTS:  # stale outputs of an earlier run
        (out / name).write_bytes(b"stale")
    before = _snapshot(out)

    assert unmix.cli.main(["demo", "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert _snapshot(out) == before
    assert calls == []  # refused before fitting

    state["max_iter"] = 3
    assert unmix.cli.main(["demo", "--quiet", "--force", "-o", str(out)]) == 0
    assert capsys.readouterr().out == ""  # --quiet
    assert calls == [3]
    _check_outputs(out)
    assert unmix.load_result(out / "result.h5").n_iter == 3  # really rewritten


def test_demo_refuses_a_non_empty_folder(tmp_path, capsys, fast_factorize):
    _, calls = fast_factorize
    (tmp_path / "notes.txt").write_text("keep me")
    assert unmix.cli.main(["demo", "-o", str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert calls == []


def test_version(capsys):
    with pytest.raises(SystemExit, match="0"):
        unmix.cli.main(["--version"])
    assert unmix.__version__ in capsys.readouterr().out


def test_missing_command(capsys):
    with pytest.raises(SystemExit, match="2"):
        unmix.cli.main([])
    assert "command" in capsys.readouterr().err
