"""Fault injection: kills at random moments (seeded trials), preemption between checkpoints, a NaN
loss, a raising metric, a worker killed by SIGKILL, a full disk. After each, the store must hold
every job exactly once, readable, with each failure recorded with its reason.

The fast variants run in CI; `-m slow` runs the same checks with 20 trials each. With
$BENCHMARK_FAULT_REPORT set to a JSON path, the tests add what they injected and what survived to
it; `python tests/fault_table.py REPORT --write docs/robustness.md` renders the table.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jobfns
import pyarrow.parquet as pq
import pytest
from cluster_jobfns import make_jobs
from conftest import ROOT, tiny_spec
from proctools import cmdline, descendants, parent, survivors

from benchmark.executors.local import LocalExecutor
from benchmark.spec import expand, load_spec
from benchmark.store import ResultsStore

DRIVER = ROOT / "tests" / "local_driver.py"
FAST, SLOW = 3, 20  # trials per random-kill test
JOBS = 8


# --------------------------------------------------------------------------- the report

def _report(fault: str, injected: str, trials: int, survived: int, checked: str,
            notes: str = "") -> None:
    """Adds one line to $BENCHMARK_FAULT_REPORT (a JSON list, one entry per fault and trial
    count; a rerun replaces its entry)."""
    path = os.environ.get("BENCHMARK_FAULT_REPORT")
    if not path:
        return
    entries = json.loads(Path(path).read_text()) if Path(path).exists() else []
    entries = [e for e in entries if (e["fault"], e["trials"]) != (fault, trials)]
    entries.append({"fault": fault, "injected": injected, "trials": trials, "survived": survived,
                    "checked": checked, "notes": notes})
    Path(path).write_text(json.dumps(entries, indent=1))


# --------------------------------------------------------------------------- checks

def _problems(store: ResultsStore, jobs, starts_before: dict[str, int] | None = None) -> list[str]:
    """What is wrong with a study that should be finished: every job's rows exactly once, every
    file readable, no temporary file, no lease or failure left, no finished job run again."""
    ids = {j.job_id for j in jobs}
    out = []
    if store.done_ids() != ids:
        out.append(f"jobs without rows: {sorted(ids - store.done_ids())}")
    for path in sorted(store.rows_dir.iterdir()) if store.rows_dir.is_dir() else []:
        if path.suffix != ".parquet":
            out.append(f"stray file {path.name}")
            continue
        try:
            table = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - the check is that nothing raises
            out.append(f"unreadable {path.name}: {exc}")
            continue
        if set(table.column("job_id").to_pylist()) != {path.stem}:
            out.append(f"{path.name} holds rows of another job")
    rows = store.read_rows().to_pandas()
    if rows.duplicated(["job_id", "representation", "metric", "key"]).any():
        out.append("duplicate rows")
    for folder in (store.failures_dir, store.leases_dir, store.root / "checkpoints"):
        if folder.is_dir():
            out += [f"temporary file {p}" for p in folder.rglob(".*")]
    if store.failures():
        out.append(f"failures left: {sorted(store.failures())}")
    if store.live_leases():
        out.append(f"live leases left: {sorted(store.live_leases())}")
    for job_id, before in (starts_before or {}).items():
        now = len(jobfns.started(store, job_id))
        if now != before:
            out.append(f"{job_id} was done before the resume and started again")
    return out


def _resume(store: ResultsStore, jobs) -> list[str]:
    """Runs the study again; the problems of the result."""
    done_before = store.done_ids()
    starts = {jid: len(jobfns.started(store, jid)) for jid in done_before}
    summary = LocalExecutor(workers=2, job_fn=jobfns.sleepy).run(jobs, store, show_progress=False)
    problems = [] if summary.exit_code == 0 else [f"resume failed: {summary.failed}"]
    return problems + _problems(store, jobs, starts)


def _driver(root: Path, study: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(DRIVER), str(root), study, str(JOBS), "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _orphans(seen: dict[int, str]) -> dict[int, str]:
    """Those of `seen` still alive after a few seconds (killed, then returned)."""
    left = survivors(seen)
    for _ in range(100):
        if not left:
            break
        time.sleep(0.1)
        left = survivors(seen)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


# --------------------------------------------------------------------------- random kills

def _kill_driver_trial(tmp_path: Path, trial: int) -> tuple[list[str], int]:
    rng = random.Random(1000 + trial)
    study = f"driver{trial}"
    store = ResultsStore(tmp_path / study)
    jobs = make_jobs(study, list(range(JOBS)))
    proc = _driver(store.root, study)
    seen: dict[int, str] = {}
    kill_at = time.monotonic() + rng.uniform(0.5, 8.0)  # from before the first job to the end
    while time.monotonic() < kill_at and proc.poll() is None:
        seen.update(descendants(proc.pid))
        time.sleep(0.05)
    seen.update(descendants(proc.pid))
    proc.kill()
    proc.communicate()
    problems = [f"left running: {cmd}" for cmd in _orphans(seen).values()]
    done_at_kill = len(store.done_ids())
    return problems + _resume(store, jobs), done_at_kill


def _kill_worker_trial(tmp_path: Path, trial: int) -> tuple[list[str], bool]:
    rng = random.Random(2000 + trial)
    study = f"worker{trial}"
    store = ResultsStore(tmp_path / study)
    jobs = make_jobs(study, list(range(JOBS)))
    proc = _driver(store.root, study)
    kill_at = time.monotonic() + rng.uniform(1.0, 6.0)
    killed = None
    while proc.poll() is None and killed is None:
        workers = sorted(pid for pid in descendants(proc.pid)
                         if parent(pid) == proc.pid and "spawn_main" in cmdline(pid))
        if workers and time.monotonic() >= kill_at:
            killed = rng.choice(workers)
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.02)
    out, err = proc.communicate(timeout=600)
    problems = []
    if proc.returncode not in (0, 1):
        problems.append(f"driver exited {proc.returncode}: {err[-500:]}")
    else:
        summary = json.loads(out.splitlines()[-1])
        recorded = store.failures()
        for job_id, reason in summary["failed"].items():
            if "worker process died" not in reason:
                problems.append(f"{job_id} failed for another reason: {reason}")
            if recorded.get(job_id, {}).get("kind") != "worker_died":
                problems.append(f"{job_id}: no worker_died record")
        if len(summary["done"]) + len(summary["failed"]) + len(summary["skipped"]) != JOBS:
            problems.append("the driver did not give every job an outcome")
    hit = proc.returncode == 1
    return problems + _resume(store, jobs), hit


def _kill_driver(tmp_path, trials):
    results = [_kill_driver_trial(tmp_path, t) for t in range(trials)]
    failed = {t: p for t, (p, _) in enumerate(results) if p}
    done = [d for _, d in results]
    _report("driver killed (SIGKILL)", f"at a random moment, {JOBS} jobs, 2 workers", trials,
            trials - len(failed), "no process left; after a resume every job done once, no "
            "duplicate row, every file readable, no finished job rerun",
            f"jobs done at the kill: {min(done)}-{max(done)} of {JOBS}")
    assert not failed, failed


def _kill_worker(tmp_path, trials):
    results = [_kill_worker_trial(tmp_path, t) for t in range(trials)]
    failed = {t: p for t, (p, _) in enumerate(results) if p}
    hits = sum(hit for _, hit in results)
    _report("worker killed (SIGKILL, as the OOM killer)", f"a random worker at a random moment, "
            f"{JOBS} jobs, 2 workers", trials, trials - len(failed),
            "the driver goes on and records worker_died for the jobs it was running; after a "
            "resume every job done once, no duplicate row, every file readable",
            f"{hits} kills hit a running job, {trials - hits} an idle worker")
    assert not failed, failed


def test_driver_killed_at_random_moments(tmp_path):
    _kill_driver(tmp_path, FAST)


@pytest.mark.slow
@pytest.mark.heavy
def test_driver_killed_at_random_moments_many_trials(tmp_path):
    _kill_driver(tmp_path, SLOW)


def test_worker_killed_at_random_moments(tmp_path):
    _kill_worker(tmp_path, FAST)


@pytest.mark.slow
@pytest.mark.heavy
def test_worker_killed_at_random_moments_many_trials(tmp_path):
    _kill_worker(tmp_path, SLOW)


# --------------------------------------------------------------------------- preemption

CHECKPOINT_EVERY = 5
TRAIN = {"steps": 40, "batch_size": 16, "checkpoint_every": CHECKPOINT_EVERY, "log_every": 1,
         "eval_batches": 2, "num_latent": 3, "architecture": "fc", "device": "cpu"}
PREEMPTED = """
import json, os, signal, sys
import torch
from benchmark.data import get_dataset
from benchmark.settings import TrainingSettings
from benchmark.training import train
torch.set_num_threads(1)
kill = int(sys.argv[2])
def progress(step, total, values):  # called every step (log_every 1), before its checkpoint
    if step == kill:
        os.kill(os.getpid(), signal.SIGKILL)
