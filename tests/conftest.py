"""Shared fixtures: planted-factor data and the array backends to test on."""

from __future__ import annotations

import importlib.util
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from unmix.datasets import make_mixture  # noqa: E402
from unmix.executors import SerialExecutor  # noqa: E402

# the variables above come too late where a plugin imported NumPy first: one BLAS thread
# here too, as in the subprocesses the tests start (results then agree bit for bit)
threadpool_limits(1)

if importlib.util.find_spec("torch") is not None:
    import torch

    torch.set_num_threads(1)

SHARED_DATA = os.environ.get(
    "UNMIX_SHARED_DATA",
    os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"),
)


def _torch_cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def _cupy_gpu() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


BACKENDS = [
    pytest.param("numpy", id="numpy"),
    pytest.param(
        "torch",
        id="torch-cpu",
        marks=pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="no torch"),
    ),
    pytest.param(
        "torch-cuda",
        id="torch-cuda",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not _torch_cuda(), reason="no CUDA device")],
    ),
    pytest.param(
        "cupy",
        id="cupy",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not _cupy_gpu(), reason="no CuPy GPU")],
    ),
]


def to_backend(X: np.ndarray, name: str, dtype: str = "float64"):
    """Put a NumPy array on a backend (explicitly, as a user would)."""
    X = np.ascontiguousarray(X, dtype=dtype)
    if name == "numpy":
        return X
    if name.startswith("torch"):
        import torch

        t = torch.from_numpy(X)
        return t.cuda() if name == "torch-cuda" else t
    if name == "cupy":
        import cupy

        return cupy.asarray(X)
    raise ValueError(name)


def host(a) -> np.ndarray:
    from unmix._backend import to_numpy

    return np.asarray(to_numpy(a))


@pytest.fixture(scope="session")
def mixture():
    """k=3 planted factors on a 20 x 25 grid, 40 channels, 40 dB, clipped >= 0."""
    mx = make_mixture(3, spatial_shape=(20, 25), n_channels=40, snr_db=40, random_state=0)
    mx.X = np.clip(mx.X, 0, None)
    return mx


@pytest.fixture(scope="session")
def counts():
    """Poisson counts (k=3), ~200 counts per pixel."""
    return make_mixture(
        3, spatial_shape=(20, 25), n_channels=40, noise="poisson", scale=10.0, random_state=1
    )


def low_dose_counts() -> np.ndarray:
    """Low-dose Poisson counts (240 x 60, about 85 % zeros) of 3 planted components."""
    rng = np.random.default_rng(3)
    A = rng.gamma(1.0, 1.0, (240, 3))
    S = rng.gamma(1.0, 1.0, (3, 60)) * (rng.random((3, 60)) < 0.5)
    return rng.poisson(A @ S * 0.15).astype(np.float64)


def shared_path(*parts: str) -> str:
    path = os.path.join(SHARED_DATA, *parts)
    if not os.path.exists(path):
        pytest.skip(f"shared dataset {path} not available")
    return path


REAL_FILES = {
    "eels": ("eels", "CuZn_EELS_mapping_tutorial.hspy"),
    "raman": ("raman", "raman_renishaw_streamline_49x45.npz"),
    "xrd": ("xrd", "xrd_aps34ide_143x2000.npz"),
    "eds-tem": ("eds", "eds_tem_bruker_64x64.npz"),
}


def matched_angles(S, ref) -> np.ndarray:
    """The angles (deg) between the endmembers ``S`` and ``ref`` (k, channels), matched by
    the Hungarian assignment on the angles (:func:`unmix.metrics.match_components`)."""
    from unmix.metrics import match_components, spectral_angles

    S, ref = np.asarray(S, dtype=float), np.asarray(ref, dtype=float)
    rows, cols = match_components(S, ref)
    return spectral_angles(S, ref)[rows, cols]


