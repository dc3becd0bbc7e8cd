"""Cars3D (Reed et al. 2015), read from the user's files and cached at 64x64.

``cars/*.mat`` (key ``im``, 128x128x3x24x4): thumbnails to 64 with Lanczos, object id = sorted file
name order (dlib used the unsorted directory listing, which is not reproducible).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data import cache
from benchmark.data.base import GroundTruthData
from benchmark.data.files import FileData
from benchmark.data.info import DataFile, DatasetInfo, RemoteFile
from benchmark.errors import UserError

CARS_DIR = "cars"
CARS_OBJECTS = 183
# Scott Reed's archive of the NIPS 2015 analogy data; its data/cars/*.mat go to cars/ (the archive
# also holds sprites and shapes, not kept). No publisher digest; the MD5 is the one disent
# (nmichlo/disent) and latte pin independently.
CARS_FILES = DataFile(f"{CARS_DIR}/*.mat", note=f"{CARS_OBJECTS} files", remote=RemoteFile(
    url="http://www.scottreed.info/files/nips2015-analogy-data.tar.gz", md5="4e866a7919c1beedf53964e6f7a23686",
    unpack="tar", members="data/cars/*.mat", count=CARS_OBJECTS,
    source="MD5 agreed by disent and latte (no publisher digest)"))
FACTOR_NAMES = ("elevation", "azimuth", "object")
ELEVATIONS, AZIMUTHS = 4, 24


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
        out = cache.new_array(tmp, "images", (AZIMUTHS * ELEVATIONS * len(files), 3, 64, 64))
        for obj, path in enumerate(files):
            try:
                im = scipy.io.loadmat(path)["im"]
            except (KeyError, ValueError, OSError) as exc:
                raise UserError(f"{path} is not a Cars3D .mat file with an 'im' array ({exc})") from exc
            if im.shape != (128, 128, 3, AZIMUTHS, ELEVATIONS) or im.dtype != np.uint8:
                raise UserError(f"{path}: 'im' is {im.shape} {im.dtype}, expected (128, 128, 3, 24, 4) uint8")
            for elev in range(ELEVATIONS):
                for azim in range(AZIMUTHS):
                    pic = Image.fromarray(np.ascontiguousarray(im[:, :, :, azim, elev]))
                    pic.thumbnail((64, 64), Image.LANCZOS)
                    # factor order (elevation, azimuth, object): object varies fastest
                    out[(elev * AZIMUTHS + azim) * len(files) + obj] = np.asarray(pic).transpose(2, 0, 1)
        out.flush()
        return {"objects": [p.name for p in files]}

    arrays, _ = cache.open_cached(cache.cache_root(data_dir), "cars3d-v1", files, build)
    return FileData("cars3d", arrays["images"], FACTOR_NAMES, (ELEVATIONS, AZIMUTHS, len(files)),
                    provenance={"files": f"{len(files)} cars/*.mat, sorted by name"})


DESCRIPTORS = (
    DatasetInfo("cars3d", "Cars3D renders (Reed et al. 2015)", file=load_cars3d, files=(CARS_FILES,),
                factor_names=FACTOR_NAMES, factor_sizes=(ELEVATIONS, AZIMUTHS, CARS_OBJECTS),
                observation_shape=(3, 64, 64)),
)
