"""Run one job: train (or resume), build the representations, evaluate, write rows.

This is the only place where orchestration meets the science: it calls the dataset, training and
metric packages through their public functions and turns what they return into store rows.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.allocator import die_with_parent, process_cores
from benchmark.memory import peak_rss_mb, reset_peak_rss
from benchmark.outcomes import FailureKind, JobOutcome, Status
from benchmark.schema import provenance_json
from benchmark.settings import TrainingSettings
from benchmark.spec import Job, Resources, canonical_json
from benchmark.store import ResultsStore, format_exception, now_utc, versions

log = logging.getLogger(__name__)


def run_job(job: Job, store: ResultsStore, progress: Callable[[str], None] | None = None) -> JobOutcome:
    """Trains and evaluates `job` unless its rows are already in `store`; never raises for a job's
    own failure: that is recorded in the store and returned as a failed outcome."""
    if store.is_done(job.job_id):
        return JobOutcome(job.job_id, Status.SKIPPED)
    store.quarantine_corrupt_rows(job.job_id)  # present but unsound: set aside, run again
    with _job_threads(job):
        t0 = time.perf_counter()
        try:
            data, model, train_seconds = _train(job, store, progress)
        except Exception as exc:  # noqa: BLE001 - one job's failure must not stop the study
            return _failed(job, store, exc, t0)
        return _settle([_hand_over(job, store, data, model, train_seconds, t0, progress)])[0]


def run_pack(jobs: list[Job], store: ResultsStore,
             progress: Callable[[str], None] | None = None) -> list[JobOutcome]:
    """`run_job` for jobs that `pack_units` put in one pack: their models train together
    (`benchmark.packing.train_pack`, each bitwise or numerically the model `train()` gives, each
    from and to its own checkpoint), then each is evaluated and written exactly as `run_job` does.
    One outcome per job, in order; one model's failure (a `Diverged` model, a bad checkpoint) is
    that job's failure only."""
    outcomes = {j.job_id: JobOutcome(j.job_id, Status.SKIPPED) for j in jobs if store.is_done(j.job_id)}
    todo = [j for j in jobs if j.job_id not in outcomes]
    for job in todo:
        store.quarantine_corrupt_rows(job.job_id)  # present but unsound: set aside, run again
    if len(todo) == 1:  # nothing to pack with: train() itself
        outcomes[todo[0].job_id] = run_job(todo[0], store, progress)
    elif todo:
        with _job_threads(todo[0]):
            outcomes.update(_run_packed(todo, store, progress))
    return [outcomes[j.job_id] for j in jobs]


def _run_packed(todo: list[Job], store: ResultsStore,
                progress: Callable[[str], None] | None) -> dict[str, JobOutcome]:
    t0 = time.perf_counter()
    try:
        data, models, train_seconds, strategy = _train_pack(todo, store, progress)
    except Exception as exc:  # noqa: BLE001 - the pack as a whole could not start (its dataset)
        data, models, train_seconds, strategy = None, [exc] * len(todo), 0.0, ""
    from benchmark.packing import packable

    handed: list[JobOutcome | _Handed] = []
    for job, model in zip(todo, models, strict=True):
        if isinstance(model, Exception):
            handed.append(_failed(job, store, model, t0))
            continue
        # which models shared a computation, and how (loop: train()'s own kernels, bitwise)
        pack = {"size": len(todo), "strategy": strategy if packable(model.system) is None else "alone"}
        handed.append(_hand_over(job, store, data, model, train_seconds, t0, progress, pack=pack))
    return {o.job_id: o for o in _settle(handed)}


