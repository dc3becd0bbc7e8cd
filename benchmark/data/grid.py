"""What a dataset keeps of its factor grid in device memory (``benchmark.data.device``); torch-free.

A ``GridSource`` describes the images a dataset's observations are gathered from: ``rows`` images
of ``shape``, stored as codes of one ``encoding`` and produced chunk by chunk. The encodings are
exact, so gathering and decoding gives bitwise the float32 images the host path computes:

- ``"bits"``: 0/1 images, 8 pixels per byte in ``np.packbits`` order (dSprites: 512 bytes an image,
  737,280 x 512 = 377 MB for the whole grid, against 3.0 GB as one uint8 per pixel);
- ``"u8"``: code k stands for ``U8_VALUES[k]`` = float32(k) / float32(255), the value the file
  datasets compute (one byte per value: Shapes3D's file 480,000 x 12,288 = 5.9 GB);
- ``"f32"``: the float32 values themselves (the procedural Shapes3D look-alike: 23.6 GB);
- ``"auto"``: the chunks are float32 observations; the narrowest of the three that holds the
  first chunk exactly is chosen, and every later chunk is checked to fit it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np

ENCODINGS = ("bits", "u8", "f32")
#: the float32 value of a uint8 code: k / 255 computed in float32, as the file datasets compute it
U8_VALUES = np.arange(256, dtype=np.float32) / np.float32(255.0)


@dataclass(frozen=True)
class GridSource:
    """Images ``[0, rows)`` of ``shape`` (C, H, W), produced by ``chunk(start, stop)`` as codes of
    ``encoding`` (bits: (n, C*H*W/8) uint8; u8: (n, C, H, W) uint8; f32 and auto: (n, C, H, W)
    float32). ``key`` names the content: datasets with equal keys share one grid (the dSprites
    variants share their sprites); None: only this dataset object has it."""

    key: Hashable | None
    rows: int
    shape: tuple[int, int, int]
    encoding: str
    chunk: Callable[[int, int], np.ndarray]

    def __post_init__(self) -> None:
        if self.encoding not in (*ENCODINGS, "auto"):
            raise ValueError(f"unknown grid encoding {self.encoding!r}")


def row_bytes(shape: tuple[int, ...], encoding: str) -> int:
    """Bytes of one image's codes."""
    values = int(np.prod(shape))
    return {"bits": -(-values // 8), "u8": values, "f32": 4 * values}[encoding]


def narrowest(x: np.ndarray) -> str:
    """The narrowest exact encoding of float32 observations ``x``."""
    if np.all((x == 0) | (x == 1)) and x[0].size % 8 == 0:
        return "bits"
    if np.array_equal(U8_VALUES[_u8_codes(x)], x):
        return "u8"
    return "f32"


def encode(x: np.ndarray, encoding: str) -> np.ndarray:
    """Codes of float32 observations ``x`` (n, C, H, W); ValueError where they do not fit exactly."""
    if encoding == "f32":
        return np.ascontiguousarray(x, dtype=np.float32)
    if encoding == "bits":
        if not np.all((x == 0) | (x == 1)):
            raise ValueError("values other than 0 and 1 in a bit-packed grid")
        return np.packbits(x.reshape(len(x), -1).astype(np.uint8), axis=1)
    codes = _u8_codes(x)
    if not np.array_equal(U8_VALUES[codes], x):
        raise ValueError("values that are not k/255 in a uint8 grid")
    return codes


def _u8_codes(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * np.float32(255.0)), 0, 255).astype(np.uint8)  # checked by the caller
