"""dSprites and the disentanglement_lib variants (color, noisy, scream), rendered or from the file.

Matthey et al. 2017 (dSprites); Locatello et al. 2019 and disentanglement_lib
``data/ground_truth/dsprites.py`` for the variants. Each variant applies dlib's formula to the binary
sprite with the same random draws in the same order (the colour factor of size 1 first, then the
colour / noise / crop draws), so a ``np.random.RandomState(seed)`` reproduces dlib's observations when
the sprites agree.

From files: ``dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` (or ``.hdf5``), keys ``imgs``
(0/1 uint8) and ``latents_classes`` (checked to be in the original row-major order); the Scream
variant also reads ``scream/scream.jpg`` when present.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data import cache, dsprites_render
from benchmark.data.base import GroundTruthData
from benchmark.data.files import CHUNK_ROWS, read_rows
from benchmark.data.grid import GridSource
from benchmark.data.info import DataFile, DatasetInfo, RemoteFile, image_at_least
from benchmark.data.readers import open_array
from benchmark.data.rng import integers, uniform
from benchmark.data.state_space import StateSpace
from benchmark.errors import UserError

SpriteSource = Callable[[np.ndarray], np.ndarray]  # factors (n, 5) -> uint8 (n, 64, 64) of 0/1

FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES = (3, 6, 40, 32, 32)
# The publisher's repository gives no digest; this MD5 is the one several independent dSprites
# loaders pin (e.g. latte and vaetc), so it is trusted.
DSPRITES_FILE = DataFile("dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
                         alternatives=(DataFile("dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5",
                                                shown=False),),
                         remote=RemoteFile(
                             url="https://github.com/deepmind/dsprites-dataset/raw/master/"
                                 "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
                             md5="7da33b31b13a06f4b04a70402ce90c2e",
                             source="MD5 agreed by independent dSprites loaders (no publisher digest)"))
# The Scream (Munch 1893, public domain), as dlib fetched it from Wikimedia Commons. The file there
# may be re-uploaded, so no digest: the check is that it is an image big enough to crop 64x64 from.
SCREAM_FILE = DataFile("scream/scream.jpg", note="optional: else a generated texture", optional=True,
                       remote=RemoteFile(url="https://upload.wikimedia.org/wikipedia/commons/f/f4/The_Scream.jpg",
                                         check=image_at_least(64, 64),
                                         source="content check (Wikimedia file, no pinned digest)"))


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
        # what the sprites are, for sharing one device grid (None: this object's own)
        self._sprites_key = dsprites_render.RENDERER_VERSION if sprites is None else getattr(sprites, "key", None)
        self.source = source
        self.provenance = dict(provenance or {"renderer": dsprites_render.RENDERER_VERSION})

    def draw(self, n: int, rng) -> Any:
        """The random part of ``n`` observations, drawn in dlib's order: its size-1 colour factor
        first (which takes nothing from the stream), then the variant's own draws (`_draw`)."""
        integers(rng, 1, n)
        return self._draw(n, rng)

    def _draw(self, n: int, rng) -> Any:
        return None  # plain dSprites: an observation is its sprite

    def _paint(self, sprites: np.ndarray, drawn: Any) -> np.ndarray:
        """Observations float32 (n, C, 64, 64) from the binary sprites uint8 (n, 64, 64) and `draw`'s result."""
        return sprites[:, None].astype(np.float32)

    def _observations(self, factors: np.ndarray, rng) -> np.ndarray:
        drawn = self.draw(len(factors), rng)  # rendering a sprite draws nothing: same stream as dlib
        return self._paint(self._sprites(factors), drawn)

    def _skip(self, factors: np.ndarray, rng) -> None:
        self.draw(len(factors), rng)  # the draws without the sprites and the painting

    # the device grid holds the binary sprites, bit-packed; the variants share it
    def grid_source(self) -> GridSource:
        space = self.state_space

        def chunk(start: int, stop: int) -> np.ndarray:
            sprites = self._sprites(space.index_to_factors(np.arange(start, stop)))
            return np.packbits(sprites.reshape(stop - start, -1), axis=1)

        key = None if self._sprites_key is None else ("dsprites", self._sprites_key, space.factor_sizes)
        return GridSource(key, space.num_points, (1, 64, 64), "bits", chunk)

    def grid_rows(self, factors: np.ndarray, rng) -> np.ndarray:
        integers(rng, 1, len(factors))  # as `draw`: dlib's size-1 colour factor
        return self.state_space.factors_to_index(factors)