def _hand_over(job: Job, store: ResultsStore, data: Any, model: Any, train_seconds: float,
               t0: float, progress: Callable[[str], None] | None,
               **provenance: Any) -> JobOutcome | _Handed:
    """Evaluates a trained model and writes its rows (its outcome), or, in a lane of
    `benchmark.eval_pipeline`, encodes its grid on the device and hands the evaluation to the
    lane's pool (a future outcome). `resources.pipeline_eval` decides whether the model is scored
    from its grid tables, wherever that runs, so the rows never depend on the lane."""
    from benchmark import eval_pipeline as pipe

    say = progress or (lambda msg: None)
    try:
        res = Resources.model_validate(job.resources)
        codes = None
        if pipe.pipeline_on(res.pipeline_eval, str(getattr(model, "device", "cpu")).split(":")[0]):
            codes, why = pipe.encode_grid(data, model, job.evaluation["representations"],
                                          _lookup_bytes(job))
            if codes is None:
                say(f"{job.job_id} evaluated on the device: {why}")
        if codes is None:
            return _write(job, store, _evaluate(job, data, model, train_seconds, progress,
                                                **provenance), t0)
        provenance["grid_tables"] = True  # scored from its grid tables (with or without a pool)
        pool = pipe.current_pool()
        if pool is None:
            return evaluate_encoded(job, str(store.root), codes, train_seconds, provenance,
                                    time.perf_counter() - t0)
        say(f"{job.job_id} encoded; evaluating in a pool of {pool.workers} CPU processes")
        return _Handed(job, store, t0, pool.submit(evaluate_encoded, job, str(store.root), codes,
                                                   train_seconds, provenance,
                                                   time.perf_counter() - t0))
    except Exception as exc:  # noqa: BLE001 - one job's failure must not stop the study
        return _failed(job, store, exc, t0)


@dataclass
class _Handed:
    """A model whose evaluation runs in the lane's pool."""

    job: Job
    store: ResultsStore
    t0: float
    future: Future


def _settle(handed: list[JobOutcome | _Handed]) -> list[JobOutcome]:
    """The outcomes of handed-over models, once the device is free for the lane's next unit; a pool
    worker that died fails only the evaluations it held (their checkpoints are final: a re-run
    evaluates them without training)."""
    from benchmark.eval_pipeline import device_free

    device_free()
    outcomes = []
    for item in handed:
        if isinstance(item, _Handed):
            try:
                item = item.future.result()
            except Exception as exc:  # noqa: BLE001 - the evaluating process died or was stopped
                item = _failed(item.job, item.store, RuntimeError(
                    f"evaluation worker process died ({type(exc).__name__}: {exc})"), item.t0,
                    FailureKind.WORKER_DIED)
        outcomes.append(item)
    return outcomes


def pack_units(jobs: list[Job]) -> list[list[Job]]:
    """`jobs` as units of work: jobs that can train as one pack (`pack_key`) are grouped, in job
    order, into packs of up to their `resources.models_per_device`; every other job is a unit of
    its own. Torch-free: the driver groups, a worker runs a unit."""
    units: list[list[Job]] = []
    open_packs: dict[tuple, list[Job]] = {}
    for job in jobs:
        size = int(job.resources.get("models_per_device", 1))
        if size <= 1:
            units.append([job])
            continue
        key = pack_key(job)
        unit = open_packs.get(key)
        if unit is None or len(unit) >= size:
            unit = open_packs[key] = []
            units.append(unit)
        unit.append(job)
    return units


def pack_key(job: Job) -> tuple:
    """What the jobs of one pack share: what `train_pack` takes once (method, data, training
    settings) and one request of resources."""
    return (job.study, job.model, job.dataset, job.dataset_source, job.data_dir,
            canonical_json(job.training), canonical_json(job.resources))


@contextmanager
def _job_threads(job: Job) -> Iterator[None]:
    """Runs a job, or a pack (whose jobs share their resources, `pack_key`), with the job's torch
    threads (`Job.threads`); at the end, stops the metric fits' idle worker processes: they would
    outlive the job by joblib's 300 s idle timeout, and the process that ran it would wait for them
    when it exits."""
    import torch

    from benchmark.eval_pipeline import current_pool
    from benchmark.metrics.parallel import release_workers

    if current_pool() is not None:  # in a lane: it set the threads once for its overlapping units
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(job.threads)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        release_workers()


def _failed(job: Job, store: ResultsStore, exc: Exception, t0: float,
            kind: FailureKind | None = None) -> JobOutcome:
    from benchmark.training import Diverged

    reason, tb = format_exception(exc)
    if kind is None:
        kind = FailureKind.DIVERGED if isinstance(exc, Diverged) else FailureKind.ERROR
    extra = {"step": exc.step} if isinstance(exc, Diverged) else {}
    outcome = store.record_failure(job.job_id, reason, kind, traceback=tb, **extra)
    outcome.seconds = time.perf_counter() - t0
    return outcome


def _write(job: Job, store: ResultsStore, rows: list[dict[str, Any]], t0: float) -> JobOutcome:
    for row in rows:
        row["job_seconds"] = time.perf_counter() - t0
    store.write_rows(job.job_id, rows, job.param_columns)
    return JobOutcome(job.job_id, Status.DONE, seconds=time.perf_counter() - t0)


