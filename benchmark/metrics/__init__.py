"""Disentanglement metrics with disentanglement_lib's names, keys and study parameters.

    from benchmark.metrics import compute_metric, compute_metric_on_samples, METRICS
    scores = compute_metric("mig", data, represent, seed=0, num_train=1000)
    scores = compute_metric_on_samples("dci", codes_train, factors_train, codes_test, factors_test)

The registry (`METRICS`, `default_metrics`, `get_metric`) is `benchmark.metrics.registry`, the
scoring functions are `benchmark.metrics.api`, one model on many metrics is
`benchmark.metrics.suite.evaluate`; each metric's maths is its own module (`mig`, `dci`, ...).
The exact-data estimators ``mig_exact``, ``aam_exact`` and ``mmig_exact`` are opt-in: not part of
``default_metrics()`` ("all" in a spec), so that adding them changed no job id.
"""

from benchmark.metrics.api import (
    compute_metric,
    compute_metric_on_samples,
    compute_posterior_metric,
    run_metric,
    run_posterior_metric,
)
from benchmark.metrics.base import Metric
from benchmark.metrics.registry import METRICS, default_metrics, get_metric

__all__ = ["METRICS", "Metric", "compute_metric", "compute_metric_on_samples",
           "compute_posterior_metric", "default_metrics", "get_metric", "run_metric",
           "run_posterior_metric"]