class ColorDSprites(DSprites):
    """Color-dSprites: the sprite times one RGB colour per image, colour ~ U(0.5, 1)^3; background 0."""

    name = "color_dsprites"
    observation_shape = (3, 64, 64)
    deterministic = False

    def _draw(self, n: int, rng) -> np.ndarray:
        return uniform(rng, 0.5, 1.0, (n, 1, 1, 3))  # dlib's NHWC draw

    def _paint(self, sprites: np.ndarray, drawn: np.ndarray) -> np.ndarray:
        return sprites.astype(np.float32)[:, None] * drawn.transpose(0, 3, 1, 2).astype(np.float32)

    def finish_on_device(self, x, rng, sampler):
        colours = self._draw(len(x), rng).transpose(0, 3, 1, 2).astype(np.float32)
        return x * sampler.tensor(colours)  # x is 0 or 1: the product is exact


class NoisyDSprites(DSprites):
    """Noisy-dSprites: min(sprite + noise, 1) with noise ~ U(0, 1) per pixel and channel."""

    name = "noisy_dsprites"
    observation_shape = (3, 64, 64)
    deterministic = False

    def _draw(self, n: int, rng) -> np.ndarray:
        return uniform(rng, 0.0, 1.0, (n, 64, 64, 3))

    def _paint(self, sprites: np.ndarray, drawn: np.ndarray) -> np.ndarray:
        noise = drawn.transpose(0, 3, 1, 2)
        return np.minimum(sprites.astype(np.float32)[:, None] + noise, 1.0).astype(np.float32)

    def finish_on_device(self, x, rng, sampler):
        # the numpy draw's float64 values (bitwise), or float32 ones from the device's generator
        noise = sampler.uniform_noise(rng, (len(x), 64, 64, 3)).permute(0, 3, 1, 2)
        return (x + noise).clamp(max=1.0).float()


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

    def _draw(self, n: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Crop rows, crop columns and colours (n, 3): per image, in dlib's order row, column, colour."""
        h, w = self.texture.shape[:2]
        rows, cols = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        colours = np.empty((n, 3))
        for i in range(n):
            rows[i] = integers(rng, h - 64)
            cols[i] = integers(rng, w - 64)
            colours[i] = uniform(rng, 0.0, 1.0, 3)
        return rows, cols, colours

    def _paint(self, sprites: np.ndarray, drawn: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        rows, cols, colours = drawn
        out = np.empty((len(sprites), 3, 64, 64), dtype=np.float32)
        for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
            background = (self.texture[r : r + 64, c : c + 64] + colours[i]) / 2.0
            mask = sprites[i].astype(bool)
            background[mask] = 1.0 - background[mask]
            out[i] = background.transpose(2, 0, 1)
        return out

    def finish_on_device(self, x, rng, sampler):
        import torch

        rows, cols, colors = (sampler.tensor(a) for a in self._draw(len(x), rng))
        offsets = torch.arange(64, device=x.device)
        texture = sampler.constant(self.texture)  # float64, as the host computes
        crops = texture[(rows[:, None] + offsets)[:, :, None], (cols[:, None] + offsets)[:, None, :]]
        background = (crops + colors[:, None, None, :]) / 2.0  # (n, 64, 64, 3)
        inverted = torch.where(x[:, 0, :, :, None] > 0, 1.0 - background, background)
        return inverted.permute(0, 3, 1, 2).float()


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


def scream_texture(data_dir: Path | None) -> tuple[np.ndarray, str]:
    """The user's scream/scream.jpg if present in the data directory, else the generated stand-in.

    Returns the texture and what it is (``provenance['scream_texture']``). Only the ``scream/``
    folder is looked at, not the data directory itself (the provenance of existing rows depends on it).
    """
    if data_dir is not None:
        path = data_dir / SCREAM_FILE.relpath
        if path.is_file():
            try:
                return load_scream(path), f"file:{path.name}"
            except OSError as exc:
                raise UserError(f"cannot read the scream image {path}: {exc}") from exc
    return generated_scream_texture(), "generated-v1 (not The Scream)"


# ------------------------------------------------------------------------------------------------
# the dSprites file


def open_dsprites(data_dir: Path) -> tuple[np.ndarray, tuple[int, ...], Path]:
    """Packed sprites (N, 512) uint8 memmap, factor sizes (shape, scale, orientation, posX, posY), file."""
    path = DSPRITES_FILE.find(data_dir, "the dSprites file")

    def build(tmp: Path) -> dict[str, Any]:
        imgs = open_array(path, "imgs")
        if len(imgs.shape) != 3 or imgs.shape[1:] != (64, 64):
            raise UserError(f"{path}: 'imgs' has shape {imgs.shape}, expected (N, 64, 64)")
        sizes = _dsprites_sizes(path, imgs.shape[0])
        packed = cache.new_array(tmp, "images", (imgs.shape[0], 512))
        for start, block in imgs.chunks(CHUNK_ROWS * 4):
            if block.max(initial=0) > 1:
                raise UserError(f"{path}: 'imgs' holds values above 1; dSprites images are 0/1")
            packed[start : start + len(block)] = np.packbits(block.reshape(len(block), -1).astype(np.uint8), axis=1)
        packed.flush()
        return {"factor_sizes": list(sizes)}

    arrays, meta = cache.open_cached(cache.cache_root(data_dir), "dsprites-v1", [path], build)
    return arrays["images"], tuple(meta["factor_sizes"]), path


def _dsprites_sizes(path: Path, n: int) -> tuple[int, ...]:
    """Factor sizes from ``latents_classes`` (checking the original order), or the original sizes."""
    try:
        classes = open_array(path, "latents_classes").read_all()
    except UserError:
        classes = None
    if classes is None:
        sizes = FACTOR_SIZES
    else:
        if classes.shape != (n, 6):
            raise UserError(f"{path}: 'latents_classes' has shape {classes.shape}, expected ({n}, 6)")
        sizes = tuple(int(v) for v in classes[:, 1:].max(0) + 1)
        if not np.array_equal(StateSpace(sizes).factors_to_index(classes[:, 1:]), np.arange(n)):
            raise UserError(f"{path}: images are not in dSprites' original factor order")
    if int(np.prod(sizes)) != n:
        raise UserError(f"{path}: {n} images do not fill the factor grid {sizes}")
    return sizes


def file_sprites(data_dir: Path) -> tuple[SpriteSource, tuple[int, ...], dict[str, Any]]:
    """The file's sprites as a ``SpriteSource``, its factor sizes, and the provenance of datasets built on it."""
    packed, sizes, path = open_dsprites(data_dir)
    return _FileSprites(packed, sizes), sizes, {"file": path.name}


class _FileSprites:
    """The sprites of the converted file (a `SpriteSource`); `key` names the cache file's content."""

    def __init__(self, packed: np.ndarray, sizes: tuple[int, ...]) -> None:
        self.packed, self.space = packed, StateSpace(sizes)
        name = getattr(packed, "filename", None)
        st = os.stat(name) if name else None
        self.key = ("file", str(name), st.st_size, st.st_mtime_ns) if st else None

    def __call__(self, factors: np.ndarray) -> np.ndarray:
        rows = read_rows(self.packed, factors @ self.space.strides)
        return np.unpackbits(rows, axis=1).reshape(len(factors), 64, 64)


def _with_file_sizes(ds: DSprites, sizes: tuple[int, ...]) -> DSprites:
    ds.factor_sizes = sizes  # the full grid for the real file; smaller test files work too
    return ds


def _file_loader(cls: type[DSprites]) -> Callable[[Path], GroundTruthData]:
    def load(data_dir: Path) -> GroundTruthData:
        sprites, sizes, prov = file_sprites(data_dir)
        return _with_file_sizes(cls(sprites, "file", prov), sizes)

    return load


def _scream_from_file(data_dir: Path) -> GroundTruthData:
    sprites, sizes, prov = file_sprites(data_dir)
    texture, what = scream_texture(data_dir)
    return _with_file_sizes(ScreamDSprites(texture, sprites, "file", {**prov, "scream_texture": what}), sizes)


def _scream_procedural(data_dir: Path | None) -> GroundTruthData:
    texture, what = scream_texture(data_dir)
    return ScreamDSprites(texture, provenance={"renderer": dsprites_render.RENDERER_VERSION, "scream_texture": what})


def _variant(cls: type[DSprites], description: str, aliases: tuple[str, ...] = ()) -> DatasetInfo:
    return DatasetInfo(cls.name, description, procedural=lambda data_dir: cls(), file=_file_loader(cls),
                       files=(DSPRITES_FILE,), aliases=aliases)


DESCRIPTORS = (
    _variant(DSprites, "dSprites: binary 2-D shapes (Matthey et al. 2017)", aliases=("dsprites",)),
    _variant(ColorDSprites, "dSprites times a random colour per image (dlib)"),
    _variant(NoisyDSprites, "dSprites on uniform noise (dlib)"),
    DatasetInfo(ScreamDSprites.name, "dSprites on crops of The Scream, inverted under the sprite (dlib)",
                procedural=_scream_procedural, file=_scream_from_file, files=(DSPRITES_FILE, SCREAM_FILE)),
)
