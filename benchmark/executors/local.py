"""The local executor: a pool of worker processes on this machine, one unit (a job, or a pack of
jobs trained together) per worker at a time.

Each unit runs in a worker process, so a job that raises is recorded and the others go on, and a
worker that dies (a signal, the OOM killer) costs only the jobs it was running (a pack's jobs not
finished yet): the pool is rebuilt and the study continues. By default there is one worker per
`resources.cpus_per_job` cores; each worker is given an equal share of the cores (for the metrics'
fits), while a job (packed or not) trains with its own `cpus_per_job` threads whatever the number
of workers (see `benchmark.allocator`). Pipelined (`resources.pipeline_eval`, a CUDA device), a
worker runs a lane of units (`base.run_units`) with its evaluation pool, by default one worker
holding the device and all the cores, and sends each unit's outcomes as it ends.

Nothing the driver starts outlives it: the workers die with it (PR_SET_PDEATHSIG), and progress
messages travel through a plain pipe (`multiprocessing.Queue`), not through a Manager's server
process, which a driver killed with SIGKILL would leave behind.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from typing import Any

from benchmark.allocator import apply_worker_env, available_cores, die_with_parent
from benchmark.executors.base import (
    Executor,
    JobFn,
    LanePlan,
    PackFn,
    Unit,
    at_least_one,
    default_job_fn,
    default_pack_fn,
    lane_plan,
    run_unit,
    run_units,
    take_units,
    unit_outcomes_after_death,
)
from benchmark.outcomes import FailureKind, JobOutcome
from benchmark.store import ResultsStore, now_utc

__all__ = ["LocalExecutor", "available_cores"]

_progress_queue: Any = None


def _init_worker(cores: int, progress_queue: Any, driver: int) -> None:
    global _progress_queue
    _progress_queue = progress_queue
    # A worker that exits must not wait for its progress messages to reach the driver.
    progress_queue.cancel_join_thread()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C means
    die_with_parent(driver)
    apply_worker_env(cores)  # the worker's share of the cores, before OpenMP starts


def _send(message: str | tuple[int, list[JobOutcome]]) -> None:
    if _progress_queue is not None:
        try:
            _progress_queue.put_nowait(message)
        except Exception:  # noqa: BLE001 - progress is best effort
            pass


def _run_in_worker(job_fn: JobFn, pack_fn: PackFn, units: list[Unit], store_root: str,
                   plan: LanePlan | None, lane: int) -> list[JobOutcome]:
    """One unit, or a pipelined lane of units whose outcomes go to the driver as each unit ends
    (tagged with the lane), not only when the lane does."""
    store = ResultsStore(store_root)
    done = None if plan is None else (lambda outcomes: _send((lane, outcomes)))  # type: ignore[arg-type]
    return run_units(lambda unit: run_unit(job_fn, pack_fn, unit, store, _send), units, plan, done)


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, workers: int | None = None, job_fn: JobFn | None = None,
                 pack_fn: PackFn | None = None):
        self.workers = at_least_one("workers", workers)  # None: set from the jobs' cpus_per_job
        self.job_fn = job_fn or default_job_fn()
        self.pack_fn = pack_fn or default_pack_fn()
        self._messages: Any = None
        self._pool: ProcessPoolExecutor | None = None

    def _start(self, units: list[Unit], store: ResultsStore) -> None:
        apply_worker_env()  # glibc reads the malloc settings when a worker starts
        cores = available_cores()
        if self.workers is None:  # pipelined: one lane holds the device (and the cores)
            self.workers = 1 if lane_plan(units) else max(
                1, cores // max(j.threads for unit in units for j in unit))
        self.cores = max(1, cores // self.workers)  # each worker's share
        self._plan = lane_plan(units, self.cores)
        self._lanes = 0
        self._reported: dict[int, set[str]] = {}  # lane -> jobs whose outcomes came early
        self._early: list[JobOutcome] = []
        self._ctx = mp.get_context("spawn")  # fork after torch/OpenMP initialisation is unsafe
        self._message: str | None = None
        self._store = store
        self._todo = deque(units)
        # -> (its jobs, the pool it went to, when, its lane number)
        self._inflight: dict[Future, tuple[Unit, int, datetime, int]] = {}
        self._pools = 0
        self._pool = self._new_pool()

    def _submit(self, units: list[Unit]) -> None:
        self._todo.extend(units)

    def _poll(self, timeout: float) -> list[JobOutcome]:
        assert self._pool is not None
        while self._todo and len(self._inflight) < self.workers:
            units = take_units(self._todo, self.workers - len(self._inflight), self._plan)
            self._lanes += 1
            try:
                future = self._pool.submit(_run_in_worker, self.job_fn, self.pack_fn, units,
                                           str(self._store.root), self._plan, self._lanes)
            except BrokenProcessPool:  # a worker died between units: none was lost, start afresh
                self._todo.extendleft(reversed(units))
                self._replace_pool()
                continue
            self._reported[self._lanes] = set()
            self._inflight[future] = ([j for u in units for j in u], self._pools, now_utc(),
                                      self._lanes)
        if not self._inflight:  # every job left is running elsewhere
            time.sleep(timeout)
            return []
        finished, _ = wait(self._inflight, timeout=timeout, return_when=FIRST_COMPLETED)
        self._drain()
        outcomes, broken = self._early, False
        self._early = []
        for future in finished:
            jobs, pool, launched, lane = self._inflight.pop(future)
            early = self._reported.pop(lane)
            unit = [j for j in jobs if j.job_id not in early]
            try:
                outcomes += [o for o in future.result() if o.job_id not in early]
            except BrokenProcessPool:
                broken = broken or pool == self._pools  # not a pool replaced already
                outcomes += unit_outcomes_after_death(
                    self._store, unit, "worker process died (killed by a signal or out of memory)",
                    FailureKind.WORKER_DIED, launched)
            except Exception as exc:  # noqa: BLE001 - e.g. a job that cannot be pickled
                outcomes += unit_outcomes_after_death(self._store, unit, f"{type(exc).__name__}: {exc}",
                                                      FailureKind.ERROR, launched)
        if broken:  # the pool cannot be used again: the jobs still queued go to a new one
            self._replace_pool()
        return outcomes

    def _replace_pool(self) -> None:
        assert self._pool is not None
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()

    def _status(self) -> str | None:
        return self._message

    def _interrupt(self) -> str:
        for proc in list((getattr(self._pool, "_processes", None) or {}).values()):
            proc.terminate()
        return ("stopping workers; finished jobs are saved, unfinished ones resume from their "
                "last checkpoint on the next run")

    def _close(self, interrupted: bool) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=not interrupted, cancel_futures=True)
            self._pool = None
        self._close_messages()

    def _new_pool(self) -> ProcessPoolExecutor:
        # A fresh queue with each pool: a worker killed while writing to the old one may have
        # left its lock taken.
        self._close_messages()
        self._messages = self._ctx.Queue()
        self._pools += 1
        return ProcessPoolExecutor(
            max_workers=self.workers, mp_context=self._ctx, initializer=_init_worker,
            initargs=(self.cores, self._messages, os.getpid()),
        )

    def _close_messages(self) -> None:
        if self._messages is not None:
            self._drain()
            self._messages.close()
            self._messages = None

    def _drain(self) -> None:
        """Keeps the newest progress message the workers sent, and the outcomes a lane sent as
        its units ended (one that comes after its lane's own result is already counted there)."""
        while True:
            try:
                message = self._messages.get_nowait()
            except (queue.Empty, OSError, EOFError):
                break
            if isinstance(message, tuple):
                lane, outcomes = message
                if lane in self._reported:
                    self._reported[lane].update(o.job_id for o in outcomes)
                    self._early += outcomes
            else:
                self._message = message