train("beta_vae", {"beta": 4.0}, get_dataset("identity"), seed=0,
      config=TrainingSettings(**json.loads(sys.argv[3])), checkpoint_dir=sys.argv[1],
      progress=progress)
"""


def _train(checkpoint_dir):
    import torch

    from benchmark.data import get_dataset
    from benchmark.settings import TrainingSettings
    from benchmark.training import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train("beta_vae", {"beta": 4.0}, get_dataset("identity"), seed=0,
                     config=TrainingSettings(**TRAIN), checkpoint_dir=checkpoint_dir)
    finally:
        torch.set_num_threads(threads)


def _preempt(tmp_path, trials):
    import torch

    script = tmp_path / "preempted.py"
    script.write_text(PREEMPTED)
    reference = _train(tmp_path / "uninterrupted")
    rng = random.Random(3000)
    failed, lost = {}, []
    for trial in range(trials):
        kill = rng.randint(1, TRAIN["steps"] - 1)
        ck = tmp_path / f"trial{trial}"
        proc = subprocess.run([sys.executable, str(script), str(ck), str(kill), json.dumps(TRAIN)],
                              capture_output=True, text=True)
        problems = [] if proc.returncode == -signal.SIGKILL else [f"not killed: {proc.stderr}"]
        saved = ck / "last.pt"
        step = int(torch.load(saved, weights_only=True)["step"]) if saved.exists() else 0
        lost.append(kill - step)
        if not 0 <= kill - step <= CHECKPOINT_EVERY:
            problems.append(f"killed at step {kill}, resumes from {step}")
        model = _train(ck)
        theirs = reference.system.state_dict()
        if any(not torch.equal(v, theirs[k]) for k, v in model.system.state_dict().items()):
            problems.append("final weights differ from the uninterrupted run's")
        if model.summary != reference.summary or model.steps != reference.steps:
            problems.append("training summary differs from the uninterrupted run's")
        if problems:
            failed[trial] = problems
    _report("training preempted (SIGKILL) between checkpoints",
            f"at a random step of {TRAIN['steps']}, a checkpoint every {CHECKPOINT_EVERY}",
            trials, trials - len(failed), "resumes from the last checkpoint, losing at most one "
            "interval; final weights and summary bitwise equal to an uninterrupted run (CPU)",
            f"steps lost: {min(lost)}-{max(lost)}")
    assert not failed, failed


def test_preempted_training_resumes_to_the_same_weights(tmp_path):
    _preempt(tmp_path, 2)


@pytest.mark.slow
@pytest.mark.heavy
def test_preempted_training_resumes_to_the_same_weights_many_trials(tmp_path):
    _preempt(tmp_path, SLOW)


# --------------------------------------------------------------------------- recorded failures

def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "benchmark.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_failures_are_recorded_with_their_reason_and_the_other_jobs_go_on(tmp_path, write_spec):
    spec = write_spec(tiny_spec(methods={"beta_vae": {"beta": 1}}, seeds=[0, 1, 2, 3, 4]))
    jobs = expand(load_spec(spec))
    by_seed = {j.seed: j.job_id for j in jobs}
    store = ResultsStore(tmp_path / "res" / "tiny")
    summary = LocalExecutor(workers=1, job_fn=jobfns.faulty).run(jobs, store, show_progress=False)
    expected = {1: ("worker_died", "worker process died"),
                2: ("error", "ValueError: injected fault in mig"),
                3: ("diverged", "diverged at step")}
    records = store.failures()
    checks = {
        "exit 1": summary.exit_code == 1,
        "the others done": sorted(summary.done) == sorted([by_seed[0], by_seed[4]]),
        "every fault failed its job": set(summary.failed) == {by_seed[s] for s in expected},
    }
    for seed, (kind, reason) in expected.items():
        record = records.get(by_seed[seed], {})
        checks[f"seed {seed} recorded"] = record.get("kind") == kind and reason in record["reason"]
    status = _cli("status", str(spec), "--results", str(tmp_path / "res"), cwd=tmp_path)
    checks["status lists them"] = status.returncode == 0 and all(
        f"failed {by_seed[s]} [{kind}]: " in status.stdout and reason in status.stdout
        for s, (kind, reason) in expected.items())
    checks["2 done, 3 failed"] = "2 done, 3 failed, 0 pending" in status.stdout
    for name, fault in (("worker killed (SIGKILL) in a real job", "os.kill(SIGKILL) in the job"),
                        ("exception in one metric", "MIG's scorer raises"),
                        ("NaN loss", "NaN observations: the loss becomes NaN")):
        _report(name, fault, 1, int(all(checks.values())),
                "recorded with its kind and reason (`benchmark status` lists it), the other jobs "
                "done, exit 1")
    assert all(checks.values()), {k: v for k, v in checks.items() if not v}


# --------------------------------------------------------------------------- a full disk

def _mount_small_disk(path: Path) -> bool:
    """A 64 MB tmpfs at `path` (as root); False where none can be mounted."""
    if os.geteuid() != 0:
        return False
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def _fill(path: Path) -> None:
    chunk = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as fh:
        for size in (len(chunk), 4096, 1):
            try:
                while True:
                    fh.write(chunk[:size])
            except OSError:
                continue


def _tiny_jobs(write_spec):
    return expand(load_spec(write_spec(tiny_spec(methods={"beta_vae": {"beta": 1}}))))


def _intact(store, job_id, before: bytes) -> bool:
    path = store.rows_path(job_id)
    return path.read_bytes() == before and pq.read_table(path).num_rows > 0


def test_a_full_disk_fails_the_job_cleanly(tmp_path, write_spec):
    """A real full filesystem (a small tmpfs, as root), else a fake one (fsync fails)."""
    first, second = _tiny_jobs(write_spec)
    disk = tmp_path / "disk"
    real = _mount_small_disk(disk)
    try:
        store = ResultsStore((disk if real else tmp_path) / "study")
        assert LocalExecutor(workers=1).run([first], store, show_progress=False).exit_code == 0
        before = store.rows_path(first.job_id).read_bytes()
        if real:
            _fill(disk / "filler")
            summary = LocalExecutor(workers=1).run([second], store, show_progress=False)
        else:
            summary = LocalExecutor(workers=1, job_fn=jobfns.disk_full_on_rows_of_seed_1).run(
                [first, second], store, show_progress=False)
        reason = summary.failed.get(second.job_id, "")
        checks = {
            "the job failed": summary.exit_code == 1 and list(summary.failed) == [second.job_id],
            "its reason says why": "No space left on device" in reason,
            "earlier rows intact": _intact(store, first.job_id, before),
            # (.cache/ holds the store's rows-file verdicts, not a partial write)
            "no temporary or partial file": not [p for p in store.root.rglob(".*")
                                                 if p.name != ".cache"],
            "no rows of the failed job": not store.is_done(second.job_id),
            "no live lease": store.live_leases() == {},
        }
        if real:
            (disk / "filler").unlink()
        rerun = LocalExecutor(workers=1).run([first, second], store, show_progress=False)
        checks["a rerun with space finishes it"] = rerun.done == [second.job_id]
        checks["rows still intact"] = _intact(store, first.job_id, before)
    finally:
        if real:
            subprocess.run(["umount", str(disk)], check=True)
    _report("disk full",
            "a full 64 MB tmpfs" if real else "fsync of the rows file fails with ENOSPC", 1,
            int(all(checks.values())), "the job fails with ENOSPC in its reason, earlier rows "
            "byte-identical, no partial file, a rerun with space finishes it")
    assert all(checks.values()), ({k: v for k, v in checks.items() if not v}, reason)


def test_a_full_disk_while_writing_rows_is_recorded(tmp_path, write_spec):
    """The disk fills just when the rows are written (fake, any user): training and checkpoints
    went through, the rows did not; the failure record says why."""
    jobs = _tiny_jobs(write_spec)
    store = ResultsStore(tmp_path / "study")
    summary = LocalExecutor(workers=1, job_fn=jobfns.disk_full_on_rows_of_seed_1).run(
        jobs, store, show_progress=False)
    first, second = sorted(jobs, key=lambda j: j.seed)
    record = store.failures().get(second.job_id, {})
    checks = {
        "the job failed": summary.exit_code == 1 and list(summary.failed) == [second.job_id],
        "recorded with its reason": record.get("kind") == "error"
        and "No space left on device" in record.get("reason", ""),
        "the other job done": summary.done == [first.job_id],
        "no rows, no partial file": not store.is_done(second.job_id)
        and not list(store.rows_dir.glob(".*")),
        "its checkpoint kept": (store.checkpoint_dir(second.model_id) / "last.pt").is_file(),
    }
    _report("disk full while writing the rows", "fsync of the rows file fails with ENOSPC", 1,
            int(all(checks.values())), "the job's failure recorded with ENOSPC, the other job "
            "done, no partial rows file, its training checkpoint kept for the rerun")
    assert all(checks.values()), {k: v for k, v in checks.items() if not v}
