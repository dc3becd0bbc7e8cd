"""Every dataset by name: the descriptors of the family modules, collected (``info.DatasetInfo``).

A new dataset is a descriptor in its family's ``DESCRIPTORS`` (a new family: one more entry in
``FAMILIES``); nothing here names a dataset.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmark.data import cars3d, dsprites, mpi3d, shapes3d, smallnorb, synthetic
from benchmark.data.base import GroundTruthData
from benchmark.data.info import SOURCES, DatasetInfo
from benchmark.errors import UserError

__all__ = ["ALIASES", "DATASETS", "DATA_DIR_ENV", "DESCRIPTORS", "SOURCES", "available_sources",
           "canonical_name", "descriptor", "get_dataset", "resolve_data_dir"]

DATA_DIR_ENV = ("BENCHMARK_DATA", "DISENTANGLEMENT_LIB_DATA")
#: the family modules, in listing order
FAMILIES = (dsprites, shapes3d, smallnorb, cars3d, mpi3d, synthetic)
#: registry name -> descriptor, in listing order
DESCRIPTORS: dict[str, DatasetInfo] = {d.name: d for family in FAMILIES for d in family.DESCRIPTORS}
#: other accepted names (e.g. "dsprites") -> registry name
ALIASES: dict[str, str] = {alias: d.name for d in DESCRIPTORS.values() for alias in d.aliases}
#: every accepted dataset name (registry names, then aliases)
DATASETS: tuple[str, ...] = tuple(DESCRIPTORS) + tuple(ALIASES)


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """``data_dir``, else $BENCHMARK_DATA, else $DISENTANGLEMENT_LIB_DATA (dlib's layout is accepted), else None."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    for var in DATA_DIR_ENV:
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    return None


def canonical_name(name: str) -> str:
    """The registry name of ``name`` (aliases resolved); UserError when unknown."""
    key = ALIASES.get(name, name)
    if key not in DESCRIPTORS:
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(sorted(DESCRIPTORS) + sorted(ALIASES))}")
    return key


def descriptor(name: str) -> DatasetInfo:
    """The descriptor of ``name`` (aliases resolved); UserError when unknown."""
    return DESCRIPTORS[canonical_name(name)]


def available_sources(name: str) -> tuple[str, ...]:
    return descriptor(name).sources


def get_dataset(name: str, source: str = "procedural", data_dir: str | Path | None = None) -> GroundTruthData:
    """The dataset ``name`` rendered here (``source="procedural"``) or read from ``data_dir`` (``"file"``).

    ``data_dir`` defaults to $BENCHMARK_DATA (then $DISENTANGLEMENT_LIB_DATA). Unknown names, sources
    a dataset does not have, and missing or corrupt files raise ``UserError`` with one line.
    """
    info = descriptor(name)
    if source not in SOURCES:
        raise UserError(f"unknown dataset source {source!r}; use one of {', '.join(SOURCES)}")
    factory = getattr(info, source)
    if factory is None:
        raise UserError(f"dataset {info.name!r} has no {source} source; available: {', '.join(info.sources)}")
    root = resolve_data_dir(data_dir)
    if source == "file" and root is None:
        raise UserError(f"dataset {info.name!r} from files needs a data directory: pass --data-dir or set $BENCHMARK_DATA")
    return factory(root)
