"""Drawing and encoding samples: one shared pool, optional grid lookup.

Encoding dominates the protocol's cost (dlib re-samples and re-encodes per metric, ~3 M encoder
calls per representation). Here every metric that needs (codes, factors) pairs slices one shared pool,
and for a noise-free dataset with an enumerable factor grid and a deterministic representation the
grid is encoded once and codes are looked up, which gives exactly the codes the protocol would get.
The posterior metrics (``mig_exact``...) encode the whole grid to Gaussian parameters
(`encode_grid_posterior`).
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod

import numpy as np

from benchmark.errors import UserError
from benchmark.metrics import utils

Represent = Callable[[np.ndarray], np.ndarray]
# observations (n, C, H, W) float32 -> (mean, logvar), each (n, D): a Gaussian q(z|x)
GaussianEncoder = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class PosteriorUnavailable(UserError):
    """The posterior metrics cannot be computed here: no log-variance (a deterministic encoder), or
    a dataset whose grid is noisy or too large. The suite records a skip, not a failure."""


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
    obs_a, obs_b = _render_twice(data, probe, seed)
    if not np.array_equal(obs_a, obs_b):
        return False
    return bool(np.array_equal(np.asarray(represent(obs_a)), np.asarray(represent(obs_b))))


def is_noise_free(data, probe: int = 8, seed: int = 12345) -> bool:
    """True when rendering the same factors twice (different RNGs) gives equal observations."""
    obs_a, obs_b = _render_twice(data, probe, seed)
    return bool(np.array_equal(obs_a, obs_b))


def _render_twice(data, probe: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    factors = np.asarray(data.sample_factors(probe, np.random.default_rng(seed)), dtype=np.int64)
    obs_a = data.sample_observations_from_factors(factors, np.random.default_rng(seed + 1))
    obs_b = data.sample_observations_from_factors(factors, np.random.default_rng(seed + 2))
    return obs_a, obs_b


def grid_size(data) -> int:
    return prod(int(s) for s in data.factor_sizes)


def encode_grid_posterior(data, gaussian: GaussianEncoder, batch_size: int = 256,
                          max_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mean, logvar), each (N, D) float32, of every grid element in row-major factor order.

    The exact-data MI of Chen et al. (2018) needs q(z|x) for the whole dataset, so the dataset
    must be noise-free (an observation is a function of its factors) and its grid enumerable (at
    most ``max_rows`` elements when given); otherwise `PosteriorUnavailable` (a UserError). A ``gaussian`` that returns no
    log-variance raises `PosteriorUnavailable` too. Only the parameters are kept: memory O(N × D).
    """
    sizes = tuple(int(s) for s in data.factor_sizes)
    n = grid_size(data)
    name = getattr(data, "name", "?")
    if max_rows is not None and n > max_rows:
        raise PosteriorUnavailable(f"dataset {name}: factor grid of {n} elements exceeds {max_rows}; "
                        "the posterior metrics encode the whole grid")
    if not is_noise_free(data):
        raise PosteriorUnavailable(f"dataset {name} renders the same factors differently (noise, or factors "
                        "outside the grid): the posterior metrics need a noise-free dataset")
    rng = np.random.default_rng(0)  # noise-free: the stream does not matter
    means, logvars = [], []
    for start in range(0, n, int(batch_size)):
        idx = np.arange(start, min(start + int(batch_size), n))
        factors = np.stack(np.unravel_index(idx, sizes), axis=1).astype(np.int64)
        out = gaussian(data.sample_observations_from_factors(factors, rng))
        if not isinstance(out, tuple) or len(out) != 2:
            raise UserError("the Gaussian encoder must return (mean, logvar)")
        if out[1] is None:
            raise PosteriorUnavailable("the encoder returned no log-variance: it has no Gaussian posterior")
        means.append(checked_codes(out[0], len(idx)).astype(np.float32))
        logvars.append(checked_codes(out[1], len(idx)).astype(np.float32))
        if logvars[-1].shape != means[-1].shape:
            raise UserError(f"posterior mean {means[-1].shape} and logvar {logvars[-1].shape} differ in shape")
    return np.concatenate(means), np.concatenate(logvars)
