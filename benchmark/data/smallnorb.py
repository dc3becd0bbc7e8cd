"""SmallNORB (LeCun et al. 2004), read from the user's files and cached at 64x64.

``small_norb/smallnorb-5x46789x9x18x6x2x96x96-training-{dat,cat,info}.mat`` and the ``testing``
files with ``5x01235``: first camera, resized 96 -> 64 with Lanczos (PIL's old ANTIALIAS) as dlib.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data import cache
from benchmark.data.base import GroundTruthData
from benchmark.data.files import FileData
from benchmark.data.info import DataFile, DatasetInfo, RemoteFile
from benchmark.data.readers import read_norb_matrix
from benchmark.data.state_space import StateSpace
from benchmark.errors import UserError

NORB_TEMPLATE = "small_norb/smallnorb-{}-{}.mat"
NORB_CHUNKS = ("5x46789x9x18x6x2x96x96-training", "5x01235x9x18x6x2x96x96-testing")
NORB_KINDS = ("dat", "cat", "info")
# Published gzipped by NYU; sizes and SHA-256 of the .gz files from tensorflow/datasets,
# tensorflow_datasets/url_checksums/smallnorb.txt.
NORB_URL = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/"
_NORB_GZ = {  # (chunk, kind) -> (size, sha256) of smallnorb-<chunk>-<kind>.mat.gz
    (NORB_CHUNKS[0], "dat"): (131896188, "5ffd6272a07d32695ee1082a26a41a93a37aab8c28da047f8c34ed348d214873"),
    (NORB_CHUNKS[0], "cat"): (348, "2784e542c1922060691090952b6cd6278879a216c90f81476f0f00256d42cdaa"),
    (NORB_CHUNKS[0], "info"): (71052, "de7eb932ebe7a4ee16217fead60660d0eb3d23632c2f4d1c51f88c501c17bf32"),
    (NORB_CHUNKS[1], "dat"): (130799817, "cf7104eed3e51174d2f65b66d1e5878b9da233b886f161b0d88f4510ba2c7474"),
    (NORB_CHUNKS[1], "cat"): (347, "ecaf6d5bb8c3bc5eab9cf0258f6d2198dd474e016e374836fc097f2e5ff509ff"),
    (NORB_CHUNKS[1], "info"): (10428, "16adf314226327ee006d1a44db8cfef52773c06c829951d5653a9f6f310248a2"),
}


def _norb_file(chunk: str, kind: str) -> DataFile:
    rel = NORB_TEMPLATE.format(chunk, kind)
    size, sha = _NORB_GZ[chunk, kind]
    return DataFile(rel, remote=RemoteFile(url=NORB_URL + Path(rel).name + ".gz", size=size, sha256=sha,
                                           unpack="gunzip", source="tensorflow/datasets url_checksums/smallnorb.txt"))


NORB_FILES = tuple(_norb_file(c, k) for c in NORB_CHUNKS for k in NORB_KINDS)
NORB_NAMES = ("category", "instance", "elevation", "azimuth", "lighting")
NORB_SIZES = (5, 10, 9, 18, 6)  # of the released files (the loader reads them from the files)
#: dlib: category, elevation, azimuth, lighting are the factors; the instance is drawn at random
LATENT = (0, 2, 3, 4)


def load_smallnorb(data_dir: Path) -> GroundTruthData:
    from PIL import Image

    paths = [f.find(data_dir, f"the SmallNORB {kind} file")
             for f, kind in zip(NORB_FILES, NORB_KINDS * len(NORB_CHUNKS), strict=True)]

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
    return FileData("smallnorb", arrays["images"], NORB_NAMES, meta["factor_sizes"], latent=list(LATENT),
                    lookup=arrays["lookup"], provenance={"files": "smallnorb training + testing"})


DESCRIPTORS = (
    DatasetInfo("smallnorb", "SmallNORB toy photographs (LeCun et al. 2004)", file=load_smallnorb, files=NORB_FILES,
                factor_names=tuple(NORB_NAMES[k] for k in LATENT), factor_sizes=tuple(NORB_SIZES[k] for k in LATENT),
                observation_shape=(1, 64, 64)),
)
