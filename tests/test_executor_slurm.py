"""The Slurm executor against a real Slurm (start one as root with .ci/start_engines.sh).

What is proven here: a study runs end to end as job arrays of chunks; a job that raises fails alone
and a task that dies fails only its unfinished jobs; a task preempted twice (submitit's USR2 path
and a plain `scontrol requeue`) resumes from its checkpoint and writes its rows once; a driver
that dies is replaced by one that reattaches to the running tasks instead of resubmitting them;
bad input (no sbatch, an unknown partition, an sbatch refusal, a refusal half-way) is one line.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import cluster_jobfns as cj
import pytest
from conftest import wait_for

from benchmark.errors import UserError
from benchmark.store import ResultsStore


def _slurm_up() -> str | None:
    """None when a Slurm cluster answers, else why not."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        return "submitit is not installed (pip install '.[slurm]')"
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "no Slurm client on PATH (run .ci/start_engines.sh as root)"
    if subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
        return "no Slurm controller answers (run .ci/start_engines.sh as root)"
    return None


_WHY_NOT = _slurm_up()
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=str(_WHY_NOT))

if _WHY_NOT is None:
    from benchmark.executors.slurm import SlurmExecutor, active_jobs, queue_states, read_arrays

FAST = {"poll_interval": 0.5, "ended_grace": 2.0}


@pytest.fixture
def study(request, tmp_path):
    """A unique study name (Slurm job names are per study) and its store."""
    name = f"t{os.getpid()}-{request.node.name[:40]}".replace("[", "-").replace("]", "")
    yield name, ResultsStore(tmp_path / name)
    states = queue_states(name) or {}
    if states:  # never leave a test's jobs behind in the shared queue
        subprocess.run(["scancel", "-n", f"benchmark-{name}"], capture_output=True)


def _rows_per_job(store):
    return store.read_rows().to_pandas().groupby("job_id").size().to_dict()


def test_a_small_study_runs_as_arrays_of_chunks_and_failures_stay_alone(study):
    name, store = study
    jobs = cj.make_jobs(name, [0, 1, 2, 3, 4], jobs_per_task=2)
    summary = SlurmExecutor(job_fn=cj.raises_on_seed_1, **FAST).run(jobs, store, show_progress=False)
    bad = next(j.job_id for j in jobs if j.seed == 1)
    assert set(summary.done) == {j.job_id for j in jobs} - {bad}
    assert set(summary.failed) == {bad} and "boom in seed 1" in summary.failed[bad]
    assert summary.exit_code == 1
    [record] = read_arrays(store)  # one array of ceil(5 / 2) = 3 tasks
    assert record["tasks"] == [[j.job_id for j in jobs[i:i + 2]] for i in (0, 2, 4)]
    for job in jobs:  # a log per job, with what the job printed and its traceback
        log = store.log_path(job.job_id).read_text()
        assert f"slurm task {record['array_id']}_" in log
        assert ("boom in seed 1" if job.job_id == bad else f"hello from {job.job_id}") in log
    # Run again: done jobs are skipped, the failed one is retried and its failure cleared.
    again = SlurmExecutor(job_fn=cj.ok, **FAST).run(jobs, store, show_progress=False)
    assert again.done == [bad] and len(again.skipped) == 4 and again.exit_code == 0
    assert store.failures() == {}
    assert _rows_per_job(store) == {j.job_id: 1 for j in jobs}


def test_a_task_that_dies_fails_only_its_unfinished_jobs(study):
    name, store = study
    jobs = cj.make_jobs(name, [0, 1, 2, 3], jobs_per_task=3)  # tasks [0, 1, 2] and [3]
    summary = SlurmExecutor(job_fn=cj.dies_on_seed_1, **FAST).run(jobs, store, show_progress=False)
    by_seed = {j.seed: j.job_id for j in jobs}
    assert set(summary.done) == {by_seed[0], by_seed[3]}
    assert set(summary.failed) == {by_seed[1], by_seed[2]}
    failures = store.failures()
    assert {f["kind"] for f in failures.values()} == {"slurm_task_ended"}
    assert all("FAILED" in f["reason"] or "unknown" in f["reason"] for f in failures.values())


def _step(store, job):
    path = store.checkpoint_dir(job.model_id) / "last.json"
    try:
        return json.loads(path.read_text())["step"]
    except (OSError, ValueError):
        return 0


