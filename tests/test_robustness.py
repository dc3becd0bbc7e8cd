"""Nothing stuck, nothing that depends on how it ran, no two drivers on one job.

- a run returns within seconds of its last rows (no worker waits for idle metric-fit processes);
- a driver killed with SIGKILL leaves no process of its own behind;
- a job's rows are bitwise the same whatever the number of local workers (its torch threads are
  `resources.cpus_per_job`, not the machine's cores over the workers), and the metric fits'
  parallelism changes no value;
- a per-job lease in the store keeps two drivers of one study from running the same job, and a
  dead holder's lease does not block it; many processes writing one store lose nothing.
"""

import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time

import jobfns
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from cluster_jobfns import make_jobs
from conftest import ROOT, wait_for
from proctools import cmdline, descendants, survivors

from benchmark.executors.local import LocalExecutor
from benchmark.spec import expand, load_spec
from benchmark.store import ResultsStore

# Two short β-VAE jobs on procedural dSprites whose SAP fits run in joblib worker processes when
# the job's process has two cores (`--workers 1` here).
SPEC = {
    "study": "robust",
    "datasets": [{"name": "dsprites_full", "source": "procedural"}],
    "methods": {"beta_vae": {"beta": [1, 4]}},
    "seeds": [0],
    "training": {"steps": 20, "batch_size": 16, "checkpoint_every": 10, "eval_batches": 5},
    "evaluation": {"metrics": ["mig", "sap"], "representations": ["mean"],
                   "overrides": {"mig": {"num_train": 500},
                                 "sap": {"num_train": 500, "num_test": 200}}},
}
MAX_EXIT_GAP_S = 20.0  # from the last rows file to the process's exit (a few seconds unloaded)
VALUE_COLUMNS = ["job_id", "representation", "metric", "key", "value", "train_steps"]


