"""A procedural Shapes3D-like scene (Kim & Mnih 2018, "Disentangling by Factorising", 3dshapes).

The original was rendered with MuJoCo and its generator was never published, so this is a look-alike,
*not* pixel-compatible: results on it must never be pooled with results on the real file (the
dataset's ``source`` is "procedural" and its provenance names the renderer). Same factors and grid:
floor hue, wall hue, object hue (0, 0.1, .., 0.9), scale (linspace(0.75, 1.25, 8)), shape (cube,
cylinder, sphere, capsule) and orientation (camera azimuth linspace(-30, 30, 15) degrees), row-major.

Colours never change the geometry, so the 8 x 4 x 15 = 480 geometries are ray-cast once (numpy, analytic
intersections, 2x2 supersampling, Lambert + ambient light, a shadow ray, a Blinn-Phong highlight) into
per-pixel weights of the four segments (sky, floor, wall, object); every image is then a gather:
``rgb = sum_k weight_k * colour_k + highlight``.

From files: ``3dshapes/3dshapes.h5`` (public; needs h5py) or dlib's
``3dshapes/look-at-object-room_floor-hueXwall-hueXobj-hueXobj-sizeXobj-shapeXview-azi.npz``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data import cache
from benchmark.data.base import GroundTruthData
from benchmark.data.files import FileData, convert_images
from benchmark.data.info import DataFile, DatasetInfo, RemoteFile
from benchmark.data.readers import open_array
from benchmark.data.state_space import StateSpace
from benchmark.errors import UserError

RENDERER_VERSION = "shapes3d-raycast-v1"
FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
FACTOR_SIZES = (10, 10, 10, 8, 4, 15)
HUES = np.arange(10) / 10.0
SCALES = np.linspace(0.75, 1.25, 8)
SHAPES = ("cube", "cylinder", "sphere", "capsule")
AZIMUTHS_DEG = np.linspace(-30.0, 30.0, 15)
SKY_RGB = np.array([153, 226, 249]) / 255.0
# size and SHA-256 of the published file: tensorflow/datasets, tensorflow_datasets/url_checksums/shapes3d.txt
SHAPES3D_FILE = DataFile("3dshapes/3dshapes.h5", alternatives=(
    DataFile("3dshapes/look-at-object-room_floor-hueXwall-hueXobj-hueXobj-sizeXobj-shapeXview-azi.npz", note="either"),),
    remote=RemoteFile(url="https://storage.googleapis.com/3d-shapes/3dshapes.h5", size=267573662,
                      sha256="0a0f6ed98baff276a50f3a081a7434d788da63cb135a98189b2a5b5769be1785",
                      source="tensorflow/datasets url_checksums/shapes3d.txt"))

# scene (world units; y up; the object stands at the origin, the camera orbits the y axis)
CAMERA_DISTANCE, CAMERA_HEIGHT, LOOK_AT_HEIGHT, FOCAL = 4.0, 1.6, 0.5, 2.2
BACK_WALL_Z, SIDE_WALL_X, WALL_HEIGHT = -2.2, 3.2, 1.75
LIGHT = np.array([-0.55, 1.0, 0.65]) / np.linalg.norm([-0.55, 1.0, 0.65])
AMBIENT, DIFFUSE, SPECULAR, SHININESS = 0.45, 0.55, 0.25, 24.0
SIZE, SUPERSAMPLE = 64, 2


def _sphere(o, d, c, r):
    oc = o - c
    b = np.einsum("ij,ij->i", oc, d)
    cc = np.einsum("ij,ij->i", oc, oc) - r * r
    disc = b * b - cc
    t = -b - np.sqrt(np.maximum(disc, 0.0))
    t = np.where((disc >= 0) & (t > 1e-6), t, np.inf)
    p = o + t[:, None] * d
    return t, (p - c) / r


def _vertical_cylinder(o, d, r, y0, y1, cap: bool):
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = o[:, 0] * d[:, 0] + o[:, 2] * d[:, 2]
    c = o[:, 0] ** 2 + o[:, 2] ** 2 - r * r
    disc = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    y = o[:, 1] + t * d[:, 1]
    t = np.where((disc >= 0) & (a > 1e-12) & (t > 1e-6) & (y >= y0) & (y <= y1), t, np.inf)
    p = o + np.nan_to_num(t, posinf=0.0)[:, None] * d
    n = np.stack([p[:, 0] / r, np.zeros(len(p)), p[:, 2] / r], axis=1)
    if cap:  # top disc
        with np.errstate(divide="ignore", invalid="ignore"):
            tc = (y1 - o[:, 1]) / d[:, 1]
        pc = o + np.nan_to_num(tc, posinf=0.0, neginf=0.0)[:, None] * d
        ok = (tc > 1e-6) & (pc[:, 0] ** 2 + pc[:, 2] ** 2 <= r * r) & (tc < t)
        t = np.where(ok, tc, t)
        n = np.where(ok[:, None], np.array([0.0, 1.0, 0.0]), n)
    return t, n


def _box(o, d, lo, hi):
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t0, t1 = (lo - o) * inv, (hi - o) * inv
    tmin, tmax = np.minimum(t0, t1), np.maximum(t0, t1)
    tmin = np.nan_to_num(tmin, nan=-np.inf)
    tmax = np.nan_to_num(tmax, nan=np.inf)
    tn, tf = tmin.max(1), tmax.min(1)
    t = np.where((tn <= tf) & (tn > 1e-6), tn, np.inf)
    axis = tmin.argmax(1)
    n = np.zeros_like(d)
    n[np.arange(len(d)), axis] = -np.sign(d[np.arange(len(d)), axis])
    return t, n


def _object(o, d, shape: int, s: float):
    """Distance and normal of the first hit with object ``shape`` of size ``s`` standing at the origin."""
    if shape == 0:
        return _box(o, d, np.array([-0.5 * s, 0.0, -0.5 * s]), np.array([0.5 * s, s, 0.5 * s]))
    if shape == 1:
        return _vertical_cylinder(o, d, 0.5 * s, 0.0, 1.1 * s, cap=True)
    if shape == 2:
        return _sphere(o, d, np.array([0.0, 0.55 * s, 0.0]), 0.55 * s)
    r, top = 0.36 * s, 1.5 * s  # capsule: a tall pill
    hits = [_vertical_cylinder(o, d, r, r, top - r, cap=False),
            _sphere(o, d, np.array([0.0, r, 0.0]), r), _sphere(o, d, np.array([0.0, top - r, 0.0]), r)]
    t = np.stack([h[0] for h in hits])
    k = t.argmin(0)
    idx = np.arange(len(o))
    return t[k, idx], np.stack([h[1] for h in hits])[k, idx]


def render_geometry(scale: float, shape: int, azimuth_deg: float):
    """Segment weights (4, H, W) (sky, floor, wall, object; shading folded in) and highlight (H, W)."""
    az = np.deg2rad(azimuth_deg)
    eye = np.array([CAMERA_DISTANCE * np.sin(az), CAMERA_HEIGHT, CAMERA_DISTANCE * np.cos(az)])
    fwd = np.array([0.0, LOOK_AT_HEIGHT, 0.0]) - eye
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    n = SIZE * SUPERSAMPLE
    u = (np.arange(n) + 0.5) / n * 2 - 1  # image plane in [-1, 1]
    px, py = np.meshgrid(u, -u)
    d = fwd + (1.0 / FOCAL) * (px.reshape(-1, 1) * right + py.reshape(-1, 1) * up)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o = np.broadcast_to(eye, d.shape)

    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(d[:, 1] < 0, -o[:, 1] / d[:, 1], np.inf)
        t_back = np.where(d[:, 2] < 0, (BACK_WALL_Z - o[:, 2]) / d[:, 2], np.inf)
        t_side = np.where(d[:, 0] != 0, (np.sign(d[:, 0]) * SIDE_WALL_X - o[:, 0]) / d[:, 0], np.inf)
    t_wall = np.minimum(t_back, t_side)
    wall_normal = np.where((t_back <= t_side)[:, None], [0.0, 0.0, 1.0], 0.0)
    wall_normal[t_side < t_back] = np.stack([-np.sign(d[t_side < t_back, 0]), 0 * d[t_side < t_back, 0],
                                             0 * d[t_side < t_back, 0]], axis=1)
    t_obj, n_obj = _object(o, d, shape, scale)

    seg = np.where(t_floor < t_wall, 1, 2)
    t_room = np.minimum(t_floor, t_wall)
    y_hit = o[:, 1] + t_room * d[:, 1]
    seg = np.where((seg == 2) & (y_hit > WALL_HEIGHT), 0, seg)
    seg = np.where(t_obj < t_room, 3, seg)
    t_hit = np.where(seg == 3, t_obj, t_room)
    normal = np.where((seg == 1)[:, None], [0.0, 1.0, 0.0], wall_normal)
    normal = np.where((seg == 3)[:, None], n_obj, normal)

    p = o + np.nan_to_num(t_hit, posinf=0.0)[:, None] * d
    lambert = np.clip(normal @ LIGHT, 0.0, None)
    # shadows of the object on the floor and walls
    room = (seg == 1) | (seg == 2)
    lit = np.ones(len(d), dtype=bool)
    if room.any():
        t_sh, _ = _object(p[room] + 1e-4 * normal[room], np.broadcast_to(LIGHT, (room.sum(), 3)), shape, scale)
        lit[room] = ~np.isfinite(t_sh)
    shade = np.where(seg == 0, 1.0, AMBIENT + DIFFUSE * lambert * lit)
    half = LIGHT - d
    half /= np.linalg.norm(half, axis=1, keepdims=True)
    spec = np.where(seg == 3, SPECULAR * np.clip(np.einsum("ij,ij->i", normal, half), 0, None) ** SHININESS, 0.0)

    weights = np.zeros((4, n * n))
    weights[seg, np.arange(n * n)] = shade
    # 2x2 supersampling: average the sub-pixels
    weights = weights.reshape(4, SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE).mean((2, 4))
    spec = spec.reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE).mean((1, 3))
    return weights.astype(np.float32), spec.astype(np.float32)


class GeometryTable:
    """The 480 geometries, ray-cast lazily on first use: weights (8, 4, 15, 4, H, W), highlights (8, 4, 15, H, W)."""

    def __init__(self):
        self.weights = np.zeros((8, 4, 15, 4, SIZE, SIZE), dtype=np.float32)
        self.spec = np.zeros((8, 4, 15, SIZE, SIZE), dtype=np.float32)
        self.done = np.zeros((8, 4, 15), dtype=bool)

    def ensure(self, scale: np.ndarray, shape: np.ndarray, orientation: np.ndarray) -> None:
        """Render the listed geometries that are not in the table yet (about 20 ms each)."""
        missing = ~self.done[scale, shape, orientation]
        for i, j, k in set(zip(scale[missing].tolist(), shape[missing].tolist(), orientation[missing].tolist(), strict=True)):
            self.weights[i, j, k], self.spec[i, j, k] = render_geometry(SCALES[i], j, AZIMUTHS_DEG[k])
            self.done[i, j, k] = True

    def fill(self) -> GeometryTable:
        """Render every geometry now (about 5-10 s on one core)."""
        grid = np.indices((8, 4, 15)).reshape(3, -1)
        self.ensure(*grid)
        return self


@functools.lru_cache(maxsize=1)
def geometry_table() -> GeometryTable:
    """The process-wide geometry table (shared by every ProceduralShapes3D)."""
    return GeometryTable()


def hue_to_rgb(h: np.ndarray) -> np.ndarray:
    """Fully saturated, full-value HSV hue in [0, 1) -> RGB (..., 3)."""
    k = (np.asarray(h)[..., None] * 6 + np.array([5.0, 3.0, 1.0])) % 6
    return 1.0 - np.clip(np.minimum(k, 4 - k), 0, 1)


class ProceduralShapes3D(GroundTruthData):
    """Shapes3D look-alike rendered here (see the module docstring: not the original pixels)."""

    name = "shapes3d"
    factor_names = FACTOR_NAMES
    factor_sizes = FACTOR_SIZES
    observation_shape = (3, SIZE, SIZE)
    source = "procedural"

    def __init__(self):
        self.provenance = {"renderer": RENDERER_VERSION, "note": "look-alike of 3dshapes, not pixel-compatible"}

    def _observations(self, factors: np.ndarray, rng) -> np.ndarray:
        table = geometry_table()
        g = (factors[:, 3], factors[:, 4], factors[:, 5])
        table.ensure(*g)
        w = table.weights[g]  # (n, 4, H, W)
        colours = np.empty((len(factors), 4, 3), dtype=np.float32)
        colours[:, 0] = SKY_RGB
        colours[:, 1:] = hue_to_rgb(HUES[factors[:, :3]])
        rgb = np.einsum("nkhw,nkc->nchw", w, colours, optimize=True)
        rgb += table.spec[g][:, None]
        return np.clip(rgb, 0.0, 1.0, out=rgb)


# ------------------------------------------------------------------------------------------------
# the real file


def load_shapes3d(data_dir: Path) -> GroundTruthData:
    path = SHAPES3D_FILE.find(data_dir, "the Shapes3D file (3dshapes.h5 or dlib's npz)")

    def build(tmp: Path) -> dict[str, Any]:
        reader = open_array(path, "images")
        n = int(np.prod(reader.shape[:-3]))
        if path.suffix in (".h5", ".hdf5"):
            sizes = _shapes3d_sizes_from_labels(path, n)
        else:  # dlib's npz keeps the grid in the shape
            sizes = tuple(int(s) for s in reader.shape[:-3])
            if len(sizes) != 6:
                raise UserError(f"{path}: 'images' has shape {reader.shape}, expected (10, 10, 10, 8, 4, 15, 64, 64, 3)")
        convert_images(reader, tmp, n, (64, 64, 3))
        return {"factor_sizes": list(sizes)}

    arrays, meta = cache.open_cached(cache.cache_root(data_dir), "shapes3d-v1", [path], build)
    return FileData(ProceduralShapes3D.name, arrays["images"], FACTOR_NAMES, meta["factor_sizes"],
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


DESCRIPTORS = (
    DatasetInfo(ProceduralShapes3D.name,
                "3D shapes in a room (Kim & Mnih 2018); procedural = look-alike, not the original pixels",
                procedural=lambda data_dir: ProceduralShapes3D(), file=load_shapes3d, files=(SHAPES3D_FILE,)),
)
