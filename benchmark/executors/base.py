"""The executor flow, owned here once: skip the jobs already done, group the rest into units of
work, start them, follow every job to an outcome, and stop cleanly on Ctrl-C or SIGTERM. A
back-end says only how to start its units (`_start`), how to add units later (`_submit`), how to
learn which jobs have finished (`_poll`), what to do on Ctrl-C (`_interrupt`) and how to let go of
what it started (`_close`); the shape follows submitit's `Executor`.

A unit is one job, or a pack of jobs whose models train together on one device
(`resources.models_per_device`, `benchmark.jobs.pack_units`): one worker, array task or Ray task
runs it with `run_unit`, and it still ends in one outcome per job. A worker that holds one device
may run its units as one pipelined lane (`lane_plan`, `run_units`, `take_units`;
`benchmark.eval_pipeline`): the next unit trains while a pool of CPU processes scores the last.

`run_unit` runs a unit's jobs under their leases in the store: a job that another driver of the
same study is running (on this machine or another one sharing the results folder) is left out of
its unit and comes back as `Status.ELSEWHERE`; the flow counts it as running elsewhere, looks again
every `lease_recheck` seconds, and takes it as done when its rows appear, or submits it again (in
new units) when its lease is gone or stale (that driver died or let it go) and no rows appeared.
"""

from __future__ import annotations

import signal
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tqdm import tqdm

from benchmark.errors import UserError
from benchmark.jobs import pack_units
from benchmark.outcomes import FailureKind, JobOutcome, Status
from benchmark.spec import Job, Resources
from benchmark.store import ResultsStore, describe_lease

JobFn = Callable[[Job, ResultsStore, Callable[[str], None] | None], JobOutcome]
"""What runs one job on a worker: `benchmark.jobs.run_job`, or a stand-in in the tests."""
PackFn = Callable[[list[Job], ResultsStore, Callable[[str], None] | None], list[JobOutcome]]
"""What runs a pack of jobs on a worker, one outcome per job: `benchmark.jobs.run_pack`, or a
stand-in in the tests."""
Unit = list[Job]


def default_job_fn() -> JobFn:
    """`benchmark.jobs.run_job`, looked up when an executor is built (not when this module is
    imported), so that it is always the current one."""
    from benchmark import jobs

    return jobs.run_job


def default_pack_fn() -> PackFn:
    """`benchmark.jobs.run_pack`, looked up as `default_job_fn` is."""
    from benchmark import jobs

    return jobs.run_pack


def run_unit(job_fn: JobFn, pack_fn: PackFn, unit: Unit, store: ResultsStore,
             progress: Callable[[str], None] | None) -> list[JobOutcome]:
    """What a worker of every back-end runs for one unit, one outcome per job in unit order: the
    jobs it can claim run under their leases (released when the unit ends), so that no two
    processes train a job at once; `job_fn` runs a single one, `pack_fn` several together. A job
    already done is `Status.SKIPPED`; one whose lease another live process holds is left out, as
    `Status.ELSEWHERE`."""
    outcomes: dict[str, JobOutcome] = {}
    claimed: list[Job] = []
    with ExitStack() as leases:
        for job in unit:
            if store.is_done(job.job_id):
                outcomes[job.job_id] = JobOutcome(job.job_id, Status.SKIPPED)
                continue
            lease = store.claim(job.job_id)
            if lease is None:
                outcomes[job.job_id] = JobOutcome(
                    job.job_id, Status.ELSEWHERE, describe_lease(store.lease_holder(job.job_id) or {}))
                continue
            leases.enter_context(lease)
            if store.is_done(job.job_id):  # finished by its last holder just before this claim
                outcomes[job.job_id] = JobOutcome(job.job_id, Status.SKIPPED)
            else:
                claimed.append(job)
        if len(claimed) == 1:
            outcomes[claimed[0].job_id] = job_fn(claimed[0], store, progress)
        elif claimed:
            outcomes.update((o.job_id, o) for o in pack_fn(claimed, store, progress))
    return [outcomes[j.job_id] for j in unit]


