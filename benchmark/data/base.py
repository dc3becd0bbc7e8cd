"""The ground-truth dataset contract (docs/architecture.md, "Datasets"), after disentanglement_lib's
``data/ground_truth/ground_truth_data.py``: factors are class indices, observations float32 NCHW in [0, 1].
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmark.data.grid import GridSource
from benchmark.data.rng import RandomLike, as_rng, integers
from benchmark.data.state_space import StateSpace

if TYPE_CHECKING:
    import torch

    from benchmark.data.device import DeviceSampler


class GroundTruthData:
    """Base class of every dataset.

    Subclasses set the attributes below in ``__init__`` and implement ``_observations(factors, rng)``,
    which receives validated int64 factors and a random state (Generator or RandomState). One that
    draws from the state may implement ``_skip(factors, rng)``: the same draws without the images.

    Attributes:
        name: registry name (e.g. ``"dsprites_full"``).
        factor_names, factor_sizes: one entry per ground-truth factor, in index order.
        observation_shape: (C, H, W).
        source: ``"procedural"`` (rendered here) or ``"file"`` (loaded from the user's files).
        deterministic: True when an observation is a pure function of its factors (no colour, noise,
            crop or nuisance factor drawn at sampling time), so a whole grid can be encoded once.
        provenance: a small JSON-able dict saying what exactly produced the data (renderer version,
            file names, generated textures); record it with results.
    """

    name: str = "ground_truth"
    factor_names: tuple[str, ...] = ()
    factor_sizes: tuple[int, ...] = ()
    observation_shape: tuple[int, int, int] = (1, 64, 64)
    source: str = "procedural"
    deterministic: bool = True
    provenance: dict[str, Any]

    # ---- factor grid -------------------------------------------------------------------------
    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    @property
    def state_space(self) -> StateSpace:
        space = self.__dict__.get("_state_space")
        if space is None or space.factor_sizes != tuple(self.factor_sizes):
            space = StateSpace(self.factor_sizes)
            self.__dict__["_state_space"] = space
        return space

    @property
    def num_points(self) -> int:
        """Number of distinct factor combinations."""
        return self.state_space.num_points

    def factors_to_index(self, factors: np.ndarray) -> np.ndarray:
        return self.state_space.factors_to_index(factors)

    def index_to_factors(self, index: np.ndarray | int) -> np.ndarray:
        return self.state_space.index_to_factors(index)

    def all_factors(self) -> np.ndarray:
        """Every factor combination (num_points, K) in flat-index order."""
        return self.state_space.all_factors()

    def iter_factors(self, batch_size: int = 1024) -> Iterator[np.ndarray]:
        """The factor grid in flat-index order, batch by batch."""
        return self.state_space.iter_factors(batch_size)

    # ---- sampling ----------------------------------------------------------------------------
    def sample_factors(self, n: int, rng: RandomLike) -> np.ndarray:
        """n factor vectors (n, K) int64, uniform over the grid."""
        return self.state_space.sample_factors(n, as_rng(rng))

    def sample_observations_from_factors(self, factors: np.ndarray, rng: RandomLike) -> np.ndarray:
        """Observations (n, C, H, W) float32 in [0, 1] for factor classes (n, K)."""
        factors = self.state_space.validate_factors(factors)
        obs = self._observations(factors, as_rng(rng))
        if obs.dtype != np.float32:
            obs = obs.astype(np.float32)
        return obs

    def skip_observations(self, factors: np.ndarray, rng: RandomLike) -> None:
        """Advance ``rng`` exactly as `sample_observations_from_factors` (same factors) would, keeping
        no image: a later batch then gets the noise it gets when everything before it is rendered."""
        self._skip(self.state_space.validate_factors(factors), as_rng(rng))

    def sample_one_factor_varies(self, n: int, rng: RandomLike) -> tuple[int, np.ndarray]:
        """A weakly supervised batch (DC-IGN, Kulkarni et al. 2015): (k, factors (n, K) int64) where
        factor k is drawn uniformly, every other factor is fixed to one uniform draw shared by the
        batch, and factor k is drawn uniformly for each row, so only factor k varies (a factor of
        size 1 gives a batch of one repeated combination). Draw order: k, the shared row, factor k."""
        state = as_rng(rng)
        k = int(integers(state, self.num_factors))
        factors = np.repeat(self.sample_factors(1, state), int(n), axis=0)
        factors[:, k] = integers(state, int(self.factor_sizes[k]), int(n))
        return k, factors

    def sample(self, n: int, rng: RandomLike) -> tuple[np.ndarray, np.ndarray]:
        """(factors, observations) for n uniform draws; one random state serves both, in that order."""
        state = as_rng(rng)
        factors = self.sample_factors(n, state)
        return factors, self.sample_observations_from_factors(factors, state)

    def sample_observations(self, n: int, rng: RandomLike) -> np.ndarray:
        return self.sample(n, rng)[1]

    def _observations(self, factors: np.ndarray, rng) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _skip(self, factors: np.ndarray, rng) -> None:
        self._observations(factors, rng)  # exact for any dataset; a variant may draw without rendering

    # ---- the grid on a device (benchmark.data.device: the sampler owns the flow) ---------------
    def grid_source(self) -> GridSource | None:
        """The images observations are gathered from on a device, or None (no enumerable grid).
        Default: a deterministic dataset's own observations over its factor grid, in flat-index order."""
        if not self.deterministic:
            return None
        space = self.state_space

        def chunk(start: int, stop: int) -> np.ndarray:
            return self.sample_observations_from_factors(space.index_to_factors(np.arange(start, stop)), 0)

        return GridSource(None, space.num_points, tuple(self.observation_shape), "auto", chunk)

    def grid_rows(self, factors: np.ndarray, rng) -> np.ndarray:
        """The grid rows of the observations of ``factors``, drawing from ``rng`` what
        ``_observations`` draws before its per-image randomness (by default nothing)."""
        return self.state_space.factors_to_index(factors)

    def finish_on_device(self, x: torch.Tensor, rng, sampler: DeviceSampler) -> torch.Tensor:
        """The observations from their grid images ``x`` (float32, on the device): the per-image
        randomness, drawn from ``rng`` in ``_observations``' order (by default none)."""
        return x

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, source={self.source!r}, "
            f"factor_sizes={tuple(self.factor_sizes)}, observation_shape={self.observation_shape})"
        )
