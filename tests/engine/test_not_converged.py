"""A fit that reaches ``max_iter`` while its objective still falls says so.

X is (pixels, channels).  The stop rule ends a fit when the objective's relative change
falls below ``tol``; a fit that runs out of iterations first is not a converged one.
Before, ``unmix run FILE --loss kl --graph-smooth 0.01`` on the XRD map ended at
``max_iter`` 500, 26 % above the minimum the same model reaches in ~1,400 iterations, and
said only "stopped by max_iter" (that fit now converges in 58: the gradient solver's
unit-norm endmembers step free in scale).  Now a :class:`unmix.ConvergenceWarning` gives the
objective's fall over the last iterations and the fix, ``Result.stop_summary`` and the
report say "not converged", and ``spec["diagnostics"]["still_falling"]`` keeps the
measured fall.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import unmix
from conftest import shared_path
from unmix.engine._diagnostics import still_falling


def test_fit_cut_short_warns_with_its_slope_and_the_fix(mixture):
    X = mixture.X
    with pytest.warns(unmix.ConvergenceWarning, match=r"max_iter=5 .*has not converged"):
        r = unmix.factorize(X, 3, solver="mu", max_iter=5, random_state=0)
    assert r.stop_reason == "max_iter" and not r.converged
    rate = r.spec["diagnostics"]["still_falling"]
    h = np.asarray(r.history["objective"])
    assert rate == pytest.approx((h[-2] - h[-1]) / h[-2])  # window: the last iteration
    assert rate > r.spec["tol"]
    assert r.stop_summary.startswith("max_iter (not converged")


def test_converged_fit_and_fixed_budget_fit_do_not_warn(mixture):
    X = mixture.X
    with warnings.catch_warnings():
        warnings.simplefilter("error", unmix.ConvergenceWarning)
        r = unmix.factorize(X, 3, random_state=0)
        fixed = unmix.factorize(X, 3, random_state=0, max_iter=20, tol=0.0)
    assert r.stop_reason == "tol" and r.stop_summary == "tol (converged)"
    assert r.spec["diagnostics"]["still_falling"] is None
    assert fixed.stop_reason == "max_iter" and fixed.stop_summary == "max_iter"


def test_the_slope_is_measured_over_the_last_tenth_of_at_most_50_iterations():
    falling = 100.0 * 0.99 ** np.arange(1001)  # 1 % an iteration
    rate, w = still_falling(falling, 1e-5)
    assert w == 50 and rate == pytest.approx((1 - 0.99**50) / 50)
    flat = np.r_[falling[:100], np.full(60, falling[99])]  # fell early, flat at the end
    assert still_falling(flat, 1e-5) is None
    assert still_falling(falling[:12], 1e-5)[1] == 1
    assert still_falling([5.0], 1e-5) is None and still_falling(falling, 0.0) is None


def test_saved_result_keeps_the_verdict(mixture, tmp_path):
    with pytest.warns(unmix.ConvergenceWarning, match="has not converged"):
        r = unmix.factorize(mixture.X, 3, solver="mu", max_iter=5, random_state=0)
    r.save(tmp_path / "r.h5")
    back = unmix.load_result(tmp_path / "r.h5")
    assert back.stop_summary == r.stop_summary


@pytest.mark.slow
def test_cli_says_a_fit_cut_short_has_not_converged(tmp_path, capsys):
    """A real map whose budget ends mid-descent (``--max-iter 30``; the defaults converge
    in 302 iterations): the warning gives the fix and the summary line says so."""
    from unmix.cli import entry

    path = shared_path("xrd", "xrd_aps34ide_143x2000.npz")
    args = ["run", path, "--shape", "11x13", "-k", "3", "--max-iter", "30"]
    args += ["--seed", "0", "--no-report", "-o", str(tmp_path)]
    with pytest.warns(unmix.ConvergenceWarning, match=r"--max-iter 120"):
        assert entry(args) == 0
    assert "stopped by max_iter (not converged" in capsys.readouterr().out
    res = unmix.load_result(tmp_path)
    assert res.spec["diagnostics"]["still_falling"] > 1e-5
