"""Import disentanglement_lib's results into a results store: ``benchmark import dlib PATH``.

PATH is either a folder of model outputs as disentanglement_lib writes them (`dlib_reproduce`'s
``<model_num>/model``, ``metrics/<representation>/<metric>``, ...) or the aggregated results file
of `dlib_aggregate_results` (`dlib_files` reads both into flat records). Each model becomes one
rows file of the store with the columns, names and keys of the rows our own jobs write, so that an
imported model compares with one we trained: dlib's dataset, method and gin hyperparameters map
onto ours (`map_model`), its representations and metrics onto ours, and its result keys, which
our metrics share, are checked against the keys our scorers return (`RESULT_KEYS`). What has no
counterpart here is counted and reported, one line per kind, never silently dropped.
"""

from __future__ import annotations

import ast
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import compress, islice, repeat
from operator import is_not
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from benchmark.errors import UserError
from benchmark.importers.dlib_files import Records, read_aggregated, read_tree
from benchmark.schema import COLUMN_NAMES, rows_schema
from benchmark.spec import canonical_json, check_study_name, stable_hash
from benchmark.store import ResultsStore, atomic_write_bytes

SOURCE = "disentanglement_lib"

# dlib's `model.model` binding → our method (methods/unsupervised/vae.py's gin names);
# `@dip_vae()` is one class in dlib, two methods here, told apart by `dip_vae.dip_type`.
METHODS: dict[str, str] = {"@vae()": "beta_vae", "@annealed_vae()": "annealed_vae",
                           "@factor_vae()": "factor_vae", "@beta_tc_vae()": "beta_tc_vae"}
DIP_TYPES: dict[str, str] = {"i": "dip_vae_i", "ii": "dip_vae_ii"}
_DIP = {"lambda_od": "dip_vae.lambda_od", "lambda_d_factor": "dip_vae.lambda_d_factor"}
# Per method: our hyperparameter ← dlib's gin binding (config/unsupervised_study_v1/sweep.py);
# ours that dlib does not bind (FactorVAE's shuffle, ...) get our defaults, which are dlib's.
HYPERPARAMETERS: dict[str, dict[str, str]] = {
    "beta_vae": {"beta": "vae.beta"},
    "annealed_vae": {"c_max": "annealed_vae.c_max", "gamma": "annealed_vae.gamma",
                     "iteration_threshold": "annealed_vae.iteration_threshold"},
    "factor_vae": {"gamma": "factor_vae.gamma"},
    "dip_vae_i": _DIP,
    "dip_vae_ii": _DIP,
    "beta_tc_vae": {"beta": "beta_tc_vae.beta"},
}
# Our training setting ← dlib's binding (model_configs/shared.gin), with value translations.
TRAINING: dict[str, str] = {"steps": "model.training_steps", "batch_size": "model.batch_size",
                            "num_latent": "encoder.num_latent",
                            "learning_rate": "vae/AdamOptimizer.learning_rate",
                            "architecture": "encoder.encoder_fn",
                            "reconstruction_loss": "reconstruction_loss.loss_fn"}
TRAINING_VALUES: dict[str, dict[str, str]] = {
    "architecture": {"@conv_encoder": "conv", "@fc_encoder": "fc"},
    "reconstruction_loss": {"@bernoulli_loss": "bernoulli", "@l2_loss": "l2"},
}
IDENTITY = {"dataset": "dataset.name", "method": "model.model", "dip_type": "dip_vae.dip_type",
            "seed": "model.random_seed", "model_num": "model.model_num"}

REPRESENTATIONS: dict[str, str] = {"@mean_representation": "mean",
                                   "@sampled_representation": "sampled"}
# `evaluation.evaluation_fn` → our metric; `@downstream_task` by its `predictor.predictor_fn`.
METRICS: dict[str, str] = {"@beta_vae_sklearn": "beta_vae", "@factor_vae_score": "factor_vae",
                           "@mig": "mig", "@dci": "dci", "@sap_score": "sap",
                           "@modularity_explicitness": "modularity_explicitness",
                           "@unsupervised_metrics": "unsupervised", "@irs": "irs"}
