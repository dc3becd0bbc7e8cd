"""dSprites and the disentanglement_lib variants (color, noisy, scream), rendered or from the file.

Matthey et al. 2017 (dSprites); Locatello et al. 2019 and disentanglement_lib
``data/ground_truth/dsprites.py`` for the variants. Each variant applies dlib's formula to the binary
sprite with the same random draws in the same order (the colour factor of size 1 first, then the
colour / noise / crop draws), so a ``np.random.RandomState(seed)`` reproduces dlib's observations when
the sprites agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from benchmark.data import dsprites_render
from benchmark.data.base import GroundTruthData
from benchmark.data.rng import integers, uniform

SpriteSource = Callable[[np.ndarray], np.ndarray]  # factors (n, 5) -> uint8 (n, 64, 64) of 0/1

FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES = (3, 6, 40, 32, 32)


class DSprites(GroundTruthData):
    """dSprites (``dsprites_full``): binary 64x64 sprites, factors shape, scale, orientation, posX, posY.

    ``sprites`` maps factor classes to 0/1 uint8 images; the default renders them procedurally
    (``dsprites_render``), the file loader passes a lookup into the real array.
    """

    name = "dsprites_full"
    factor_names = FACTOR_NAMES
    factor_sizes = FACTOR_SIZES
    observation_shape = (1, 64, 64)

    def __init__(self, sprites: SpriteSource | None = None, source: str = "procedural",
                 provenance: dict[str, Any] | None = None):
        self._sprites = sprites if sprites is not None else dsprites_render.render_classes
        self.source = source
        self.provenance = dict(provenance or {"renderer": dsprites_render.RENDERER_VERSION})

    def sprites(self, factors: np.ndarray, rng) -> np.ndarray:
        """Binary sprites uint8 (n, 64, 64); draws dlib's size-1 colour factor first to keep its RNG order."""
        integers(rng, 1, len(factors))
        return self._sprites(factors)

    def _observations(self, factors: np.ndarray, rng) -> np.ndarray:
        return self.sprites(factors, rng)[:, None].astype(np.float32)


class ColorDSprites(DSprites):
    """Color-dSprites: the sprite times one RGB colour per image, colour ~ U(0.5, 1)^3; background 0."""

    name = "color_dsprites"
    observation_shape = (3, 64, 64)
    deterministic = False

    def _observations(self, factors: np.ndarray, rng) -> np.ndarray:
        x = self.sprites(factors, rng).astype(np.float32)
        color = uniform(rng, 0.5, 1.0, (len(factors), 1, 1, 3))  # dlib's NHWC draw
        return x[:, None] * color.transpose(0, 3, 1, 2).astype(np.float32)


class NoisyDSprites(DSprites):
    """Noisy-dSprites: min(sprite + noise, 1) with noise ~ U(0, 1) per pixel and channel."""

    name = "noisy_dsprites"
    observation_shape = (3, 64, 64)
    deterministic = False

    def _observations(self, factors: np.ndarray, rng) -> np.ndarray:
        x = self.sprites(factors, rng).astype(np.float32)
        noise = uniform(rng, 0.0, 1.0, (len(factors), 64, 64, 3)).transpose(0, 3, 1, 2)
        return np.minimum(x[:, None] + noise, 1.0).astype(np.float32)


class ScreamDSprites(DSprites):
    """Scream-dSprites: a random 64x64 crop of the texture, averaged with a random colour, inverted under the sprite.

    ``texture`` is float (H, W, 3) in [0, 1], H, W > 64: ``load_scream`` (the user's scream.jpg, as
    dlib prepares it) or ``generated_scream_texture`` (a stand-in, recorded in ``provenance``).
    """

    name = "scream_dsprites"
    observation_shape = (3, 64, 64)
    deterministic = False

    def __init__(self, texture: np.ndarray, sprites: SpriteSource | None = None,
                 source: str = "procedural", provenance: dict[str, Any] | None = None):
        super().__init__(sprites, source, provenance)
        texture = np.asarray(texture, dtype=np.float64)
        if texture.ndim != 3 or texture.shape[2] != 3 or min(texture.shape[:2]) <= 64:
            raise ValueError(f"scream texture must be (H, W, 3) with H, W > 64, got {texture.shape}")
        self.texture = texture

    def _observations(self, factors: np.ndarray, rng) -> np.ndarray:
        x = self.sprites(factors, rng)
        h, w = self.texture.shape[:2]
        out = np.empty((len(factors), 3, 64, 64), dtype=np.float32)
        for i in range(len(factors)):  # per image, in dlib's RNG order: row, column, colour
            r = integers(rng, h - 64)
            c = integers(rng, w - 64)
            background = (self.texture[r : r + 64, c : c + 64] + uniform(rng, 0.0, 1.0, 3)) / 2.0
            mask = x[i].astype(bool)
            background[mask] = 1.0 - background[mask]
            out[i] = background.transpose(2, 0, 1)
        return out


def load_scream(path) -> np.ndarray:
    """The scream image as dlib prepares it: PIL ``thumbnail((350, 274))`` then / 255 (float64 HxWx3).

    dlib passed ``(350, 274, 3)`` to an old Pillow; current Pillow takes (width, height) and resamples
    with its default filter, so a few texture values can differ from dlib's.
    """
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        img.thumbnail((350, 274))
        return np.asarray(img, dtype=np.float64) / 255.0


def generated_scream_texture(seed: int = 0, shape: tuple[int, int] = (274, 222)) -> np.ndarray:
    """A stand-in for The Scream (same size as dlib's thumbnail): swirling smooth colour bands in [0, 1].

    Not the painting: datasets built on it must say so (``provenance['scream_texture']``).
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    field = np.zeros((h, w))
    for _ in range(6):  # a few random low-frequency waves, warped to look like brush strokes
        fx, fy = rng.uniform(1, 6, 2)
        phase = rng.uniform(0, 2 * np.pi)
        field += np.sin(2 * np.pi * (fx * xx + fy * yy + 0.3 * np.sin(5 * yy + phase)) + phase)
    field = (field - field.min()) / (field.max() - field.min())
    palette = np.array([[0.10, 0.15, 0.35], [0.20, 0.45, 0.55], [0.95, 0.55, 0.15],
                        [0.85, 0.25, 0.10], [0.95, 0.80, 0.40]])
    pos = field * (len(palette) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(palette) - 2)
    frac = (pos - lo)[..., None]
    return (1 - frac) * palette[lo] + frac * palette[lo + 1]
