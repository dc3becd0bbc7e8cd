"""Independent estimator fits (one per factor, or per code×factor pair) across processes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def run_fits(fn: Callable[..., Any], args: Sequence[tuple], n_jobs: int = 1) -> list[Any]:
    """``[fn(*a) for a in args]``, in parallel with joblib when ``n_jobs != 1`` and there are several."""
    if n_jobs == 1 or len(args) < 2:
        return [fn(*a) for a in args]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=n_jobs)(delayed(fn)(*a) for a in args)
