"""Checkpoints: interrupt a fit, resume it, get the uninterrupted answer."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

import unmix

CASES = [
    ("hals", {}),
    ("admm", {"constraints": [unmix.SumToOne()]}),
    ("gradient", {}),
    ("hals", {"compress": True}),
    ("mu", {"n_restarts": 3, "init": "random"}),
]


@pytest.mark.parametrize(("solver", "extra"), CASES)
def test_interrupt_and_resume_gives_same_answer(mixture, tmp_path, solver, extra):
    kw = {"solver": solver, "random_state": 1, "max_iter": 60, "tol": 0, **extra}
    ref = unmix.factorize(mixture.X, 3, **kw)
    path = tmp_path / "fit.ckpt.h5"
    calls = {"n": 0}

    def interrupt(info):
        calls["n"] += 1
        if calls["n"] == 37:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        unmix.factorize(
            mixture.X, 3, **kw, checkpoint=path, checkpoint_every=0, callback=interrupt
        )
    assert path.exists()
    res = unmix.factorize(mixture.X, 3, **kw, checkpoint=path, resume=True)
    np.testing.assert_array_equal(res.S, ref.S)
    np.testing.assert_array_equal(res.A, ref.A)
    assert res.n_iter == ref.n_iter and res.objective == ref.objective
    np.testing.assert_array_equal(res.history["objective"], ref.history["objective"])
    assert not path.exists()  # removed once the fit completed


def test_checkpoint_refuses_other_problem(mixture, tmp_path):
    path = tmp_path / "fit.ckpt.h5"
    with pytest.raises(KeyboardInterrupt):
        unmix.factorize(
            mixture.X,
            3,
            random_state=0,
            checkpoint=path,
            checkpoint_every=0,
            callback=lambda i: (_ for _ in ()).throw(KeyboardInterrupt) if i.iteration == 3 else 0,
        )
    with pytest.raises(ValueError, match="belongs to other data or other parameters"):
        unmix.factorize(mixture.X, 4, random_state=0, checkpoint=path, resume=True)
    with pytest.raises(ValueError, match="belongs to other data"):
        unmix.factorize(mixture.X * 2, 3, random_state=0, checkpoint=path, resume=True)


def test_resume_without_checkpoint_file_starts_afresh(mixture, tmp_path):
    r = unmix.factorize(
        mixture.X, 3, random_state=0, max_iter=5, checkpoint=tmp_path / "none.h5", resume=True
    )
    assert r.n_iter == 5
    with pytest.raises(ValueError, match="resume=True needs checkpoint="):
        unmix.factorize(mixture.X, 3, resume=True)


KILL_SCRIPT = """
import sys, numpy as np, unmix
X = np.load(sys.argv[1])
unmix.factorize(X, 3, solver="hals", random_state=2, max_iter=int(sys.argv[3]), tol=0,
                checkpoint=sys.argv[2], checkpoint_every=0, resume=True,
                callback=lambda info: print(info.iteration, flush=True))
"""


def test_killed_process_resumes(mixture, tmp_path):
    """SIGKILL mid-fit (no chance to clean up), then resume: same answer."""
    data = tmp_path / "X.npy"
    np.save(data, mixture.X)
    ckpt = tmp_path / "fit.ckpt.h5"
    script = tmp_path / "fit.py"
    script.write_text(KILL_SCRIPT)
    n = 4000
    proc = subprocess.Popen(
        [sys.executable, str(script), str(data), str(ckpt), str(n)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    for line in proc.stdout:  # wait until a few iterations are checkpointed
        if int(line) >= 30:
            break
    proc.kill()
    proc.wait()
    time.sleep(0.1)
    assert ckpt.exists()
    res = unmix.factorize(
        mixture.X,
        3,
        solver="hals",
        random_state=2,
        max_iter=n,
        tol=0,
        checkpoint=ckpt,
        resume=True,
    )
    ref = unmix.factorize(mixture.X, 3, solver="hals", random_state=2, max_iter=n, tol=0)
    np.testing.assert_array_equal(res.S, ref.S)
    assert res.n_iter == ref.n_iter > 30


@pytest.mark.parametrize("solver", ["klcd", "mu", "gradient"])
def test_a_fit_resumed_just_before_its_stop_stops_there(mixture, tmp_path, solver):
    """The stop rule's own state (the calm count, the recent objectives the fall still to
    come is estimated from) goes into the checkpoint: resumed one or two iterations before
    the uninterrupted fit stopped by ``tol``, the fit stops at the same iteration with
    the same answer (without it, the resumed fit needed its windows filled again)."""
    X = np.clip(mixture.X, 0, None)
    kw = {"loss": "kl", "solver": solver, "random_state": 1}
    ref = unmix.factorize(X, 3, **kw)
    assert ref.stop_reason == "tol" and ref.n_iter > 5
    for at in (ref.n_iter - 2, ref.n_iter - 1):
        path = tmp_path / f"fit{at}.ckpt.h5"
        calls = {"n": 0}

        def interrupt(info, at=at, calls=calls):
            calls["n"] += 1
            if calls["n"] == at:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            unmix.factorize(X, 3, **kw, checkpoint=path, checkpoint_every=0, callback=interrupt)
        res = unmix.factorize(X, 3, **kw, checkpoint=path, resume=True)
        assert res.n_iter == ref.n_iter and res.stop_reason == "tol"
        assert res.objective == ref.objective
        np.testing.assert_array_equal(res.S, ref.S)


@pytest.mark.parametrize("solver", ["klcd", "hals", "mu"])
def test_a_filtered_fit_resumed_stops_where_the_uninterrupted_one_does(mixture, tmp_path, solver):
    """A fit with filters stops on its objective's trend over windows of iterations; the
    windows travel in the checkpoint, so the resumed fit stops at the same iteration with
    the same factors (KL-CD: 25 against 11 iterations on the XRD map while its first
    resumed step, one behind, emptied them)."""
    kw = {
        "loss": "frobenius" if solver == "hals" else "kl",
        "solver": solver,
        "regularizers": [unmix.model.GaussianMapFilter(1.0)],
        "spatial_shape": mixture.spatial_shape,
        "random_state": 0,
        "n_restarts": 1,
        "max_iter": 300,
    }
    ref = unmix.factorize(mixture.X, 3, **kw)
    assert ref.stop_reason == "tol"
    path = tmp_path / "fit.ckpt.h5"

    def interrupt(info):
        if info.iteration == 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        unmix.factorize(
            mixture.X, 3, **kw, checkpoint=path, checkpoint_every=0, callback=interrupt
        )
    res = unmix.factorize(mixture.X, 3, **kw, checkpoint=path, resume=True)
    assert res.n_iter == ref.n_iter and res.objective == ref.objective
    np.testing.assert_array_equal(res.S, ref.S)
