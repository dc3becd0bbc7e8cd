"""What the Slurm and Ray back-ends share: running a job on a remote worker with its own log, the
study's resource request, and following jobs through the results store.

The store is the single source of truth for both back-ends: a job is finished when its rows file
(or a failure record written after it was submitted) exists, whichever scheduler ran it and however
many times. That is what lets a later `benchmark run` or `benchmark status` pick up a study whose
driver died, and what makes a job that runs twice (a requeue racing a retry) harmless.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from benchmark.errors import UserError
from benchmark.executors.base import JobFn, PackFn, Unit, run_unit
from benchmark.outcomes import FailureKind, JobOutcome, Status
from benchmark.spec import Job, Resources
from benchmark.store import ResultsStore, format_exception, now_utc


def study_resources(jobs: Sequence[Job]) -> Resources:
    """The one resource request of a batch of jobs (they come from one spec's `resources:`)."""
    requests = {tuple(sorted((k, repr(v)) for k, v in j.resources.items())) for j in jobs}
    if len(requests) > 1:
        raise UserError("jobs of one run ask for different resources; run one study at a time")
    return Resources.model_validate(jobs[0].resources if jobs else {})


def chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_logged(job_fn: JobFn, pack_fn: PackFn, unit: Unit, store: ResultsStore,
               where: str, redirect: bool = True) -> list[JobOutcome]:
    """Runs one unit (a job or a pack) on a worker with its stdout/stderr and progress in
    `store.log_path(job_id)` of its first job; a pack's other jobs' logs point there.

    `job_fn` and `pack_fn` record their own failures; an exception that escapes them anyway is
    recorded here, since a remote driver learns about jobs only through the store. Its jobs run
    under their leases (`run_unit`). In a pipelined lane (`redirect` False) units overlap, so
    file descriptors 1 and 2 stay the task's own; progress still goes to the job's log.
    """
    job = unit[0]
    log_path = store.log_path(job.job_id)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for other in unit[1:]:
        with open(store.log_path(other.job_id), "a", encoding="utf-8") as log:
            log.write(f"--- {now_utc().isoformat()} job {other.job_id} ({other.model} seed "
                      f"{other.seed}) trains in a pack of {len(unit)}: see {log_path.name}\n")
    with open(log_path, "a", buffering=1, encoding="utf-8") as log:
        pack = f", in a pack of {len(unit)} with {' '.join(j.job_id for j in unit[1:])}" if unit[1:] else ""
        log.write(f"--- {now_utc().isoformat()} job {job.job_id} ({job.model} seed {job.seed}) "
                  f"on {socket.gethostname()} pid {os.getpid()}, {where}{pack}\n")

        def progress(message: str) -> None:
            log.write(f"{now_utc().isoformat()} {message}\n")

        with _redirect_output(log) if redirect else contextlib.nullcontext():
            try:
                outcomes = run_unit(job_fn, pack_fn, unit, store, progress)
            except Exception as exc:  # noqa: BLE001 - recorded, the rest of the chunk goes on
                reason, tb = format_exception(exc)
                sys.stderr.write(tb)
                outcomes = [JobOutcome(j.job_id, Status.DONE) if store.is_done(j.job_id) else
                            store.record_failure(j.job_id, reason, FailureKind.ERROR, traceback=tb)
                            for j in unit]
        for outcome in outcomes:
            log.write(f"--- {now_utc().isoformat()} job {outcome.job_id}: {outcome.status} "
                      f"{outcome.reason}\n")
    return outcomes


class _redirect_output:
    """Points file descriptors 1 and 2 (prints, warnings, C libraries) at `log` for one job."""

    def __init__(self, log: Any):
        self.log = log

    def __enter__(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = [os.dup(1), os.dup(2)]
        os.dup2(self.log.fileno(), 1)
        os.dup2(self.log.fileno(), 2)

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in zip((1, 2), self.saved):
            os.dup2(saved, fd)
            os.close(saved)


class StoreFollower:
    """Tells which of the followed jobs have finished, from the store alone.

    A failure record counts only if it appeared or changed after following began: a failure left
    by an earlier run is what is being retried, not the outcome of this attempt.
    """

    def __init__(self, store: ResultsStore, job_ids: Iterable[str]):
        self.store = store
        self.pending = set(job_ids)
        self._old_failures = {jid: sig for jid, sig in self._failure_signatures().items()
                              if jid in self.pending}

    def _failure_signatures(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        try:
            with os.scandir(self.store.failures_dir) as it:
                for entry in it:
                    if entry.name.endswith(".json") and not entry.name.startswith("."):
                        st = entry.stat()
                        out[entry.name[:-5]] = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            pass
        return out

    def follow(self, job_ids: Iterable[str]) -> None:
        """Follows more jobs; as at the start, their failure records left until now are old."""
        job_ids = set(job_ids)
        self._old_failures.update((jid, sig) for jid, sig in self._failure_signatures().items()
                                  if jid in job_ids)
        self.pending |= job_ids

    def poll(self) -> list[JobOutcome]:
        if not self.pending:
            return []
        finished = []
        done = self.store.done_ids() & self.pending
        for jid in done:
            finished.append(JobOutcome(jid, Status.DONE))
        self.pending -= done
        failures = self._failure_signatures()
        for jid in sorted(self.pending & set(failures)):
            if self._old_failures.get(jid) == failures[jid]:
                continue
            finished.append(JobOutcome(jid, Status.FAILED, self._reason(jid)))
            self.pending.discard(jid)
        return finished

    def _reason(self, job_id: str) -> str:
        try:
            return json.loads(self.store.failure_path(job_id).read_text()).get("reason", "?")
        except (OSError, ValueError):
            return "failed (unreadable failure record)"

