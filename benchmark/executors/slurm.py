"""The Slurm executor: a study as submitit job arrays, followed through the results store.

Units of work (a job, or a pack of jobs trained together: `resources.models_per_device`) are
put into chunks (`resources.jobs_per_task` units, or `--chunk-size`), one chunk per array task, so 12,600 jobs need not be 12,600 Slurm jobs; arrays larger than the cluster's MaxArraySize
are split. Each array task runs its jobs one after the other with `run_job`, which skips finished
jobs and resumes training from `checkpoints/<model_id>/`: a task that is preempted, requeued
(`scontrol requeue`) or timed out (submitit's Checkpointable requeues it on the USR2 warning) starts
its chunk again and loses only the steps since the last checkpoint.

The driver knows which Slurm task runs which jobs from `slurm/arrays/<array id>.json` in the study
folder, and what finished from the store itself, never from submitit's pickles alone: a driver that
exits (Ctrl-C, a closed laptop, its own time limit) leaves the arrays running, and the next
`benchmark run` reattaches to the tasks still queued or running instead of submitting their jobs
again. Per-job logs are `logs/<job_id>.log`; each task's own stdout/stderr is in
`slurm/<array>_<task>/`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pwd
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark.allocator import worker_env
from benchmark.errors import UserError
from benchmark.eval_pipeline import unit_cpus
from benchmark.executors._cluster import (
    StoreFollower,
    chunks,
    one_line,
    run_logged,
    study_resources,
)
from benchmark.executors.base import (
    Executor,
    JobFn,
    PackFn,
    Unit,
    at_least_one,
    default_job_fn,
    default_pack_fn,
    lane_plan,
    run_units,
)
from benchmark.outcomes import FailureKind, JobOutcome, Status
from benchmark.spec import Resources
from benchmark.store import ResultsStore, atomic_write_bytes, now_utc

DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's default MaxArraySize


class SlurmChunk:
    """The callable one array task runs: its chunk of units (jobs or packs), in order.

    submitit calls `checkpoint` when the task is about to be preempted or to time out and
    requeues the returned submission; running the same chunk again is the right checkpoint,
    because finished jobs are skipped and training resumes from its own checkpoints.
    """

    def __call__(self, units: list[Unit], store_root: str, job_fn: JobFn,
                 pack_fn: PackFn) -> list[JobOutcome]:
        store = ResultsStore(store_root)
        env = os.environ
        task = (f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
                if "SLURM_ARRAY_JOB_ID" in env else env.get("SLURM_JOB_ID", "?"))
        where = (f"slurm task {task} (job {env.get('SLURM_JOB_ID', '?')}, "
                 f"restart {env.get('SLURM_RESTART_COUNT', '0')})")
        # A task holds one GPU and its CPUs: pipelined (`resources.pipeline_eval`), its units form
        # one lane, the next pack training while a pool of CPU processes scores the last one.
        plan = lane_plan(units)
        return run_units(lambda unit: run_logged(job_fn, pack_fn, unit, store, where,
                                                 redirect=plan is None), units, plan)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER", "")


def job_name(study: str) -> str:
    return f"benchmark-{study}"


def arrays_dir(store: ResultsStore) -> Path:
    return store.root / "slurm" / "arrays"


def read_arrays(store: ResultsStore) -> list[dict[str, Any]]:
    """The study's submission records, oldest first."""
    out = []
    folder = arrays_dir(store)
    if folder.is_dir():
        for path in folder.glob("*.json"):
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
    return sorted(out, key=lambda r: r.get("submitted_at", ""))


def _ask(command: list[str], timeout: float) -> str | None:
    """The output of a Slurm command; None when it cannot run, times out or fails."""
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def queue_states(study: str) -> dict[str, str] | None:
    """Slurm id ("123_4", or "123" for a job that is not an array) -> state of this study's tasks
    that are still queued, running or being requeued; None when squeue does not answer."""
    out = _ask(["squeue", "-h", "-r", "-u", _user(), "-n", job_name(study), "-o", "%i %T"], 60)
    if out is None:
        return None
    states = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


