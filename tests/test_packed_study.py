"""Packed training from a study (`resources.models_per_device`, `benchmark run --pack K`): an
execution choice that changes no job id, model id or row value; outcomes stay per job."""

import json
import subprocess
import sys
from dataclasses import replace

import jobfns
import numpy as np
import pandas as pd
import pytest
from conftest import tiny_spec

from benchmark.executors.base import Executor, run_unit
from benchmark.executors.local import LocalExecutor
from benchmark.jobs import pack_units, run_job, run_pack
from benchmark.spec import expand, load_spec
from benchmark.store import ResultsStore

STUDY_METHODS = ["beta_vae", "annealed_vae", "factor_vae", "dip_vae_i", "dip_vae_ii", "beta_tc_vae"]
# tiny_spec's training with a 2-batch summary (the default 1000 batches is most of a tiny job)
TRAINING = {"steps": 4, "batch_size": 8, "checkpoint_every": 2, "eval_batches": 2}


def packed(jobs, k):
    return [replace(j, resources={**j.resources, "models_per_device": k}) for j in jobs]


@pytest.fixture
def jobs(write_spec):
    return expand(load_spec(write_spec(tiny_spec(seeds=[0, 1, 2], training=TRAINING))))  # 2 betas x 3 seeds


def test_packing_changes_no_id(write_spec, jobs):
    spec = tiny_spec(seeds=[0, 1, 2], training=TRAINING, resources={"models_per_device": 4})
    again = expand(load_spec(write_spec(spec, "packed.yaml")))
    assert [(j.job_id, j.model_id) for j in again] == [(j.job_id, j.model_id) for j in jobs]
    assert {j.resources["models_per_device"] for j in again} == {4}


