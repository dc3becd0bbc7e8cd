"""One descriptor per dataset (``DatasetInfo``) and one record per file it reads (``DataFile``).

Each family module (``dsprites``, ``shapes3d``, ``smallnorb``, ``cars3d``, ``mpi3d``, ``synthetic``)
defines the descriptors of its datasets next to its code as ``DESCRIPTORS``; ``registry`` only
collects them. Names, aliases, sources, the ``benchmark datasets`` row, the expected files of a
dataset and where each file is published (``RemoteFile``, fetched by ``download.py``) all come from
its descriptor, so a new dataset is one descriptor in its family's ``DESCRIPTORS`` (a new family:
one more entry in ``registry.FAMILIES``).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from benchmark.data.base import GroundTruthData
from benchmark.data.readers import NpzMember
from benchmark.errors import UserError

#: where a dataset's observations come from: rendered here, or read from the user's files
SOURCES = ("procedural", "file")
#: how a downloaded file becomes the ``DataFile``: as is, gunzipped, or the matching members of a tar
UNPACK = ("none", "gunzip", "tar")


@dataclass(frozen=True)
class RemoteFile:
    """Where a ``DataFile`` is published and how to check the download (``download.py`` fetches it).

    ``size`` / ``sha256`` / ``md5`` describe the downloaded bytes (None: unknown); ``check(path)``
    inspects the content where no digest is trustworthy (raises ValueError on a bad file);
    ``source`` cites where the size and digest come from. ``unpack`` "gunzip" writes the
    decompressed file; "tar" takes the archive members matching ``members`` (``count`` of them)
    into the ``DataFile``'s folder by base name (its ``relpath`` is then a glob of that folder).
    """

    url: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    unpack: str = "none"
    members: str = ""
    count: int | None = None
    check: Callable[[Path], None] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.unpack not in UNPACK:
            raise ValueError(f"{self.url}: unpack must be one of {UNPACK}, got {self.unpack!r}")
        if (self.unpack == "tar") != bool(self.members):
            raise ValueError(f"{self.url}: a tar record, and only one, names the members to keep")


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


@dataclass(frozen=True)
class DataFile:
    """A file a dataset reads, at ``relpath`` under the data directory (disentanglement_lib's layout).

    A plain path is also found directly in the data directory; a glob (Cars3D's ``cars/*.mat``) is
    present when anything under the data directory matches it. ``alternatives`` are files that serve
    instead (e.g. dlib's Shapes3D npz); listings show those with ``shown``. ``note`` is appended to
    the path in listings. An ``optional`` file is not needed for the dataset to count as present.
    ``remote`` says where the file is published (``benchmark data download`` fetches it).
    """

    relpath: str
    alternatives: tuple[DataFile, ...] = ()
    note: str = ""
    optional: bool = False
    shown: bool = True
    remote: RemoteFile | None = None

    def __post_init__(self) -> None:
        if self.remote is not None and (self.remote.unpack == "tar") != self.is_glob:
            raise ValueError(f"{self.relpath}: a tar download fills a folder glob; any other fills one path")

    @property
    def mirror_path(self) -> str:
        """Where a mirror (``--url-base``) serves the published file: this file's folder and the URL's
        file name (e.g. ``small_norb/<name>.mat.gz``); also where the download is kept meanwhile."""
        if self.remote is None:
            raise ValueError(f"{self.relpath} is not published anywhere known")
        name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(self.remote.url).path)).name
        return str(PurePosixPath(self.relpath).parent / name)

    @property
    def is_glob(self) -> bool:
        return any(c in self.relpath for c in "*?[")

    def label(self) -> str:
        """The path as listings show it: ``relpath`` and the note in brackets."""
        return f"{self.relpath} ({self.note})" if self.note else self.relpath

    def locate(self, data_dir: Path) -> Path | None:
        """The first of this file and its alternatives present under ``data_dir``, else None."""
        for f in (self, *self.alternatives):
            if f.is_glob:
                hits = sorted(data_dir.glob(f.relpath))
                if hits:
                    return hits[0]
                continue
            for cand in (data_dir / f.relpath, data_dir / Path(f.relpath).name):
                if cand.is_file():
                    return cand
        return None

    def find(self, data_dir: Path, what: str) -> Path:
        """``locate``, or a UserError naming ``what`` and where to put it."""
        path = self.locate(data_dir)
        if path is None:
            raise UserError(f"{what} not found: put {self.relpath} under the data directory {data_dir}")
        return path


@dataclass(frozen=True)
class DatasetInfo:
    """Everything the registry and the catalog know about one dataset.

    ``procedural(data_dir)`` renders it here (``data_dir`` may hold optional inputs such as the
    Scream image; None when there is none), ``file(data_dir)`` reads it from ``files``; either may
    be None. ``factor_names`` / ``factor_sizes`` / ``observation_shape`` describe a file-only
    dataset without opening its files (a procedural one reports its own).
    """

    name: str
    description: str
    procedural: Callable[[Path | None], GroundTruthData] | None = None
    file: Callable[[Path], GroundTruthData] | None = None
    files: tuple[DataFile, ...] = ()
    aliases: tuple[str, ...] = ()
    factor_names: tuple[str, ...] = ()
    factor_sizes: tuple[int, ...] = ()
    observation_shape: tuple[int, ...] = ()

    @property
    def sources(self) -> tuple[str, ...]:
        """The sources this dataset has, in ``SOURCES`` order."""
        return tuple(s for s in SOURCES if getattr(self, s) is not None)

    def grid(self) -> tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...]]:
        """Factor names, factor sizes, observation shape (the procedural dataset's when it has one)."""
        if self.procedural is not None:
            ds = self.procedural(None)
            return tuple(ds.factor_names), tuple(ds.factor_sizes), tuple(ds.observation_shape)
        return self.factor_names, self.factor_sizes, self.observation_shape

    def expected_files(self) -> list[str]:
        """Where the files go, relative to the data directory (each file, then its shown alternatives)."""
        return [g.label() for f in self.files for g in (f, *f.alternatives) if g is f or g.shown]

    def remote_files(self) -> tuple[DataFile, ...]:
        """The files ``benchmark data download`` fetches for this dataset (optional ones too)."""
        return tuple(f for f in self.files if f.remote is not None)

    def files_present(self, data_dir: Path | None) -> bool:
        """Whether every file the file source needs is in ``data_dir`` (found, not read)."""
        needed = [f for f in self.files if not f.optional]
        if self.file is None or data_dir is None or not needed:
            return False
        return all(f.locate(data_dir) is not None for f in needed)
