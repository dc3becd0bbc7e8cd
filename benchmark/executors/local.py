"""The local executor: a pool of worker processes on this machine, one unit (a job, or a pack of
jobs trained together) per worker at a time.

Each unit runs in a worker process, so a job that raises is recorded and the others go on, and a
worker that dies (a signal, the OOM killer) costs only the jobs it was running (a pack's jobs not
finished yet): the pool is rebuilt and the study continues.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from benchmark.allocator import apply_worker_env
from benchmark.executors.base import (
    Executor,
    JobFn,
    PackFn,
    Unit,
    at_least_one,
    default_job_fn,
    default_pack_fn,
    run_unit,
    unit_outcomes_after_death,
)
from benchmark.outcomes import FailureKind, JobOutcome
from benchmark.store import ResultsStore


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_progress_queue: Any = None


def _die_with_parent() -> None:
    """Linux: a worker is killed when the driver dies, instead of training on as an orphan (the
    job resumes from its last checkpoint on the next run)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _init_worker(threads: int, progress_queue: Any) -> None:
    global _progress_queue
    _progress_queue = progress_queue
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C means
    _die_with_parent()
    apply_worker_env(threads)  # before torch starts OpenMP
    import torch

    torch.set_num_threads(threads)


def _send(message: str) -> None:
    if _progress_queue is not None:
        try:
            _progress_queue.put_nowait(message)
        except Exception:  # noqa: BLE001 - progress is best effort
            pass


def _run_in_worker(job_fn: JobFn, pack_fn: PackFn, unit: Unit, store_root: str) -> list[JobOutcome]:
    return run_unit(job_fn, pack_fn, unit, ResultsStore(store_root), _send)


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, workers: int | None = None, job_fn: JobFn | None = None,
                 pack_fn: PackFn | None = None):
        self.workers = at_least_one("workers", workers) or available_cores()
        self.threads = max(1, available_cores() // self.workers)
        self.job_fn = job_fn or default_job_fn()
        self.pack_fn = pack_fn or default_pack_fn()
        self._manager: Any = None
        self._pool: ProcessPoolExecutor | None = None

    def _start(self, units: list[Unit], store: ResultsStore) -> None:
        apply_worker_env()  # glibc reads the malloc settings when a worker starts
        self._ctx = mp.get_context("spawn")  # fork after torch/OpenMP initialisation is unsafe
        self._manager = self._ctx.Manager()
        self._messages = self._manager.Queue()
        self._message: str | None = None
        self._store = store
        self._todo = deque(units)
        self._inflight: dict[Future, Unit] = {}
        self._pool = self._new_pool()

    def _poll(self, timeout: float) -> list[JobOutcome]:
        assert self._pool is not None
        while self._todo and len(self._inflight) < self.workers:
            unit = self._todo.popleft()
            future = self._pool.submit(_run_in_worker, self.job_fn, self.pack_fn, unit,
                                       str(self._store.root))
            self._inflight[future] = unit
        finished, _ = wait(self._inflight, timeout=timeout, return_when=FIRST_COMPLETED)
        self._drain()
        outcomes, broken = [], False
        for future in finished:
            unit = self._inflight.pop(future)
            try:
                outcomes += future.result()
            except BrokenProcessPool:
                broken = True
                outcomes += unit_outcomes_after_death(
                    self._store, unit, "worker process died (killed by a signal or out of memory)",
                    FailureKind.WORKER_DIED)
            except Exception as exc:  # noqa: BLE001 - e.g. a job that cannot be pickled
                outcomes += unit_outcomes_after_death(self._store, unit,
                                                      f"{type(exc).__name__}: {exc}", FailureKind.ERROR)
        if broken:  # the pool cannot be used again: the jobs still queued go to a new one
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
        return outcomes

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
        if self._manager is not None:
            self._manager.shutdown()
            self._manager = None

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers, mp_context=self._ctx, initializer=_init_worker,
            initargs=(self.threads, self._messages),
        )

    def _drain(self) -> None:
        """Keeps the newest progress message the workers sent."""
        while True:
            try:
                self._message = self._messages.get_nowait()
            except (queue.Empty, OSError, EOFError):
                break