def active_jobs(store: ResultsStore) -> dict[str, tuple[str, str]]:
    """job_id -> (Slurm id, state) for the study's jobs whose Slurm task is queued or running
    and that have no rows yet (for `benchmark status`)."""
    states = queue_states(store.root.name) or {}
    done = store.done_ids()
    out = {}
    for record in read_arrays(store):
        for slurm_id, job_ids in zip(record["slurm_ids"], record["tasks"]):
            if slurm_id in states:
                out.update({j: (slurm_id, states[slurm_id]) for j in job_ids if j not in done})
    return out


def _final_state(slurm_id: str) -> str:
    """Slurm's final state of a task (best effort: accounting may lag or be off)."""
    out = _ask(["sacct", "-n", "-P", "-X", "-j", slurm_id, "-o", "State,ExitCode"], 30)
    lines = [ln for ln in (out or "").splitlines() if ln.strip()]
    return lines[-1].replace("|", ", exit code ") if lines else "unknown"


def _max_array_size() -> int:
    for line in (_ask(["scontrol", "show", "config"], 30) or "").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize":
            try:
                return max(1, int(value.strip()))
            except ValueError:
                break
    return DEFAULT_MAX_ARRAY_SIZE


def _partitions() -> list[str] | None:
    out = _ask(["sinfo", "-h", "-o", "%R"], 60)
    return None if out is None else sorted({p.strip() for p in out.split() if p.strip()})