PREDICTORS: dict[str, str] = {"@logistic_regression_cv": "downstream_lr",
                              "@gradient_boosting_classifier": "downstream_gbt"}
_DOWNSTREAM = {"mean_train_accuracy", "mean_test_accuracy", "min_train_accuracy",
               "min_test_accuracy"}
# The keys our scorers return that mean what dlib's keys of the same name mean (checked against
# the scorers in tests/test_import_dlib.py). Downstream keys are "<size>:<key>" (see _known).
RESULT_KEYS: dict[str, frozenset[str]] = {
    "beta_vae": frozenset({"train_accuracy", "eval_accuracy"}),
    "factor_vae": frozenset({"train_accuracy", "eval_accuracy"}),
    "mig": frozenset({"discrete_mig"}),
    "dci": frozenset({"informativeness_train", "informativeness_test", "disentanglement",
                      "completeness"}),
    "sap": frozenset({"SAP_score"}),
    "modularity_explicitness": frozenset({"modularity_score", "explicitness_score_train",
                                          "explicitness_score_test"}),
    "unsupervised": frozenset({"gaussian_total_correlation", "gaussian_wasserstein_correlation",
                               "gaussian_wasserstein_correlation_norm", "mutual_info_score"}),
    "irs": frozenset({"IRS"}),
    "downstream_lr": frozenset(_DOWNSTREAM),
    "downstream_gbt": frozenset(_DOWNSTREAM),
}
# Keys dlib computes differently from us (its bugs, fixed here): not imported, reported.
NOT_COMPARABLE: dict[tuple[str, str], str] = {
    ("factor_vae", "num_active_dims"): "dlib reports the number of latent dimensions, ours "
                                       "the active ones",
    ("irs", "num_active_dims"): "dlib sums the codes, ours counts the active dimensions",
}
# dlib's train_results (TPUEstimator.evaluate of the model's eval metrics) → our summary keys,
# with the factor each value is multiplied by (all 1: our `elbo` has dlib's sign,
# -(reconstruction + KL)).
TRAIN_KEYS: dict[str, float] = {"reconstruction_loss": 1.0, "kl_loss": 1.0, "regularizer": 1.0,
                                "loss": 1.0, "elbo": 1.0}
# Bookkeeping keys that become columns, not rows.
_TRAIN_COLUMNS = {"global_step": "train_steps", "elapsed_time": "train_seconds"}


@lru_cache(maxsize=4096)
def _gin_str(raw: str) -> Any:
    text = raw.strip()
    if text.startswith(("@", "%")):
        return text  # a configurable reference such as @vae()
    try:
        return ast.literal_eval(text)  # numbers, 'strings', lists, True, None: never code
    except (ValueError, SyntaxError):
        return text


def gin_value(raw: Any) -> Any:
    """A gin binding's value as dlib stores it (a string: ``"'dsprites_full'"``, ``"1."``,
    ``"@vae()"``) as a Python value; values that are not strings are returned unchanged."""
    return _gin_str(raw) if isinstance(raw, str) else raw


@dataclass(frozen=True)
class Model:
    """One imported model, in our terms."""

    dataset: str
    dataset_source: str
    model: str
    params: dict[str, Any]
    seed: int
    training: dict[str, Any]
    model_num: int | None
    train_uuid: str | None

    def config(self) -> dict[str, Any]:
        """What the model and job ids hash: "source" keeps them apart from ours."""
        return {"source": SOURCE, "dataset": self.dataset, "dataset_source": self.dataset_source,
                "model": self.model, "params": self.params, "seed": self.seed,
                "training": self.training, "model_num": self.model_num,
                "train_uuid": self.train_uuid}

    def job_id(self) -> str:
        """The id of the job that imports the model (its rows file's name)."""
        return stable_hash({"import": self.config()})


