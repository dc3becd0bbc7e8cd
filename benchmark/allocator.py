"""The environment a job's process needs: glibc malloc settings and its share of the cores
(measurements in docs/performance.md).

glibc returns freed activation buffers (up to 8 MB) to the OS and page-faults them back every step;
these thresholds keep them, which made CPU steps 1.3x faster and removed 10x stalls. glibc reads the
variables once, at process start, so every executor puts them in the environment its workers start
with (`worker_env`); `benchmark.training.configure_allocator` also applies them to a running process
with `mallopt`. Kept free of torch so the executors' drivers can import it cheaply.
"""

from __future__ import annotations

import os

MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "33554432",
    "MALLOC_TRIM_THRESHOLD_": "17179869184",
    "MALLOC_TOP_PAD_": "268435456",
}


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
