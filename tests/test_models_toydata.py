"""A tiny ground-truth dataset following the dataset contract (docs/architecture.md), for the model/training tests.

Factors: (size: 2, posX: k, posY: k); observation: a binary square on a black (1, S, S) canvas."""

from __future__ import annotations

import numpy as np


class Squares:
    def __init__(self, image_size: int = 16, positions: int = 4, channels: int = 1) -> None:
        self.name = f"squares{image_size}"
        self.factor_names = ("size", "pos_x", "pos_y")
        self.factor_sizes = (2, positions, positions)
        self.num_factors = 3
        self.observation_shape = (channels, image_size, image_size)
        self._side = (image_size // 4, image_size // 2)
        self._step = (image_size - self._side[1]) // max(positions - 1, 1)

    @staticmethod
    def _rng(rng):
        return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    def sample_factors(self, n: int, rng) -> np.ndarray:
        rng = self._rng(rng)
        return np.stack([rng.integers(0, s, n) for s in self.factor_sizes], axis=1).astype(np.int64)

    def sample_observations_from_factors(self, factors: np.ndarray, rng) -> np.ndarray:
        out = np.zeros((len(factors), *self.observation_shape), np.float32)
        for i, (size, px, py) in enumerate(np.asarray(factors)):
            s, x, y = self._side[size], px * self._step, py * self._step
            out[i, :, y:y + s, x:x + s] = 1.0
        return out

    def sample(self, n: int, rng):
        rng = self._rng(rng)
        f = self.sample_factors(n, rng)
        return f, self.sample_observations_from_factors(f, rng)

    def sample_observations(self, n: int, rng) -> np.ndarray:
        return self.sample(n, rng)[1]


def test_squares_follow_the_contract():
    d = Squares(16, 4)
    f, x = d.sample(5, 0)
    assert f.dtype == np.int64 and f.shape == (5, 3)
    assert x.dtype == np.float32 and x.shape == (5, 1, 16, 16)
    assert set(np.unique(x)) <= {0.0, 1.0}
    np.testing.assert_array_equal(d.sample_observations(5, 1), d.sample_observations(5, 1))
    big = Squares(64, 3)
    assert big.sample_observations(2, 0).shape == (2, 1, 64, 64)
