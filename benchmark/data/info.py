"""One descriptor per dataset (``DatasetInfo``) and one record per file it reads (``DataFile``).

Each family module (``dsprites``, ``shapes3d``, ``smallnorb``, ``cars3d``, ``mpi3d``, ``synthetic``)
defines the descriptors of its datasets next to its code as ``DESCRIPTORS``; ``registry`` only
collects them. Names, aliases, sources, the ``benchmark datasets`` row and the expected files of a
dataset all come from its descriptor, so a new dataset is one descriptor plus one import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmark.data.base import GroundTruthData
from benchmark.errors import UserError

#: where a dataset's observations come from: rendered here, or read from the user's files
SOURCES = ("procedural", "file")


@dataclass(frozen=True)
class DataFile:
    """A file a dataset reads, at ``relpath`` under the data directory (disentanglement_lib's layout).

    A plain path is also found directly in the data directory; a glob (Cars3D's ``cars/*.mat``) is
    present when anything under the data directory matches it. ``alternatives`` are files that serve
    instead (e.g. dlib's Shapes3D npz); listings show those with ``shown``. ``note`` is appended to
    the path in listings. An ``optional`` file is not needed for the dataset to count as present.
    (Per-file download facts, url / size / sha256, belong in this record too.)
    """

    relpath: str
    alternatives: tuple[DataFile, ...] = ()
    note: str = ""
    optional: bool = False
    shown: bool = True

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

    def files_present(self, data_dir: Path | None) -> bool:
        """Whether every file the file source needs is in ``data_dir`` (found, not read)."""
        needed = [f for f in self.files if not f.optional]
        if self.file is None or data_dir is None or not needed:
            return False
        return all(f.locate(data_dir) is not None for f in needed)
