"""Chunked readers for the real files' formats: npz members, HDF5 datasets, SmallNORB binary matrices.

Readers stream rows so converting a 12 GB file never holds it in memory. Every failure becomes a
one-line ``UserError`` naming the file.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from benchmark.errors import UserError


class ArrayReader:
    """A lazily read array: ``shape``, ``dtype`` and ``chunks(rows)`` yielding (start, block)."""

    def __init__(self, path: Path, key: str, shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.key, self.shape, self.dtype = path, key, tuple(shape), np.dtype(dtype)

    def chunks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_all(self) -> np.ndarray:
        return np.concatenate([b for _, b in self.chunks(1 << 30)]) if self.shape[0] else np.empty(self.shape, self.dtype)


class NpzMember(ArrayReader):
    """One array of an ``.npz`` file, streamed from the zip member (compressed or not)."""

    def __init__(self, path: Path, key: str):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
                if f"{key}.npy" not in names:
                    raise UserError(f"{path} has no array {key!r} (it has {', '.join(n[:-4] for n in names)})")
                with zf.open(f"{key}.npy") as f:
                    shape, fortran, dtype = _npy_header(f, path)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise UserError(f"{path} is not a readable .npz file ({exc})") from exc
        if fortran:
            raise UserError(f"{path}: array {key!r} is stored in Fortran order, which is not supported")
        if dtype.hasobject:
            raise UserError(f"{path}: array {key!r} holds Python objects, not numbers")
        super().__init__(path, key, shape, dtype)

    def chunks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        row_items = int(np.prod(self.shape[1:], dtype=np.int64))
        row_bytes = row_items * self.dtype.itemsize
        try:
            with zipfile.ZipFile(self.path) as zf, zf.open(f"{self.key}.npy") as f:
                _npy_header(f, self.path)
                for start in range(0, self.shape[0], rows):
                    n = min(rows, self.shape[0] - start)
                    buf = f.read(n * row_bytes)
                    if len(buf) != n * row_bytes:
                        raise UserError(f"{self.path}: array {self.key!r} is truncated")
                    yield start, np.frombuffer(buf, dtype=self.dtype).reshape((n, *self.shape[1:]))
        except (zipfile.BadZipFile, OSError, EOFError) as exc:  # e.g. a CRC error in a corrupt file
            raise UserError(f"{self.path} is corrupt ({exc})") from exc


def _npy_header(f, path: Path):
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise UserError(f"{path}: unsupported .npy format version {version}")


class H5Dataset(ArrayReader):
    """One dataset of an HDF5 file (needs the optional ``h5py``)."""

    def __init__(self, path: Path, key: str):
        h5py = import_h5py(path)
        try:
            with h5py.File(path, "r") as f:
                if key not in f:
                    raise UserError(f"{path} has no dataset {key!r} (it has {', '.join(f.keys())})")
                shape, dtype = f[key].shape, f[key].dtype
        except OSError as exc:
            raise UserError(f"{path} is not a readable HDF5 file ({exc})") from exc
        super().__init__(path, key, shape, dtype)

    def chunks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        h5py = import_h5py(self.path)
        try:
            with h5py.File(self.path, "r") as f:
                ds = f[self.key]
                for start in range(0, self.shape[0], rows):
                    yield start, ds[start : start + rows]
        except OSError as exc:
            raise UserError(f"{self.path} is corrupt ({exc})") from exc


def import_h5py(path: Path):
    try:
        import h5py
    except ImportError as exc:
        raise UserError(f"reading {path} needs h5py: pip install h5py (or convert the file to .npz)") from exc
    return h5py


def open_array(path: Path, key: str) -> ArrayReader:
    """An ``ArrayReader`` for ``key`` in an .npz or .h5/.hdf5 file."""
    if path.suffix in (".h5", ".hdf5"):
        return H5Dataset(path, key)
    return NpzMember(path, key)


# SmallNORB binary matrix format (https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/): int32 magic,
# int32 ndim, max(3, ndim) int32 dims, then little-endian data.
NORB_DTYPES = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32, 0x1E3D4C51: np.float32,
               0x1E3D4C53: np.float64, 0x1E3D4C56: np.int16}


def read_norb_matrix(path: Path) -> np.ndarray:
    """A SmallNORB ``.mat`` binary matrix as a numpy array (memory-mapped, read-only)."""
    try:
        header = np.fromfile(path, dtype="<i4", count=2)
        if header.size < 2 or int(header[0]) not in NORB_DTYPES:
            raise UserError(f"{path} is not a SmallNORB binary matrix (bad magic number)")
        magic, ndim = int(header[0]), int(header[1])
        if not 1 <= ndim <= 8:
            raise UserError(f"{path} is not a SmallNORB binary matrix (ndim {ndim})")
        eff = max(3, ndim)
        dims = tuple(int(d) for d in np.fromfile(path, dtype="<i4", count=eff, offset=8)[:ndim])
        dtype = np.dtype(NORB_DTYPES[magic]).newbyteorder("<")
        expected = 8 + 4 * eff + int(np.prod(dims)) * dtype.itemsize
        if path.stat().st_size != expected:
            raise UserError(f"{path} is truncated or corrupt: {path.stat().st_size} bytes, expected {expected}")
        return np.memmap(path, dtype=dtype, mode="r", offset=8 + 4 * eff, shape=dims)
    except OSError as exc:
        raise UserError(f"cannot read {path} ({exc.strerror or exc})") from exc


def write_norb_matrix(path: Path, array: np.ndarray) -> None:
    """Write ``array`` in the SmallNORB binary matrix format (used by tests and converters)."""
    magic = {np.dtype(v).str.lstrip("<|="): k for k, v in NORB_DTYPES.items()}[np.dtype(array.dtype).str.lstrip("<|=")]
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    with open(path, "wb") as f:
        np.array([magic, array.ndim, *dims], dtype="<i4").tofile(f)
        np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tofile(f)