def test_a_preempted_task_is_requeued_and_resumes_from_its_checkpoint(study):
    name, store = study
    # 30 steps of 0.5 s: long enough to outlast the 10 s between `scontrol requeue`'s SIGTERM
    # (which submitit ignores) and its SIGKILL (KillWait in .ci/slurm/slurm.conf.template).
    [job] = cj.make_jobs(name, [0], steps_seconds=0.5, steps=30)
    result = {}
    driver = threading.Thread(target=lambda: result.update(summary=SlurmExecutor(
        job_fn=cj.checkpointed, **FAST).run([job], store, show_progress=False)))
    driver.start()
    try:
        # 1. Preemption as submitit sees it (SIGTERM, then USR2): Checkpointable requeues itself.
        wait_for(lambda: _step(store, job) >= 2, 60, "the job to reach step 2")
        slurm_id = cj.read_worker(store, job)["slurm_job_id"]
        for sig in ("SIGTERM", "USR2"):
            subprocess.run(["scancel", "--signal", sig, slurm_id], check=True)
            # scancel delivers asynchronously: a late SIGTERM would hit the `scontrol requeue`
            # that submitit's USR2 handler starts.
            time.sleep(1.0)
        wait_for(lambda: len(cj.read_starts(store, job)) >= 2, 90, "the first resumption")
        # 2. Preemption as the scheduler does it: SIGTERM, SIGKILL, requeue; no help from the job.
        wait_for(lambda: _step(store, job) >= cj.read_starts(store, job)[-1] + 2, 60,
                  "progress after the first resumption")
        subprocess.run(["scontrol", "requeue", slurm_id], check=True)
        driver.join(timeout=120)
    finally:
        if driver.is_alive():
            subprocess.run(["scancel", "-n", f"benchmark-{name}"])
            driver.join(timeout=30)
    summary = result["summary"]
    assert summary.done == [job.job_id] and not summary.failed
    starts = cj.read_starts(store, job)
    assert len(starts) == 3 and starts[0] == 0 and 2 <= starts[1] < starts[2] < 30, starts
    rows = store.read_rows().to_pandas().set_index("key")["value"]
    assert len(rows) == 2 and rows["steps"] == 30 and rows["attempts"] == 3
    log = store.log_path(job.job_id).read_text()
    assert "restart 1" in log and "restart 2" in log  # SLURM_RESTART_COUNT, one per requeue


DRIVER = textwrap.dedent("""
    import sys
    import cluster_jobfns as cj
    from benchmark.executors.slurm import SlurmExecutor
    from benchmark.store import ResultsStore
    jobs = cj.make_jobs(sys.argv[1], [0, 1], steps_seconds=0.4)
    SlurmExecutor(job_fn=cj.checkpointed, poll_interval=0.5).run(
        jobs, ResultsStore(sys.argv[2]), show_progress=False)
""")


def test_a_new_driver_reattaches_to_tasks_of_a_dead_one(study, tmp_path):
    name, store = study
    jobs = cj.make_jobs(name, [0, 1], steps_seconds=0.4)
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    proc = subprocess.Popen([sys.executable, str(script), name, str(store.root)],
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: read_arrays(store), 60, "the first driver to submit")
        wait_for(lambda: all(cj.read_starts(store, j) for j in jobs), 60, "both jobs to start")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert set(active_jobs(store)) == {j.job_id for j in jobs}  # what `status` can show
    executor = SlurmExecutor(job_fn=cj.checkpointed, **FAST)
    summary = executor.run(jobs, store, show_progress=False)
    assert executor.submitted == []  # nothing submitted again
    assert len(read_arrays(store)) == 1
    assert sorted(summary.done) == sorted(j.job_id for j in jobs)
    assert all(cj.read_starts(store, j) == [0] for j in jobs)  # each ran once, untouched
    assert _rows_per_job(store) == {j.job_id: 2 for j in jobs}


def test_missing_sbatch_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match=r"'sbatch' was not found on PATH") as err:
        SlurmExecutor()
    assert "\n" not in str(err.value)


def test_an_unknown_partition_is_refused_before_anything_is_submitted(study):
    name, store = study
    jobs = cj.make_jobs(name, [0, 1], partition="no-such-partition")
    with pytest.raises(UserError, match=r"no partition 'no-such-partition' .*debug") as err:
        SlurmExecutor(job_fn=cj.ok, **FAST).run(jobs, store, show_progress=False)
    assert "\n" not in str(err.value)
    assert read_arrays(store) == [] and not queue_states(name)


