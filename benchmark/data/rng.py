"""Random-state helpers: every sampler takes an int seed, a numpy Generator or a RandomState.

Pass ``np.random.RandomState(seed)`` to get the same draws as disentanglement_lib (it samples with
``RandomState`` in a fixed call order, which the samplers here keep).
"""

from __future__ import annotations

import numpy as np

RandomLike = int | np.integer | np.random.Generator | np.random.RandomState


def as_rng(rng: RandomLike) -> np.random.Generator | np.random.RandomState:
    """A random state for ``rng``: an int becomes ``np.random.default_rng(rng)``; states pass through."""
    if isinstance(rng, (np.random.Generator, np.random.RandomState)):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be an int seed, numpy Generator or RandomState, got {type(rng).__name__}")


def integers(rng: RandomLike, high: int, size: int | tuple[int, ...] | None = None):
    """Uniform integers in [0, high) (``randint`` on a RandomState, ``integers`` on a Generator)."""
    state = as_rng(rng)
    if isinstance(state, np.random.RandomState):
        return state.randint(high, size=size)
    return state.integers(high, size=size)


def uniform(rng: RandomLike, low: float, high: float, size) -> np.ndarray:
    """Uniform floats in [low, high), float64 as numpy draws them."""
    return as_rng(rng).uniform(low, high, size)
