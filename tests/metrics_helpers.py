"""Small ground-truth datasets for the metric tests (they follow the dataset contract)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "metrics"


class IdentityData:
    """Independent uniform factors; the 'observation' is the factor vector as a (N, K, 1, 1) image.

    Like dlib's IdentityObservationsData / the reference runner's SyntheticFactors.
    """

    def __init__(self, factor_sizes=(4, 5, 6, 3, 8), noise: float = 0.0):
        self.name = "identity_test"
        self.factor_sizes = tuple(int(s) for s in factor_sizes)
        self.factor_names = tuple(f"f{i}" for i in range(len(self.factor_sizes)))
        self.num_factors = len(self.factor_sizes)
        self.observation_shape = (self.num_factors, 1, 1)
        self.noise = noise

    def sample_factors(self, n, rng):
        rng = np.random.default_rng(rng)
        return np.stack([rng.integers(s, size=n) for s in self.factor_sizes], 1).astype(np.int64)

    def sample_observations_from_factors(self, factors, rng):
        rng = np.random.default_rng(rng)
        x = np.asarray(factors, dtype=np.float32)
        if self.noise:
            x = x + rng.normal(scale=self.noise, size=x.shape).astype(np.float32)
        return x[:, :, None, None]

    def sample(self, n, rng):
        rng = np.random.default_rng(rng)
        f = self.sample_factors(n, rng)
        return f, self.sample_observations_from_factors(f, rng)

    def sample_observations(self, n, rng):
        return self.sample(n, rng)[1]


def flat(obs: np.ndarray) -> np.ndarray:
    return np.asarray(obs, dtype=np.float64).reshape(len(obs), -1)


def standardise(x: np.ndarray, sizes) -> np.ndarray:
    sizes = np.asarray(sizes, dtype=np.float64)
    return (x - (sizes - 1) / 2) / np.sqrt((sizes ** 2 - 1) / 12)


def load_golden():
    golden = json.loads((FIXTURES / "golden.json").read_text())
    raw = np.load(FIXTURES / "inputs.npz")
    cases: dict[str, dict[str, np.ndarray]] = {}
    for key in raw.files:
        case, arr = key.split("__")
        cases.setdefault(case, {})[arr] = raw[key]
    return golden, cases