def _on_step(job: Job, say: Callable[[str], None]) -> Callable[[int, int, dict[str, float]], None]:
    def on_step(step: int, total: int, values: dict[str, float]) -> None:
        # Training reports every `log_every` steps and at each checkpoint.
        loss = values.get("loss", float("nan"))
        say(f"{job.job_id} {job.model} seed {job.seed}: step {step}/{total} loss {loss:.1f}")

    return on_step


def _train(job: Job, store: ResultsStore,
           progress: Callable[[str], None] | None) -> tuple[Any, Any, float]:
    """The job's dataset, its trained model and its training wall time."""
    from benchmark.data import get_dataset
    from benchmark.training import train

    reset_peak_rss()
    say = progress or (lambda msg: None)
    data = get_dataset(job.dataset, job.dataset_source, job.data_dir)
    config = TrainingSettings(**job.training)

    t0 = time.perf_counter()
    checkpoint_dir = _checkpoint_dir(job, store, say)
    model = train(
        job.model,
        job.params,
        data,
        seed=job.seed,
        config=config,
        checkpoint_dir=checkpoint_dir,
        progress=_on_step(job, say),
    )
    return data, model, time.perf_counter() - t0


def _checkpoint_dir(job: Job, store: ResultsStore, say: Callable[[str], None]) -> Path:
    """The job's checkpoint folder, with unreadable checkpoints set aside in the store's
    quarantine (training then resumes from the previous one, or starts again)."""
    from benchmark.training import unreadable_checkpoints

    checkpoint_dir = store.checkpoint_dir(job.model_id)
    for path, problem in unreadable_checkpoints(checkpoint_dir):
        store.quarantine(path, problem)
        say(f"{job.job_id} {path.name} moved to {store.quarantine_dir}: {problem}")
    return checkpoint_dir


def _train_pack(jobs: list[Job], store: ResultsStore, progress: Callable[[str], None] | None):
    """The pack's dataset, its models (or each one's exception), the pack's training wall time and
    the strategy it ran with."""
    from benchmark.data import get_dataset
    from benchmark.packing import resolve_strategy, train_pack
    from benchmark.training import resolve_device

    say = progress or (lambda msg: None)
    first = jobs[0]
    data = get_dataset(first.dataset, first.dataset_source, first.data_dir)
    config = TrainingSettings(**first.training)
    strategy = resolve_strategy("auto", resolve_device(config.device))
    say(f"{first.job_id} training a pack of {len(jobs)} {first.model} models ({strategy})")
    t0 = time.perf_counter()
    models = train_pack(first.model, [j.params for j in jobs], data, [j.seed for j in jobs], config,
                        checkpoint_dirs=[_checkpoint_dir(j, store, say) for j in jobs],
                        progress=[_on_step(j, say) for j in jobs], strategy=strategy)
    return data, models, time.perf_counter() - t0, strategy


def evaluate_encoded(job: Job, store_root: str, codes: Any, train_seconds: float,
                     provenance: dict[str, Any], elapsed: float) -> JobOutcome:
    """What a pool worker of `benchmark.eval_pipeline` runs (and a model scored from its grid
    tables outside a lane): `_evaluate` on the model's tables, then its rows written, or its
    failure recorded; `elapsed` is the job's time before the hand-over."""
    from benchmark.data import get_dataset
    from benchmark.eval_pipeline import GridIndexed, table_model

    store = ResultsStore(store_root)
    t0 = time.perf_counter() - elapsed
    with _job_threads(job):
        try:
            reset_peak_rss()
            data = GridIndexed(get_dataset(job.dataset, job.dataset_source, job.data_dir))
            rows = _evaluate(job, data, table_model(codes), train_seconds, None,
                             device=codes.device, **provenance)
            return _write(job, store, rows, t0)
        except Exception as exc:  # noqa: BLE001 - this job's failure only
            return _failed(job, store, exc, t0)


