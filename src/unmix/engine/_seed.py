"""The fit's seed: one int, always recorded, so that every fit can be repeated and resumed.

``random_state=None`` draws one seed from the operating system's entropy (logged at INFO
and recorded in ``result.spec["random_state"]``); an int is the seed; a
:class:`numpy.random.Generator` gives one int drawn from it.  Rerunning with the recorded
int repeats the fit bit for bit.  A resume (``resume=True``) without a seed takes the seed
recorded in the checkpoint, and refuses an explicit seed that differs from it.  The
restarts' seeds follow from the fit's seed (:func:`restart_seeds`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from ._checkpoint import recorded_seed

logger = logging.getLogger("unmix")

__all__ = ["SEED_LIMIT", "resolve_seed", "restart_seeds"]

#: seeds drawn by unmix lie in ``[0, SEED_LIMIT)``
SEED_LIMIT = 2**32


def resolve_seed(
    random_state: Any,
    *,
    checkpoint: str | os.PathLike | None,
    resume: bool,
    executor: Any = None,
) -> int:
    """The int seed of a fit (see the module docstring).

    Parameters
    ----------
    random_state : int, numpy.random.Generator or None
        ``factorize``'s ``random_state``.
    checkpoint : path or None
        The checkpoint file; read only when ``resume`` is True.
    resume : bool
        Whether the fit resumes from ``checkpoint``.
    executor : executor, optional
        A distributed executor makes every process use the seed of the first one.

    Returns
    -------
    int
        The seed, ``>= 0``.

    Raises
    ------
    ValueError
        An explicit seed that differs from the one the checkpoint records, or a
        checkpoint without a recorded seed resumed without a seed.
    """
    given = _given_seed(random_state)
    recorded = None
    if resume and checkpoint is not None:
        recorded = recorded_seed(checkpoint, executor, required=given is None)
    if given is not None:
        if recorded is not None and recorded != given:
            raise ValueError(
                f"random_state={given} differs from the seed {recorded} recorded in the "
                f"checkpoint {os.fspath(checkpoint)}: resume with random_state={recorded} "
                "(or None, which takes it), or delete the checkpoint to start afresh."
            )
        return given
    if recorded is not None:
        logger.info("Resuming with the seed %d recorded in %s.", recorded, checkpoint)
        return _agreed(recorded, executor)
    seed = _agreed(int(np.random.SeedSequence().entropy % SEED_LIMIT), executor)
    logger.info(
        "random_state=None: drew the seed %d (random_state=%d repeats this fit).", seed, seed
    )
    return seed


def restart_seeds(seed: int, n_restarts: int) -> list[int]:
    """One seed per restart, drawn from the fit's ``seed``."""
    rng = np.random.default_rng(seed)
    return [int(s) for s in rng.integers(0, 2**31 - 1, size=n_restarts)]


def _given_seed(random_state: Any) -> int | None:
    """The int seed ``random_state`` gives (None for None)."""
    if random_state is None:
        return None
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, SEED_LIMIT))
    return int(random_state)


def _agreed(seed: int, executor: Any) -> int:
    """The first process's ``seed`` on every process of a distributed executor."""
    if executor is None or not getattr(executor, "distributed", False):
        return seed
    broadcast = getattr(executor, "broadcast", None)
    if broadcast is not None:
        return int(broadcast(seed))
    return int(executor.allgather(seed)[0])
