"""The local executor: a pool of worker processes on this machine, one job per worker at a time.

Each job runs in a worker process, so a job that raises is recorded and the others go on, and a
worker that dies (a signal, the OOM killer) costs only the jobs it was running: the pool is rebuilt
and the study continues.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from tqdm import tqdm

from benchmark.allocator import MALLOC_ENV
from benchmark.executors.base import Executor, RunSummary
from benchmark.jobs import JobOutcome, run_job
from benchmark.spec import Job
from benchmark.store import ResultsStore

JobFn = Callable[[Job, ResultsStore, Callable[[str], None] | None], JobOutcome]


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
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _send(message: str) -> None:
    if _progress_queue is not None:
        try:
            _progress_queue.put_nowait(message)
        except Exception:  # noqa: BLE001 - progress is best effort
            pass


def _run_in_worker(job_fn: JobFn, job: Job, store_root: str) -> JobOutcome:
    return job_fn(job, ResultsStore(store_root), _send)


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, workers: int | None = None, job_fn: JobFn = run_job):
        self.workers = max(1, workers or available_cores())
        self.threads = max(1, available_cores() // self.workers)
        self.job_fn = job_fn

    def run(self, jobs: list[Job], store: ResultsStore, show_progress: bool = True) -> RunSummary:
        summary = RunSummary()
        done_already = store.done_ids()
        todo = deque()
        for job in jobs:
            (summary.skipped.append(job.job_id) if job.job_id in done_already else todo.append(job))
        if not todo:
            return summary
        for key, value in MALLOC_ENV.items():  # read by glibc when a worker starts
            os.environ.setdefault(key, value)
        ctx = mp.get_context("spawn")  # fork after torch/OpenMP initialisation is unsafe
        manager = ctx.Manager()
        messages = manager.Queue()
        bar = tqdm(total=len(todo), unit="job", disable=not show_progress, dynamic_ncols=True,
                   desc=f"{store.root.name}")
        pool = self._new_pool(ctx, messages)
        inflight: dict[Future, Job] = {}
        main_thread = threading.current_thread() is threading.main_thread()
        previous_term = signal.getsignal(signal.SIGTERM)
        if main_thread:  # `kill` or a scheduler's SIGTERM: stop like Ctrl-C
            signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            while todo or inflight:
                while todo and len(inflight) < self.workers:
                    job = todo.popleft()
                    inflight[pool.submit(_run_in_worker, self.job_fn, job, str(store.root))] = job
                finished, _ = wait(inflight, timeout=0.5, return_when=FIRST_COMPLETED)
                _drain(messages, bar)
                broken = False
                for fut in finished:
                    job = inflight.pop(fut)
                    try:
                        outcome = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        reason = "worker process died (killed by a signal or out of memory)"
                        store.write_failure(job.job_id, reason, kind="worker_died")
                        outcome = JobOutcome(job.job_id, "failed", reason)
                    except Exception as exc:  # noqa: BLE001 - e.g. a job that cannot be pickled
                        reason = f"{type(exc).__name__}: {exc}"
                        store.write_failure(job.job_id, reason, kind="error")
                        outcome = JobOutcome(job.job_id, "failed", reason)
                    _record(summary, outcome, bar)
                if broken:
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = self._new_pool(ctx, messages)
        except KeyboardInterrupt:
            summary.interrupted = True
            bar.write("interrupted: stopping workers; finished jobs are saved, unfinished ones resume "
                      "from their last checkpoint on the next run")
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous_term)
            pool.shutdown(wait=not summary.interrupted, cancel_futures=True)
            bar.close()
            manager.shutdown()
        return summary

    def _new_pool(self, ctx: Any, messages: Any) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers, mp_context=ctx, initializer=_init_worker,
            initargs=(self.threads, messages),
        )


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _drain(messages: Any, bar: tqdm) -> None:
    last = None
    while True:
        try:
            last = messages.get_nowait()
        except (queue.Empty, OSError, EOFError):
            break
    if last:
        bar.set_postfix_str(last[:80])


def _record(summary: RunSummary, outcome: JobOutcome, bar: tqdm) -> None:
    summary.record(outcome.job_id, outcome.status, outcome.reason)
    if outcome.job_id in summary.failed:
        bar.write(f"job {outcome.job_id} failed: {outcome.reason}")
    bar.set_description_str(
        f"{len(summary.done)} done, {len(summary.failed)} failed, "
        f"{bar.total - bar.n - 1} remaining", refresh=False)
    bar.update(1)
