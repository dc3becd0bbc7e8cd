"""Datasets read from the user's files, converted once to a memory-mapped cache (``cache.py``).

The data directory follows disentanglement_lib's layout (its ``$DISENTANGLEMENT_LIB_DATA`` works
as is); each file may also sit directly in the data directory:

- ``dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` (or ``.hdf5``): keys ``imgs`` (0/1 uint8)
  and ``latents_classes`` (checked to be in the original row-major order);
- ``3dshapes/3dshapes.h5`` (public; needs h5py) or dlib's
  ``3dshapes/look-at-object-room_floor-hueXwall-hueXobj-hueXobj-sizeXobj-shapeXview-azi.npz``;
- ``mpi3d_{toy,realistic,real}/mpi3d_{mode}.npz`` key ``images``; factor sizes inferred from the number
  of images (dlib hard-codes the 460,800-image competition files, which mis-indexes the released ones);
- ``small_norb/smallnorb-5x46789x9x18x6x2x96x96-training-{dat,cat,info}.mat`` and the ``testing``
  files with ``5x01235``: first camera, resized 96 -> 64 with Lanczos (PIL's old ANTIALIAS) as dlib;
- ``cars/*.mat`` (key ``im``, 128x128x3x24x4): thumbnails to 64 with Lanczos, object id = sorted file
  name order (dlib used the unsorted directory listing, which is not reproducible).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data import cache, dsprites
from benchmark.data.base import GroundTruthData
from benchmark.data.readers import ArrayReader, open_array, read_norb_matrix
from benchmark.data.rng import integers
from benchmark.data.state_space import StateSpace
from benchmark.errors import UserError

CHUNK_ROWS = 4096

DSPRITES_FILES = ("dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
                  "dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5")
SHAPES3D_FILES = ("3dshapes/3dshapes.h5",
                  "3dshapes/look-at-object-room_floor-hueXwall-hueXobj-hueXobj-sizeXobj-shapeXview-azi.npz")
SHAPES3D_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
SHAPES3D_SIZES = (10, 10, 10, 8, 4, 15)
MPI3D_NAMES = ("object_color", "object_shape", "object_size", "camera_height", "background_color",
               "horizontal_axis", "vertical_axis")
#: number of images -> factor sizes (the released files and the NeurIPS-2019 competition files)
MPI3D_SIZES: dict[int, tuple[int, ...]] = {1036800: (6, 6, 2, 3, 3, 40, 40), 460800: (4, 4, 2, 3, 3, 40, 40)}
NORB_TEMPLATE = "small_norb/smallnorb-{}-{}.mat"
NORB_CHUNKS = ("5x46789x9x18x6x2x96x96-training", "5x01235x9x18x6x2x96x96-testing")
NORB_NAMES = ("category", "instance", "elevation", "azimuth", "lighting")
CARS_DIR = "cars"
CARS_OBJECTS = 183


def find_file(data_dir: Path, relpaths: Sequence[str], what: str) -> Path:
    """The first of ``relpaths`` present under ``data_dir`` (or directly in it); UserError naming them otherwise."""
    for rel in relpaths:
        for cand in (data_dir / rel, data_dir / Path(rel).name):
            if cand.is_file():
                return cand
    raise UserError(f"{what} not found: put {relpaths[0]} under the data directory {data_dir}")


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

    def _observations(self, factors: np.ndarray, rng) -> np.ndarray:
        full = np.zeros((len(factors), self.full_space.num_factors), dtype=np.int64)
        full[:, self.latent] = factors
        for k in self.nuisance:  # dlib's sample_all_factors: one randint per nuisance factor, in order
            full[:, k] = integers(rng, self.full_space.factor_sizes[k], len(factors))
        rows = full @ self.full_space.strides
        if self.lookup is not None:
            rows = self.lookup[rows]
        return read_rows(self.images, rows).astype(np.float32) / np.float32(255.0)


def read_rows(images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``images[rows]`` read in ascending row order (friendlier to a memory map on disk)."""
    order = np.argsort(rows, kind="stable")
    out = np.empty((len(rows), *images.shape[1:]), dtype=images.dtype)
    out[order] = images[rows[order]]
    return out


