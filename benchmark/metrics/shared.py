"""Work shared between metrics: a content-keyed memo, active only inside `shared_work()`.

Several metrics repeat identical computations on the same rows of the suite's pool: MIG, AAM,
MMIG and modularity all build the histogram-discretised MI matrix of the same codes and factors,
and DCI's gradient-boosted trees are exactly downstream_gbt's fits at the same size (same rows,
same test rows, same estimator random state). Keys are digests of the inputs' *contents* (and of
the estimator's random state), so a hit returns what the computation would have returned: values
cannot change, only the time. Outside `shared_work()` nothing is stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

from benchmark.metrics.parallel import run_fits

_MEMO: ContextVar[dict | None] = ContextVar("benchmark_metrics_shared_memo", default=None)


@contextmanager
def shared_work() -> Iterator[dict]:
    """Memoise shared computations until the block ends (the suite opens one per representation)."""
    memo: dict = {}
    token = _MEMO.set(memo)
    try:
        yield memo
    finally:
        _MEMO.reset(token)


def active() -> bool:
    """True inside `shared_work()`."""
    return _MEMO.get() is not None


def digest(*parts: Any) -> str:
    """Digest of arrays (dtype, shape, bytes), RandomStates (full MT19937 state) and scalars."""
    h = hashlib.blake2b(digest_size=20)
    for p in parts:
        if isinstance(p, np.random.RandomState):
            _, keys, pos, has_gauss, cached = p.get_state()
            h.update(b"RS")
            h.update(np.ascontiguousarray(keys).tobytes())
            h.update(repr((int(pos), int(has_gauss), float(cached))).encode())
        elif isinstance(p, np.ndarray):
            a = np.ascontiguousarray(p)
            h.update(f"A{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        else:
            h.update(f"S{p!r}".encode())
        h.update(b"|")
    return h.hexdigest()


def memo(kind: str, key: Hashable, compute: Callable[[], Any]) -> Any:
    """``compute()``, or its stored value for (kind, key) inside `shared_work()`."""
    store = _MEMO.get()
    if store is None:
        return compute()
    k = (kind, key)
    if k not in store:
        store[k] = compute()
    return store[k]


def memo_fits(kind: str, fn: Callable[..., Any], args: Sequence[tuple], keys: Sequence[Hashable],
              n_jobs: int = 1, costs: Sequence[float] | None = None) -> list[Any]:
    """``[fn(*a) for a in args]``; stored results are reused, the missing ones fit via `run_fits`."""
    store = _MEMO.get()
    if store is None:
        return run_fits(fn, args, n_jobs, costs)
    todo = [i for i, k in enumerate(keys) if (kind, k) not in store]
    # Distinct keys only: two identical fits within one call are fitted once.
    first: dict[Hashable, int] = {}
    for i in todo:
        first.setdefault(keys[i], i)
    fresh = run_fits(fn, [args[i] for i in first.values()], n_jobs,
                     None if costs is None else [costs[i] for i in first.values()])
    for k, r in zip(first, fresh, strict=True):
        store[(kind, k)] = r
    return [store[(kind, k)] for k in keys]
