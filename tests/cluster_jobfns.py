"""Jobs and job functions for the Slurm and Ray executor tests: the orchestration under test,
with a stand-in for training that checkpoints and resumes like `benchmark.training.train`."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace

import jobfns

from benchmark.jobs import JobOutcome
from benchmark.spec import Job, stable_hash
from benchmark.store import atomic_write_bytes

STEPS = 10  # steps of the fake training in `checkpointed`


def make_jobs(study: str, seeds: list[int], steps_seconds: float = 0.0, steps: int = STEPS,
              **resources) -> list[Job]:
    """Jobs with real, stable ids, built without the dataset/model registries."""
    res = {"cpus_per_job": 1, "gpus_per_job": 0, "mem_gb": 0.25, "time_minutes": 5,
           "partition": None, "account": None, "qos": None, "jobs_per_task": 1,
           "sbatch_extra": {}, "max_retries": 3, "sbatch_setup": [], **resources}
    jobs = []
    for seed in seeds:
        job = Job(study=study, job_id="", model_id="", dataset="identity",
                  dataset_source="procedural", model="fake", params={"step_seconds": steps_seconds, "steps": steps},
                  seed=seed, training={"steps": steps}, evaluation={"metrics": []},
                  resources=res)
        jobs.append(replace(job, job_id=stable_hash(job.config()),
                            model_id=stable_hash(job.model_config())))
    return jobs


def _rows(job, value: float, key: str = "seed"):
    return [{"study": job.study, "job_id": job.job_id, "model_id": job.model_id,
             "dataset": job.dataset, "dataset_source": job.dataset_source, "model": job.model,
             "model_params": "{}", "seed": job.seed, "metric": "fake", "key": key,
             "value": float(value)}]


# The executors' shared failure-isolation job functions (tests/jobfns.py), re-exported for cj.*.
ok, raises_on_seed_1, dies_on_seed_1 = jobfns.ok, jobfns.raises_on_seed_1, jobfns.dies_on_seed_1


def checkpointed(job, store, progress):
    """Fake training of `steps` steps of `step_seconds` each, with a checkpoint after every step
    in `checkpoint_dir(model_id)/last.json` (written atomically, resumed from), and a record of
    each attempt's starting step in `starts.txt` and of the worker's pid and Slurm job in
    `worker.json`, so tests can kill or requeue the worker mid-job."""
    if store.is_done(job.job_id):
        return JobOutcome(job.job_id, "skipped")
    ckpt_dir = store.checkpoint_dir(job.model_id)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    last = ckpt_dir / "last.json"
    step = json.loads(last.read_text())["step"] if last.exists() else 0
    with open(ckpt_dir / "starts.txt", "a") as fh:
        fh.write(f"{step}\n")
    atomic_write_bytes(ckpt_dir / "worker.json", json.dumps(
        {"pid": os.getpid(), "slurm_job_id": os.environ.get("SLURM_JOB_ID")}).encode())
    steps = job.params["steps"]
    while step < steps:
        time.sleep(job.params["step_seconds"])
        step += 1
        atomic_write_bytes(last, json.dumps({"step": step}).encode())
        if progress:
            progress(f"step {step}/{steps}")
    starts = [int(s) for s in (ckpt_dir / "starts.txt").read_text().split()]
    rows = _rows(job, step, key="steps") + _rows(job, len(starts), key="attempts")
    store.write_rows(job.job_id, rows, job.param_columns)
    return JobOutcome(job.job_id, "done")


def read_starts(store, job) -> list[int]:
    path = store.checkpoint_dir(job.model_id) / "starts.txt"
    return [int(s) for s in path.read_text().split()] if path.exists() else []


def read_worker(store, job) -> dict | None:
    path = store.checkpoint_dir(job.model_id) / "worker.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