# ------------------------------------------------------------------------------------------------
# dSprites


def open_dsprites(data_dir: Path) -> tuple[np.ndarray, tuple[int, ...], Path]:
    """Packed sprites (N, 512) uint8 memmap, factor sizes (shape, scale, orientation, posX, posY), file."""
    path = find_file(data_dir, DSPRITES_FILES, "the dSprites file")

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
        sizes = (3, 6, 40, 32, 32)
    else:
        if classes.shape != (n, 6):
            raise UserError(f"{path}: 'latents_classes' has shape {classes.shape}, expected ({n}, 6)")
        sizes = tuple(int(v) for v in classes[:, 1:].max(0) + 1)
        if not np.array_equal(StateSpace(sizes).factors_to_index(classes[:, 1:]), np.arange(n)):
            raise UserError(f"{path}: images are not in dSprites' original factor order")
    if int(np.prod(sizes)) != n:
        raise UserError(f"{path}: {n} images do not fill the factor grid {sizes}")
    return sizes


def load_dsprites_family(name: str, data_dir: Path) -> GroundTruthData:
    packed, sizes, path = open_dsprites(data_dir)
    space = StateSpace(sizes)

    def sprites(factors: np.ndarray) -> np.ndarray:
        rows = read_rows(packed, factors @ space.strides)
        return np.unpackbits(rows, axis=1).reshape(len(factors), 64, 64)

    prov = {"file": path.name}
    if name == "scream_dsprites":
        from benchmark.data.registry import _scream_texture

        texture, what = _scream_texture(data_dir)
        ds = dsprites.ScreamDSprites(texture, sprites, "file", {**prov, "scream_texture": what})
    else:
        cls = {"dsprites_full": dsprites.DSprites, "color_dsprites": dsprites.ColorDSprites,
               "noisy_dsprites": dsprites.NoisyDSprites}[name]
        ds = cls(sprites, "file", prov)
    ds.factor_sizes = sizes  # the full grid for the real file; smaller test files work too
    return ds


# ------------------------------------------------------------------------------------------------
# Shapes3D, MPI3D: row-major image arrays


def _convert_images(reader: ArrayReader, tmp: Path, n: int, hwc: tuple[int, int, int]) -> None:
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


def load_shapes3d(data_dir: Path) -> GroundTruthData:
    path = find_file(data_dir, SHAPES3D_FILES, "the Shapes3D file (3dshapes.h5 or dlib's npz)")

    def build(tmp: Path) -> dict[str, Any]:
        reader = open_array(path, "images")
        n = int(np.prod(reader.shape[:-3]))
        if path.suffix in (".h5", ".hdf5"):
            sizes = _shapes3d_sizes_from_labels(path, n)
        else:  # dlib's npz keeps the grid in the shape
            sizes = tuple(int(s) for s in reader.shape[:-3])
            if len(sizes) != 6:
                raise UserError(f"{path}: 'images' has shape {reader.shape}, expected (10, 10, 10, 8, 4, 15, 64, 64, 3)")
        _convert_images(reader, tmp, n, (64, 64, 3))
        return {"factor_sizes": list(sizes)}

    arrays, meta = cache.open_cached(cache.cache_root(data_dir), "shapes3d-v1", [path], build)
    return FileData("shapes3d", arrays["images"], SHAPES3D_NAMES, meta["factor_sizes"],
                    provenance={"file": path.name})


def _shapes3d_sizes_from_labels(path: Path, n: int) -> tuple[int, ...]:
    """Factor sizes from the float labels (rounded: they carry noise), checking row-major order."""
    labels = open_array(path, "labels").read_all()
    if labels.shape != (n, 6):
        raise UserError(f"{path}: 'labels' has shape {labels.shape}, expected ({n}, 6)")
    classes = np.stack([np.unique(np.round(labels[:, k], 5), return_inverse=True)[1].reshape(-1)
                        for k in range(6)], axis=1)
    sizes = tuple(int(v) for v in classes.max(0) + 1)
    if int(np.prod(sizes)) != n or not np.array_equal(StateSpace(sizes).factors_to_index(classes), np.arange(n)):
        raise UserError(f"{path}: images are not in Shapes3D's factor order (floor, wall, object hue, scale, shape, orientation)")
    return sizes


