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
from collections.abc import Callable
from typing import Any

from benchmark.allocator import die_with_parent, process_cores
from benchmark.memory import peak_rss_mb, reset_peak_rss
from benchmark.outcomes import FailureKind, JobOutcome, Status, record_failure
from benchmark.schema import provenance_json
from benchmark.settings import TrainingSettings
from benchmark.spec import Job, canonical_json
from benchmark.store import ResultsStore, format_exception, now_utc, versions

log = logging.getLogger(__name__)


def run_job(job: Job, store: ResultsStore, progress: Callable[[str], None] | None = None) -> JobOutcome:
    """Trains and evaluates `job` unless its rows are already in `store`; never raises for a job's
    own failure: that is recorded in the store and returned as a failed outcome."""
    if store.is_done(job.job_id):
        return JobOutcome(job.job_id, Status.SKIPPED)
    import torch

    from benchmark.metrics.parallel import release_workers

    store.quarantine_corrupt_rows(job.job_id)  # present but unsound: set aside, run again
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(job.threads)
    try:
        rows = _train_and_evaluate(job, store, progress)
        for row in rows:
            row["job_seconds"] = time.perf_counter() - t0
        store.write_rows(job.job_id, rows, job.param_columns)  # a full disk fails the job here
    except Exception as exc:  # noqa: BLE001 - one job's failure must not stop the study
        from benchmark.training import Diverged

        reason, tb = format_exception(exc)
        kind = FailureKind.DIVERGED if isinstance(exc, Diverged) else FailureKind.ERROR
        extra = {"step": exc.step} if isinstance(exc, Diverged) else {}
        outcome = record_failure(store, job.job_id, reason, kind, traceback=tb, **extra)
        outcome.seconds = time.perf_counter() - t0
        return outcome
    finally:
        torch.set_num_threads(threads)
        # The fits' idle worker processes would outlive the job by joblib's 300 s idle timeout,
        # and the process that ran the job would wait for them when it exits.
        release_workers()
    return JobOutcome(job.job_id, Status.DONE, seconds=time.perf_counter() - t0)


def _train_and_evaluate(
    job: Job, store: ResultsStore, progress: Callable[[str], None] | None
) -> list[dict[str, Any]]:
    import torch
    from joblib import parallel_config
    from sklearn.exceptions import ConvergenceWarning

    from benchmark.data import get_dataset
    from benchmark.metrics import gbt
    from benchmark.metrics.registry import get_metric
    from benchmark.metrics.suite import evaluate
    from benchmark.training import train, unreadable_checkpoints

    reset_peak_rss()
    say = progress or (lambda msg: None)
    data = get_dataset(job.dataset, job.dataset_source, job.data_dir)
    config = TrainingSettings(**job.training)

    t0 = time.perf_counter()

    def on_step(step: int, total: int, values: dict[str, float]) -> None:
        # Training reports every `log_every` steps and at each checkpoint.
        loss = values.get("loss", float("nan"))
        say(f"{job.job_id} {job.model} seed {job.seed}: step {step}/{total} loss {loss:.1f}")

    checkpoint_dir = store.checkpoint_dir(job.model_id)
    for path, problem in unreadable_checkpoints(checkpoint_dir):  # resume from an older one
        store.quarantine(path, problem)
        say(f"{job.job_id} {path.name} moved to {store.quarantine_dir}: {problem}")
    model = train(
        job.model,
        job.params,
        data,
        seed=job.seed,
        config=config,
        checkpoint_dir=checkpoint_dir,
        progress=on_step,
    )
    train_seconds = time.perf_counter() - t0

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

    common = _common_columns(job, model.steps, train_seconds, getattr(model, "device", "cpu"))
    common["dataset_provenance"] = json.dumps(getattr(data, "provenance", {}), sort_keys=True,
                                              default=str)
    # Which back-end fitted the GBTs of DCI / downstream_gbt (a sklearn upgrade that disables the
    # port: 3x slower fits, same values), the threads the job ran with, its peak memory.
    common["provenance"] = provenance_json("benchmark", gbt_fits=gbt.fit_counts(),
                                           torch_threads=torch.get_num_threads(), **peak_rss_mb())
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


def _memory_bytes(job: Job) -> int | None:
    """The job's memory (the spec's `resources.mem_gb`) in bytes, for the metrics' budget."""
    mem_gb = job.resources.get("mem_gb")
    return None if mem_gb is None else int(float(mem_gb) * 2**30)


def _as_float(value: Any) -> float | None:
    return None if value is None else float(value)  # param_columns are the numeric ones
