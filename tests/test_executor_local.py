"""The local executor: failure isolation, worker death, skip-done."""

import jobfns
import pytest
from conftest import tiny_spec

from benchmark.executors.local import LocalExecutor
from benchmark.spec import expand, load_spec
from benchmark.store import ResultsStore


@pytest.fixture
def jobs(write_spec):
    return expand(load_spec(write_spec(tiny_spec(seeds=[0, 1, 2]))))  # 2 betas x 3 seeds


def test_runs_every_job_and_skips_done_ones(tmp_path, jobs):
    store = ResultsStore(tmp_path / "study")
    summary = LocalExecutor(workers=2, job_fn=jobfns.ok).run(jobs, store, show_progress=False)
    assert sorted(summary.done) == sorted(j.job_id for j in jobs)
    assert summary.exit_code == 0
    again = LocalExecutor(workers=2, job_fn=jobfns.ok).run(jobs, store, show_progress=False)
    assert again.done == [] and sorted(again.skipped) == sorted(j.job_id for j in jobs)
    assert store.read_rows().num_rows == len(jobs)


def test_an_exception_in_one_job_does_not_stop_the_others(tmp_path, jobs):
    store = ResultsStore(tmp_path / "study")
    summary = LocalExecutor(workers=2, job_fn=jobfns.raises_on_seed_1).run(
        jobs, store, show_progress=False)
    bad = {j.job_id for j in jobs if j.seed == 1}
    assert set(summary.failed) == bad
    assert len(summary.done) == 4
    assert summary.exit_code == 1
    failures = store.failures()
    assert set(failures) == bad
    assert all("boom in seed 1" in f["reason"] for f in failures.values())


def test_a_dead_worker_costs_only_its_job(tmp_path, jobs):
    store = ResultsStore(tmp_path / "study")
    summary = LocalExecutor(workers=1, job_fn=jobfns.dies_on_seed_1).run(
        jobs, store, show_progress=False)
    bad = {j.job_id for j in jobs if j.seed == 1}
    assert set(summary.failed) == bad
    assert {f["kind"] for f in store.failures().values()} == {"worker_died"}
    assert len(summary.done) == 4


def test_a_retried_failure_is_cleared_when_it_succeeds(tmp_path, jobs):
    store = ResultsStore(tmp_path / "study")
    LocalExecutor(workers=2, job_fn=jobfns.raises_on_seed_1).run(jobs, store, show_progress=False)
    assert len(store.failures()) == 2
    summary = LocalExecutor(workers=2, job_fn=jobfns.ok).run(jobs, store, show_progress=False)
    assert len(summary.done) == 2 and len(summary.skipped) == 4
    assert store.failures() == {}
    st = store.status([j.job_id for j in jobs])
    assert len(st.done) == 6 and not st.failed and not st.pending
