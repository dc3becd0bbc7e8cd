"""Which back-end fits a GradientBoostingClassifier: this port, or scikit-learn itself.

The port reproduces the sklearn minor versions in ``VERIFIED`` only, and only on inputs that
sklearn accepts (`fallback_reason`). Anywhere else sklearn does the work (and raises its own
errors), with a warning logged once per process and reason (`record_fit`).

Provenance. Every GBT fit of the metrics (DCI, downstream_gbt) goes through
`benchmark.metrics.dci.gbt_fits`. Its per-fit function returns the fit's back-end label
(`backend_label`, decided where the fit runs) with the result, so the label comes back from joblib
worker processes too, and `gbt_fits` counts the labels in the process that called it:
``fit_counts()`` -> ``{"numba-port": n, "sklearn (<reason>)": m}``. The counts are process-local
and count fit results *used*: a fit shared inside a suite between DCI and downstream_gbt
(`benchmark.metrics.shared`) counts once for each metric that used it. To attribute one metric's
rows: ``reset_fit_counts()`` before it, ``fit_counts()`` after it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

try:  # numba is a dependency; without it sklearn does the work.
    import numba
except ImportError:  # pragma: no cover
    numba = None

VERIFIED = ("1.9",)  # sklearn minor versions whose tree/boosting code this reproduces
PORT = "numba-port"  # the label of fits made by this port

_log = logging.getLogger(__name__)
_counts: Counter[str] = Counter()
_warned: set[str] = set()


def njit(fn: Callable) -> Callable:
    """numba's nopython compilation, cached on disk (the plain function without numba).

    Nothing compiled here may be recursive: numba cannot reload cached recursive functions (the
    second run segfaults), hence the explicit stacks in the sorts and the summation.
    """
    return numba.njit(cache=True, nogil=True)(fn) if numba is not None else fn


def _version_reason() -> str | None:
    if numba is None:
        return "numba is not installed"
    import sklearn

    if ".".join(sklearn.__version__.split(".")[:2]) not in VERIFIED:
        return f"scikit-learn {sklearn.__version__} is not the ported {'/'.join(VERIFIED)}"
    return None


def available() -> bool:
    """True when this sklearn's GradientBoostingClassifier is the one ported here."""
    return _version_reason() is None


def fallback_reason(x_train: Any, y_train: Any, x_test: Any) -> str | None:
    """Why the port does not reproduce sklearn on these inputs, or None where it does.

    It does for a verified sklearn, numeric 2-D codes that stay finite as float32 (sklearn's
    tree dtype; it rejects the others), one label per training row and at least two classes
    (sklearn's own errors otherwise)."""
    reason = _version_reason()
    if reason is not None:
        return reason
    x_train = np.asarray(x_train)
    x_test = np.asarray(x_test)
    y_train = np.asarray(y_train)
    if x_train.ndim != 2 or x_test.ndim != 2 or x_train.shape[1] != x_test.shape[1]:
        return "codes are not 2-D with the same columns"
    if x_train.dtype.kind not in "fiu" or x_test.dtype.kind not in "fiu":
        return "codes are not numeric"
    if y_train.ndim != 1 or y_train.shape[0] != x_train.shape[0] or x_train.shape[0] < 2:
        return "not one label per training row, or fewer than 2 rows"
    with np.errstate(over="ignore"):
        finite = (np.isfinite(x_train.astype(np.float32)).all()
                  and np.isfinite(x_test.astype(np.float32)).all())
    if not finite:
        return "codes are not finite as float32"
    if np.unique(y_train).size < 2:
        return "fewer than 2 classes"
    return None


def applies(x_train: Any, y_train: Any, x_test: Any) -> bool:
    """Whether `fit_gbt` reproduces sklearn on these inputs (see `fallback_reason`)."""
    return fallback_reason(x_train, y_train, x_test) is None


def backend_label(x_train: Any, y_train: Any, x_test: Any) -> str:
    """The label of the back-end that fits these inputs: ``PORT`` or ``"sklearn (<reason>)"``."""
    reason = fallback_reason(x_train, y_train, x_test)
    return PORT if reason is None else f"sklearn ({reason})"


def record_fit(label: str) -> None:
    """Count one fit result by its back-end label; warn the first time sklearn had to do it."""
    _counts[label] += 1
    if label != PORT and label not in _warned:
        _warned.add(label)
        _log.warning("GradientBoostingClassifier fitted by %s instead of the numba port "
                     "(slower)", label)


def fit_counts() -> dict[str, int]:
    """Fit results recorded in this process since the last reset, by back-end label."""
    return dict(_counts)


def reset_fit_counts() -> None:
    """Forget the recorded fits (the warnings stay once per process)."""
    _counts.clear()