def map_model(bindings: Mapping[str, Any], train_uuid: str | None = None) -> Model | str:
    """The model that dlib's train bindings (``{"vae.beta": "4.", ...}``) describe, or why it has
    no counterpart here (a one-line reason)."""
    from benchmark.data import DATASETS, available_sources, canonical_name
    from benchmark.models import METHODS as METHODS_HERE
    from benchmark.models import validate_params

    b = {k: gin_value(v) for k, v in bindings.items() if v is not None}
    dataset = b.get(IDENTITY["dataset"])
    if dataset not in DATASETS:
        return f"dataset {dataset!r} is not one of ours"
    dataset = canonical_name(dataset)
    method_ref = b.get(IDENTITY["method"])
    if method_ref == "@dip_vae()":
        method = DIP_TYPES.get(str(b.get(IDENTITY["dip_type"])))
    else:
        method = METHODS.get(method_ref)
    if method is None:
        what = f"{method_ref} with dip_type {b.get(IDENTITY['dip_type'])!r}" \
            if method_ref == "@dip_vae()" else repr(method_ref)
        return f"method {what} is not one of ours"
    seed = _integral(b.get(IDENTITY["seed"]))
    if not isinstance(seed, int) or isinstance(seed, bool):
        return f"model.random_seed {seed!r} is not an integer"
    params = {ours: b[theirs] for ours, theirs in HYPERPARAMETERS[method].items() if theirs in b}
    spec = METHODS_HERE[method].params
    params = {k: _integral(v) if spec[k].type is int else v for k, v in params.items()}
    try:
        params = validate_params(method, params)
    except UserError as exc:
        return str(exc)
    training = {}
    for ours, theirs in TRAINING.items():
        if theirs in b:
            training[ours] = TRAINING_VALUES.get(ours, {}).get(b[theirs], b[theirs])
    model_num = _integral(b.get(IDENTITY["model_num"]))
    sources = available_sources(dataset)
    return Model(dataset, "file" if "file" in sources else sources[0], method, params, seed,
                 training, model_num if isinstance(model_num, int) else None, train_uuid)


def _integral(value: Any) -> Any:
    """An integral float as an int (a pandas round trip turns ints of a column with nulls into
    floats); anything else unchanged."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def metric_of(evaluation_fn: Any, predictor_fn: Any) -> str | None:
    """Our metric for dlib's ``evaluation.evaluation_fn`` (and ``predictor.predictor_fn``)."""
    fn = gin_value(evaluation_fn)
    if fn == "@downstream_task":
        return PREDICTORS.get(gin_value(predictor_fn))
    return METRICS.get(fn)


def _known(metric: str, key: str) -> bool:
    if metric.startswith("downstream_"):
        size, sep, key = key.partition(":")
        if not (sep and size.isdigit()):
            return False
        if key.startswith(("train_accuracy_factor_", "test_accuracy_factor_")):
            return key.rpartition("_")[2].isdigit()
    return key in RESULT_KEYS[metric]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class _Imported:
    """What was read of one model: its training summary and its evaluations."""

    model: Model
    train: dict[str, Any] | None = None
    train_file: tuple[str, str | None] = ("", None)
    evals: dict[tuple[str, str, str], tuple[float, float | None, str, str | None]] = \
        field(default_factory=dict)


@dataclass
class ImportSummary:
    study_dir: Path
    models: int = 0  # mapped models read
    written: int = 0  # rows files written now
    already: int = 0  # rows files already in the store with the same rows
    rows: int = 0  # rows written now
    unmapped: Counter = field(default_factory=Counter)  # (unit, what) → count

    def lines(self) -> list[str]:
        out = [f"imported {self.written} models ({self.rows} rows) into {self.study_dir}; "
               f"{self.already} already there"]
        out += [f"not imported: {n} {unit}: {what}"
                for (unit, what), n in sorted(self.unmapped.items(), key=lambda t: t[0])]
        return out


_UNSEEN = object()
# The record columns the collector reads; the aggregated file's others (optimizer settings,
# evaluation configs, postprocessing results: about a third of it) are skipped unparsed.
_BINDINGS = sorted({*IDENTITY.values(), *TRAINING.values(),
                    *(b for hp in HYPERPARAMETERS.values() for b in hp.values())})
_REP_FN = "postprocess_config.postprocess.postprocess_fn"
_EVAL_FN = "evaluation_config.evaluation.evaluation_fn"
_PREDICTOR_FN = "evaluation_config.predictor.predictor_fn"
_READ = frozenset({*(f"train_config.{b}" for b in _BINDINGS), _REP_FN, _EVAL_FN, _PREDICTOR_FN})
_TRAIN_RESULTS, _EVAL_RESULTS = "train_results.", "evaluation_results."


