"""Independent estimator fits (one per factor, or per code×factor pair) across processes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def run_fits(fn: Callable[..., Any], args: Sequence[tuple], n_jobs: int = 1,
             costs: Sequence[float] | None = None) -> list[Any]:
    """``[fn(*a) for a in args]``, in parallel with joblib when ``n_jobs != 1`` and there are several.

    ``costs`` (relative fit costs) make the workers start with the most expensive fits (longest
    processing time first), which shortens the wall time when the fits are uneven (GBT fits cost
    one tree per class: dSprites' 40-class orientation dominates). Results keep ``args``' order;
    each fit is independent, so the order changes no value.
    """
    if n_jobs == 1 or len(args) < 2:
        return [fn(*a) for a in args]
    from joblib import Parallel, delayed

    order = list(range(len(args)))
    if costs is not None:
        order.sort(key=lambda i: -costs[i])
    out = Parallel(n_jobs=n_jobs)(delayed(fn)(*args[i]) for i in order)
    result: list[Any] = [None] * len(args)
    for i, r in zip(order, out, strict=True):
        result[i] = r
    return result


def release_workers() -> None:
    """Stops the worker processes joblib keeps for the next `run_fits` (loky's reusable executor).

    Idle, they live on for loky's idle timeout (300 s), and a process that exits first waits for
    them: a finished job's process would not return for five minutes. Call it when a job ends.
    """
    try:
        from joblib.externals.loky import reusable_executor
    except ImportError:
        return
    executor = getattr(reusable_executor, "_executor", None)  # None when no fit used a pool
    if executor is not None:
        executor.shutdown(wait=True)
