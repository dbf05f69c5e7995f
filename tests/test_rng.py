"""The compiled kernels' random numbers against the published algorithms, written here in
plain Python: splitmix64 (seeding) and xorshift64* (Vigna 2016: shifts 12, 25, 27, then
the multiplier 2685821657736338717, all modulo 2^64)."""

from __future__ import annotations

import numpy as np
from numba import njit

from embedtrain.rng import next_random, seed_state, uniform

MASK = 2**64 - 1


def splitmix64(seed: int) -> int:
    z = (seed + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def xorshift64_star(state: int) -> tuple[int, int]:
    state ^= state >> 12
    state ^= (state << 25) & MASK
    state ^= state >> 27
    return state, (state * 2685821657736338717) & MASK


@njit
def draws(state, n):
    out = np.empty(n, dtype=np.uint64)
    for i in range(n):
        out[i] = next_random(state)
    return out


@njit
def uniforms(state, n):
    out = np.empty(n)
    for i in range(n):
        out[i] = uniform(state)
    return out


def test_seeding_and_draws_follow_the_published_algorithms():
    for seed in (0, 1, 12345, 2**63 + 7, 2**64 - 1):
        state = seed_state(np.uint64(seed))
        reference = splitmix64(seed)
        assert int(state[0]) == reference
        ours = draws(state, 10)
        for value in ours:
            reference, expected = xorshift64_star(reference)
            assert int(value) == expected


def test_uniform_takes_the_top_53_bits():
    state = seed_state(np.uint64(5))
    reference = splitmix64(5)
    for value in uniforms(state, 10):
        reference, drawn = xorshift64_star(reference)
        assert value == (drawn >> 11) / 2.0**53
        assert 0.0 <= value < 1.0