def load_mpi3d(name: str, data_dir: Path) -> GroundTruthData:
    mode = name.split("_", 1)[1]
    path = find_file(data_dir, (f"mpi3d_{mode}/mpi3d_{mode}.npz",), f"the MPI3D-{mode} file")

    def build(tmp: Path) -> dict[str, Any]:
        reader = open_array(path, "images")
        n = int(np.prod(reader.shape[:-3]))
        if n not in MPI3D_SIZES:
            raise UserError(f"{path}: {n} images; expected {' or '.join(map(str, MPI3D_SIZES))} (MPI3D grids)")
        _convert_images(reader, tmp, n, (64, 64, 3))
        return {"factor_sizes": list(MPI3D_SIZES[n])}

    arrays, meta = cache.open_cached(cache.cache_root(data_dir), f"mpi3d_{mode}-v1", [path], build)
    return FileData(name, arrays["images"], MPI3D_NAMES, meta["factor_sizes"], provenance={"file": path.name})


# ------------------------------------------------------------------------------------------------
# SmallNORB and Cars3D: images resized once, cached at 64x64


def load_smallnorb(data_dir: Path) -> GroundTruthData:
    from PIL import Image

    paths = [find_file(data_dir, (NORB_TEMPLATE.format(chunk, kind),), f"the SmallNORB {kind} file")
             for chunk in NORB_CHUNKS for kind in ("dat", "cat", "info")]

    def build(tmp: Path) -> dict[str, Any]:
        feats, total = [], 0
        for i in range(0, len(paths), 3):
            dat, cat, info = (read_norb_matrix(p) for p in paths[i : i + 3])
            n = dat.shape[0]
            if dat.ndim != 4 or dat.shape[1:] != (2, 96, 96) or dat.dtype != np.uint8:
                raise UserError(f"{paths[i]}: shape {dat.shape} {dat.dtype}, expected (N, 2, 96, 96) uint8")
            if cat.shape != (n,) or info.shape != (n, 4):
                raise UserError(f"{paths[i + 1]} / {paths[i + 2]}: shapes {cat.shape} / {info.shape} do not match {n} images")
            f = np.column_stack([cat, info]).astype(np.int64)
            f[:, 3] //= 2  # azimuth is stored as 0, 2, ..., 34
            feats.append(f)
            total += n
        features = np.concatenate(feats)
        sizes = tuple(int(v) for v in features.max(0) + 1)
        space = StateSpace(sizes)
        flat = space.factors_to_index(features)
        if features.min() < 0 or len(np.unique(flat)) != space.num_points or total != space.num_points:
            raise UserError(f"{paths[0].parent}: the SmallNORB files do not cover each factor combination exactly once")
        lookup = np.empty(space.num_points, dtype=np.int64)
        lookup[flat] = np.arange(total)
        np.save(tmp / "lookup.npy", lookup)
        out = cache.new_array(tmp, "images", (total, 1, 64, 64))
        row = 0
        for i in range(0, len(paths), 3):
            for img in read_norb_matrix(paths[i])[:, 0]:  # first camera only, as dlib
                out[row, 0] = np.asarray(Image.fromarray(np.asarray(img)).resize((64, 64), Image.LANCZOS))
                row += 1
        out.flush()
        return {"factor_sizes": list(sizes)}

    arrays, meta = cache.open_cached(cache.cache_root(data_dir), "smallnorb-v1", paths, build)
    # dlib: category, elevation, azimuth, lighting are the factors; the instance is drawn at random
    return FileData("smallnorb", arrays["images"], NORB_NAMES, meta["factor_sizes"], latent=[0, 2, 3, 4],
                    lookup=arrays["lookup"], provenance={"files": "smallnorb training + testing"})


