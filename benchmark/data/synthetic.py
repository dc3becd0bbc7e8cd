"""Small synthetic ground-truth datasets for tests and quick runs, exact by construction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from benchmark.data.base import GroundTruthData
from benchmark.data.info import DatasetInfo
from benchmark.data.rng import uniform


class IdentityData(GroundTruthData):
    """Observations are the factors themselves: shape (K, 1, 1), value = class / (size - 1) in [0, 1].

    Flattening an observation gives the normalised factors in factor order, so ``represent =
    lambda x: x.reshape(len(x), -1)`` is the perfect code; metric tests use it. The default sizes are
    all different so that a transposed factor matrix cannot go unnoticed.
    """

    name = "identity"
    source = "procedural"

    def __init__(self, factor_sizes: Sequence[int] = (3, 6, 10, 8, 5)):
        self.factor_sizes = tuple(int(s) for s in factor_sizes)
        self.factor_names = tuple(f"factor_{k}" for k in range(len(self.factor_sizes)))
        self.observation_shape = (len(self.factor_sizes), 1, 1)
        self.provenance = {"renderer": "identity-v1"}

    def _observations(self, factors: np.ndarray, rng) -> np.ndarray:
        denom = np.maximum(np.array(self.factor_sizes) - 1, 1)
        return (factors / denom).astype(np.float32)[:, :, None, None]


class DummyData(GroundTruthData):
    """disentanglement_lib's ``dummy_data``: 10 factors of 5 classes, observations uniform noise 64x64x1."""

    name = "dummy_data"
    factor_names = tuple(f"factor_{k}" for k in range(10))
    factor_sizes = (5,) * 10
    observation_shape = (1, 64, 64)
    deterministic = False

    def __init__(self):
        self.provenance = {"renderer": "dummy-v1"}

    def _observations(self, factors: np.ndarray, rng) -> np.ndarray:
        return uniform(rng, 0.0, 1.0, (len(factors), 1, 64, 64)).astype(np.float32)


def _rainbow(levels: int) -> np.ndarray:
    """disent's ``rainbow_4``-style palette: 6 hues (R, Y, G, C, B, M) x ``levels`` brightness levels, uint8."""
    hues = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1]])
    shades = (255 * np.arange(1, levels + 1)) // levels  # integer arithmetic as disent
    return (shades[:, None, None] * hues[None]).reshape(-1, 3).astype(np.uint8)  # colour = level * 6 + hue


class XYObject(GroundTruthData):
    """One filled square on a black canvas; factors x, y, scale, color (after disent's XYObject).

    A square of size ``s`` at placement ``i`` starts at ``spacing * i + (max_size - s) // 2 + margin``
    px on each axis. Defaults are disent's: sizes 7, 9, .., 15, spacing 2, 25 placements, 24 colours
    (75,000 images, 64x64x3). With ``channels=1`` the colours are grey levels.
    """

    name = "xy_object"

    def __init__(self, size: int = 64, spacing: int = 2, square_sizes: Sequence[int] = (7, 9, 11, 13, 15),
                 colors: np.ndarray | None = None, channels: int = 3, margin: int = 0, name: str | None = None):
        self.square_sizes = np.array(square_sizes, dtype=np.int64)
        self.max_size = int(self.square_sizes.max())
        self.spacing, self.margin, self.size = spacing, margin, size
        placements = (size - 2 * margin - self.max_size) // spacing + 1
        if colors is None:
            colors = _rainbow(4) if channels == 3 else np.full((1, 1), 255, dtype=np.uint8)
        self.colors = np.asarray(colors, dtype=np.float32).reshape(len(colors), channels) / 255.0
        # a single colour is not a factor (a constant factor breaks entropy-normalised metrics)
        self.factor_names = ("x", "y", "scale", "color")[: 3 if len(self.colors) == 1 else 4]
        self.factor_sizes = (placements, placements, len(self.square_sizes), len(self.colors))[
            : len(self.factor_names)
        ]
        self.observation_shape = (channels, size, size)
        if name is not None:
            self.name = name
        self.provenance = {"renderer": "xy-object-v1"}

    def _observations(self, factors: np.ndarray, rng) -> np.ndarray:
        s = self.square_sizes[factors[:, 2]]
        offset = (self.max_size - s) // 2 + self.margin
        x0 = self.spacing * factors[:, 0] + offset
        y0 = self.spacing * factors[:, 1] + offset
        px = np.arange(self.size)
        cols = (px >= x0[:, None]) & (px < (x0 + s)[:, None])
        rows = (px >= y0[:, None]) & (px < (y0 + s)[:, None])
        mask = (rows[:, :, None] & cols[:, None, :]).astype(np.float32)
        color = self.colors[factors[:, 3] if factors.shape[1] == 4 else np.zeros(len(factors), int)]
        return mask[:, None] * color[:, :, None, None]


def xy_tiny() -> XYObject:
    """A 128-point grey XYObject for fast tests: x 8, y 8, scale 2 (sizes 10, 16), 64x64x1."""
    return XYObject(spacing=6, square_sizes=(10, 16), channels=1, margin=3, name="xy_tiny")


DESCRIPTORS = (
    DatasetInfo(IdentityData.name, "test set: observations are the normalised factors, shape (K, 1, 1)",
                procedural=lambda data_dir: IdentityData()),
    DatasetInfo(DummyData.name, "test set: 10 factors x 5, uniform-noise images (dlib)",
                procedural=lambda data_dir: DummyData()),
    DatasetInfo(XYObject.name, "test set: one coloured square, factors x, y, scale, color (disent)",
                procedural=lambda data_dir: XYObject()),
    DatasetInfo("xy_tiny", "test set: 128 grey squares (x 8, y 8, scale 2)", procedural=lambda data_dir: xy_tiny()),
)
