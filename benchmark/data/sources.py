"""The datasets' published files, walked from their descriptors: what ``benchmark data download`` fetches.

Each family declares where its files are published (URL, size, digest and where that digest comes
from, unpack rule, content check) on its ``DataFile`` records (``info.RemoteFile``); ``download.py``
fetches them. Nothing here names a dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from benchmark.data.download import Outcome, fetch_all, file_status
from benchmark.data.info import DataFile
from benchmark.data.registry import DESCRIPTORS, canonical_name, descriptor
from benchmark.errors import UserError


def downloadable() -> list[str]:
    """The datasets with published files, in listing order."""
    return [name for name, info in DESCRIPTORS.items() if info.remote_files()]


def dataset_names(names: Sequence[str]) -> list[str]:
    """Canonical names of ``names`` ("all": every dataset with published files), in order, each once."""
    out: list[str] = []
    for name in names:
        for key in downloadable() if name == "all" else [canonical_name(name)]:
            info = DESCRIPTORS[key]
            if not info.remote_files():
                raise UserError(f"dataset {key!r} has no files to download (sources: {'+'.join(info.sources)})")
            if key not in out:
                out.append(key)
    return out


def published_files(names: Sequence[str]) -> list[DataFile]:
    """The published files of ``names`` (see ``dataset_names``), each mirror path once."""
    out: dict[str, DataFile] = {}
    for key in dataset_names(names):
        for f in DESCRIPTORS[key].remote_files():
            out.setdefault(f.mirror_path, f)
    return list(out.values())


def dataset_status(name: str, data_dir: Path | None) -> str | None:
    """"present", "missing" or "corrupt" (cheap: markers and sizes only); None without a file source.

    Present and missing as ``DatasetInfo.files_present`` says (alternatives count, optional files
    are not needed); corrupt when a published file there is not the one fetched and verified.
    """
    info = descriptor(name)
    if info.file is None:
        return None
    if any(file_status(f, data_dir) == "corrupt" for f in info.remote_files()):
        return "corrupt"
    return "present" if info.files_present(data_dir) else "missing"


def download(names: Sequence[str], data_dir: Path, url_base: str | None = None, **options) -> list[Outcome]:
    """Fetch the files of ``names`` (see ``dataset_names``) into ``data_dir``; see ``download.fetch_all``."""
    return fetch_all(published_files(names), data_dir, url_base, **options)


def download_command(names: Sequence[str], data_dir: str | Path | None) -> str:
    """The command that fetches ``names`` into ``data_dir`` (None: the default data directory)."""
    where = f" --data-dir {data_dir}" if data_dir is not None else ""
    return f"benchmark data download {' '.join(names)}{where}"