def reads_column(name: str) -> bool:
    """Whether the importer reads the flat record column ``name`` (see `read_aggregated`)."""
    return name in _READ or name.startswith((_TRAIN_RESULTS, _EVAL_RESULTS))


class _Collector:
    """Turns flat dlib records into models and their rows, counting what does not map."""

    def __init__(self, records: Records):
        self.records = records
        self.unmapped: Counter = Counter()
        self.models: dict[str, _Imported] = {}

    def run(self) -> dict[str, _Imported]:
        recs = self.records
        n = len(recs)
        nothing: list[Any] = [None] * n
        bindings = _BINDINGS
        config_cols = [recs.column(f"train_config.{b}") or nothing for b in bindings]
        uuids = recs.column("train_results.uuid") or nothing
        train_cols = [(k.partition(".")[2], v) for k, v in recs.columns.items()
                      if k.startswith(_TRAIN_RESULTS)]
        reps = recs.column(_REP_FN) or nothing
        fns = recs.column(_EVAL_FN) or nothing
        predictors = recs.column(_PREDICTOR_FN) or nothing
        results: list[list[tuple[str, Any]]] = [[] for _ in range(n)]
        for name, values in recs.columns.items():
            if name.startswith(_EVAL_RESULTS):
                key = name.partition(".")[2]
                # Most of a column is null (each metric has its own keys): find the rest in C.
                for i in compress(range(n), map(is_not, values, repeat(None))):
                    results[i].append((key, values[i]))
        # Records of one model share their train config: map it once per distinct config.
        models: dict[tuple, _Imported | str | None] = {}
        for i, ident in enumerate(zip(*config_cols, uuids)):
            acc = models.get(ident, _UNSEEN)
            if acc is _UNSEEN:
                acc = models[ident] = self._model(bindings, ident)
            if acc is None:
                self.unmapped["records", "no train_config (not a disentanglement_lib "
                                         "evaluation record)"] += 1
                continue
            if isinstance(acc, str):
                continue
            evaluation = fns[i] is not None
            if acc.train is None or not evaluation:  # a model's own folder is the train file
                acc.train = {k: v[i] for k, v in train_cols if v[i] is not None}
                acc.train_file = (recs.files[i], recs.paths[i])
            if evaluation:
                self._evaluation(acc, i, reps[i], fns[i], predictors[i], results[i])
            elif results[i]:
                self.unmapped["records", "evaluation_results without evaluation_config"] += 1
        for acc in self.models.values():
            for key, value in (acc.train or {}).items():
                if key in _TRAIN_COLUMNS or key == "uuid":
                    continue
                if key not in TRAIN_KEYS:
                    self.unmapped["values", f"train_results.{key} has no counterpart in our "
                                            "training summary"] += 1
                elif not _number(value):
                    self.unmapped["values", f"train_results.{key} is not a number"] += 1
        return self.models

    def _model(self, bindings: list[str], ident: tuple) -> _Imported | str | None:
        """The model of a record's train config and uuid (``ident``); None when the record has
        no train config, why when it does not map (counted once per distinct config)."""
        *config, train_uuid = ident
        if all(v is None for v in config):
            return None
        model = map_model(dict(zip(bindings, config)), train_uuid)
        if isinstance(model, str):
            self.unmapped["models", model] += 1
            return model
        key = canonical_json(model.config())
        acc = self.models.get(key)
        if acc is None:
            acc = self.models[key] = _Imported(model)
        return acc

    @staticmethod
    @lru_cache(maxsize=256)
    def _target(rep_fn: Any, fn: Any, predictor: Any) -> tuple[str, str] | str:
        """(representation, metric) of an evaluation's config, or why it has none here."""
        representation = REPRESENTATIONS.get(gin_value(rep_fn))
        if representation is None:
            return f"representation {gin_value(rep_fn)!r} is not one of ours"
        metric = metric_of(fn, predictor)
        if metric is None:
            what = gin_value(fn)
            if what == "@downstream_task":
                what = f"@downstream_task with predictor {gin_value(predictor)!r}"
            return f"metric {what!r} is not one of ours"
        return representation, metric

    @staticmethod
    @lru_cache(maxsize=4096)
    def _key_problem(metric: str, key: str) -> str | None:
        """Why ``metric``'s result ``key`` is not imported ("": bookkeeping, not reported);
        None when it is one of ours."""
        if key in ("elapsed_time", "uuid"):
            return ""
        if (metric, key) in NOT_COMPARABLE:
            return f"{metric}.{key} not comparable: {NOT_COMPARABLE[metric, key]}"
        if not _known(metric, key):
            return f"{metric}.{key} is not a key of our {metric}"
        return None

    def _evaluation(self, acc: _Imported, i: int, rep_fn: Any, fn: Any, predictor: Any,
                    values: list[tuple[str, Any]]) -> None:
        target = self._target(rep_fn, fn, predictor)
        if isinstance(target, str):
            self.unmapped["records", target] += 1
            return
        representation, metric = target
        seconds = next((float(v) for k, v in values if k == "elapsed_time" and _number(v)), None)
        where = (self.records.files[i], self.records.paths[i])
        for key, value in values:
            problem = self._key_problem(metric, key)
            if problem is not None:
                if problem:
                    self.unmapped["values", problem] += 1
            elif not _number(value):
                self.unmapped["values", f"{metric}.{key} is not a number"] += 1
            elif (representation, metric, key) in acc.evals:
                self.unmapped["values", "duplicates of an evaluation already read (the first "
                                        "kept)"] += 1
            else:
                acc.evals[representation, metric, key] = (float(value), seconds, *where)


