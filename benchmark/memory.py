"""A job's peak memory: reset when the job starts (a worker process runs many jobs), read at its end.

Linux keeps a process's peak resident set size (VmHWM, `getrusage().ru_maxrss`); writing "5" to
/proc/self/clear_refs (Linux >= 4.0) resets it to the current size. Elsewhere the peak is the
process's since it started, an upper bound of the job's.
"""

from __future__ import annotations

import resource
import sys

_KIB = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux


def reset_peak_rss() -> None:
    """Start measuring the peak resident memory afresh (best effort)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_rss_mb() -> dict[str, float]:
    """{"peak_rss_mb": this process's peak resident memory in MiB since `reset_peak_rss`} plus
    "peak_rss_children_mb" (the largest finished child process's) when there were children."""
    out = {"peak_rss_mb": _mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)}
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if children > 0:
        out["peak_rss_children_mb"] = _mib(children)
    return out


def _mib(maxrss: int) -> float:
    return round(maxrss * _KIB / 2**20, 1)
