"""The environment a job's process needs: glibc malloc settings and its share of the cores
(measurements in docs/performance.md).

glibc returns freed activation buffers (up to 8 MB) to the OS and page-faults them back every step;
these thresholds keep them, which made CPU steps 1.3x faster and removed 10x stalls. glibc reads the
variables once, at process start, so every executor puts them in the environment its workers start
with (`worker_env`); `benchmark.training.configure_allocator` also applies them to a running process
with `mallopt`. Kept free of torch so the executors' drivers can import it cheaply.

Two numbers of cores, kept apart on purpose: the torch threads a job trains and encodes with are a
property of the job (`Job.threads`, the spec's `resources.cpus_per_job`), because CPU reductions
split their sums by thread count and the results would otherwise depend on how many jobs shared the
machine; the cores the executor gives the job's process (`process_cores`, OMP_NUM_THREADS) go to
the metrics' independent estimator fits, whose results do not depend on their parallelism.
"""

from __future__ import annotations

import os
import signal

MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "33554432",
    "MALLOC_TRIM_THRESHOLD_": "17179869184",
    "MALLOC_TOP_PAD_": "268435456",
}


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_env(threads: int | None = None) -> dict[str, str]:
    """The variables a job's process must start with: the malloc settings and, when the executor
    gives the job `threads` cores, OMP_NUM_THREADS (OpenMP sizes its pool once, at start)."""
    env = dict(MALLOC_ENV)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def apply_worker_env(threads: int | None = None) -> None:
    """Puts `worker_env(threads)` in this process's environment, for the processes it starts (and
    for OpenMP here, if it has not started yet). Malloc settings a user exported are kept."""
    env = worker_env(threads)
    env.update((key, os.environ[key]) for key in MALLOC_ENV if key in os.environ)
    os.environ.update(env)


def process_cores() -> int:
    """The cores the executor gave this process (the OMP_NUM_THREADS of `worker_env`, which Ray
    also sets from a task's `num_cpus`); all available cores outside an executor."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return available_cores()


def die_with_parent(parent: int | None = None) -> None:
    """Linux: this process is killed when the one that started it dies (PR_SET_PDEATHSIG), instead
    of running on as an orphan: the executors' workers, and the processes of the metrics' fits
    (whose idle workers would otherwise wait out joblib's 300 s timeout). A job killed this way
    resumes from its last checkpoint on the next run. `parent`, the pid of the process that
    started this one: if it died before this call (while this process was starting), exit now."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent:
        os._exit(1)
