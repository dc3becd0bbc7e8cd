"""Study specs: load and validate a YAML spec, expand its grid into jobs.

A spec is data, in the spirit of disentanglement_lib's `utils/hyperparams.py` sweeps: datasets ×
methods × (swept hyperparameters) × seeds. A job's id is a hash of its canonical configuration, so
the same configuration has the same id on any machine and in any order of the YAML keys.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from benchmark.errors import UserError
from benchmark.schema import COLUMN_NAMES
from benchmark.settings import (
    TrainingSettings,
    check_offered,
    model_id_settings,
    validation_message,
)

DEFAULT_VIEW_POINTS = 2000  # figures: observations per t-SNE map (FigureSettings.view_points)
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
Scalar = bool | int | float | str


def check_study_name(v: str) -> str:
    """``v`` if it can name a study; ValueError otherwise."""
    # The name becomes a folder under the results directory: nothing that could leave it.
    if not _STUDY_NAME.match(v) or v in {".", ".."} or ".." in v:
        raise ValueError(
            f"study name {v!r} must be letters, digits, '_', '-' or '.', start with a letter or "
            "digit and contain no '..' (it names a folder under the results directory)"
        )
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetEntry(_Strict):
    name: str
    source: Literal["procedural", "file"] = "procedural"


class SeedRange(_Strict):
    start: int = Field(0, ge=0)
    count: int = Field(gt=0)


class EvaluationSettings(_Strict):
    metrics: list[str] | Literal["all"] = "all"
    representations: list[Literal["mean", "sampled"]] = ["mean", "sampled"]
    seed: int = Field(0, ge=0)
    overrides: dict[str, dict[str, Scalar | list[Scalar]]] = {}

    @field_validator("representations")
    @classmethod
    def _nonempty_unique(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one representation is needed")
        if len(set(v)) != len(v):
            raise ValueError("representations are listed twice")
        return v


class Resources(_Strict):
    """What one unit of work (a job, or a pack of them) asks of a cluster (used by the slurm and
    ray executors), and how many models a unit trains at once. Not in any job id."""

    cpus_per_job: int = Field(1, gt=0)
    gpus_per_job: int = Field(0, ge=0)
    mem_gb: float = Field(8.0, gt=0)
    time_minutes: int = Field(24 * 60, gt=0)
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    jobs_per_task: int = Field(1, gt=0)
    # Models trained together on one device (`benchmark.packing`; `benchmark run --pack K`): jobs
    # of one method, dataset and training settings run as packs of up to K, each pack one unit of
    # work (one local worker, array task or Ray task, asking for the resources above). An
    # execution choice: no job or model id changes; rows say it in `provenance`.
    models_per_device: int = Field(1, gt=0)
    # Evaluation off the device (`benchmark.eval_pipeline`): a unit's device encodes the factor
    # grid once per model and a pool of `eval_workers` CPU processes (each with `cpus_per_job`
    # threads) scores it while the device trains the next unit. "auto": on when training runs on
    # CUDA (on a CPU, training and the fits would compete for the same cores). A pipelined Slurm or
    # Ray unit asks for cpus_per_job x (1 + eval_workers) CPUs; locally the default pool is the
    # worker's cores left after training (at least 1), on a cluster 1.
    pipeline_eval: Literal["auto", "on", "off"] = "auto"
    eval_workers: int | None = Field(None, gt=0)
    sbatch_extra: dict[str, Scalar] = {}
    # Cluster back-ends (benchmark/executors/slurm.py, ray.py):
    max_retries: int = Field(3, ge=0)  # Ray: retries of a job whose worker died; Slurm: requeues on timeout
    sbatch_setup: list[str] = []  # shell lines run before each Slurm task (module load, venv activate)


class FigureSettings(_Strict):
    """How the study's figures are drawn (analysis/, README "Figures"). Not in any job id."""

    # Observations per t-SNE map of a model's mean codes (0: no t-SNE maps or interpolations).
    view_points: int = Field(DEFAULT_VIEW_POINTS, ge=0)


