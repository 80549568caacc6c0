"""``--help`` says the defaults and lists the ``--step`` operations (issue 16 polish)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from unmix.cli import main
from unmix.preprocessing import OPS


@pytest.mark.parametrize("command", ["run", "compare"])
def test_help_names_defaults_and_every_step_op(command):
    out = CliRunner().invoke(main, [command, "--help"], terminal_width=200).output
    text = " ".join(out.split())
    for flag, default in (
        ("--max-iter", "default 500"),
        ("--tol", "default 1e-5"),
        ("--loss", "default frobenius"),
        ("--init", "default the model's own start"),
        ("--solver", "default auto"),
    ):
        assert flag in text and default in text, (flag, default)
    for op in OPS:
        assert op in text, op
