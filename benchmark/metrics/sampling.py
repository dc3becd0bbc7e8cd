"""Drawing and encoding samples: one shared pool, optional grid lookup.

Encoding dominates the protocol's cost (dlib re-samples and re-encodes per metric, ~3 M encoder
calls per representation). Here every metric that needs (codes, factors) pairs slices one shared pool,
and for a noise-free dataset with an enumerable factor grid and a deterministic representation the
grid is encoded once and codes are looked up, which gives exactly the codes the protocol would get.
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod

import numpy as np

from benchmark.errors import UserError
from benchmark.metrics import utils

Represent = Callable[[np.ndarray], np.ndarray]


class FactorEncoder:
    """Maps factor rows (n, K) to codes (n, D): render + represent in batches, or grid lookup."""

    def __init__(self, data, represent: Represent, rng: np.random.Generator, batch_size: int = 256):
        self.data = data
        self.represent = represent
        self.rng = rng
        self.batch_size = int(batch_size)
        self.factor_sizes = tuple(int(s) for s in data.factor_sizes)
        self.grid_codes: np.ndarray | None = None  # codes of grid rows, valid where _known
        self._known: np.ndarray | None = None
        self.encoded = 0  # observations rendered and encoded so far

    def _render_encode(self, factors: np.ndarray, rng) -> np.ndarray:
        out = []
        for start in range(0, len(factors), self.batch_size):
            chunk = factors[start:start + self.batch_size]
            obs = self.data.sample_observations_from_factors(chunk, rng)
            out.append(checked_codes(self.represent(obs), len(chunk)))
            self.encoded += len(chunk)
        return np.concatenate(out, axis=0)

    def __call__(self, factors: np.ndarray) -> np.ndarray:
        factors = np.asarray(factors, dtype=np.int64)
        if self._known is None:
            return self._render_encode(factors, self.rng)
        idx = np.ravel_multi_index(factors.T, self.factor_sizes)
        missing = np.unique(idx[~self._known[idx]])
        if missing.size:
            rows = np.stack(np.unravel_index(missing, self.factor_sizes), 1).astype(np.int64)
            # Noise-free rendering: a fixed generator, so the factor stream does not depend on
            # how many combinations had to be rendered.
            codes = self._render_encode(rows, np.random.default_rng(0))
            if self.grid_codes is None:
                self.grid_codes = np.empty((len(self._known), codes.shape[1]))
            elif codes.shape[1] != self.grid_codes.shape[1]:
                raise UserError(f"the representation returned {codes.shape[1]} dimensions, "
                                f"earlier {self.grid_codes.shape[1]}")
            self.grid_codes[missing] = codes
            self._known[missing] = True
        return self.grid_codes[idx]

    def use_grid(self) -> None:
        """Look codes up by factor combination: each one is rendered and encoded at most once.

        Exact for a noise-free dataset and a deterministic representation (see `is_deterministic`):
        a combination's code is the same whenever the protocol would encode it. Never encodes more
        than direct encoding, and at most the whole grid (dSprites: 737,280) however many draws.
        """
        self._known = np.zeros(prod(self.factor_sizes), dtype=bool)


def checked_codes(codes, n: int) -> np.ndarray:
    arr = np.asarray(codes)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise UserError(f"the representation returned shape {arr.shape} for {n} observations; expected ({n}, D)")
    return utils.check_codes(arr, "codes returned by the representation")


def is_deterministic(data, represent: Represent, probe: int = 8, seed: int = 12345) -> bool:
    """True when rendering and encoding the same factors twice (different RNGs) gives equal codes."""
    factors = np.asarray(data.sample_factors(probe, np.random.default_rng(seed)), dtype=np.int64)
    obs_a = data.sample_observations_from_factors(factors, np.random.default_rng(seed + 1))
    obs_b = data.sample_observations_from_factors(factors, np.random.default_rng(seed + 2))
    if not np.array_equal(obs_a, obs_b):
        return False
    return bool(np.array_equal(np.asarray(represent(obs_a)), np.asarray(represent(obs_b))))


def grid_size(data) -> int:
    return prod(int(s) for s in data.factor_sizes)
