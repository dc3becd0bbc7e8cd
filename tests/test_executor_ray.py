"""The Ray executor against a real Ray: a head started here (`ray start --head`, loopback, 2 CPUs)
and, once, a private local Ray started by the executor itself.

What is proven here: a small study runs end to end and a job that raises fails alone; a worker
killed mid-job is retried and the job resumes from its checkpoint; a job that keeps killing its
worker fails after its retries without stopping the others; a driver that dies is replaced by a
run that skips finished jobs and resumes the rest; bad input (an unreachable or malformed address,
a request no node can meet) is one line, with nothing submitted.
"""

from __future__ import annotations

import os
import signal
import socket
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

# Keep every Ray process of these tests on loopback and quiet, read by Ray when it is imported,
# so set before. Token auth off on both sides (loopback only): with a ~/.ray/auth_token on disk
# and no RAY_AUTH_MODE, a `ray start` head and its clients disagree (seen with Ray 2.60).
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "disabled"}
os.environ.update(RAY_ENV)

try:
    import ray  # noqa: F401

    _NO_RAY = None
except ImportError:
    _NO_RAY = "ray is not installed (pip install '.[ray]')"

pytestmark = pytest.mark.skipif(_NO_RAY is not None, reason=str(_NO_RAY))

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


@pytest.fixture(scope="module")
def head():
    """A Ray head on this machine for the module; stopped by ending the process that owns it."""
    port = _free_port()
    proc = subprocess.Popen(
        [_ray_cli(), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats",
         f"--object-store-memory={256 * 2**20}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.skip(f"ray start --head failed: {(proc.stdout.read() or '')[-300:]}")
            time.sleep(0.2)
    yield f"127.0.0.1:{port}"
    proc.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _executor(head, **kwargs):
    from benchmark.executors.ray import RayExecutor

    return RayExecutor(address=head, **kwargs)


def _rows_per_job(store):
    return store.read_rows().to_pandas().groupby("job_id").size().to_dict()


def _last_step(store, job):
    import json

    try:
        return json.loads((store.checkpoint_dir(job.model_id) / "last.json").read_text())["step"]
    except (OSError, ValueError):
        return 0


def test_a_small_study_runs_and_a_failing_job_fails_alone(head, tmp_path):
    store = ResultsStore(tmp_path / "raystudy")
    jobs = cj.make_jobs("raystudy", [0, 1, 2, 3])
    summary = _executor(head, job_fn=cj.raises_on_seed_1).run(jobs, store, show_progress=False)
    bad = next(j.job_id for j in jobs if j.seed == 1)
    assert set(summary.done) == {j.job_id for j in jobs} - {bad}
    assert set(summary.failed) == {bad} and "boom in seed 1" in summary.failed[bad]
    assert summary.exit_code == 1
    for job in jobs:
        log = store.log_path(job.job_id).read_text()
        assert "ray node" in log
        assert ("boom in seed 1" if job.job_id == bad else f"hello from {job.job_id}") in log
    again = _executor(head, job_fn=cj.ok, max_running=1).run(jobs, store, show_progress=False)
    assert again.done == [bad] and len(again.skipped) == 3 and store.failures() == {}
    assert _rows_per_job(store) == {j.job_id: 1 for j in jobs}


def test_a_worker_killed_mid_job_is_retried_and_resumes_from_its_checkpoint(head, tmp_path):
    store = ResultsStore(tmp_path / "raykill")
    [job] = cj.make_jobs("raykill", [0], steps_seconds=0.2)
    killed = {}

    def kill_worker_at_step_3():
        wait_for(lambda: _last_step(store, job) >= 3, 60, "step 3")
        killed["pid"] = cj.read_worker(store, job)["pid"]
        os.kill(killed["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_worker_at_step_3, daemon=True)
    killer.start()
    summary = _executor(head, job_fn=cj.checkpointed).run([job], store, show_progress=False)
    killer.join(timeout=5)
    assert "pid" in killed
    assert summary.done == [job.job_id] and not summary.failed
    starts = cj.read_starts(store, job)
    assert len(starts) == 2 and starts[0] == 0 and 3 <= starts[1] < cj.STEPS, starts
    assert cj.read_worker(store, job)["pid"] != killed["pid"]
    rows = store.read_rows().to_pandas().set_index("key")["value"]
    assert rows["steps"] == cj.STEPS and rows["attempts"] == 2 and len(rows) == 2


def test_a_job_that_keeps_killing_its_worker_fails_after_its_retries(head, tmp_path):
    store = ResultsStore(tmp_path / "raydie")
    jobs = cj.make_jobs("raydie", [0, 1], max_retries=1)
    summary = _executor(head, job_fn=cj.dies_on_seed_1).run(jobs, store, show_progress=False)
    bad = next(j.job_id for j in jobs if j.seed == 1)
    assert summary.done == [next(j.job_id for j in jobs if j.seed == 0)]
    assert set(summary.failed) == {bad}
    failure = store.failures()[bad]
    assert failure["kind"] == "worker_died" and "died 2 times" in failure["reason"]
    assert store.log_path(bad).read_text().count(f"job {bad} (fake seed 1)") == 2  # two attempts


DRIVER = textwrap.dedent("""
    import sys
    import cluster_jobfns as cj
    from benchmark.executors.ray import RayExecutor
    from benchmark.store import ResultsStore
    jobs = cj.make_jobs("raydriver", [0, 1], steps_seconds=0.3)
    RayExecutor(address=sys.argv[1], job_fn=cj.checkpointed).run(
        jobs, ResultsStore(sys.argv[2]), show_progress=False)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"


def test_after_the_driver_dies_a_new_run_resumes_its_jobs(head, tmp_path):
    store = ResultsStore(tmp_path / "raydriver")
    jobs = cj.make_jobs("raydriver", [0, 1], steps_seconds=0.3)
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    proc = subprocess.Popen([sys.executable, str(script), head, str(store.root)],
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: all(_last_step(store, j) >= 2 for j in jobs), 90, "both jobs to run")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    workers = [cj.read_worker(store, j)["pid"] for j in jobs]
    # Ray stops the tasks of a dead driver: nothing keeps writing behind the new run's back.
    wait_for(lambda: not any(_alive(pid) for pid in workers), 60, "the orphaned tasks to stop")
    assert not store.done_ids()
    summary = _executor(head, job_fn=cj.checkpointed).run(jobs, store, show_progress=False)
    assert sorted(summary.done) == sorted(j.job_id for j in jobs)
    for job in jobs:
        starts = cj.read_starts(store, job)
        assert len(starts) == 2 and starts[0] == 0 and starts[1] >= 2, starts
    assert _rows_per_job(store) == {j.job_id: 2 for j in jobs}


def test_unreachable_and_malformed_addresses_are_one_line_and_fast():
    from benchmark.executors.ray import RayExecutor

    port = _free_port()  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(UserError, match=rf"cannot reach the Ray cluster at 127.0.0.1:{port}: "):
        RayExecutor(address=f"127.0.0.1:{port}")
    assert time.monotonic() - t0 < 10
    for bad in ("headnode", "http://headnode:6379", "headnode:port"):
        with pytest.raises(UserError, match=r"expected host:port") as err:
            RayExecutor(address=bad)
        assert "\n" not in str(err.value)


def test_a_request_no_node_can_meet_is_refused_before_submitting(head, tmp_path):
    store = ResultsStore(tmp_path / "raygpu")
    jobs = cj.make_jobs("raygpu", [0], gpus_per_job=1)
    # a GPU unit is a pipelined lane: its CPUs for training plus its evaluation pool's
    # (cpus_per_job x (1 + eval_workers) = 2 here); no node of this head has a GPU either way
    with pytest.raises(UserError, match=r"no Ray node can run a job asking for 2 CPUs, 1 GPUs") as e:
        _executor(head, job_fn=cj.ok).run(jobs, store, show_progress=False)
    assert "\n" not in str(e.value)
    assert not store.done_ids() and not store.failures()
    import ray

    assert not ray.is_initialized()  # the executor let go of the cluster it joined


def test_cli_runs_a_study_on_a_private_local_ray_and_bad_address_exits_2(
        monkeypatch, tmp_path, capsys):
    import benchmark.cli as cli
    import benchmark.jobs

    jobs = cj.make_jobs("raycli", [0, 1, 2])
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("study: raycli\n")

    class FakeSpec:
        study = "raycli"

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(cli, "_load_jobs", lambda path, data_dir=None: (FakeSpec, jobs))
    monkeypatch.setattr(cli, "_check_datasets", lambda jobs, data_dir: None)
    monkeypatch.setattr(benchmark.jobs, "run_job", cj.ok)  # the default job function
    results = tmp_path / "results"
    base = ["run", str(spec_file), "--executor", "ray", "--results", str(results), "--quiet",
            "--no-figures"]
    assert cli.main(base) == 0  # no --ray-address: a private Ray, started and stopped here
    assert _rows_per_job(ResultsStore(results / "raycli")) == {j.job_id: 1 for j in jobs}
    capsys.readouterr()
    port = _free_port()
    assert cli.main(base + ["--ray-address", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot reach the Ray cluster at 127.0.0.1:{port}: ")
    assert "\n" not in err


def _training_available() -> bool:
    import importlib
    import importlib.util

    models = importlib.import_module("benchmark.models")
    return hasattr(models, "METHODS") and importlib.util.find_spec("benchmark.training") is not None


@pytest.mark.slow
@pytest.mark.skipif(not _training_available(), reason="training/models not merged into this branch")
def test_the_tiny_spec_trains_on_ray_end_to_end(head, write_spec, tmp_path):
    from conftest import tiny_spec

    import benchmark.cli as cli

    spec = write_spec(tiny_spec(study="tinyray", resources={"mem_gb": 1}))
    results = tmp_path / "results"
    assert cli.main(["run", str(spec), "--executor", "ray", "--ray-address", head,
                     "--results", str(results), "--quiet", "--no-figures"]) == 0
    rows = ResultsStore(results / "tinyray").read_rows().to_pandas()
    assert rows["job_id"].nunique() == 4 and set(rows["metric"]) >= {"train", "mig"}


@pytest.mark.slow
@pytest.mark.skipif(not _training_available(), reason="training/models not merged into this branch")
def test_rows_on_ray_are_bitwise_those_of_one_local_worker(head, write_spec, tmp_path):
    # The spec of the local comparison (--workers 1 vs 2), with 1 GB per job: whatever runs a job
    # (a Ray worker here), its rows are the same bits.
    from rowtools import assert_same_rows, run_cli
    from test_robustness import SPEC

    spec = write_spec({**SPEC, "resources": {"mem_gb": 1}})
    local = run_cli(spec, tmp_path / "local", "--workers", "1")
    on_ray = run_cli(spec, tmp_path / "ray", "--executor", "ray", "--ray-address", head)
    assert set(local.metric) == {"train", "mig", "sap"} and local.job_id.nunique() == 2
    assert_same_rows(local, on_ray)