def _evaluate(job: Job, data: Any, model: Any, train_seconds: float,
              progress: Callable[[str], None] | None, device: str | None = None,
              **provenance: Any) -> list[dict[str, Any]]:
    """The rows of a trained `model`: its training summary and every metric of `job.evaluation`;
    `provenance` adds to the rows' provenance (a pack's size and strategy); `device` is where it
    trained when `model` is not that model (its grid tables)."""
    import torch
    from joblib import parallel_config
    from sklearn.exceptions import ConvergenceWarning

    from benchmark.metrics import gbt
    from benchmark.metrics.registry import get_metric
    from benchmark.metrics.suite import evaluate

    say = progress or (lambda msg: None)
    ev = job.evaluation
    represents = {
        name: model.represent(name, seed=ev["seed"]) if name == "sampled" else model.represent(name)
        for name in ev["representations"]
    }
    gaussian = None
    if any(get_metric(m).posterior is not None for m in ev["metrics"]) and model.has_posterior:
        gaussian = model.represent_gaussian()  # for mig_exact & co., computed once per model
    say(f"{job.job_id} evaluating {len(ev['metrics'])} metrics on {', '.join(represents)}")
    # The fits' worker processes die with this one (a killed job leaves none behind).
    with warnings.catch_warnings(), parallel_config(backend="loky", initializer=die_with_parent,
                                                    initargs=(os.getpid(),)):
        # sklearn's deprecation and convergence chatter, once per fit, would bury the progress bar.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        gbt.reset_fit_counts()
        metric_rows = evaluate(
            data, represents, seed=ev["seed"], metrics=ev["metrics"], overrides=ev["overrides"],
            progress=lambda done, total, label: say(f"{job.job_id} {label} ({done}/{total})"),
            # Training's threads are the job's; the fits may use every core its process was
            # given (their results do not depend on how many run at once).
            n_jobs=max(job.threads, process_cores()),
            gaussian=gaussian, memory_bytes=_memory_bytes(job),
        )
    for r in metric_rows:
        if "skipped" in r:  # a posterior metric this model or dataset cannot give: NaN row
            log.warning("%s: %s skipped: %s", job.job_id, r["metric"], r["skipped"])
            say(f"{job.job_id} {r['metric']} skipped: {r['skipped']}")

    device = device if device is not None else getattr(model, "device", "cpu")
    common = _common_columns(job, model.steps, train_seconds, device)
    common["dataset_provenance"] = json.dumps(getattr(data, "provenance", {}), sort_keys=True,
                                              default=str)
    # Which back-end fitted the GBTs of DCI / downstream_gbt (a sklearn upgrade that disables the
    # port: 3x slower fits, same values), the threads the job ran with, its peak memory, its
    # pack if any, where its batches were drawn when on the device (benchmark.data.device), and
    # the training's execution options away from their defaults.
    if getattr(model, "data_stream", None):
        provenance = {**provenance, "data": model.data_stream}
    common["provenance"] = provenance_json("benchmark", gbt_fits=gbt.fit_counts(),
                                           torch_threads=torch.get_num_threads(), **peak_rss_mb(),
                                           **provenance, **getattr(model, "execution", {}))
    rows = [
        {**common, "representation": None, "metric": "train", "key": key, "value": float(value),
         "eval_seconds": None}
        for key, value in sorted(model.summary.items())
    ]
    rows += [
        {**common, "representation": r["representation"], "metric": r["metric"], "key": r["key"],
         "value": float(r["value"]), "eval_seconds": float(r["eval_seconds"])}
        for r in metric_rows
    ]
    return rows


def _common_columns(job: Job, steps: int, train_seconds: float, device: str) -> dict[str, Any]:
    params = {name: _as_float(job.params.get(name)) for name in job.param_columns}
    return {
        "study": job.study,
        "job_id": job.job_id,
        "model_id": job.model_id,
        "dataset": job.dataset,
        "dataset_source": job.dataset_source,
        "model": job.model,
        "model_params": canonical_json(job.params),
        **params,
        "seed": job.seed,
        "train_steps": int(steps),
        "train_seconds": train_seconds,
        "device": str(device),
        **versions(),
        "job_config": json.dumps(job.config(), sort_keys=True),
        "finished_at": now_utc(),
    }


def _lookup_bytes(job: Job) -> int:
    """The grid lookup's memory (`suite.LOOKUP_SHARE` of the job's), which the grid tables of
    `benchmark.eval_pipeline` must fit too."""
    from benchmark.metrics.suite import DEFAULT_LOOKUP_BYTES, LOOKUP_SHARE

    memory = _memory_bytes(job)
    return DEFAULT_LOOKUP_BYTES if memory is None else int(LOOKUP_SHARE * memory)


def _memory_bytes(job: Job) -> int | None:
    """The job's memory (the spec's `resources.mem_gb`) in bytes, for the metrics' budget."""
    mem_gb = job.resources.get("mem_gb")
    return None if mem_gb is None else int(float(mem_gb) * 2**30)


def _as_float(value: Any) -> float | None:
    return None if value is None else float(value)  # param_columns are the numeric ones
