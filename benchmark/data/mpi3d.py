"""MPI3D (Gondal et al. 2019): toy, realistic and real, read from the user's files.

``mpi3d_{toy,realistic,real}/mpi3d_{mode}.npz`` key ``images``; factor sizes are inferred from the
number of images (dlib hard-codes the 460,800-image competition files, which mis-indexes the
released ones).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data import cache
from benchmark.data.base import GroundTruthData
from benchmark.data.files import FileData, convert_images
from benchmark.data.info import DataFile, DatasetInfo, RemoteFile, npz_array
from benchmark.data.readers import open_array
from benchmark.errors import UserError

MPI3D_NAMES = ("object_color", "object_shape", "object_size", "camera_height", "background_color",
               "horizontal_axis", "vertical_axis")
#: number of images -> factor sizes (the released files and the NeurIPS-2019 competition files)
MPI3D_SIZES: dict[int, tuple[int, ...]] = {1036800: (6, 6, 2, 3, 3, 40, 40), 460800: (4, 4, 2, 3, 3, 40, 40)}
RELEASED = 1036800  # the number of images of each released file (what listings show)
HWC = (64, 64, 3)
MODES = {"toy": "MPI3D simplistic renders (Gondal et al. 2019)",
         "realistic": "MPI3D realistic renders (Gondal et al. 2019)",
         "real": "MPI3D camera images (Gondal et al. 2019)"}


# The released files, at the location the publisher's README (rr-learning/disentanglement_dataset)
# gives since 2025; they were re-issued then (mpi3d_real was corrected), so older digests do not
# apply and none is published: a content check instead.
FILES = {mode: DataFile(f"mpi3d_{mode}/mpi3d_{mode}.npz", remote=RemoteFile(
    url=f"https://huggingface.co/datasets/waleedgondal/mpi3d/resolve/main/mpi3d_{mode}.npz",
    check=npz_array("images", (RELEASED, *HWC), "uint8"), source="content check (no published digest)"))
    for mode in MODES}


def data_file(mode: str) -> DataFile:
    return FILES[mode]


def load_mpi3d(mode: str, data_dir: Path) -> GroundTruthData:
    """MPI3D-``mode`` (a key of ``MODES``) from ``data_dir``."""
    path = data_file(mode).find(data_dir, f"the MPI3D-{mode} file")

    def build(tmp: Path) -> dict[str, Any]:
        reader = open_array(path, "images")
        n = int(np.prod(reader.shape[:-3]))
        if n not in MPI3D_SIZES:
            raise UserError(f"{path}: {n} images; expected {' or '.join(map(str, MPI3D_SIZES))} (MPI3D grids)")
        convert_images(reader, tmp, n, HWC)
        return {"factor_sizes": list(MPI3D_SIZES[n])}

    arrays, meta = cache.open_cached(cache.cache_root(data_dir), f"mpi3d_{mode}-v1", [path], build)
    return FileData(f"mpi3d_{mode}", arrays["images"], MPI3D_NAMES, meta["factor_sizes"],
                    provenance={"file": path.name})


DESCRIPTORS = tuple(
    DatasetInfo(f"mpi3d_{mode}", description, file=functools.partial(load_mpi3d, mode), files=(data_file(mode),),
                factor_names=MPI3D_NAMES, factor_sizes=MPI3D_SIZES[RELEASED],
                observation_shape=(HWC[2], HWC[0], HWC[1]))
    for mode, description in MODES.items()
)
