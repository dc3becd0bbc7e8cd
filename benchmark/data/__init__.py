"""Ground-truth datasets (docs/architecture.md, datasets): ``get_dataset(name, source, data_dir)``.

Every dataset is a ``GroundTruthData``: factor classes in, float32 NCHW observations in [0, 1] out,
plus a factor-grid state space (``num_points``, ``index_to_factors``, ``factors_to_index``). Each is
described once, by a ``DatasetInfo`` next to its family's code (``info.py``, ``registry.py``).
"""

from benchmark.data.base import GroundTruthData
from benchmark.data.info import DataFile, DatasetInfo, RemoteFile
from benchmark.data.registry import (
    DATASETS,
    SOURCES,
    available_sources,
    canonical_name,
    descriptor,
    get_dataset,
)
from benchmark.data.rng import as_rng
from benchmark.data.state_space import StateSpace

__all__ = [
    "DATASETS",
    "SOURCES",
    "DataFile",
    "DatasetInfo",
    "GroundTruthData",
    "RemoteFile",
    "StateSpace",
    "as_rng",
    "available_sources",
    "canonical_name",
    "descriptor",
    "get_dataset",
]