def test_units_are_packs_of_one_method_and_settings_in_job_order(jobs):
    assert pack_units(jobs) == [[j] for j in jobs]  # models_per_device 1: a unit per job
    ids = [[j.job_id for j in unit] for unit in pack_units(packed(jobs, 2))]
    assert ids == [[j.job_id for j in jobs[i:i + 2]] for i in (0, 2, 4)]
    other = replace(jobs[1], model="vae", params={})
    more_steps = replace(jobs[2], training={**jobs[2].training, "steps": 5})
    units = pack_units(packed([jobs[0], other, more_steps, jobs[3], jobs[4]], 3))
    assert [[j.job_id for j in u] for u in units] == [
        [jobs[0].job_id, jobs[3].job_id, jobs[4].job_id], [other.job_id], [more_steps.job_id]]


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "benchmark.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_packed_study_gives_bitwise_the_rows_of_the_unpacked_one(tmp_path, write_spec):
    spec = write_spec(tiny_spec(methods={m: None for m in STUDY_METHODS}, training=TRAINING))  # 12 jobs
    tables = {}
    for k in (1, 2):
        out = _cli("run", str(spec), "--results", str(tmp_path / f"pack{k}"), "--workers", "2",
                   "--pack", str(k), "--quiet", "--no-figures", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        df = pd.read_parquet(tmp_path / f"pack{k}" / "tiny" / "rows")
        tables[k] = df.sort_values(["job_id", "metric", "representation", "key"],
                                   na_position="first").reset_index(drop=True)
    one, two = tables[1], tables[2]
    assert one.job_id.nunique() == 12
    for column in ("job_id", "model_id", "model", "seed", "metric", "representation", "key"):
        assert one[column].equals(two[column]), column
    assert np.array_equal(one.value.to_numpy(), two.value.to_numpy(), equal_nan=True)
    unpacked = [json.loads(p) for p in one.provenance]  # + each job's peak memory
    assert all(p["source"] == "benchmark" and p["torch_threads"] == 1 and "pack" not in p
               for p in unpacked)
    assert {json.dumps(json.loads(p)["pack"]) for p in two.provenance} == {
        '{"size": 2, "strategy": "loop"}'}
    bad = _cli("run", str(spec), "--pack", "0", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --pack must be at least 1, got 0"


def test_a_pack_with_a_job_done_trains_only_the_other(tmp_path, jobs):
    store = ResultsStore(tmp_path / "study")
    first, second = jobs[0], jobs[1]
    assert run_job(first, store).status == "done"
    checkpoint = (store.checkpoint_dir(first.model_id) / "last.pt").read_bytes()
    rows = store.read_rows(first.job_id)
    outcomes = run_pack([first, second], store)
    assert [o.status for o in outcomes] == ["skipped", "done"]
    assert (store.checkpoint_dir(first.model_id) / "last.pt").read_bytes() == checkpoint
    assert store.read_rows(first.job_id).equals(rows)


class _Inline(Executor):
    """The base flow with units run in this process: what each unit held is recorded."""

    def _start(self, units, store):
        self.units = units
        self.outcomes = [o for u in units for o in run_unit(jobfns.ok, jobfns.pack_ok, u, store, None)]

    def _submit(self, units):
        raise AssertionError("no job runs elsewhere here")

    def _poll(self, timeout):
        out, self.outcomes = self.outcomes, []
        return out

    def _interrupt(self):
        return ""

    def _close(self, interrupted):
        pass


def test_the_executor_packs_only_the_jobs_not_done(tmp_path, jobs):
    store = ResultsStore(tmp_path / "study")
    jobfns.ok(jobs[0], store, None)
    executor = _Inline()
    summary = executor.run(packed(jobs[:4], 2), store, show_progress=False)
    assert summary.skipped == [jobs[0].job_id] and len(summary.done) == 3
    assert [[j.job_id for j in u] for u in executor.units] == [
        [jobs[1].job_id, jobs[2].job_id], [jobs[3].job_id]]


def test_a_diverged_model_fails_alone_and_its_pack_mate_is_done(tmp_path, jobs):
    store = ResultsStore(tmp_path / "study")
    good = jobs[0]
    # an infinite KL weight: its loss is not finite from the first step (Adam would tame any finite one)
    bad = replace(jobs[1], params={**jobs[1].params, "beta": float("inf")}, job_id="bad", model_id="bad")
    outcomes = run_pack([good, bad], store)
    assert [o.status for o in outcomes] == ["done", "failed"]
    record = store.failures()["bad"]
    assert record["kind"] == "diverged" and "step" in record
    pack = {json.loads(p)["pack"]["size"] for p in store.read_rows(good.job_id).column("provenance").to_pylist()}
    assert pack == {2}
    alone = ResultsStore(tmp_path / "alone")
    assert run_job(good, alone).status == "done" and run_job(bad, alone).status == "failed"
    assert alone.failures()["bad"]["step"] == record["step"]  # where train() alone diverges
    assert store.read_rows(good.job_id).column("value").equals(alone.read_rows(good.job_id).column("value"))


def test_a_dead_worker_costs_its_packs_unfinished_jobs_and_they_resume(tmp_path, jobs):
    store = ResultsStore(tmp_path / "study")
    jobs = packed(jobs, 2)  # packs: (beta 1: seeds 0, 1), (beta 1 seed 2, beta 4 seed 0), (beta 4: 1, 2)
    summary = LocalExecutor(workers=1, job_fn=jobfns.ok, pack_fn=jobfns.pack_dies_on_seed_1).run(
        jobs, store, show_progress=False)
    lost = {jobs[1].job_id, jobs[4].job_id, jobs[5].job_id}  # seed 1 and what came after it
    assert set(summary.failed) == lost
    assert {f["kind"] for f in store.failures().values()} == {"worker_died"}
    assert sorted(summary.done) == sorted({j.job_id for j in jobs} - lost)
    again = LocalExecutor(workers=1, job_fn=jobfns.ok, pack_fn=jobfns.pack_ok).run(
        jobs, store, show_progress=False)
    assert sorted(again.done) == sorted(lost) and len(again.skipped) == 3
    assert store.failures() == {}


def test_a_pack_leaves_out_a_job_another_process_holds_and_releases_its_leases(tmp_path, jobs):
    store = ResultsStore(tmp_path / "study")
    packs = []

    def pack_fn(pack, store, progress):
        packs.append([j.job_id for j in pack])
        return jobfns.pack_ok(pack, store, progress)

    with store.claim(jobs[1].job_id):  # held by a live process: this one
        outcomes = run_unit(jobfns.ok, pack_fn, jobs[:3], store, None)
        assert store.lease_holder(jobs[1].job_id) is not None
    assert [o.status for o in outcomes] == ["done", "elsewhere", "done"]
    assert packs == [[jobs[0].job_id, jobs[2].job_id]]
    assert store.live_leases() == {}
