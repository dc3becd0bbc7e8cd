"""Shared machinery of the datasets read from the user's files, converted once to a memory-mapped cache.

The data directory follows disentanglement_lib's layout (its ``$DISENTANGLEMENT_LIB_DATA`` works as
is); each file may also sit directly in the data directory (``info.DataFile``). Each family module
(``dsprites``, ``shapes3d``, ``smallnorb``, ``cars3d``, ``mpi3d``) says which files it reads and how.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data import cache
from benchmark.data.base import GroundTruthData
from benchmark.data.grid import U8_VALUES, GridSource
from benchmark.data.readers import ArrayReader
from benchmark.data.rng import integers
from benchmark.data.state_space import StateSpace
from benchmark.errors import UserError

CHUNK_ROWS = 4096


class FileData(GroundTruthData):
    """A dataset whose images are rows of a memory-mapped uint8 array (N, C, H, W).

    ``all_sizes`` are the sizes of every factor of the files, ``latent`` the ones exposed as ground
    truth (the rest, e.g. SmallNORB's instance, are drawn at random per observation as in dlib);
    ``lookup`` maps a flat index over ``all_sizes`` to an image row when the file order is not the
    factor order (None: row = flat index).
    """

    source = "file"

    def __init__(self, name: str, images: np.ndarray, all_names: Sequence[str], all_sizes: Sequence[int],
                 latent: Sequence[int] | None = None, lookup: np.ndarray | None = None,
                 provenance: dict[str, Any] | None = None):
        self.name = name
        self.images = images
        self.full_space = StateSpace(all_sizes)
        self.latent = list(range(len(all_sizes))) if latent is None else list(latent)
        self.nuisance = [k for k in range(len(all_sizes)) if k not in self.latent]
        self.factor_names = tuple(all_names[k] for k in self.latent)
        self.factor_sizes = tuple(int(all_sizes[k]) for k in self.latent)
        self.observation_shape = tuple(int(d) for d in images.shape[1:])
        self.lookup = lookup
        self.deterministic = all(all_sizes[k] == 1 for k in self.nuisance)
        self.provenance = dict(provenance or {})

    def grid_rows(self, factors: np.ndarray, rng) -> np.ndarray:
        """The image rows of ``factors``, the nuisance factors drawn from ``rng``."""
        full = np.zeros((len(factors), self.full_space.num_factors), dtype=np.int64)
        full[:, self.latent] = factors
        for k in self.nuisance:  # dlib's sample_all_factors: one randint per nuisance factor, in order
            full[:, k] = integers(rng, self.full_space.factor_sizes[k], len(factors))
        rows = full @ self.full_space.strides
        return rows if self.lookup is None else self.lookup[rows]

    def _observations(self, factors: np.ndarray, rng) -> np.ndarray:
        return U8_VALUES[read_rows(self.images, self.grid_rows(factors, rng))]

    def grid_source(self) -> GridSource:
        """Every image of the files (the nuisance factors' too), one byte a value."""
        name = getattr(self.images, "filename", None)
        st = os.stat(name) if name else None
        key = ("file", str(name), st.st_size, st.st_mtime_ns) if st else None

        def chunk(start: int, stop: int) -> np.ndarray:
            return np.asarray(self.images[start:stop], dtype=np.uint8)

        return GridSource(key, len(self.images), self.observation_shape, "u8", chunk)


def read_rows(images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``images[rows]`` read in ascending row order (friendlier to a memory map on disk)."""
    order = np.argsort(rows, kind="stable")
    out = np.empty((len(rows), *images.shape[1:]), dtype=images.dtype)
    out[order] = images[rows[order]]
    return out


def convert_images(reader: ArrayReader, tmp: Path, n: int, hwc: tuple[int, int, int]) -> None:
    """Copy uint8 (N, ..., H, W, C) rows into the cache as (N, C, H, W)."""
    if reader.dtype != np.uint8:
        raise UserError(f"{reader.path}: '{reader.key}' has dtype {reader.dtype}, expected uint8")
    out = cache.new_array(tmp, "images", (n, hwc[2], hwc[0], hwc[1]))
    lead = int(np.prod(reader.shape[: len(reader.shape) - 3]))
    if lead != n or tuple(reader.shape[-3:]) != hwc:
        raise UserError(f"{reader.path}: '{reader.key}' has shape {reader.shape}, expected ({n}, {', '.join(map(str, hwc))})")
    # an (A, B, ..., H, W, C) array streams by its first axis; keep chunks near CHUNK_ROWS images
    per_row = lead // reader.shape[0]
    done = 0
    for _, block in reader.chunks(max(1, CHUNK_ROWS // per_row)):
        block = block.reshape(-1, *hwc)
        out[done : done + len(block)] = block.transpose(0, 3, 1, 2)
        done += len(block)
    out.flush()
