"""Where each dataset's original files are published, and how to check them: ``TABLE``.

One ``RemoteFile`` per published file (``download.py`` fetches, verifies and unpacks them). The
relative paths are the loaders' own (``files.py``). Sizes and digests describe the downloaded bytes
and come from the places cited beside them; where no trustworthy digest exists the record has a
content check instead (keys, shapes, dtypes read from the file's header). URLs are the publishers'
(as disentanglement_lib's ``bin/dlib_download_data`` fetched them, or the publisher's current
location where it moved); ``mirror_path`` is the layout a ``--url-base`` mirror serves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from benchmark.data import files
from benchmark.data.download import Outcome, RemoteFile, fetch_all, file_status
from benchmark.data.readers import NpzMember
from benchmark.data.registry import ENTRIES, canonical_name
from benchmark.errors import UserError


def npz_array(key: str, shape: tuple[int, ...], dtype: str) -> Callable[[Path], None]:
    """A content check: the npz holds ``key`` with this shape and dtype (its header only is read)."""

    def check(path: Path) -> None:
        arr = NpzMember(path, key)
        if arr.shape != shape or arr.dtype != np.dtype(dtype):
            raise ValueError(f"{key!r} is {arr.shape} {arr.dtype}, expected {shape} {dtype}")

    return check


def image_at_least(width: int, height: int) -> Callable[[Path], None]:
    """A content check: a readable image of at least ``width`` x ``height`` pixels."""

    def check(path: Path) -> None:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                img.verify()
            with Image.open(path) as img:
                w, h = img.size
        except (UnidentifiedImageError, SyntaxError) as exc:
            raise ValueError(f"not a readable image ({exc})") from None
        if w < width or h < height:
            raise ValueError(f"{w}x{h} pixels, expected at least {width}x{height}")

    return check


# dSprites (Matthey et al. 2017), the npz dlib reads. The publisher's repository gives no digest;
# this MD5 is the one several independent dSprites loaders pin (e.g. latte and vaetc), so it is
# trusted.
DSPRITES = RemoteFile(
    path=files.DSPRITES_FILES[0],
    url="https://github.com/deepmind/dsprites-dataset/raw/master/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
    mirror_path=files.DSPRITES_FILES[0], size=None, sha256=None, md5="7da33b31b13a06f4b04a70402ce90c2e",
    source="MD5 agreed by independent dSprites loaders (no publisher digest)")

# The Scream (Munch 1893, public domain), as dlib fetched it from Wikimedia Commons. The file there
# may be re-uploaded, so no digest: the check is that it is an image big enough to crop 64x64 from.
# registry._scream_texture reads it at scream/scream.jpg.
SCREAM = RemoteFile(
    path="scream/scream.jpg", url="https://upload.wikimedia.org/wikipedia/commons/f/f4/The_Scream.jpg",
    mirror_path="scream/The_Scream.jpg", size=None, sha256=None, check=image_at_least(64, 64),
    source="content check (Wikimedia file, no pinned digest)")

# Shapes3D (Kim & Mnih 2018): size and SHA-256 from tensorflow/datasets,
# tensorflow_datasets/url_checksums/shapes3d.txt.
SHAPES3D = RemoteFile(
    path=files.SHAPES3D_FILES[0], url="https://storage.googleapis.com/3d-shapes/3dshapes.h5",
    mirror_path=files.SHAPES3D_FILES[0], size=267573662,
    sha256="0a0f6ed98baff276a50f3a081a7434d788da63cb135a98189b2a5b5769be1785",
    source="tensorflow/datasets url_checksums/shapes3d.txt")

# SmallNORB (LeCun et al. 2004): gzipped binary matrices from NYU; sizes and SHA-256 of the .gz
# files from tensorflow/datasets, tensorflow_datasets/url_checksums/smallnorb.txt.
_NORB_URL = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/"
_NORB_GZ = {  # (chunk, kind) -> (size, sha256) of smallnorb-<chunk>-<kind>.mat.gz
    (files.NORB_CHUNKS[0], "dat"): (131896188, "5ffd6272a07d32695ee1082a26a41a93a37aab8c28da047f8c34ed348d214873"),
    (files.NORB_CHUNKS[0], "cat"): (348, "2784e542c1922060691090952b6cd6278879a216c90f81476f0f00256d42cdaa"),
    (files.NORB_CHUNKS[0], "info"): (71052, "de7eb932ebe7a4ee16217fead60660d0eb3d23632c2f4d1c51f88c501c17bf32"),
    (files.NORB_CHUNKS[1], "dat"): (130799817, "cf7104eed3e51174d2f65b66d1e5878b9da233b886f161b0d88f4510ba2c7474"),
    (files.NORB_CHUNKS[1], "cat"): (347, "ecaf6d5bb8c3bc5eab9cf0258f6d2198dd474e016e374836fc097f2e5ff509ff"),
    (files.NORB_CHUNKS[1], "info"): (10428, "16adf314226327ee006d1a44db8cfef52773c06c829951d5653a9f6f310248a2"),
}
SMALLNORB = tuple(
    RemoteFile(path=(rel := files.NORB_TEMPLATE.format(chunk, kind)),
               url=_NORB_URL + Path(rel).name + ".gz", mirror_path=rel + ".gz", size=size, sha256=sha,
               unpack="gunzip", source="tensorflow/datasets url_checksums/smallnorb.txt")
    for (chunk, kind), (size, sha) in _NORB_GZ.items())

# Cars3D (Reed et al. 2015): Scott Reed's archive of the NIPS 2015 analogy data; its data/cars/*.mat
# go to cars/ (the archive also holds sprites and shapes, not kept). No publisher digest; the MD5
# is the one disent (nmichlo/disent) and latte pin independently.
CARS3D = RemoteFile(
    path=files.CARS_DIR, url="http://www.scottreed.info/files/nips2015-analogy-data.tar.gz",
    mirror_path=f"{files.CARS_DIR}/nips2015-analogy-data.tar.gz", size=None, sha256=None,
    md5="4e866a7919c1beedf53964e6f7a23686", unpack="tar", members="data/cars/*.mat",
    count=files.CARS_OBJECTS, source="MD5 agreed by disent and latte (no publisher digest)")


# MPI3D (Gondal et al. 2019): the released 1,036,800-image files, at the location the publisher's
# README (rr-learning/disentanglement_dataset) gives since 2025; the file was re-issued then
# (mpi3d_real was corrected), so older digests do not apply and none is published: content check.
def _mpi3d(mode: str) -> RemoteFile:
    rel = files.expected_files(f"mpi3d_{mode}")[0]
    released = max(files.MPI3D_SIZES)  # the released grid (the competition files are smaller)
    return RemoteFile(
        path=rel, url=f"https://huggingface.co/datasets/waleedgondal/mpi3d/resolve/main/mpi3d_{mode}.npz",
        mirror_path=rel, size=None, sha256=None, check=npz_array("images", (released, 64, 64, 3), "uint8"),
        source="content check (no published digest)")


#: dataset name -> the files its file source reads
TABLE: dict[str, tuple[RemoteFile, ...]] = {
    "dsprites_full": (DSPRITES,),
    "color_dsprites": (DSPRITES,),
    "noisy_dsprites": (DSPRITES,),
    "scream_dsprites": (DSPRITES, SCREAM),
    "shapes3d": (SHAPES3D,),
    "smallnorb": SMALLNORB,
    "cars3d": (CARS3D,),
    "mpi3d_toy": (_mpi3d("toy"),),
    "mpi3d_realistic": (_mpi3d("realistic"),),
    "mpi3d_real": (_mpi3d("real"),),
}


def dataset_names(names: Sequence[str], table: Mapping[str, Sequence[RemoteFile]] | None = None) -> list[str]:
    """Canonical names of ``names`` ("all": every dataset with files), in order, each once."""
    table = TABLE if table is None else table
    out: list[str] = []
    for name in names:
        keys = list(table) if name == "all" else [canonical_name(name)]
        for key in keys:
            if key not in table:
                raise UserError(f"dataset {key!r} has no files to download (sources: "
                                f"{'+'.join(s for s in ('procedural', 'file') if getattr(ENTRIES[key], s))})")
            if key not in out:
                out.append(key)
    return out


def dataset_status(name: str, data_dir: Path | None,
                   table: Mapping[str, Sequence[RemoteFile]] | None = None) -> str | None:
    """"present", "missing" or "corrupt" (the worst of its files; cheap), None without a table entry."""
    table = TABLE if table is None else table
    if name not in table:
        return None
    states = {file_status(rec, data_dir) for rec in table[name]}
    for worst in ("corrupt", "missing"):
        if worst in states:
            return worst
    return "present"


def download(names: Sequence[str], data_dir: Path, url_base: str | None = None,
             table: Mapping[str, Sequence[RemoteFile]] | None = None, **options) -> list[Outcome]:
    """Fetch the files of ``names`` (see ``dataset_names``) into ``data_dir``; see ``download.fetch_all``."""
    table = TABLE if table is None else table
    records = [rec for key in dataset_names(names, table) for rec in table[key]]
    return fetch_all(records, data_dir, url_base, **options)


def download_command(names: Sequence[str], data_dir: str | Path | None) -> str:
    """The command that fetches ``names`` into ``data_dir`` (None: the default data directory)."""
    where = f" --data-dir {data_dir}" if data_dir is not None else ""
    return f"benchmark data download {' '.join(names)}{where}"
