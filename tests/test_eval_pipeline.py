"""Evaluation off the device (`benchmark.eval_pipeline`): a lane trains its next pack while a pool
of CPU processes scores the last one; rows are bitwise those of the sequential runs."""

import json
from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_spec

from benchmark.executors.base import LanePlan, run_unit, run_units
from benchmark.executors.local import LocalExecutor
from benchmark.jobs import run_job, run_pack
from benchmark.spec import expand, load_spec
from benchmark.store import ResultsStore

TRAINING = {"steps": 4, "batch_size": 8, "checkpoint_every": 2, "eval_batches": 2}
# Both representations, sample metrics, an interventional one and a posterior one: every path
# by which the suite reaches the codes.
EVALUATION = {"metrics": ["mig", "beta_vae", "mig_exact"], "representations": ["mean", "sampled"],
              "overrides": {"mig": {"num_train": 300},
                            "beta_vae": {"batch_size": 8, "num_train": 100, "num_eval": 50}}}
# what legitimately differs between two runs of the same jobs
TIMING = {"job_seconds", "train_seconds", "eval_seconds", "finished_at", "provenance"}


@pytest.fixture
def jobs(write_spec):
    spec = tiny_spec(datasets=[{"name": "xy_tiny", "source": "procedural"}], seeds=[0, 1],
                     training=TRAINING, evaluation=EVALUATION)
    return expand(load_spec(write_spec(spec)))  # 2 betas x 2 seeds


def with_resources(jobs, **resources):
    return [replace(j, resources={**j.resources, **resources}) for j in jobs]


def table(store):
    df = pd.read_parquet(store.root / "rows")
    return df.sort_values(["job_id", "metric", "representation", "key"],
                          na_position="first").reset_index(drop=True)


def trained_at(store, job):
    mtime = (store.checkpoint_dir(job.model_id) / "last.pt").stat().st_mtime
    return datetime.fromtimestamp(mtime, timezone.utc)


def test_pipelined_rows_are_bitwise_the_sequential_ones_and_pack_2_trains_during_pack_1s_evaluation(
        tmp_path, jobs):
    runs = {"pack2": with_resources(jobs, models_per_device=2),
            "pack1": with_resources(jobs, models_per_device=1),
            "pipelined": with_resources(jobs, models_per_device=2, pipeline_eval="on",
                                        eval_workers=2)}
    tables = {}
    for name, run in runs.items():
        store = ResultsStore(tmp_path / name)
        summary = LocalExecutor(workers=1).run(run, store, show_progress=False)
        assert sorted(summary.done) == sorted(j.job_id for j in jobs), summary.failed
        tables[name] = table(store)
    ref = tables["pack2"]
    assert ref.job_id.nunique() == 4 and set(ref.representation.dropna()) >= {"mean", "sampled"}
    for name in ("pack1", "pipelined"):
        other = tables[name]
        for column in ref.columns:
            if column in TIMING:
                continue
            if column == "value":
                assert np.array_equal(ref.value.to_numpy(), other.value.to_numpy(), equal_nan=True)
            else:
                assert ref[column].equals(other[column]), (name, column)
    provenance = [json.loads(p) for p in tables["pipelined"].provenance]
    assert all(p["grid_tables"] and p["torch_threads"] == 1 for p in provenance)
    assert not any("grid_tables" in json.loads(p) for p in ref.provenance)

    # the second pack (jobs 2, 3) finished training before the first pack's rows were written
    pipelined = ResultsStore(tmp_path / "pipelined")
    first, second = jobs[:2], jobs[2:]
    assert max(trained_at(pipelined, j) for j in second) < min(
        _finished(pipelined, j) for j in first)
    sequential = ResultsStore(tmp_path / "pack2")  # without the pipeline: one after the other
    assert min(trained_at(sequential, j) for j in second) > max(
        _finished(sequential, j) for j in first)


def _finished(store, job):
    value = store.read_rows(job.job_id).column("finished_at")[0].as_py()
    value = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def test_a_failing_metric_in_the_pool_fails_only_its_job_which_a_rerun_evaluates_without_training(
        tmp_path, jobs):
    store = ResultsStore(tmp_path / "study")
    good, other = with_resources(jobs[:2], pipeline_eval="on")
    bad = replace(other, evaluation={**other.evaluation,
                                     "overrides": {"mig": {"num_train": -3}}})
    outcomes = run_units(lambda unit: run_unit(run_job, run_pack, unit, store, None),
                         [[good, bad]], LanePlan(eval_workers=2, threads=1))
    assert [o.status for o in outcomes] == ["done", "failed"]
    record = store.failures()[bad.job_id]
    assert record["kind"] == "error" and "num_train" in record["reason"]
    assert store.live_leases() == {}
    checkpoint = (store.checkpoint_dir(bad.model_id) / "last.pt").read_bytes()
    assert run_job(other, store).status == "done"  # the same job, its evaluation fixed
    assert (store.checkpoint_dir(bad.model_id) / "last.pt").read_bytes() == checkpoint