def issue_collapsed(A, S) -> list[int]:
    """The collapsed components by the constraint issue's definition (norm below 1e-3 of
    the largest, 99th-percentile abundance share below 0.05, or within 3 deg of another),
    computed here independently of the engine."""
    A, S = np.abs(np.asarray(A, float)), np.asarray(S, float)
    norms = np.linalg.norm(S, axis=1)
    contrib = A * norms[None, :]
    share = contrib / np.maximum(contrib.sum(axis=1, keepdims=True), 1e-300)
    p99 = np.percentile(share, 99, axis=0)
    unit = S / np.maximum(norms[:, None], 1e-300)
    ang = np.degrees(np.arccos(np.clip(unit @ unit.T, -1, 1)))
    np.fill_diagonal(ang, 180)
    return [
        j
        for j in range(len(S))
        if norms[j] < 1e-3 * norms.max() or p99[j] < 0.05 or ang[j].min() < 3
    ]


def real_pixels(name: str) -> np.ndarray:
    """A shared real map as float64 (pixels, channels): ``"eels"`` (Cu/ZnO EELS, counts),
    ``"raman"`` (raw Raman map), ``"xrd"`` (143 XRD patterns) or ``"eds-tem"`` (TEM EDS
    counts, ~6 a pixel); skips where
    ``../shared`` is missing."""
    import unmix

    path = shared_path(*REAL_FILES[name])
    if path.endswith(".hspy"):
        return np.asarray(unmix.load(path).unfold(), dtype=np.float64)
    data = np.asarray(np.load(path)["data"], dtype=np.float64)
    return data.reshape(-1, data.shape[-1])


def poisson_scan(folder, rows: int, cols: int, channels: int, seed: int) -> str:
    """A ``rows x cols`` scan of ``channels``-channel Poisson counts (3 planted gamma
    components) saved as ``folder/scan.npy``; returns its path (for command-line tests)."""
    rng = np.random.default_rng(seed)
    A = rng.gamma(1.0, size=(rows * cols, 3))
    S = rng.gamma(2.0, size=(3, channels)) * 5
    X = rng.poisson(A @ S).reshape(rows, cols, channels).astype(np.float64)
    path = os.path.join(folder, "scan.npy")
    np.save(path, X)
    return path


class RecordingExecutor(SerialExecutor):
    """The test double of the executor contract (:mod:`unmix.executors.base`).

    Runs every block in this process, as the serial executor does, and records each
    ``map_reduce`` call (the block indices it visited) and each ``allreduce``; a test can
    then assert how many passes over ``X`` an iteration makes without MPI or Dask.
    """

    def __init__(self) -> None:
        self.passes: list[list[int]] = []
        self.reductions = 0

    def map_reduce(self, kernel, blocks):
        self.passes.append([b.index for b in blocks])
        return super().map_reduce(kernel, blocks)

    def allreduce(self, value):
        self.reductions += 1
        return super().allreduce(value)


CLI = "import sys; from unmix.cli import entry; sys.exit(entry(sys.argv[1:]))"


def kill_after_checkpoint(args: list[str], out, delay: float) -> None:
    """Start ``unmix ARGS -o OUT --checkpoint-every 0`` in a child process and SIGKILL it
    ``delay`` seconds after its first checkpoint (or once it has ended)."""
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, *args, "--checkpoint-every", "0", "-o", str(out)],
        stdin=subprocess.DEVNULL,
    )
    ckpt = out / "checkpoint.h5"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt.exists() and ckpt.stat().st_size > 0:
            break
        time.sleep(0.05)
    time.sleep(delay)
    proc.kill()
    proc.wait()


def bayes_planted(k: int, counts: float, seed: int = 0, side: int = 32, m: int = 64):
    """The planted counts of the Bayesian NMF tests: ``unmix.datasets.poisson_mixture``."""
    from unmix.datasets import poisson_mixture

    return poisson_mixture(k, counts, seed, side=side, m=m)