class StudySpec(_Strict):
    study: str
    description: str = ""
    datasets: list[DatasetEntry | str]
    methods: dict[str, dict[str, Scalar | list[Scalar]] | None]
    seeds: list[int] | SeedRange
    training: TrainingSettings = TrainingSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    resources: Resources = Resources()
    figures: FigureSettings = FigureSettings()

    @field_validator("study")
    @classmethod
    def _safe_study_name(cls, v: str) -> str:
        return check_study_name(v)

    @field_validator("training")
    @classmethod
    def _trains(cls, v: TrainingSettings) -> TrainingSettings:
        if v.steps < 1:  # 0 steps is for calls from Python (an untrained encoder), not for a study
            raise ValueError(f"steps must be at least 1 in a study, got {v.steps}")
        check_offered(v)
        return v

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, v: list[DatasetEntry | str]) -> list[DatasetEntry | str]:
        if not v:
            raise ValueError("the study lists no dataset")
        return v

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: dict) -> dict:
        if not v:
            raise ValueError("the study lists no method")
        for method, params in v.items():
            for name, value in (params or {}).items():
                if isinstance(value, list) and not value:
                    raise ValueError(f"{method}.{name} sweeps over an empty list")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int] | SeedRange) -> list[int] | SeedRange:
        if isinstance(v, list):
            if not v:
                raise ValueError("the study lists no seed")
            if any(s < 0 for s in v):
                raise ValueError(f"seeds must be non-negative, got {min(v)}")
            if len(set(v)) != len(v):
                raise ValueError("a seed is listed twice")
        return v

    @model_validator(mode="after")
    def _no_duplicate_datasets(self) -> StudySpec:
        keys = [(d.name, d.source) for d in self.dataset_entries()]
        if len(set(keys)) != len(keys):
            raise ValueError("a dataset is listed twice with the same source")
        return self

    def dataset_entries(self) -> list[DatasetEntry]:
        return [DatasetEntry(name=d) if isinstance(d, str) else d for d in self.datasets]

    def canonical_datasets(self) -> list[DatasetEntry]:
        """Entries with aliases resolved ("dsprites" is "dsprites_full"), as job ids hash them."""
        from benchmark.data import canonical_name

        return [DatasetEntry(name=canonical_name(d.name), source=d.source)
                for d in self.dataset_entries()]

    def seed_list(self) -> list[int]:
        if isinstance(self.seeds, SeedRange):
            return list(range(self.seeds.start, self.seeds.start + self.seeds.count))
        return list(self.seeds)


@dataclass(frozen=True)
class Job:
    """One trained and evaluated model: everything a worker needs, picklable."""

    study: str
    job_id: str
    model_id: str
    dataset: str
    dataset_source: str
    model: str
    params: dict[str, Any]
    seed: int
    training: dict[str, Any]
    evaluation: dict[str, Any]
    param_columns: tuple[str, ...] = ()
    resources: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None

    def config(self) -> dict[str, Any]:
        """The canonical configuration that the job id hashes."""
        return job_config(self.model_config(), self.evaluation)

    @property
    def threads(self) -> int:
        """The torch threads the job trains, encodes and scores with: `resources.cpus_per_job`.
        A property of the job, not of the executor or of how many jobs share the machine, because
        CPU kernels split their sums by thread count (rows would differ in the last digits).
        Resources are not in the job id: the rows' `provenance` records it."""
        return Resources.model_validate(self.resources).cpus_per_job

    def model_config(self) -> dict[str, Any]:
        training = model_id_settings(self.training)
        return {
            "dataset": self.dataset,
            "dataset_source": self.dataset_source,
            "model": self.model,
            "params": self.params,
            "seed": self.seed,
            "training": training,
        }

    def matches(self, key: str, value: str) -> bool:
        """Whether `--filter key=value` selects this job."""
        fields = {
            "dataset": self.dataset,
            "source": self.dataset_source,
            "dataset_source": self.dataset_source,
            "model": self.model,
            "method": self.model,
            "seed": self.seed,
            "job_id": self.job_id,
            "model_id": self.model_id,
            **self.params,
        }
        if key not in fields:
            return False
        actual = fields[key]
        if isinstance(actual, bool | str):
            return str(actual) == value
        try:
            return float(actual) == float(value)
        except ValueError:
            return False


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:16]


