"""Random numbers inside compiled kernels: xorshift64* with a splitmix64-seeded state,
one state per job, so runs are reproducible and threads never share a generator."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(inline="always")
def next_random(rng: np.ndarray) -> np.uint64:
    """xorshift64*: one 64-bit draw; ``rng`` is a one-element uint64 state array."""
    x = rng[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    rng[0] = x
    return x * np.uint64(2685821657736338717)


@njit(inline="always")
def uniform(rng: np.ndarray) -> float:
    """A float in [0, 1) with 53 random bits."""
    return (next_random(rng) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def seed_state(seed: int) -> np.ndarray:
    """A non-zero xorshift state derived from ``seed`` by splitmix64."""
    z = np.uint64(seed) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    state = np.empty(1, dtype=np.uint64)
    state[0] = z if z != 0 else np.uint64(1)
    return state