def test_an_sbatch_refusal_is_one_line_and_nothing_went(study):
    name, store = study
    jobs = cj.make_jobs(name, [0], sbatch_extra={"constraint": "no_such_feature"})
    with pytest.raises(UserError, match=r"nothing was submitted: .*[Ii]nvalid feature") as err:
        SlurmExecutor(job_fn=cj.ok, **FAST).run(jobs, store, show_progress=False)
    assert "\n" not in str(err.value)
    assert read_arrays(store) == [] and not queue_states(name)


def test_a_refusal_half_way_says_which_jobs_went_and_a_rerun_finishes_them(study, monkeypatch):
    import submitit
    from submitit.core.utils import FailedJobError

    import benchmark.executors.slurm as slurm_mod

    name, store = study
    jobs = cj.make_jobs(name, [0, 1, 2])
    monkeypatch.setattr(slurm_mod, "_max_array_size", lambda: 2)  # arrays [0, 1] and [2]
    real_map_array = submitit.AutoExecutor.map_array
    calls = []

    def map_array(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise FailedJobError("sbatch: error: QOSMaxSubmitJobPerUserLimit\nsbatch: error: "
                                 "Batch job submission failed: Job violates accounting policy")
        return real_map_array(self, *args)

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", map_array)
    with pytest.raises(UserError) as err:
        SlurmExecutor(job_fn=cj.ok, **FAST).run(jobs, store, show_progress=False)
    [record] = read_arrays(store)
    message = str(err.value)
    assert "\n" not in message
    assert "refused array 2 of 2" in message and "accounting policy" in message
    assert f"already submitted: 2 jobs in Slurm arrays {record['array_id']}" in message
    monkeypatch.setattr(submitit.AutoExecutor, "map_array", real_map_array)
    executor = SlurmExecutor(job_fn=cj.ok, **FAST)
    summary = executor.run(jobs, store, show_progress=False)
    assert sorted(summary.done + summary.skipped) == sorted(j.job_id for j in jobs)
    # Only the job that never went is submitted by the rerun.
    assert [t for r in executor.submitted for t in r["tasks"]] == [[jobs[2].job_id]]


def test_cli_runs_reattaches_and_reports_through_the_store(study, monkeypatch, tmp_path, capsys):
    import benchmark.cli as cli
    import benchmark.jobs

    name, store = study
    jobs = cj.make_jobs(name, [0, 1, 2])
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(f"study: {name}\n")

    class FakeSpec:
        study = name

    monkeypatch.setattr(cli, "_load_jobs", lambda path, data_dir=None: (FakeSpec, jobs))
    monkeypatch.setattr(cli, "_check_datasets", lambda jobs, data_dir: None)
    monkeypatch.setattr(benchmark.jobs, "run_job", cj.ok)  # the default job function
    results = str(store.root.parent)
    code = cli.main(["run", str(spec_file), "--executor", "slurm", "--chunk-size", "2",
                     "--results", results, "--quiet", "--no-figures"])
    assert code == 0
    [record] = read_arrays(store)
    assert [len(t) for t in record["tasks"]] == [2, 1]
    capsys.readouterr()
    assert cli.main(["status", str(spec_file), "--results", results]) == 0
    assert "3 done, 0 failed, 0 pending" in capsys.readouterr().out
    assert cli.main(["run", str(spec_file), "--executor", "slurm", "--results", results,
                     "--quiet", "--no-figures"]) == 0
    assert len(read_arrays(store)) == 1  # all done: nothing submitted again


def test_cli_bad_slurm_input_exits_2_with_one_line(study, monkeypatch, tmp_path, capsys):
    import benchmark.cli as cli

    name, store = study
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(f"study: {name}\n")

    class FakeSpec:
        study = name

    jobs = cj.make_jobs(name, [0], partition="gpu-a100")
    monkeypatch.setattr(cli, "_load_jobs", lambda path, data_dir=None: (FakeSpec, jobs))
    monkeypatch.setattr(cli, "_check_datasets", lambda jobs, data_dir: None)
    args = ["run", str(spec_file), "--executor", "slurm", "--results", str(store.root.parent),
            "--quiet", "--no-figures"]
    capsys.readouterr()
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: Slurm has no partition 'gpu-a100'")
    assert not [line for line in err if "Traceback" in line]
    monkeypatch.setenv("PATH", str(tmp_path))
    assert cli.main(args) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --executor slurm: 'sbatch' was not found on PATH (run on a Slurm login node, or "
        "use --executor local)")


def _training_available() -> bool:
    import importlib
    import importlib.util

    models = importlib.import_module("benchmark.models")
    return hasattr(models, "METHODS") and importlib.util.find_spec("benchmark.training") is not None


@pytest.mark.slow
@pytest.mark.skipif(not _training_available(), reason="training/models not merged into this branch")
def test_the_tiny_spec_trains_on_slurm_end_to_end(write_spec, tmp_path):
    from conftest import tiny_spec

    import benchmark.cli as cli

    spec = write_spec(tiny_spec(study=f"tiny{os.getpid()}", resources={"mem_gb": 1,
                                                                       "jobs_per_task": 2}))
    results = tmp_path / "results"
    assert cli.main(["run", str(spec), "--executor", "slurm", "--results", str(results),
                     "--quiet", "--no-figures"]) == 0
    store = ResultsStore(results / f"tiny{os.getpid()}")
    rows = store.read_rows().to_pandas()
    assert rows["job_id"].nunique() == 4 and set(rows["metric"]) >= {"train", "mig"}
    assert Path(store.root / "logs").is_dir()


@pytest.mark.slow
@pytest.mark.skipif(not _training_available(), reason="training/models not merged into this branch")
def test_real_training_preempted_on_slurm_resumes_from_its_checkpoint(write_spec, tmp_path):
    """`run_job` + `train` under a preemption: the requeued task resumes from `last.pt`."""
    import torch
    from conftest import tiny_spec

    from benchmark.spec import expand, load_spec

    name = f"pre{os.getpid()}"
    spec_path = write_spec(tiny_spec(
        study=name, methods={"beta_vae": {"beta": 1}}, seeds=[0],
        training={"steps": 300, "batch_size": 8, "checkpoint_every": 20},
        resources={"mem_gb": 1}))
    [job] = expand(load_spec(spec_path))
    store = ResultsStore(tmp_path / name)
    result = {}
    driver = threading.Thread(target=lambda: result.update(summary=SlurmExecutor(**FAST).run(
        [job], store, show_progress=False)))
    driver.start()
    ckpt = store.checkpoint_dir(job.model_id) / "last.pt"

    def checkpoint_step() -> int:
        try:
            return int(torch.load(ckpt, weights_only=True)["step"])
        except Exception:  # noqa: BLE001 - not written yet, or being replaced
            return 0

    try:
        at = wait_for(lambda: (s := checkpoint_step()) >= 60 and s, 120, "a checkpoint at step 60")
        [slurm_id] = list((queue_states(name) or {"?": ""}).keys())
        for sig in ("SIGTERM", "USR2"):
            subprocess.run(["scancel", "--signal", sig, slurm_id], check=True)
            # scancel delivers asynchronously: a late SIGTERM would hit the `scontrol requeue`
            # that submitit's USR2 handler starts.
            time.sleep(1.0)
        driver.join(timeout=240)
    finally:
        if driver.is_alive():
            subprocess.run(["scancel", "-n", f"benchmark-{name}"])
            driver.join(timeout=30)
    assert result["summary"].done == [job.job_id]
    rows = store.read_rows().to_pandas()
    assert set(rows["train_steps"]) == {300} and {"train", "mig"} <= set(rows["metric"])
    log = store.log_path(job.job_id).read_text()
    first, resumed = log.split("restart 1)")  # the job's log: attempt 1, then the requeued one
    steps = [int(s.split("/")[0]) for s in resumed.split("step ")[1:]]
    assert steps and min(steps) > at >= 60, (at, steps)  # no step before the checkpoint again


@pytest.mark.slow
@pytest.mark.skipif(not _training_available(), reason="training/models not merged into this branch")
def test_rows_on_slurm_are_bitwise_those_of_one_local_worker(write_spec, tmp_path):
    # The spec of the local comparison (--workers 1 vs 2), both jobs in one array task (one
    # process runs them one after the other): whatever runs a job, its rows are the same bits.
    from rowtools import assert_same_rows, run_cli
    from test_robustness import SPEC

    name = f"same{os.getpid()}"
    spec = write_spec({**SPEC, "study": name, "resources": {"mem_gb": 1, "jobs_per_task": 2}})
    local = run_cli(spec, tmp_path / "local", "--workers", "1")
    try:
        on_slurm = run_cli(spec, tmp_path / "slurm", "--executor", "slurm")
    finally:  # never leave this test's jobs behind in the shared queue
        subprocess.run(["scancel", "-n", f"benchmark-{name}"], capture_output=True)
    assert set(local.metric) == {"train", "mig", "sap"} and local.job_id.nunique() == 2
    assert_same_rows(local, on_slurm)
