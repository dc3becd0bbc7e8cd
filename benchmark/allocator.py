"""glibc malloc settings for training processes (measurements: docs/performance.md §1).

glibc returns freed activation buffers (up to 8 MB) to the OS and page-faults them back every step;
these thresholds keep them, which made CPU steps 1.3x faster and removed 10x stalls. glibc reads the
variables at process start, so executors set them in the environment their workers inherit;
`benchmark.training.configure_allocator` also applies them to a running process with `mallopt`.
Kept free of torch so the executors' drivers can import it cheaply.
"""

MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "33554432",
    "MALLOC_TRIM_THRESHOLD_": "17179869184",
    "MALLOC_TOP_PAD_": "268435456",
}