def _provenance(file: str, path: str | None, model_num: int | None) -> str:
    record = {"source": SOURCE, "file": file, "model_num": model_num}
    if path is not None:
        record["path"] = path  # the file dlib's aggregation read this record from
    return json.dumps(record, sort_keys=True)


def _train_rows(train: dict[str, Any]) -> list[tuple[str, float]]:
    """The training summary's rows (key, value); the rest was counted by the collector."""
    return [(key, TRAIN_KEYS[key] * float(value)) for key, value in sorted(train.items())
            if key in TRAIN_KEYS and _number(value)]


def num_rows(imported: _Imported) -> int:
    """How many rows `model_tables` makes of the model (to tell a model already imported)."""
    return len(_train_rows(imported.train or {})) + len(imported.evals)


_VARYING = ("representation", "metric", "key", "value", "eval_seconds", "provenance")
TABLE_CHUNK = 128  # models whose rows are converted to Arrow together (~30 MB of rows)


def _job_values(study: str, imported: _Imported, params: list[str]) -> dict[str, Any]:
    """The values every row of the model's job shares, by column (hyperparameters: ``params``)."""
    m = imported.model
    config = m.config()
    train = imported.train or {}
    steps, seconds = (train.get(theirs) for theirs in _TRAIN_COLUMNS)
    return {
        "study": study, "job_id": m.job_id(), "model_id": stable_hash(config),
        "dataset": m.dataset, "dataset_source": m.dataset_source, "model": m.model,
        "model_params": canonical_json(m.params),
        **{c: float(m.params[c]) if c in m.params else None for c in params},
        "seed": m.seed,
        "train_steps": int(steps) if _number(steps) else None,
        "train_seconds": float(seconds) if _number(seconds) else None,
        "job_config": json.dumps(config, sort_keys=True),
    }


def _varying_rows(imported: _Imported) -> list[tuple]:
    """The model's rows as tuples of the `_VARYING` columns: training summary, then evaluations
    by representation (mean before sampled), metric and key."""
    num = imported.model.model_num
    prov = _provenance(*imported.train_file, num)
    rows = [(None, "train", key, value, None, prov)
            for key, value in _train_rows(imported.train or {})]
    provs = {where: _provenance(*where, num) for where in {v[2:] for v in imported.evals.values()}}
    return rows + [(rep, metric, key, value, seconds, provs[file, path])
                   for (rep, metric, key), (value, seconds, file, path)
                   in sorted(imported.evals.items())]  # keys are unique: values never compared