def _sbatch_error(exc: BaseException) -> str:
    """The line of sbatch's stderr that says why it refused, from submitit's exception."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return one_line((errors or lines or [type(exc).__name__])[-1])


class SlurmExecutor(Executor):
    """Runs a study's jobs as Slurm job arrays through submitit."""

    name = "slurm"

    def __init__(
        self,
        chunk_size: int | None = None,
        max_running: int | None = None,
        poll_interval: float = 5.0,
        ended_grace: float = 15.0,
        job_fn: JobFn | None = None,
        python: str | None = None,
        pack_fn: PackFn | None = None,
    ):
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise UserError("--executor slurm needs submitit: pip install "
                            "'disentanglement-benchmark[slurm]'") from None
        for command in ("sbatch", "squeue", "sinfo", "scontrol"):
            if shutil.which(command) is None:
                raise UserError(f"--executor slurm: '{command}' was not found on PATH (run on a "
                                "Slurm login node, or use --executor local)")
        self.chunk_size = at_least_one("chunk_size", chunk_size)
        self.max_running = at_least_one("max_running", max_running)
        self.poll_interval = poll_interval
        self.poll_timeout = min(1.0, poll_interval)
        self.ended_grace = ended_grace
        self.job_fn = job_fn or default_job_fn()
        self.pack_fn = pack_fn or default_pack_fn()
        self.python = python
        self.submitted: list[dict[str, Any]] = []  # this run's submission records

    # -- the driver -------------------------------------------------------------------------
    def _start(self, units: list[Unit], store: ResultsStore) -> None:
        todo = [job for unit in units for job in unit]
        resources = study_resources(todo)
        self._check_partition(resources.partition)
        self._store = store
        self._resources = resources
        self._study = todo[0].study
        # Before submitting: a failure record older than this run is not this run's outcome.
        self._follower = StoreFollower(store, [j.job_id for j in todo])
        self._ended: dict[str, float] = {}  # Slurm id -> when it was first seen gone from the queue
        self._next_check = 0.0
        self._queue: str | None = None
        self._tasks = self._reattach(store, self._study, {j.job_id for j in todo})
        attached = {jid for jids in self._tasks.values() for jid in jids}
        new = [kept for unit in units if (kept := [j for j in unit if j.job_id not in attached])]
        if attached:
            print(f"slurm: reattached to {len(self._tasks)} queued or running tasks holding "
                  f"{len(attached)} jobs", file=sys.stderr)
        if new:
            self._tasks.update(self.submit(new, store, resources))

    def _check_partition(self, partition: str | None) -> None:
        if partition is None:
            return
        known = _partitions()
        if known is None:
            raise UserError("--executor slurm: sinfo failed (is the Slurm controller reachable?)")
        if partition not in known:
            raise UserError(f"Slurm has no partition {partition!r} (partitions here: "
                            f"{', '.join(known) or 'none'}); fix resources.partition in the spec")

    def _reattach(self, store: ResultsStore, study: str, todo: set[str]) -> dict[str, list[str]]:
        """Tasks of earlier runs that are still queued or running, with their unfinished jobs."""
        records = read_arrays(store)
        if not records:
            return {}
        states = queue_states(study)
        if states is None:
            raise UserError("--executor slurm: squeue failed, so this run cannot tell which jobs "
                            "an earlier run left queued (is the Slurm controller reachable?)")
        tasks: dict[str, list[str]] = {}
        for record in records:
            for slurm_id, job_ids in zip(record["slurm_ids"], record["tasks"]):
                mine = [j for j in job_ids if j in todo]
                if slurm_id in states and mine:
                    tasks[slurm_id] = mine
        return tasks

    def submit(self, units: Sequence[Unit], store: ResultsStore, resources: Resources
               ) -> dict[str, list[str]]:
        """Submits `units` (jobs or packs) as job arrays; returns Slurm id -> job ids. Each
        array's record is written to the store as soon as sbatch accepts it."""
        import submitit

        jobs = [job for unit in units for job in unit]
        size = self.chunk_size or resources.jobs_per_task
        parts = list(chunks(list(units), size))
        per_array = _max_array_size()
        arrays = list(chunks(parts, per_array))
        folder = store.root / "slurm" / "%j"
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm",
                                         slurm_max_num_timeout=resources.max_retries,
                                         slurm_python=self.python)
        executor.update_parameters(**self._parameters(jobs[0].study, resources))
        runner = SlurmChunk()
        tasks: dict[str, list[str]] = {}
        for index, array in enumerate(arrays):
            try:
                # clean_env: a driver that is itself a Slurm job (slurm/run_study.sbatch) must not
                # pass its own SLURM_* settings on to the tasks; stderr: submitit echoes sbatch's.
                with submitit.helpers.clean_env(), contextlib.redirect_stderr(io.StringIO()):
                    submitted = executor.map_array(runner, array, [str(store.root)] * len(array),
                                                   [self.job_fn] * len(array),
                                                   [self.pack_fn] * len(array))
            except Exception as exc:  # noqa: BLE001 - sbatch's refusal, said in one line
                raise UserError(self._refusal(exc, index, len(arrays))) from None
            record = {
                "study": jobs[0].study,
                "array_id": submitted[0].job_id.split("_")[0],
                "submitted_at": now_utc().isoformat(),
                "slurm_ids": [s.job_id for s in submitted],
                "tasks": [[j.job_id for unit in part for j in unit] for part in array],
            }
            atomic_write_bytes(arrays_dir(store) / f"{record['array_id']}.json",
                               json.dumps(record, indent=1).encode())
            self.submitted.append(record)
            tasks.update(zip(record["slurm_ids"], record["tasks"]))
        print(f"slurm: submitted {len(jobs)} jobs as {len(parts)} tasks in "
              f"{len(arrays)} array(s): {', '.join(r['array_id'] for r in self.submitted)}; "
              f"logs in {store.root / 'logs'}", file=sys.stderr)
        return tasks

    def _refusal(self, exc: BaseException, index: int, total: int) -> str:
        why = _sbatch_error(exc)
        if not self.submitted:
            return f"sbatch refused the study's jobs, nothing was submitted: {why}"
        ids = " ".join(r["array_id"] for r in self.submitted)
        went = sum(len(t) for r in self.submitted for t in r["tasks"])
        return (f"sbatch refused array {index + 1} of {total}: {why}; already submitted: {went} "
                f"jobs in Slurm arrays {ids} (they keep running and `benchmark run` again "
                f"reattaches to them; `scancel {ids}` stops them)")

    def _parameters(self, study: str, res: Resources) -> dict[str, Any]:
        setup = [f"export {k}={v}" for k, v in worker_env(res.cpus_per_job).items()]
        setup += list(res.sbatch_setup)
        params: dict[str, Any] = {
            "name": job_name(study),
            "timeout_min": res.time_minutes,
            "cpus_per_task": unit_cpus(res),  # + the evaluation pool's when pipelined
            "mem_gb": res.mem_gb,
            "slurm_setup": setup,
            # Slurm sends USR2 this long before the time limit, so submitit can requeue the task.
            "slurm_signal_delay_s": min(120, max(30, res.time_minutes * 60 // 20)),
        }
        if res.gpus_per_job:
            params["gpus_per_node"] = res.gpus_per_job
        if res.partition:
            params["slurm_partition"] = res.partition
        if res.account:
            params["slurm_account"] = res.account
        if res.qos:
            params["slurm_qos"] = res.qos
        if self.max_running:
            params["slurm_array_parallelism"] = self.max_running
        if res.sbatch_extra:
            params["slurm_additional_parameters"] = dict(res.sbatch_extra)
        return params

    def _submit(self, units: list[Unit]) -> None:
        self._follower.follow(j.job_id for unit in units for j in unit)
        self._tasks.update(self.submit(units, self._store, self._resources))

    def _poll(self, timeout: float) -> list[JobOutcome]:
        follower = self._follower
        outcomes = follower.poll()
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.poll_interval
            states = queue_states(self._study)
            if states is not None:
                for slurm_id, job_ids in self._tasks.items():
                    if slurm_id in states:
                        self._ended.pop(slurm_id, None)
                    elif follower.pending.intersection(job_ids):
                        self._ended.setdefault(slurm_id, now)
                running = sum(s == "RUNNING" for s in states.values())
                self._queue = f"slurm: {running} running, {len(states) - running} queued"
        for slurm_id, since in list(self._ended.items()):
            if now - since >= self.ended_grace:
                outcomes += follower.poll()  # rows may have just landed
                outcomes += self._lost(slurm_id)
                del self._ended[slurm_id]
        if not outcomes:
            time.sleep(timeout)
        return outcomes

    def _status(self) -> str | None:
        return self._queue

    def _interrupt(self) -> str:
        pending = self._follower.pending
        live = sorted({sid.split("_")[0] for sid, jids in self._tasks.items()
                       if pending.intersection(jids)})
        return (f"{len(pending)} jobs stay queued or running on Slurm (jobs {' '.join(live)}); "
                f"`benchmark run` again reattaches to them, `scancel {' '.join(live)}` stops them")

    def _close(self, interrupted: bool) -> None:
        """Nothing to let go of: the arrays run on without this driver, which only reads."""

    def _lost(self, slurm_id: str) -> list[JobOutcome]:
        """Records the jobs of a task that left the queue without finishing them; a job whose
        lease another live process holds was not lost but skipped by the task: it runs elsewhere."""
        lost = [j for j in self._tasks[slurm_id] if j in self._follower.pending]
        if not lost:
            return []
        elsewhere = [j for j in lost if (self._store.lease_holder(j) or {}).get(
            "slurm_task", slurm_id) != slurm_id]
        self._follower.pending.difference_update(elsewhere)
        lost = [j for j in lost if j not in elsewhere]
        outcomes = [JobOutcome(j, Status.ELSEWHERE) for j in elsewhere]
        if not lost:
            return outcomes
        state = _final_state(slurm_id)
        root = self._store.root
        reason = (f"Slurm task {slurm_id} ended ({state}) before this job finished; see "
                  f"{root / 'slurm' / slurm_id} and logs/<job_id>.log (if the job did finish "
                  f"there, the results folder is not on a filesystem shared with the nodes)")
        self._follower.pending.difference_update(lost)
        return outcomes + [self._store.record_failure(job_id, reason,
                                          FailureKind.SLURM_TASK_ENDED, slurm_id=slurm_id)
                           for job_id in lost]