@dataclass(frozen=True)
class LanePlan:
    """How a worker runs its units as one pipelined lane (`benchmark.eval_pipeline.run_lane`):
    the evaluation pool's processes and the threads of each (and of training)."""

    eval_workers: int
    threads: int


def lane_plan(units: list[Unit], cores: int | None = None) -> LanePlan | None:
    """The lane a worker holding one device runs `units` in, or None when their evaluation stays
    on the device (`resources.pipeline_eval`, `eval_pipeline.wants_pipeline`); `cores`: the
    worker's, where known (local), to size the pool."""
    from benchmark.eval_pipeline import eval_workers, wants_pipeline

    job = units[0][0]
    res = Resources.model_validate(job.resources)
    if not wants_pipeline(res, str(job.training.get("device", "auto"))):
        return None
    return LanePlan(eval_workers(res, cores), res.cpus_per_job)


def run_units(run: Callable[[Unit], list[JobOutcome]], units: list[Unit], plan: LanePlan | None,
              done: Callable[[list[JobOutcome]], None] | None = None) -> list[JobOutcome]:
    """`run(unit)` for each of a worker's units in order (`run_unit`, or `run_logged` on a cluster),
    pipelined as one lane when `plan` says so; `done(outcomes)` as each unit ends."""
    if plan is not None:
        from benchmark.eval_pipeline import run_lane

        return run_lane(run, units, plan.eval_workers, plan.threads, done)
    outcomes = []
    for unit in units:
        outcomes += (out := run(unit))
        if done is not None:
            done(out)
    return outcomes


def take_units(todo: deque[Unit], free: int, plan: LanePlan | None) -> list[Unit]:
    """What a back-end launches next on one free worker (of `free`): one unit, or, pipelined, an
    equal share of the queued units as one lane (the device idles only at a lane's ends)."""
    count = 1 if plan is None else -(-len(todo) // max(1, free))
    return [todo.popleft() for _ in range(min(count, len(todo)))]


def unit_outcomes_after_death(store: ResultsStore, unit: Unit, reason: str, kind: FailureKind,
                              launched: datetime) -> list[JobOutcome]:
    """The outcomes of a unit launched at `launched` whose worker died: the jobs whose rows it
    wrote before are done; a job whose live lease was taken before the launch was left out of the
    unit by `run_unit` and runs elsewhere; the others failed with `reason` (they resume from their
    checkpoints on the next run)."""
    def outcome(job: Job) -> JobOutcome:
        if store.is_done(job.job_id):
            return JobOutcome(job.job_id, Status.DONE)
        holder = store.lease_holder(job.job_id) or {}
        if holder.get("started_at", "~") < launched.isoformat():  # ISO UTC times sort as strings
            return JobOutcome(job.job_id, Status.ELSEWHERE, describe_lease(holder))
        return store.record_failure(job.job_id, reason, kind)

    return [outcome(j) for j in unit]


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
            self._start(pack_units(todo), store)  # packs of the jobs not done: filtered first
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
                        for job_id in [jid for jid in jobs if jid in elsewhere]:  # job order
                            if store.is_done(job_id):  # finished there
                                elsewhere.discard(job_id)
                                finish(JobOutcome(job_id, Status.SKIPPED))
                            elif store.lease_holder(job_id) is None:  # let go, or that driver died
                                elsewhere.discard(job_id)
                                free.append(jobs[job_id])
                        if free:
                            self._submit(pack_units(free))
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
    def _start(self, units: list[Unit], store: ResultsStore) -> None:
        """Checks the units can run here and launches them (or arranges to, as workers free up),
        each with `run_unit`. Bad input is a UserError raised before anything is launched."""

    @abstractmethod
    def _submit(self, units: list[Unit]) -> None:
        """Adds units to the started run (of jobs that were running elsewhere and are free
        again), each run with `run_unit` as `_start`'s are."""

    @abstractmethod
    def _poll(self, timeout: float) -> list[JobOutcome]:
        """Waits at most about `timeout` seconds; returns the jobs' outcomes learnt since the last
        call (failure records already written), launching more units if the back-end paces them."""

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