def load_cars3d(data_dir: Path, expected_objects: int | None = CARS_OBJECTS) -> GroundTruthData:
    import scipy.io
    from PIL import Image

    folder = data_dir / CARS_DIR
    files = sorted(folder.glob("*.mat")) if folder.is_dir() else []
    if not files:
        raise UserError(f"Cars3D files not found: put the car_*_mesh.mat files under {folder}")
    if expected_objects is not None and len(files) != expected_objects:
        raise UserError(f"{folder}: found {len(files)} .mat files, expected {expected_objects} Cars3D objects")

    def build(tmp: Path) -> dict[str, Any]:
        out = cache.new_array(tmp, "images", (24 * 4 * len(files), 3, 64, 64))
        for obj, path in enumerate(files):
            try:
                im = scipy.io.loadmat(path)["im"]
            except (KeyError, ValueError, OSError) as exc:
                raise UserError(f"{path} is not a Cars3D .mat file with an 'im' array ({exc})") from exc
            if im.shape != (128, 128, 3, 24, 4) or im.dtype != np.uint8:
                raise UserError(f"{path}: 'im' is {im.shape} {im.dtype}, expected (128, 128, 3, 24, 4) uint8")
            for elev in range(4):
                for azim in range(24):
                    pic = Image.fromarray(np.ascontiguousarray(im[:, :, :, azim, elev]))
                    pic.thumbnail((64, 64), Image.LANCZOS)
                    # factor order (elevation, azimuth, object): object varies fastest
                    out[(elev * 24 + azim) * len(files) + obj] = np.asarray(pic).transpose(2, 0, 1)
        out.flush()
        return {"objects": [p.name for p in files]}

    arrays, _ = cache.open_cached(cache.cache_root(data_dir), "cars3d-v1", files, build)
    return FileData("cars3d", arrays["images"], ("elevation", "azimuth", "object"), (4, 24, len(files)),
                    provenance={"files": f"{len(files)} cars/*.mat, sorted by name"})


def load(name: str, data_dir: Path) -> GroundTruthData:
    """Dispatch for ``registry.get_dataset(name, source="file")``."""
    if name in ("dsprites_full", "color_dsprites", "noisy_dsprites", "scream_dsprites"):
        return load_dsprites_family(name, data_dir)
    if name == "shapes3d":
        return load_shapes3d(data_dir)
    if name.startswith("mpi3d_"):
        return load_mpi3d(name, data_dir)
    if name == "smallnorb":
        return load_smallnorb(data_dir)
    if name == "cars3d":
        return load_cars3d(data_dir)
    raise UserError(f"dataset {name!r} cannot be loaded from files")


def expected_files(name: str) -> list[str]:
    """Where the files of ``name`` go, relative to the data directory (for listings and errors)."""
    if name in ("dsprites_full", "color_dsprites", "noisy_dsprites"):
        return [DSPRITES_FILES[0]]
    if name == "scream_dsprites":
        return [DSPRITES_FILES[0], "scream/scream.jpg (optional: else a generated texture)"]
    if name == "shapes3d":
        return list(SHAPES3D_FILES[:1]) + [SHAPES3D_FILES[1] + " (either)"]
    if name.startswith("mpi3d_"):
        mode = name.split("_", 1)[1]
        return [f"mpi3d_{mode}/mpi3d_{mode}.npz"]
    if name == "smallnorb":
        return [NORB_TEMPLATE.format(c, k) for c in NORB_CHUNKS for k in ("dat", "cat", "info")]
    if name == "cars3d":
        return [f"{CARS_DIR}/*.mat ({CARS_OBJECTS} files)"]
    return []


def files_present(name: str, data_dir: Path | None) -> bool:
    """Whether the files ``name`` needs are in ``data_dir`` (without reading them)."""
    if data_dir is None:
        return False
    try:
        if name.startswith("mpi3d_") or name in ("dsprites_full", "color_dsprites", "noisy_dsprites",
                                                 "scream_dsprites", "shapes3d"):
            rel = {"shapes3d": SHAPES3D_FILES}.get(name) or tuple(expected_files(name)[:1])
            find_file(data_dir, rel, name)
        elif name == "smallnorb":
            for c in NORB_CHUNKS:
                for k in ("dat", "cat", "info"):
                    find_file(data_dir, (NORB_TEMPLATE.format(c, k),), name)
        elif name == "cars3d":
            return any((data_dir / CARS_DIR).glob("*.mat"))
        else:
            return False
    except UserError:
        return False
    return True