def _run_cli(spec_path, results, workers):
    return subprocess.Popen(
        [sys.executable, "-m", "benchmark.cli", "run", str(spec_path), "--results", str(results),
         "--workers", str(workers), "--quiet", "--no-figures"],
        cwd=results.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same spec run with --workers 1 and --workers 2: {workers: (returncode, stderr,
    seconds from the last rows file to the exit, rows)}."""
    base = tmp_path_factory.mktemp("robust")
    spec = base / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    out = {}
    for workers in (1, 2):
        results = base / f"workers{workers}"
        results.mkdir()
        proc = _run_cli(spec, results, workers)
        _, err = proc.communicate(timeout=900)
        exited = time.time()
        rows = results / SPEC["study"] / "rows"
        files = list(rows.glob("*.parquet"))
        gap = exited - max(p.stat().st_mtime for p in files) if files else float("nan")
        out[workers] = (proc.returncode, err, gap, pd.read_parquet(rows) if files else None)
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_a_run_returns_soon_after_its_last_rows(runs, workers):
    returncode, err, gap, rows = runs[workers]
    assert returncode == 0, err
    assert rows is not None and rows.job_id.nunique() == 2
    assert gap < MAX_EXIT_GAP_S, f"--workers {workers}: exited {gap:.0f} s after its last rows"


def test_rows_do_not_depend_on_the_number_of_workers(runs):
    one, two = (runs[w][3] for w in (1, 2))
    assert one is not None and two is not None
    one, two = (df[VALUE_COLUMNS].sort_values(VALUE_COLUMNS[:4]).reset_index(drop=True)
                for df in (one, two))
    assert set(one.metric) == {"train", "mig", "sap"}
    pd.testing.assert_frame_equal(one, two, check_exact=True)  # bitwise
    for df in (runs[1][3], runs[2][3]):  # the job's threads are recorded with the rows
        assert {json.loads(p)["torch_threads"] for p in df.provenance} == {1}


def test_a_killed_driver_leaves_no_process_behind(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    results = tmp_path / "res"
    results.mkdir()
    proc = _run_cli(spec, results, 1)
    seen: dict[int, str] = {}
    try:
        # Kill when the metric fits' processes run: the deepest the process tree gets.
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline:
            seen.update(descendants(proc.pid))
            if any("loky" in cmdline(pid) for pid in seen):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before its metric fits were seen"
        seen.update(descendants(proc.pid))
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    left = {}
    for _ in range(100):  # a process told of its parent's death may take a moment to go
        left = survivors(seen)
        if not left:
            break
        time.sleep(0.1)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes of the killed driver still running: {left}"


def test_job_ids_do_not_depend_on_resources(write_spec):
    one = expand(load_spec(write_spec({**SPEC, "resources": {"cpus_per_job": 1}}, "a.yaml")))
    four = expand(load_spec(write_spec({**SPEC, "resources": {"cpus_per_job": 4, "mem_gb": 2}},
                                       "b.yaml")))
    assert [j.job_id for j in one] == [j.job_id for j in four]
    assert [j.model_id for j in one] == [j.model_id for j in four]
    assert {j.threads for j in one} == {1} and {j.threads for j in four} == {4}
    assert expand(load_spec(write_spec(SPEC, "c.yaml")))[0].threads == 1  # the default


def test_metric_fits_do_not_depend_on_their_parallelism():
    from benchmark.data.synthetic import IdentityData
    from benchmark.metrics.parallel import release_workers
    from benchmark.metrics.suite import evaluate

    data = IdentityData()
    mix = np.random.default_rng(0).normal(size=(data.num_factors, 6))

    def represent(obs):  # a fixed, noisy, entangled code
        x = obs.reshape(len(obs), -1)
        return x @ mix + 0.05 * np.sin(37.0 * x.sum(1, keepdims=True) + np.arange(6))

    small = {"num_train": 300, "num_test": 150}
    overrides = {"sap": small, "modularity_explicitness": small,
                 "dci": {**small, "n_estimators": 5},
                 "downstream_lr": {"num_train": [50, 300], "num_test": 150,
                                   "efficiency_sizes": [50, 300]},
                 "downstream_gbt": {"num_train": [50, 300], "num_test": 150,
                                    "efficiency_sizes": [50, 300], "n_estimators": 5}}
    rows = {}
    try:
        for n_jobs in (1, 2):
            rows[n_jobs] = evaluate(data, {"mean": represent}, seed=3, metrics=list(overrides),
                                    overrides=overrides, n_jobs=n_jobs)
    finally:
        release_workers()

    def values(rs):
        return sorted((r["metric"], r["key"], r["value"]) for r in rs)

    assert values(rows[1]) == values(rows[2])  # exact floats
    assert {r["metric"] for r in rows[1]} == set(overrides)


def test_release_workers_stops_the_fits_processes():
    from joblib import Parallel, delayed

    from benchmark.metrics.parallel import release_workers

    Parallel(n_jobs=2)(delayed(abs)(i) for i in range(4))
    loky = {pid: start for pid, start in descendants(os.getpid()).items()
            if "loky" in cmdline(pid) and "resource_tracker" not in cmdline(pid)}
    assert loky, "joblib started no worker process"
    release_workers()
    wait_for(lambda: not survivors(loky), 10, "the fits' workers to exit")


# --------------------------------------------------------------------------- leases

def _lease(store, job_id, **record):
    path = store.lease_path(job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"job_id": job_id, "token": "theirs", "started_at": "earlier",
                                **record}))
    return path


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_a_lease_is_exclusive_until_released(tmp_path):
    store = ResultsStore(tmp_path / "study")
    lease = store.claim("job")
    assert lease is not None and store.claim("job") is None
    holder = store.lease_holder("job")
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    before = holder["heartbeat"]
    time.sleep(0.01)
    assert lease.refresh() and store.lease_holder("job")["heartbeat"] > before
    lease.release()
    assert store.lease_holder("job") is None and not store.lease_path("job").exists()
    with store.claim("job") as again:
        assert again.held()
    assert store.claim("job") is not None


def test_a_dead_or_silent_holder_does_not_block_a_job(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "study")
    here = socket.gethostname()
    _lease(store, "dead", host=here, pid=_dead_pid(), heartbeat=time.time())
    _lease(store, "silent", host="another-node", pid=1, heartbeat=time.time() - 3600)
    _lease(store, "busy", host="another-node", pid=1, heartbeat=time.time())
    _lease(store, "mine-alive", host=here, pid=os.getppid(), heartbeat=time.time())
    assert store.claim("dead") is not None  # same host, process gone: stale at once
    assert store.claim("silent") is not None  # no heartbeat for longer than the timeout
    assert store.claim("busy") is None and store.claim("mine-alive") is None
    assert set(store.live_leases()) == {"dead", "silent", "busy", "mine-alive"}
    monkeypatch.setenv("BENCHMARK_LEASE_TIMEOUT_S", "1")
    _lease(store, "busy", host="another-node", pid=1, heartbeat=time.time() - 2)
    assert store.claim("busy") is not None


def test_breaking_a_stale_lease_never_removes_a_fresh_one(tmp_path):
    store = ResultsStore(tmp_path / "study")
    stale = {"host": "another-node", "pid": 1, "heartbeat": 0.0, "token": "stale"}
    fresh = store.claim("job")  # someone broke the stale lease and claimed it just before us
    store._break(store.lease_path("job"), stale)
    assert fresh.held()
    assert not [p for p in store.leases_dir.iterdir() if p.name != "job.json"]


def test_two_drivers_never_run_the_same_job_at_once(tmp_path):
    root = tmp_path / "study"
    n = 10
    procs = [subprocess.Popen([sys.executable, str(ROOT / "tests" / "local_driver.py"), str(root),
                               "two", str(n), "2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    summaries = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        summaries.append(json.loads(out.splitlines()[-1]))
    store = ResultsStore(root)
    jobs = make_jobs("two", list(range(n)))
    ids = {j.job_id for j in jobs}
    assert all(not s["failed"] for s in summaries)
    done = [set(s["done"]) for s in summaries]
    assert done[0].isdisjoint(done[1]) and done[0] | done[1] == ids
    for s in summaries:  # what one did, the other counted as done (before, or elsewhere)
        assert set(s["done"]) | set(s["skipped"]) == ids
    assert {jid: len(jobfns.started(store, jid)) for jid in ids} == dict.fromkeys(ids, 1)
    assert store.done_ids() == ids and store.live_leases() == {}


def test_a_driver_waits_for_a_job_running_elsewhere_and_takes_it_over_when_stale(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCHMARK_LEASE_TIMEOUT_S", "4")  # the workers inherit it
    store = ResultsStore(tmp_path / "study")
    finishes, dies = make_jobs("elsewhere", [0, 1])
    now = time.time()
    _lease(store, finishes.job_id, host="another-node", pid=1, heartbeat=now)
    _lease(store, dies.job_id, host="another-node", pid=1, heartbeat=now)

    def the_other_driver():  # finishes its first job after 1.5 s, and never the second
        time.sleep(1.5)
        store.write_rows(finishes.job_id, [{**jobfns._rows(finishes)[0], "value": -1.0}], ())
        store.lease_path(finishes.job_id).unlink()

    import threading

    other = threading.Thread(target=the_other_driver)
    other.start()
    t0 = time.monotonic()
    executor = LocalExecutor(workers=2, job_fn=jobfns.sleepy)
    executor.lease_recheck = 0.5
    summary = executor.run([finishes, dies], store, show_progress=True)
    other.join()
    assert summary.exit_code == 0 and not summary.failed
    assert summary.skipped == [finishes.job_id]  # done elsewhere: neither run here nor failed
    assert summary.done == [dies.job_id]  # taken over once its lease went stale
    assert time.monotonic() - t0 >= 3.0
    assert jobfns.started(store, finishes.job_id) == []
    assert store.read_rows(finishes.job_id).column("value").to_pylist() == [-1.0]
    assert "running elsewhere" in capsys.readouterr().err


def _write_many(root: str, writer: int, shared: list[str]) -> None:
    store = ResultsStore(root)
    jobs = make_jobs("many", list(range(writer * 100, writer * 100 + 15)))
    for job in jobs:
        store.write_rows(job.job_id, jobfns._rows(job), ())
        store.write_failure(f"f{writer}-{job.seed}", "an injected failure")
    [job] = make_jobs("many", [7])
    for job_id in shared:  # all writers write the same jobs at once
        store.write_rows(job_id, [{**jobfns._rows(job)[0], "job_id": job_id}], ())


def test_many_processes_writing_one_store_lose_nothing(tmp_path):
    root = str(tmp_path / "study")
    shared = [f"shared{i}" for i in range(5)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(root, w, shared)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    store = ResultsStore(root)
    files = sorted(store.rows_dir.iterdir())
    assert len(files) == 4 * 15 + 5 and all(f.suffix == ".parquet" for f in files)
    for f in files:
        assert pq.read_table(f).num_rows == 1
    rows = store.read_rows()
    assert rows.num_rows == 4 * 15 + 5
    assert len(store.failures()) == 4 * 15
    assert all(f["reason"] == "an injected failure" for f in store.failures().values())
