"""The executor flow, owned here once: skip the jobs already done, start the rest, follow them to
an outcome each, and stop cleanly on Ctrl-C or SIGTERM. A back-end says only how to start its jobs
(`_start`), how to add jobs later (`_submit`), how to learn which have finished (`_poll`), what to
do on Ctrl-C (`_interrupt`) and how to let go of what it started (`_close`); the shape follows
submitit's `Executor`.

Every back-end's worker runs a job through `run_claimed`, under the job's lease in the store: a job
that another driver of the same study is running (on this machine or another one sharing the
results folder) comes back as `Status.ELSEWHERE`; the flow counts it as running elsewhere, looks
again every `lease_recheck` seconds, and takes it as done when its rows appear, or submits it again
when its lease is gone or stale (that driver died or let it go) and no rows appeared.
"""

from __future__ import annotations

import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from benchmark.errors import UserError
from benchmark.outcomes import JobOutcome, Status
from benchmark.spec import Job
from benchmark.store import ResultsStore, describe_lease

JobFn = Callable[[Job, ResultsStore, Callable[[str], None] | None], JobOutcome]
"""What runs one job on a worker: `benchmark.jobs.run_job`, or a stand-in in the tests."""


def default_job_fn() -> JobFn:
    """`benchmark.jobs.run_job`, looked up when an executor is built (not when this module is
    imported), so that it is always the current one."""
    from benchmark import jobs

    return jobs.run_job


def run_claimed(job_fn: JobFn, job: Job, store: ResultsStore,
                progress: Callable[[str], None] | None) -> JobOutcome:
    """What a worker of every back-end runs for one job: `job_fn` under the job's lease, so that
    no two processes train it at once; `Status.ELSEWHERE` when another live process holds it."""
    if store.is_done(job.job_id):
        return JobOutcome(job.job_id, Status.SKIPPED)
    lease = store.claim(job.job_id)
    if lease is None:
        return JobOutcome(job.job_id, Status.ELSEWHERE,
                          describe_lease(store.lease_holder(job.job_id) or {}))
    with lease:
        if store.is_done(job.job_id):  # finished by its last holder just before this claim
            return JobOutcome(job.job_id, Status.SKIPPED)
        return job_fn(job, store, progress)


def at_least_one(name: str, value: int | None) -> int | None:
    """`value` when it is None or positive; else a one-line UserError naming the argument."""
    if value is not None and value < 1:
        raise UserError(f"{name} must be at least 1, got {value}")
    return value


@dataclass
class RunSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # job_id -> reason
    interrupted: bool = False

    def record(self, outcome: JobOutcome) -> None:
        if outcome.status is Status.DONE:
            self.done.append(outcome.job_id)
        elif outcome.status is Status.SKIPPED:
            self.skipped.append(outcome.job_id)
        else:
            self.failed[outcome.job_id] = outcome.reason

    @property
    def exit_code(self) -> int:
        """0 when every job is done, 1 when some failed; 130 on Ctrl-C (as a shell reports it)."""
        if self.interrupted:
            return 130
        return 1 if self.failed else 0


class Executor(ABC):
    name: str = "?"
    poll_timeout: float = 0.5  # the longest `_poll` waits: how often the bar and Ctrl-C are seen
    lease_recheck: float = 2.0  # how often jobs running elsewhere are looked at again

    def run(self, jobs: list[Job], store: ResultsStore, show_progress: bool = True) -> RunSummary:
        """Runs every job not already done in `store`; returns when each has an outcome, or on
        Ctrl-C / SIGTERM (then `interrupted` is set and unfinished jobs resume on the next run)."""
        summary = RunSummary()
        done_already = store.done_ids()
        todo = []
        for job in jobs:
            if job.job_id in done_already:
                summary.record(JobOutcome(job.job_id, Status.SKIPPED))
            else:
                todo.append(job)
        if not todo:
            return summary
        try:
            self._start(todo, store)
            self._follow(todo, store, summary, show_progress)
        finally:
            self._close(summary.interrupted)
        return summary

    def _follow(self, todo: list[Job], store: ResultsStore, summary: RunSummary,
                show_progress: bool) -> None:
        bar = tqdm(total=len(todo), unit="job", disable=not show_progress, dynamic_ncols=True,
                   desc=todo[0].study)
        remaining = len(todo)  # not bar.n: a disabled bar does not count
        jobs = {j.job_id: j for j in todo}
        elsewhere: set[str] = set()  # jobs another driver holds the lease of
        recheck = 0.0

        def finish(outcome: JobOutcome) -> None:
            nonlocal remaining
            summary.record(outcome)
            remaining -= 1
            if outcome.status is Status.FAILED:
                bar.write(f"job {outcome.job_id} failed: {outcome.reason}")
            describe()
            bar.update(1)

        def describe() -> None:
            bar.set_description_str(
                f"{len(summary.done)} done, {len(summary.failed)} failed, {remaining} remaining"
                + (f", {len(elsewhere)} running elsewhere" if elsewhere else ""), refresh=False)

        try:
            with _sigterm_as_interrupt():
                while remaining > 0:
                    for outcome in self._poll(self.poll_timeout):
                        if outcome.status is Status.ELSEWHERE:
                            elsewhere.add(outcome.job_id)
                            describe()
                        else:
                            finish(outcome)
                    if elsewhere and time.monotonic() >= recheck:
                        recheck = time.monotonic() + self.lease_recheck
                        free = []
                        for job_id in sorted(elsewhere):
                            if store.is_done(job_id):  # finished there
                                elsewhere.discard(job_id)
                                finish(JobOutcome(job_id, Status.SKIPPED))
                            elif store.lease_holder(job_id) is None:  # let go, or that driver died
                                elsewhere.discard(job_id)
                                free.append(jobs[job_id])
                        if free:
                            self._submit(free)
                            describe()
                    status = self._status()
                    if status:
                        bar.set_postfix_str(status[:80], refresh=False)
                    bar.refresh()
        except KeyboardInterrupt:
            summary.interrupted = True
            bar.write(f"interrupted: {self._interrupt()}")
        finally:
            bar.close()

    # -- what a back-end supplies -----------------------------------------------------------
    @abstractmethod
    def _start(self, todo: list[Job], store: ResultsStore) -> None:
        """Checks the jobs can run here and launches them (or arranges to, as workers free up).
        Bad input is a UserError raised before anything is launched."""

    @abstractmethod
    def _submit(self, jobs: list[Job]) -> None:
        """Adds jobs to the started run (jobs that were running elsewhere and are free again)."""

    @abstractmethod
    def _poll(self, timeout: float) -> list[JobOutcome]:
        """Waits at most about `timeout` seconds; returns the outcomes learnt since the last call
        (failure records already written), launching more jobs if the back-end paces them."""

    def _status(self) -> str | None:
        """A short line for the progress bar (the last progress message, the queue); None keeps
        the previous one."""
        return None

    @abstractmethod
    def _interrupt(self) -> str:
        """On Ctrl-C: stops what must stop; returns what happens to the unfinished jobs."""

    @abstractmethod
    def _close(self, interrupted: bool) -> None:
        """Lets go of what `_start` set up (also when it failed half-way)."""


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """`kill` or a scheduler's SIGTERM stops a run like Ctrl-C (only the main thread can catch
    signals; a run in another thread keeps the process's handler)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
