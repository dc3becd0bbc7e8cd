"""Job functions for executor tests: the orchestration under test, without training a model."""

import os

from benchmark.jobs import JobOutcome


def _rows(job):
    return [{"study": job.study, "job_id": job.job_id, "model_id": job.model_id,
             "dataset": job.dataset, "dataset_source": job.dataset_source, "model": job.model,
             "model_params": "{}", "seed": job.seed, "metric": "fake", "key": "seed",
             "value": float(job.seed)}]


def ok(job, store, progress):
    if store.is_done(job.job_id):
        return JobOutcome(job.job_id, "skipped")
    if progress:
        progress(f"{job.job_id} working")
    print(f"hello from {job.job_id}")  # lands in logs/<job_id>.log (cluster executors)
    store.write_rows(job.job_id, _rows(job), job.param_columns)
    return JobOutcome(job.job_id, "done")


def raises_on_seed_1(job, store, progress):
    if job.seed == 1:
        raise RuntimeError(f"boom in seed {job.seed}")
    return ok(job, store, progress)


def dies_on_seed_1(job, store, progress):
    if job.seed == 1:
        os._exit(3)  # a worker killed mid-job (OOM killer, segfault)
    return ok(job, store, progress)


def pack_ok(jobs, store, progress):
    """A pack stand-in: one outcome per job, each written as `ok` writes it."""
    return [ok(job, store, progress) for job in jobs]


def pack_dies_on_seed_1(jobs, store, progress):
    """A pack whose worker is killed when it reaches a seed-1 job (its earlier jobs are written)."""
    return [dies_on_seed_1(job, store, progress) for job in jobs]