def model_tables(study: str, models: Iterable[_Imported],
                 schema: pa.Schema) -> Iterator[tuple[str, pa.Table]]:
    """(job id, rows) of each imported model, with the columns of our jobs' rows (``schema``:
    `rows_schema` of the study's hyperparameter columns). Converted TABLE_CHUNK models at a time,
    a column at a time: a value a whole job shares (the long job_config among them) is converted
    once and repeated by Arrow, and each model's table is a slice of its chunk's (no copy)."""
    params = [f.name for f in schema if f.name not in COLUMN_NAMES]
    models = iter(models)
    while chunk := list(islice(models, TABLE_CHUNK)):
        shared: dict[str, list[Any]] = {}
        varying: dict[str, list[Any]] = {c: [] for c in _VARYING}
        counts = []
        for imported in chunk:
            for column, value in _job_values(study, imported, params).items():
                shared.setdefault(column, []).append(value)
            rows = _varying_rows(imported)
            counts.append(len(rows))
            for column, values in zip(varying.values(), zip(*rows)):
                column.extend(values)
        owner = pa.array(np.repeat(np.arange(len(chunk), dtype=np.int32), counts))
        table = pa.Table.from_arrays(
            [pa.array(varying[f.name], f.type) if f.name in varying
             else pa.array(shared[f.name], f.type).take(owner) if f.name in shared
             else pa.nulls(len(owner), f.type) for f in schema], schema=schema)  # device, ...
        start = 0
        for job_id, n in zip(shared["job_id"], counts):
            yield job_id, table.slice(start, n)
            start += n


def import_dlib(path: str | Path, study: str, results_dir: str | Path = "results",
                workers: int = 2, show_progress: bool | None = None) -> ImportSummary:
    """Imports disentanglement_lib's results at ``path`` (a folder of model outputs or an
    aggregated results file) into ``<results_dir>/<study>``: one rows file per model, written
    atomically (`ResultsStore.write_tables`, ``workers`` encoding threads); a model whose rows
    file already holds the same number of rows is left alone, so importing twice adds nothing.
    A malformed JSON file is a UserError naming it, raised before anything is written.
    ``show_progress`` (default: whether stderr is a terminal) draws a bar while writing."""
    try:
        check_study_name(study)
    except ValueError as exc:
        raise UserError(f"--study: {exc}") from None
    path = Path(path)
    if not path.exists():
        raise UserError(f"nothing to import at {path}: no such file or folder")
    records = read_tree(path) if path.is_dir() else read_aggregated(path, reads_column)
    if not len(records):
        raise UserError(f"no disentanglement_lib results under {path} (expected */results/json/"
                        "evaluation_results.json files or an aggregated results.json)")
    collector = _Collector(records)
    models = collector.run()
    del records, collector.records  # the parsed file: the models hold what is imported
    store = ResultsStore.for_study(results_dir, study)
    summary = ImportSummary(store.root, models=len(models), unmapped=collector.unmapped)
    param_columns = sorted({name for imp in models.values() for name, v in imp.model.params.items()
                            if _number(v)})
    try:
        present = {e.name for e in os.scandir(store.rows_dir)}
    except (FileNotFoundError, NotADirectoryError):
        present = set()
    todo = []
    for imported in models.values():
        target, n = store.rows_path(imported.model.job_id()), num_rows(imported)
        if target.name in present and _num_rows(target) == n:
            summary.already += 1
        else:
            todo.append(imported)
            summary.rows += n
    schema = rows_schema(param_columns)
    if show_progress is None:
        show_progress = sys.stderr.isatty()
    with tqdm(total=len(todo), unit="model", desc="rows files", disable=not show_progress,
              file=sys.stderr, leave=False, dynamic_ncols=True) as bar:
        summary.written = store.write_tables(
            model_tables(study, todo, schema), workers=workers,
            progress=bar.update)
    _write_marker(store, path)
    return summary


def _num_rows(path: Path) -> int | None:
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, ValueError):  # unreadable (say, torn by a crash): written again
        return None


def _write_marker(store: ResultsStore, path: Path) -> None:
    previous = store.import_record() or {}
    paths = set(previous.get("paths", [])) | {str(path.resolve())}
    record = {"source": SOURCE, "paths": sorted(paths)}
    atomic_write_bytes(store.import_path, (json.dumps(record, indent=2) + "\n").encode())
