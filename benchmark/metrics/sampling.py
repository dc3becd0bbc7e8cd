"""Drawing and encoding samples: one shared pool, optional grid lookup.

Encoding dominates the protocol's cost (dlib re-samples and re-encodes per metric, ~3 M encoder
calls per representation). Here every metric that needs (codes, factors) pairs slices one shared pool,
and for a noise-free dataset with an enumerable factor grid and a deterministic representation the
grid is encoded once and codes are looked up, which gives exactly the codes the protocol would get.
The interventional metrics take their codes piece by piece (`FactorEncoder.chunks`, `.pairs`), within
a memory budget, each piece the codes encoding everything at once gives (docs/robustness.md).
The posterior metrics (``mig_exact``...) encode the whole grid to Gaussian parameters
(`encode_grid_posterior`).

A representation is a function of observations; one that is a function of the ground-truth factors
themselves (the ground_truth baseline, Higgins et al. 2017 Table 1) carries ``of_factors(factors
(n, K)) -> codes (n, D)``, which `FactorEncoder` calls with the factor rows instead of rendering them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from math import lcm, prod

import numpy as np

from benchmark.errors import UserError
from benchmark.metrics import utils

Represent = Callable[[np.ndarray], np.ndarray]  # optionally with `of_factors` (module doc)
# observations (n, C, H, W) float32 -> (mean, logvar), each (n, D): a Gaussian q(z|x)
GaussianEncoder = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class PosteriorUnavailable(UserError):
    """The posterior metrics cannot be computed here: no log-variance (a deterministic encoder), or
    a dataset whose grid is noisy or too large. The suite records a skip, not a failure."""


# Codes the interventional metrics (BetaVAE, FactorVAE) hold at once by default (the suite takes a
# share of the job's memory): raw pixels (D = 4,096; 12,288 in colour) would otherwise need 21 GB
# (63 GB) for each of BetaVAE's two arrays of 640,000 rows.
CHUNK_BYTES = 256 * 2**20
# The lookup table grows in blocks of this size, so it takes memory as codes come, not its budget.
BLOCK_BYTES = 64 * 2**20


class FactorEncoder:
    """Maps factor rows (n, K) to codes (n, D) float64: render + represent in batches, or keyed.

    Direct (the default): rows are rendered from ``rng`` and represented ``batch_size`` at a time,
    each call's batches counted from its first row. Keyed (`use_grid`): the codes are a function of
    the factor combination (noise-free data, a deterministic representation), so combinations are
    rendered with a throwaway generator and encoded codes are kept in a table, up to a memory
    budget, and looked up. ``chunk_bytes`` bounds the codes `chunks` and `pairs` hand out at once
    (default `CHUNK_BYTES`). A ``represent`` with a true ``deterministic`` attribute declares that
    its codes depend on each batch's observations only, not on earlier calls (no noise of its own).
    """

    def __init__(self, data, represent: Represent, rng: np.random.Generator, batch_size: int = 256,
                 chunk_bytes: int | None = None):
        self.data = data
        self.represent = represent
        self.rng = rng
        self.batch_size = int(batch_size)
        self.chunk_bytes = CHUNK_BYTES if chunk_bytes is None else int(chunk_bytes)
        self.stateless = bool(getattr(represent, "deterministic", False))
        self.factor_sizes = tuple(int(s) for s in data.factor_sizes)
        self.encoded = 0  # observations rendered and encoded so far
        self.code_dim: int | None = None  # D, once something was encoded
        self._native = np.dtype(np.float64)  # the dtype the representation returns
        # Keyed mode: table row of each grid element (-1: not kept) and the kept codes in blocks
        # of `_block_rows` rows, in the representation's own dtype (float32 -> float64 is exact,
        # so a lookup equals encoding).
        self._slot: np.ndarray | None = None
        self._blocks: list[np.ndarray] = []
        self._block_rows = 0
        self._capacity = 0  # rows the budget allows
        self._kept = 0
        self._budget = 0

    @property
    def keyed(self) -> bool:
        """Whether codes depend on the factors only: encoding order and chunking change nothing."""
        return self._slot is not None

    @property
    def table_bytes(self) -> int:
        """Memory held by the lookup table (its slot index and the codes kept)."""
        slot = 0 if self._slot is None else self._slot.nbytes
        return slot + sum(b.nbytes for b in self._blocks)

    def _render_encode(self, factors: np.ndarray, rng) -> np.ndarray:
        if not len(factors):
            raise UserError("no factor rows to encode")
        of_factors = getattr(self.represent, "of_factors", None)
        out = None  # filled batch by batch: never the batches and their concatenation at once
        for start in range(0, len(factors), self.batch_size):
            chunk = factors[start:start + self.batch_size]
            if of_factors is not None:  # codes of the factors themselves: nothing to render
                raw = np.asarray(of_factors(chunk))
            else:
                raw = np.asarray(self.represent(self.data.sample_observations_from_factors(chunk, rng)))
            codes = checked_codes(raw, len(chunk))
            if self.code_dim is None:
                self.code_dim, self._native = codes.shape[1], raw.dtype
            elif codes.shape[1] != self.code_dim:
                raise UserError(f"the representation returned {codes.shape[1]} dimensions, "
                                f"earlier {self.code_dim}")
            if out is None:
                out = np.empty((len(factors), self.code_dim), dtype=codes.dtype)
            out[start:start + len(chunk)] = codes
            self.encoded += len(chunk)
        return out

    def _skip(self, factors: np.ndarray, rng) -> None:
        """Move ``rng`` past rendering ``factors`` in the batches `_render_encode` would use."""
        skip = getattr(self.data, "skip_observations", None)
        for start in range(0, len(factors), self.batch_size):
            chunk = factors[start:start + self.batch_size]
            if skip is not None:
                skip(chunk, rng)
            else:  # a dataset without the method: render and drop
                self.data.sample_observations_from_factors(chunk, rng)

    def __call__(self, factors: np.ndarray) -> np.ndarray:
        factors = np.asarray(factors, dtype=np.int64)
        if self._slot is None:
            return self._render_encode(factors, self.rng)
        idx = np.ravel_multi_index(factors.T, self.factor_sizes)
        slot = self._slot[idx]
        hit = slot >= 0
        missing, inverse = np.unique(idx[~hit], return_inverse=True)
        codes = None
        if missing.size:
            rows = np.stack(np.unravel_index(missing, self.factor_sizes), 1).astype(np.int64)
            # Noise-free rendering: a fixed generator, so the factor stream does not depend on
            # how many combinations had to be rendered (or were kept).
            codes = self._render_encode(rows, np.random.default_rng(0))
            self._keep(missing, codes)
        out = np.empty((len(idx), self.code_dim), dtype=np.float64)
        if hit.any():
            kept = slot[hit]
            block, row = np.divmod(kept, self._block_rows)
            found = np.empty((len(kept), self.code_dim), dtype=np.float64)
            for b in np.unique(block):
                sel = block == b
                found[sel] = self._blocks[b][row[sel]]
            out[hit] = found
        if codes is not None:
            out[~hit] = codes[inverse.ravel()]
        return out

    def _keep(self, grid_rows: np.ndarray, codes: np.ndarray) -> None:
        """Keeps the codes of `grid_rows` while the table stays within the budget; past it, later
        combinations are encoded each time they are drawn (direct encoding, the same codes)."""
        if not self._block_rows:
            row_bytes = self.code_dim * self._native.itemsize
            self._capacity = min(len(self._slot), max(0, self._budget - self._slot.nbytes) // row_bytes)
            self._block_rows = max(1, min(self._capacity, BLOCK_BYTES // row_bytes))
        take = min(self._capacity - self._kept, len(grid_rows))
        done = 0
        while done < take:
            b, r = divmod(self._kept, self._block_rows)
            if b == len(self._blocks):  # the last block only as large as the budget allows
                rows = min(self._block_rows, self._capacity - b * self._block_rows)
                self._blocks.append(np.empty((rows, self.code_dim), dtype=self._native))
            n = min(take - done, len(self._blocks[b]) - r)
            self._blocks[b][r:r + n] = codes[done:done + n]
            self._slot[grid_rows[done:done + n]] = np.arange(self._kept, self._kept + n)
            self._kept += n
            done += n

    def use_grid(self, budget_bytes: int) -> None:
        """Key codes by factor combination: each one kept is rendered and encoded at most once.

        Exact for a noise-free dataset and a deterministic representation (see `is_deterministic`):
        a combination's code is the same whenever the protocol would encode it. Never encodes more
        than direct encoding. The table (a slot per grid element, then the codes kept in the
        representation's dtype) takes at most ``budget_bytes``, allocated as codes come.
        """
        size = prod(self.factor_sizes)
        self._slot = np.full(size, -1, dtype=np.int32 if size < 2**31 else np.int64)
        self._budget = int(budget_bytes)

    def chunks(self, factors: np.ndarray, rows_per_point: int) -> Iterator[np.ndarray]:
        """The codes of ``factors`` (whole points of ``rows_per_point`` rows) piece by piece, at most
        ``chunk_bytes`` each (one point at least): bitwise the codes of one call on all of them.

        Direct pieces are whole encoder batches, so the same batches are rendered from the same
        random state and represented in the same order as in one call."""
        factors = np.asarray(factors, dtype=np.int64)
        n = len(factors) // rows_per_point
        start = 0
        while start < n:
            step = self._step(n - start, rows_per_point, 1)
            yield self(factors[start * rows_per_point:(start + step) * rows_per_point])
            start += step

    def pairs(self, first: np.ndarray, second: np.ndarray,
              rows_per_point: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(codes of ``first``, codes of ``second``) piece by piece for the same points, bitwise
        ``self(first)`` then ``self(second)``: what BetaVAE needs to pair its batches.

        Direct, the second array's images take the random state that rendering all of ``first``
        leaves: the state is copied for ``first``'s pieces, and moved past it
        (`GroundTruthData.skip_observations`) for ``second``'s. Then the representation sees the
        same batches in another order, so pieces are cut only for a representation that declares
        itself deterministic; one with noise of its own gets both arrays whole."""
        first, second = (np.asarray(f, dtype=np.int64) for f in (first, second))
        n = len(first) // rows_per_point
        if not self.keyed:
            if not self.stateless:
                yield self(first), self(second)
                return
            if self.code_dim is None:
                self._learn_code_dim()
        step = self._step(n, rows_per_point, 2)
        if step >= n:
            yield self(first), self(second)
            return
        ahead = None if self.keyed else copy.deepcopy(self.rng)
        if ahead is not None:
            self._skip(first, self.rng)
        for start in range(0, n, step):
            part = slice(start * rows_per_point, min(start + step, n) * rows_per_point)
            if ahead is None:
                yield self(first[part]), self(second[part])
            else:
                yield self._render_encode(first[part], ahead), self._render_encode(second[part], self.rng)

    def _step(self, num_points: int, rows_per_point: int, arrays: int) -> int:
        """Points per piece: codes of ``arrays`` arrays within ``chunk_bytes``; direct, a multiple
        of the points that fill whole encoder batches (the first piece, before D is known, one)."""
        if num_points <= 1:
            return num_points
        unit = 1 if self.keyed else lcm(self.batch_size, rows_per_point) // rows_per_point
        if self.code_dim is None:
            if not self.keyed:
                return min(num_points, unit)
            self(np.zeros((1, len(self.factor_sizes)), dtype=np.int64))  # kept for later
        point_bytes = arrays * rows_per_point * self.code_dim * np.dtype(np.float64).itemsize
        fit = max(unit, self.chunk_bytes // point_bytes // unit * unit)
        return min(num_points, fit)

    def _learn_code_dim(self) -> None:
        """D from one observation rendered with a throwaway generator (``self.rng`` untouched);
        only for a deterministic representation, which a call cannot change."""
        factors = np.zeros((1, len(self.factor_sizes)), dtype=np.int64)
        raw = np.asarray(self.represent(
            self.data.sample_observations_from_factors(factors, np.random.default_rng(0))))
        self.code_dim, self._native = checked_codes(raw, 1).shape[1], raw.dtype


def encoded_chunks(encode: Callable[[np.ndarray], np.ndarray], factors: np.ndarray,
                   rows_per_point: int) -> Iterator[np.ndarray]:
    """`FactorEncoder.chunks` for an encoder; a plain function's codes in one piece."""
    if isinstance(encode, FactorEncoder):
        yield from encode.chunks(factors, rows_per_point)
    else:
        yield encode(factors)


def encoded_pairs(encode: Callable[[np.ndarray], np.ndarray], first: np.ndarray, second: np.ndarray,
                  rows_per_point: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`FactorEncoder.pairs` for an encoder; a plain function's codes in one piece (first, second)."""
    if isinstance(encode, FactorEncoder):
        yield from encode.pairs(first, second, rows_per_point)
    else:
        codes = encode(first)
        yield codes, encode(second)


def checked_codes(codes, n: int) -> np.ndarray:
    arr = np.asarray(codes)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise UserError(f"the representation returned shape {arr.shape} for {n} observations; expected ({n}, D)")
    return utils.check_codes(arr, "codes returned by the representation")


def is_deterministic(data, represent: Represent, probe: int = 8, seed: int = 12345) -> bool:
    """True when rendering and encoding the same factors twice (different RNGs) gives equal codes;
    always for a representation of the factors themselves (``of_factors``)."""
    if getattr(represent, "of_factors", None) is not None:
        return True
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
