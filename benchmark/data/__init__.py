"""Ground-truth datasets (docs/architecture.md, "Datasets"): ``get_dataset(name, source, data_dir)``.

Every dataset is a ``GroundTruthData``: factor classes in, float32 NCHW observations in [0, 1] out,
plus a factor-grid state space (``num_points``, ``index_to_factors``, ``factors_to_index``).
"""

from benchmark.data.base import GroundTruthData
from benchmark.data.registry import ALIASES, SOURCES, available_sources, canonical_name, get_dataset
from benchmark.data.registry import ENTRIES as _ENTRIES
from benchmark.data.rng import as_rng
from benchmark.data.state_space import StateSpace

#: every accepted dataset name (registry names, then aliases such as "dsprites")
DATASETS: tuple[str, ...] = tuple(_ENTRIES) + tuple(ALIASES)

__all__ = [
    "DATASETS",
    "SOURCES",
    "GroundTruthData",
    "StateSpace",
    "as_rng",
    "available_sources",
    "canonical_name",
    "get_dataset",
]
