"""The columns of the results store: names, Arrow types, order (docs/schema.md).

Every results-row file is the base columns, then one float64 column per numeric hyperparameter of
the study's methods (sorted by name; string options live in `model_params` only), then the tail
columns. The store writes this schema, spec validation keeps hyperparameters from taking a column's
name, and `analysis` tells the columns of the contract from hyperparameter columns with it. Torch-free:
analysis imports it.

Files written before a column existed lack it; readers unify schemas, so it reads as null.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    doc: str
    identifies_job: bool = False  # the same on every row of a job: the job and its configuration


_JSON = "JSON, keys sorted"

BASE_COLUMNS: tuple[Column, ...] = (
    Column("study", pa.string(), "the study's name (the spec's `study`)", True),
    Column("job_id", pa.string(), "hash of the job's configuration (model and evaluation)", True),
    Column("model_id", pa.string(), "hash of the trained model's configuration", True),
    Column("dataset", pa.string(), "canonical dataset name", True),
    Column("dataset_source", pa.string(), "how the dataset was obtained: procedural | file", True),
    Column("model", pa.string(), "method name", True),
    Column("model_params", pa.string(), f"the method's hyperparameters ({_JSON})", True),
)
TAIL_COLUMNS: tuple[Column, ...] = (
    Column("seed", pa.int64(), "the job's random seed", True),
    Column("representation", pa.string(), "mean | sampled | posterior; null for training rows"),
    Column("metric", pa.string(), "metric name; `train` for the training summary"),
    Column("key", pa.string(), "which value of the metric"),
    Column("value", pa.float64(), "the value"),
    Column("train_steps", pa.int64(), "training steps done"),
    Column("train_seconds", pa.float64(), "seconds of training (this run, resumed or not)"),
    Column("eval_seconds", pa.float64(), "seconds the metric took; null for training rows"),
    Column("job_seconds", pa.float64(), "seconds of the whole job"),
    Column("device", pa.string(), "the torch device that trained the model"),
    Column("benchmark_version", pa.string(), "version of this package"),
    Column("torch_version", pa.string(), "version of torch"),
    Column("sklearn_version", pa.string(), "version of scikit-learn"),
    Column("numpy_version", pa.string(), "version of numpy"),
    Column("python_version", pa.string(), "version of Python"),
    Column("job_config", pa.string(), f"the configuration the job id hashes ({_JSON})"),
    Column("dataset_provenance", pa.string(), f"what exactly produced the data ({_JSON})"),
    Column("finished_at", pa.timestamp("us", tz="UTC"), "when the job finished"),
    Column("provenance", pa.string(),
           f"how and where the row was produced, beyond the job's configuration ({_JSON}; "
           '`source` is "benchmark" for our jobs, "disentanglement_lib" for imported results)'),
)
COLUMNS: tuple[Column, ...] = BASE_COLUMNS + TAIL_COLUMNS
COLUMN_NAMES: frozenset[str] = frozenset(c.name for c in COLUMNS)
# The columns that identify a job and its configuration, in schema order.
JOB_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.identifies_job)
HYPERPARAMETER_TYPE = pa.float64()


def rows_schema(param_columns: Iterable[str]) -> pa.Schema:
    """Base columns, one float64 column per numeric hyperparameter of the study, then the tail."""
    params = [pa.field(name, HYPERPARAMETER_TYPE) for name in param_columns]
    return pa.schema([pa.field(c.name, c.type) for c in BASE_COLUMNS] + params
                     + [pa.field(c.name, c.type) for c in TAIL_COLUMNS])


def provenance_json(source: str, **details: Any) -> str:
    """A `provenance` cell: {"source": source, **details} as JSON with sorted keys."""
    return json.dumps({"source": source, **details}, sort_keys=True, default=str)
