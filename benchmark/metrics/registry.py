"""METRICS: every metric by name, with its study defaults (dlib's names) and its scorer.

The scorers are named, not imported: each is imported on its first call (`LazyFunction`), so that
reading the registry (validating a spec, expanding a study with ``--dry-run``) loads neither
scikit-learn nor torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from benchmark.errors import UserError
from benchmark.metrics import gaussian_mi
from benchmark.metrics.base import Metric

_SIZES = [10, 100, 1000, 10000]


@dataclass(frozen=True)
class LazyFunction:
    """``benchmark.metrics.<module>.<name>(*args, ...)``, the module imported on the first call."""

    module: str
    name: str
    args: tuple[Any, ...] = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fn = getattr(importlib.import_module(f"benchmark.metrics.{self.module}"), self.name)
        return fn(*self.args, *args, **kwargs)


def _lazy(module: str, name: str, *args: Any) -> LazyFunction:
    return LazyFunction(module, name, args)


# Defaults: unsupervised_study_v1's metric configs (irs: config/sample/irs/irs.gin). irs's
# batch_size is dlib's encoding batch: accepted as dlib's configs set it, it changes no score (codes
# come from the suite's one pool, encoded in `encode_batch_size` batches for every metric).
METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("beta_vae", {"batch_size": 64, "num_train": 10000, "num_eval": 5000},
               "BetaVAE score (Higgins et al. 2017)", intervene=_lazy("beta_vae", "intervene")),
        Metric("factor_vae", {"batch_size": 64, "num_train": 10000, "num_eval": 5000,
                              "num_variance_estimate": 10000, "prune_dims_threshold": 0.05},
               "FactorVAE score (Kim & Mnih 2018)", intervene=_lazy("factor_vae", "intervene")),
        Metric("mig", {"num_train": 10000, "num_bins": 20},
               "Mutual Information Gap (Chen et al. 2018)", score=_lazy("mig", "score"),
               uses_test=False),
        Metric("dci", {"num_train": 10000, "num_test": 5000, "n_estimators": 100},
               "DCI disentanglement/completeness/informativeness (Eastwood & Williams 2018)",
               score=_lazy("dci", "score")),
        Metric("sap", {"num_train": 10000, "num_test": 5000, "continuous_factors": False},
               "SAP score (Kumar et al. 2018)", score=_lazy("sap", "score")),
        Metric("modularity_explicitness", {"num_train": 10000, "num_test": 5000, "num_bins": 20},
               "Modularity and explicitness (Ridgeway & Mozer 2018)",
               score=_lazy("modularity_explicitness", "score")),
        Metric("unsupervised", {"num_train": 10000, "num_bins": 20},
               "Gaussian TC, Wasserstein correlation, mean code MI (Locatello et al. 2019)",
               score=_lazy("unsupervised", "score"), uses_test=False),
        Metric("downstream_lr", {"num_train": _SIZES, "num_test": 5000,
                                 "efficiency_sizes": (100, 10000)},
               "Downstream accuracy, LogisticRegressionCV (Locatello et al. 2019)",
               score=_lazy("downstream", "score_lr"),
               extra={"fit_sizes": _lazy("downstream", "downstream_sizes", "lr")}),
        Metric("downstream_gbt", {"num_train": _SIZES, "num_test": 5000,
                                  "efficiency_sizes": (100, 10000), "n_estimators": 100},
               "Downstream accuracy, gradient boosted trees (Locatello et al. 2019)",
               score=_lazy("downstream", "score_gbt"),
               extra={"fit_sizes": _lazy("downstream", "downstream_sizes", "gbt")}),
        Metric("irs", {"num_train": 10000, "batch_size": 16, "diff_quantile": 0.99, "num_bins": 20},
               "Interventional Robustness Score (Suter et al. 2019)", score=_lazy("irs", "score"),
               uses_test=False),
        Metric("aam", {"num_train": 10000, "num_bins": 20},
               "Axis-alignment metric (Dubois et al.)", score=_lazy("aam_mmig", "score_aam"),
               uses_test=False),
        Metric("mmig", {"num_train": 10000, "num_bins": 20},
               "Modified MIG (Dubois et al.)", score=_lazy("aam_mmig", "score_mmig"), uses_test=False),
        # Opt-in (in_all=False): exact MI from q(z|x) over the whole grid (gaussian_mi.py).
        Metric("mig_exact", {"num_samples": gaussian_mi.DEFAULT_NUM_SAMPLES},
               "MIG, exact-data estimator from q(z|x) over the whole grid (Chen et al. 2018)",
               posterior=_lazy("gaussian_mi", "score", "mig_exact"), uses_test=False, in_all=False),
        Metric("aam_exact", {"num_samples": gaussian_mi.DEFAULT_NUM_SAMPLES},
               "Axis-alignment metric on the exact-data MI (Dubois et al.)",
               posterior=_lazy("gaussian_mi", "score", "aam_exact"), uses_test=False, in_all=False),
        Metric("mmig_exact", {"num_samples": gaussian_mi.DEFAULT_NUM_SAMPLES},
               "Modified MIG on the exact-data MI (Dubois et al.)",
               posterior=_lazy("gaussian_mi", "score", "mmig_exact"), uses_test=False, in_all=False),
    ]
}


def default_metrics() -> list[str]:
    """What "all" means (registry order): every metric but the opt-in ones (``in_all=False``)."""
    return [name for name, m in METRICS.items() if m.in_all]


def get_metric(name: str) -> Metric:
    """The registered metric ``name``; an unknown name raises UserError."""
    try:
        return METRICS[name]
    except KeyError:
        raise UserError(f"unknown metric {name!r} (known: {', '.join(sorted(METRICS))})") from None
