"""The Dask executor: a 2-worker LocalCluster (127.0.0.1) gives the serial answer."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

import unmix

distributed = pytest.importorskip("distributed")
from unmix.executors.dask import DaskExecutor  # noqa: E402

pytestmark = pytest.mark.slow  # MPI / Dask processes


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def _data(rows=7, cols=6, m=30, seed=0):
    mx = unmix.datasets.make_mixture(
        3, spatial_shape=(rows, cols), n_channels=m, snr_db=40, random_state=seed
    )
    return np.clip(mx.X, 0, None)


CASES = {
    "hals": {"solver": "hals"},
    "mu-kl": {"solver": "mu", "loss": "kl"},
    "admm-simplex": {  # the plain iteration (extrapolated: the test below)
        "solver": "admm",
        "constraints": [unmix.NonNegative(), unmix.SumToOne()],
        "solver_options": {"extrapolate": False},
    },
    "hals-l1-random": {"solver": "hals", "init": "random", "regularizers": [unmix.L1(0.01)]},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_workers_give_the_serial_answer(client, case):
    X = _data()  # 7 scan lines of 6 pixels: 4 + 3 lines, an uneven split
    kw = {"max_iter": 40, "tol": 0, "random_state": 0, "block_size": 6, **CASES[case]}
    ser = unmix.factorize(X, 3, **kw)
    ex = DaskExecutor(client)
    par = unmix.factorize(X, 3, executor=ex, **kw)
    assert par.A.shape == ser.A.shape and par.S.dtype == ser.S.dtype
    np.testing.assert_allclose(par.S, ser.S, rtol=1e-6, atol=1e-9 * np.abs(ser.S).max())
    np.testing.assert_allclose(par.A, ser.A, rtol=1e-6, atol=1e-9 * np.abs(ser.A).max())
    assert par.objective == pytest.approx(ser.objective, rel=1e-9)
    assert ex.last_run["rounds"][0] == ex.last_run["rounds"][1]  # the same collectives


@pytest.mark.parametrize("solver", ["bpp", "admm"])
def test_two_workers_extrapolated_reach_the_serial_objective(client, solver):
    """With extrapolation the accept/discard decision near convergence sees objectives
    equal to rounding; the Dask sums round differently, so the two runs may take other
    paths along a flat minimum (here S 2.6 % apart) - to the same objective.  ADMM fits
    sum-to-one maps, where extrapolation is the default."""
    X = _data()
    kw = {"max_iter": 60, "tol": 1e-9, "random_state": 0, "block_size": 6, "solver": solver}
    kw["solver_options"] = {"extrapolate": True}
    if solver == "admm":
        kw["constraints"] = [unmix.NonNegative(), unmix.SumToOne()]
    ser = unmix.factorize(X, 3, **kw)
    par = unmix.factorize(X, 3, executor=DaskExecutor(client), **kw)
    assert par.objective == pytest.approx(ser.objective, rel=1e-8)
    assert np.all(par.A >= 0) and np.all(par.S >= 0)
    n = min(len(ser.history["objective"]), 8)  # the same path until the endgame
    np.testing.assert_allclose(par.history["objective"][:n], ser.history["objective"][:n])


def test_one_exchange_per_iteration_of_k_times_channels_plus_k(client):
    X = _data()
    ex = DaskExecutor(client)
    counts = {}
    for n_iter in (20, 50):
        res = unmix.factorize(
            X,
            3,
            executor=ex,
            solver="hals",
            max_iter=n_iter,
            tol=0,
            random_state=0,
            block_size=6,
            compress=None,
        )
        counts[n_iter] = (
            ex.last_run["rounds"][0],
            ex.last_run["bytes_reduced"][0],
            res.n_iter,  # tol=0 can still stop early when the objective is exactly flat
        )
    extra = counts[50][2] - counts[20][2]
    assert extra > 0
    rounds = (counts[50][0] - counts[20][0]) / extra
    per_iter = (counts[50][1] - counts[20][1]) / extra
    assert rounds == 1
    assert per_iter == 3 * (30 + 3) * 8


def test_workers_read_their_rows_of_an_hdf5_file(client, tmp_path):
    h5py = pytest.importorskip("h5py")
    X = _data(rows=8, cols=5)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("data", data=X, chunks=(5, 30))
    kw = {"solver": "mu", "max_iter": 30, "tol": 0, "random_state": 0, "block_size": 5}
    ser = unmix.factorize(X, 3, **kw)
    with h5py.File(tmp_path / "x.h5", "r") as f:
        par = unmix.factorize(f["data"], 3, executor=DaskExecutor(client), **kw)
    np.testing.assert_allclose(par.S, ser.S, rtol=1e-6, atol=1e-9 * np.abs(ser.S).max())
    np.testing.assert_allclose(par.A, ser.A, rtol=1e-6, atol=1e-9 * np.abs(ser.A).max())


def test_killed_worker_leaves_a_checkpoint_to_resume_from(client, tmp_path):
    X = _data(rows=8, cols=6)
    kw = {"solver": "hals", "max_iter": 150, "tol": 0, "random_state": 0, "block_size": 6}
    ckpt = str(tmp_path / "fit.h5")
    full = unmix.factorize(X, 3, executor=DaskExecutor(client), **kw)
    victim = sorted(client.scheduler_info()["workers"])[1]

    def kill_when_checkpointed() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            names = [p.name.rsplit(".g", 1)[-1] for p in tmp_path.glob("fit.h5.rank1of2.g*")]
            if any(tail.isdigit() and int(tail) >= 20 for tail in names):
                break
            time.sleep(0.005)
        try:
            client.run(os._exit, 1, workers=[victim])
        except Exception:
            pass

    killer = threading.Thread(target=kill_when_checkpointed)
    killer.start()
    with pytest.raises(RuntimeError, match="died during the fit"):
        unmix.factorize(
            X, 3, executor=DaskExecutor(client), checkpoint=ckpt, checkpoint_every=0, **kw
        )
    killer.join()
    assert list(tmp_path.glob("fit.h5.rank0of2.g*")) and list(tmp_path.glob("fit.h5.rank1of2.g*"))
    client.wait_for_workers(2, timeout=60)
    resumed = unmix.factorize(
        X, 3, executor=DaskExecutor(client), checkpoint=ckpt, checkpoint_every=0, resume=True, **kw
    )
    assert resumed.n_iter == full.n_iter
    np.testing.assert_array_equal(resumed.S, full.S)
    np.testing.assert_array_equal(resumed.A, full.A)
    assert not list(tmp_path.glob("fit.h5.rank*"))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"weights": np.ones((42, 30))}, "full .pixels, channels. weights is not supported"),
        ({"mask": np.ones((40, 30), bool)}, r"mask has shape \(40, 30\); it must match"),
        ({"preprocessing": [unmix.preprocessing.PoissonScaling()]}, "preprocess X first"),
    ],
)
def test_what_the_dask_executor_rejects(client, kw, match):
    with pytest.raises(ValueError, match=match):
        unmix.factorize(_data(), 3, executor=DaskExecutor(client), max_iter=2, **kw)


@pytest.mark.parametrize("solver", ["mu", "gradient"])
def test_mask_and_separable_weights_give_the_serial_answer(client, solver):
    X = _data()
    rng = np.random.default_rng(7)
    mask = rng.random(X.shape) > 0.15
    X = np.where(mask, X, np.nan)  # missing entries may hold NaN
    w = unmix.Weights(pixels=rng.uniform(0.5, 2, X.shape[0]), channels=np.linspace(1, 2, 30))
    kw = {"solver": solver, "max_iter": 30, "tol": 0, "random_state": 0, "block_size": 6}
    kw.update(init="random", mask=mask, weights=w)
    ser = unmix.factorize(X, 3, **kw)
    par = unmix.factorize(X, 3, executor=DaskExecutor(client), **kw)
    np.testing.assert_allclose(par.S, ser.S, rtol=1e-6, atol=1e-9 * np.abs(ser.S).max())
    np.testing.assert_allclose(par.A, ser.A, rtol=1e-6, atol=1e-9 * np.abs(ser.A).max())
    assert par.objective == pytest.approx(ser.objective, rel=1e-9)


def test_dask_executor_refuses_a_silent_device_copy(client):
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="takes X as a NumPy array"):
        unmix.factorize(torch.from_numpy(_data()), 3, executor=DaskExecutor(client), max_iter=2)