def job_config(model_config: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any]:
    return {**model_config, "evaluation": evaluation}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def load_spec(path: str | Path) -> StudySpec:
    """Reads and validates a spec; every problem is a one-line `UserError`."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"spec {path} is a directory, not a YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"spec file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"spec {path} cannot be read: {_one_line(exc)}") from None
    try:
        raw = yaml.safe_load(text)  # safe: never constructs Python objects from tags
    except yaml.YAMLError as exc:
        raise UserError(f"spec {path}: invalid YAML: {_one_line(exc)}") from None
    if not isinstance(raw, dict):
        raise UserError(f"spec {path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"spec {path}: {validation_message(exc)}") from None
    except UserError as exc:  # from TrainingSettings, which reports its own errors
        raise UserError(f"spec {path}: {exc}") from None
    _check_names(spec, path)
    return spec


def _check_names(spec: StudySpec, path: Path) -> None:
    from benchmark.data import DATASETS, available_sources
    from benchmark.metrics.registry import METRICS

    for entry in spec.dataset_entries():
        if entry.name not in DATASETS:
            raise UserError(
                f"spec {path}: unknown dataset {entry.name!r} (known: {', '.join(sorted(DATASETS))})"
            )
        sources = available_sources(entry.name)
        if entry.source not in sources:
            raise UserError(f"spec {path}: dataset {entry.name!r} has no {entry.source!r} source "
                            f"(available: {', '.join(sources)})")
    ev = spec.evaluation
    names = [] if ev.metrics == "all" else ev.metrics
    for name in list(names) + list(ev.overrides):
        if name not in METRICS:
            raise UserError(
                f"spec {path}: unknown metric {name!r} (known: {', '.join(sorted(METRICS))})"
            )


def expand(spec: StudySpec, data_dir: str | None = None) -> list[Job]:
    """The study's jobs, datasets varying slowest and seeds fastest (disentanglement_lib's order)."""
    from benchmark.models.registry import METHODS, validate_params

    settings: list[tuple[str, dict[str, Any]]] = []
    for method, raw_params in spec.methods.items():
        if method not in METHODS:
            raise UserError(f"unknown method {method!r} (known: {', '.join(sorted(METHODS))})")
        raw_params = raw_params or {}
        names = list(raw_params)
        grids = [v if isinstance(v, list) else [v] for v in raw_params.values()]
        for combo in itertools.product(*grids):
            params = validate_params(method, dict(zip(names, combo, strict=True)))
            clash = COLUMN_NAMES.intersection(params)  # one column per hyperparameter: no shadowing
            if clash:
                raise UserError(f"hyperparameter {sorted(clash)[0]!r} of {method} names a results column")
            settings.append((method, params))
    # One float column per numeric hyperparameter (string options live in model_params only).
    param_columns = tuple(sorted({
        name for _, params in settings for name, value in params.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }))

    evaluation = spec.evaluation.model_dump()
    if evaluation["metrics"] == "all":
        from benchmark.metrics.registry import default_metrics

        # Hashed into every job id: "all" must stay today's set (opt-in metrics are not in it).
        evaluation["metrics"] = sorted(default_metrics())
    training = spec.training.model_dump()
    resources = spec.resources.model_dump()
    jobs = []
    entries = spec.canonical_datasets()
    if len({(e.name, e.source) for e in entries}) != len(entries):
        raise UserError("a dataset is listed twice with the same source (under an alias)")
    for entry in entries:
        for method, params in settings:
            for seed in spec.seed_list():
                job = Job(
                    study=spec.study,
                    job_id="",
                    model_id="",
                    dataset=entry.name,
                    dataset_source=entry.source,
                    model=method,
                    params=params,
                    seed=seed,
                    training=training,
                    evaluation=evaluation,
                    param_columns=param_columns,
                    resources=resources,
                    data_dir=data_dir,
                )
                model_id = stable_hash(job.model_config())
                job_id = stable_hash(job.config())
                jobs.append(replace(job, job_id=job_id, model_id=model_id))
    if not jobs:
        raise UserError("the study's grid is empty")
    duplicates = [jid for jid, n in Counter(j.job_id for j in jobs).items() if n > 1]
    if duplicates:
        raise UserError(f"the grid has {len(duplicates)} duplicate jobs (the same setting listed twice)")
    return jobs


def select(jobs: list[Job], filters: list[str] | None = None, limit: int | None = None) -> list[Job]:
    """Applies `--filter KEY=VALUE` (all must match) and `--limit N`."""
    for item in filters or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--filter expects KEY=VALUE, got {item!r}")
        jobs = [j for j in jobs if j.matches(key.strip(), value.strip())]
    if limit is not None:
        if limit < 0:
            raise UserError(f"--limit must be non-negative, got {limit}")
        jobs = jobs[:limit]
    return jobs
