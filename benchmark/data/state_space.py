"""Factor classes <-> flat index over a row-major factor grid (vectorised).

Same convention as disentanglement_lib (`index = factors @ bases`, bases = prod(sizes)/cumprod(sizes))
and disent's ``state_space.py``: the last factor varies fastest, so the flat order is the original
files' order (dSprites: posY fastest).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from benchmark.data.rng import RandomLike, integers


class StateSpace:
    """The grid of all factor combinations of a dataset."""

    def __init__(self, factor_sizes: Sequence[int]):
        sizes = tuple(int(s) for s in factor_sizes)
        if not sizes or min(sizes) < 1:
            raise ValueError(f"factor sizes must be positive integers, got {sizes}")
        self.factor_sizes = sizes
        self.num_factors = len(sizes)
        # strides[k] = prod(sizes[k+1:]); int64 is enough for any dataset of the study (< 2**40 points)
        self.strides = np.array(
            [int(np.prod(sizes[k + 1 :], dtype=np.int64)) for k in range(len(sizes))], dtype=np.int64
        )
        self.num_points = int(np.prod(sizes, dtype=np.int64))
        self._sizes = np.array(sizes, dtype=np.int64)

    def __len__(self) -> int:
        return self.num_points

    def __repr__(self) -> str:
        return f"StateSpace(factor_sizes={self.factor_sizes})"

    def validate_factors(self, factors: np.ndarray) -> np.ndarray:
        """Return ``factors`` as int64 (n, K); raise ValueError if the shape or a class is out of range."""
        arr = np.asarray(factors)
        if arr.ndim != 2 or arr.shape[1] != self.num_factors:
            raise ValueError(
                f"factors must have shape (n, {self.num_factors}), got {tuple(arr.shape)}"
            )
        if arr.dtype.kind not in "iu":
            if arr.dtype.kind == "f" and np.all(np.mod(arr, 1) == 0):
                arr = arr.astype(np.int64)
            else:
                raise ValueError(f"factors must be integer class indices, got dtype {arr.dtype}")
        arr = arr.astype(np.int64, copy=False)
        if arr.size and (np.any(arr < 0) or np.any(arr >= self._sizes)):
            bad = np.argwhere((arr < 0) | (arr >= self._sizes))[0]
            raise ValueError(
                f"factor {bad[1]} has class {arr[bad[0], bad[1]]} outside 0..{self._sizes[bad[1]] - 1}"
            )
        return arr

    def factors_to_index(self, factors: np.ndarray) -> np.ndarray:
        """Flat indices (n,) int64 of factor classes (n, K)."""
        return self.validate_factors(factors) @ self.strides

    def index_to_factors(self, index: np.ndarray | int) -> np.ndarray:
        """Factor classes (n, K) int64 of flat indices (n,) (a scalar gives (1, K))."""
        idx = np.atleast_1d(np.asarray(index, dtype=np.int64))
        if idx.ndim != 1:
            raise ValueError(f"index must be a scalar or 1-D, got shape {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_points):
            raise ValueError(f"flat index out of range 0..{self.num_points - 1}")
        return (idx[:, None] // self.strides) % self._sizes

    def sample_factors(self, n: int, rng: RandomLike) -> np.ndarray:
        """n uniform draws over the grid, one factor column at a time as disentanglement_lib does."""
        out = np.empty((int(n), self.num_factors), dtype=np.int64)
        for k, size in enumerate(self.factor_sizes):
            out[:, k] = integers(rng, size, int(n))
        return out

    def all_factors(self) -> np.ndarray:
        """The whole grid (num_points, K) int64 in flat-index order."""
        return self.index_to_factors(np.arange(self.num_points, dtype=np.int64))

    def iter_factors(self, batch_size: int) -> Iterator[np.ndarray]:
        """The grid in flat-index order, in batches of at most ``batch_size`` rows."""
        for start in range(0, self.num_points, batch_size):
            stop = min(start + batch_size, self.num_points)
            yield self.index_to_factors(np.arange(start, stop, dtype=np.int64))
