"""Disentanglement metrics with disentanglement_lib's names, keys and study parameters.

    from benchmark.metrics import compute_metric, compute_metric_on_samples, METRICS
    scores = compute_metric("mig", data, represent, seed=0, num_train=1000)
    scores = compute_metric_on_samples("dci", codes_train, factors_train, codes_test, factors_test)

``compute_metric`` draws its samples from a ground-truth dataset (docs/architecture.md, "Datasets") and a representation
``represent(observations (N, C, H, W) float32) -> codes (N, D)``; ``compute_metric_on_samples`` scores
the given arrays as they are. To evaluate many metrics on one model, use
`benchmark.metrics.suite.evaluate`, which encodes once and shares the samples.

The exact-data estimators ``mig_exact``, ``aam_exact`` and ``mmig_exact`` (`gaussian_mi`) need the
Gaussian posterior of every element of a noise-free factor grid instead of codes:
``compute_posterior_metric("mig_exact", data, gaussian, seed=0)`` with
``gaussian(observations) -> (mean, logvar)``. They are opt-in: not part of ``default_metrics()``
("all" in a spec), so that adding them changed no job id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np

from benchmark.errors import UserError
from benchmark.metrics import (
    aam_mmig,
    beta_vae,
    dci,
    downstream,
    factor_vae,
    gaussian_mi,
    irs,
    mig,
    modularity_explicitness,
    sap,
    unsupervised,
)
from benchmark.metrics.base import Metric
from benchmark.metrics.sampling import FactorEncoder, GaussianEncoder, encode_grid_posterior

_SIZES = [10, 100, 1000, 10000]

# Defaults: unsupervised_study_v1's metric configs (irs: config/sample/irs/irs.gin).
METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("beta_vae", {"batch_size": 64, "num_train": 10000, "num_eval": 5000},
               "BetaVAE score (Higgins et al. 2017)", intervene=beta_vae.intervene),
        Metric("factor_vae", {"batch_size": 64, "num_train": 10000, "num_eval": 5000,
                              "num_variance_estimate": 10000, "prune_dims_threshold": 0.05},
               "FactorVAE score (Kim & Mnih 2018)", intervene=factor_vae.intervene),
        Metric("mig", {"num_train": 10000, "num_bins": 20},
               "Mutual Information Gap (Chen et al. 2018)", score=mig.score, uses_test=False),
        Metric("dci", {"num_train": 10000, "num_test": 5000, "n_estimators": 100},
               "DCI disentanglement/completeness/informativeness (Eastwood & Williams 2018)",
               score=dci.score),
        Metric("sap", {"num_train": 10000, "num_test": 5000, "continuous_factors": False},
               "SAP score (Kumar et al. 2018)", score=sap.score),
        Metric("modularity_explicitness", {"num_train": 10000, "num_test": 5000, "num_bins": 20},
               "Modularity and explicitness (Ridgeway & Mozer 2018)",
               score=modularity_explicitness.score),
        Metric("unsupervised", {"num_train": 10000, "num_bins": 20},
               "Gaussian TC, Wasserstein correlation, mean code MI (Locatello et al. 2019)",
               score=unsupervised.score, uses_test=False),
        Metric("downstream_lr", {"num_train": _SIZES, "num_test": 5000,
                                 "efficiency_sizes": (100, 10000)},
               "Downstream accuracy, LogisticRegressionCV (Locatello et al. 2019)",
               score=downstream.score_lr,
               extra={"fit_sizes": lambda p, pool, **kw: downstream.downstream_sizes("lr", p, pool, **kw)}),
        Metric("downstream_gbt", {"num_train": _SIZES, "num_test": 5000,
                                  "efficiency_sizes": (100, 10000), "n_estimators": 100},
               "Downstream accuracy, gradient boosted trees (Locatello et al. 2019)",
               score=downstream.score_gbt,
               extra={"fit_sizes": lambda p, pool, **kw: downstream.downstream_sizes("gbt", p, pool, **kw)}),
        Metric("irs", {"num_train": 10000, "diff_quantile": 0.99, "num_bins": 20},
               "Interventional Robustness Score (Suter et al. 2019)", score=irs.score, uses_test=False),
        Metric("aam", {"num_train": 10000, "num_bins": 20},
               "Axis-alignment metric (Dubois et al.)", score=aam_mmig.score_aam, uses_test=False),
        Metric("mmig", {"num_train": 10000, "num_bins": 20},
               "Modified MIG (Dubois et al.)", score=aam_mmig.score_mmig, uses_test=False),
        # Opt-in (in_all=False): exact MI from q(z|x) over the whole grid (gaussian_mi.py).
        Metric("mig_exact", {"num_samples": gaussian_mi.DEFAULT_NUM_SAMPLES},
               "MIG, exact-data estimator from q(z|x) over the whole grid (Chen et al. 2018)",
               posterior=partial(gaussian_mi.score, "mig_exact"), uses_test=False, in_all=False),
        Metric("aam_exact", {"num_samples": gaussian_mi.DEFAULT_NUM_SAMPLES},
               "Axis-alignment metric on the exact-data MI (Dubois et al.)",
               posterior=partial(gaussian_mi.score, "aam_exact"), uses_test=False, in_all=False),
        Metric("mmig_exact", {"num_samples": gaussian_mi.DEFAULT_NUM_SAMPLES},
               "Modified MIG on the exact-data MI (Dubois et al.)",
               posterior=partial(gaussian_mi.score, "mmig_exact"), uses_test=False, in_all=False),
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


def compute_metric(name: str, data, represent: Callable[[np.ndarray], np.ndarray], seed: int,
                   *, n_jobs: int = 1, encode_batch_size: int = 256,
                   **overrides: Any) -> dict[str, float]:
    """Score ``represent`` on ``data`` with metric ``name`` (study defaults, dlib-named overrides).

    ``seed`` drives the sampling (a numpy Generator) and the sklearn estimators' random states.
    """
    metric = get_metric(name)
    params = metric.params(overrides)
    if metric.posterior is not None:
        raise UserError(f"metric {name} needs the Gaussian posterior q(z|x), not codes: "
                        "use compute_posterior_metric")
    rng = np.random.default_rng(seed)
    encoder = FactorEncoder(data, represent, rng, batch_size=encode_batch_size)
    return run_metric(metric, params, data, encoder, rng, seed=seed, n_jobs=n_jobs)


def compute_posterior_metric(name: str, data, gaussian: GaussianEncoder, seed: int = 0, *,
                             n_jobs: int = 1, encode_batch_size: int = 256,
                             **overrides: Any) -> dict[str, float]:
    """Score a posterior metric (``mig_exact``, ``aam_exact``, ``mmig_exact``; Chen et al. 2018).

    ``gaussian(observations (n, C, H, W) float32) -> (mean, logvar)``, each (n, D). The whole factor
    grid of ``data`` is rendered and encoded (it must be noise-free and enumerable, else UserError).
    """
    metric = get_metric(name)
    if metric.posterior is None:
        raise UserError(f"metric {name} is not a posterior metric: use compute_metric")
    params = metric.params(overrides)
    mean, logvar = encode_grid_posterior(data, gaussian, batch_size=encode_batch_size)
    return run_posterior_metric(metric, params, mean, logvar, data.factor_sizes, seed=seed,
                                n_jobs=n_jobs)


def run_posterior_metric(metric: Metric, params: Mapping[str, Any], mean: np.ndarray,
                         logvar: np.ndarray, factor_sizes, *, seed: int,
                         n_jobs: int = 1) -> dict[str, float]:
    """Run a posterior metric with resolved ``params`` on the grid's (mean, logvar)."""
    return metric.posterior(mean, logvar, tuple(int(s) for s in factor_sizes), seed=seed,
                            n_jobs=n_jobs, **metric.score_params(params))


def run_metric(metric: Metric, params: Mapping[str, Any], data, encoder: FactorEncoder,
               rng: np.random.Generator, *, seed: int, n_jobs: int = 1,
               pool: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
               ) -> dict[str, float]:
    """Run one metric with resolved ``params``; sample metrics slice ``pool`` when given."""
    if metric.posterior is not None:
        raise UserError(f"metric {metric.name} needs the Gaussian posterior q(z|x), not codes: "
                        "use run_posterior_metric")
    if metric.intervene is not None:
        return metric.intervene(lambda n, r: _sample_factors(data, n, r), encoder,
                                tuple(int(s) for s in data.factor_sizes), rng,
                                seed=seed, n_jobs=n_jobs, **params)
    n_train, n_test = metric.sample_sizes(params)
    if pool is None:
        factors = _sample_factors(data, n_train + n_test, rng)
        codes = encoder(factors)
        pool = (codes[:n_train], factors[:n_train], codes[n_train:], factors[n_train:])
    c_tr, f_tr, c_te, f_te = pool
    if len(c_tr) < n_train or len(c_te) < n_test:
        raise ValueError(f"sample pool too small for {metric.name}")
    if "fit_sizes" in metric.extra:
        return metric.extra["fit_sizes"](params, pool, seed=seed, n_jobs=n_jobs)
    return metric.score(c_tr[:n_train], f_tr[:n_train], c_te[:n_test], f_te[:n_test],
                        seed=seed, n_jobs=n_jobs, **metric.score_params(params))


def compute_metric_on_samples(name: str, codes_train: np.ndarray, factors_train: np.ndarray,
                              codes_test: np.ndarray | None = None,
                              factors_test: np.ndarray | None = None, *, seed: int = 0,
                              n_jobs: int = 1, **overrides: Any) -> dict[str, float]:
    """Score given arrays as they are: codes (N, D), factors (N, K) integer class indices.

    Sampling parameters (num_train, num_test, batch_size) do not apply here. ``seed`` seeds the
    sklearn estimators exactly as disentanglement_lib's global ``np.random.seed(seed)`` would.
    """
    metric = get_metric(name)
    if metric.posterior is not None:
        raise UserError(f"metric {name} needs the Gaussian posterior q(z|x) of a whole factor grid: "
                        "use compute_posterior_metric")
    if metric.score is None:
        raise UserError(f"metric {name} intervenes on factors and needs a dataset: use compute_metric")
    bad = sorted(set(overrides) & {"num_train", "num_test", "batch_size"})
    if bad:
        raise UserError(f"{bad[0]} does not apply to compute_metric_on_samples: the arrays are used as given")
    params = metric.score_params(metric.params(overrides))
    if metric.uses_test and (codes_test is None or factors_test is None):
        raise UserError(f"metric {name} needs codes_test and factors_test")
    if codes_test is None:
        codes_test = np.zeros((0, np.shape(codes_train)[-1]))
        factors_test = np.zeros((0, np.shape(factors_train)[-1]), dtype=np.int64)
    return metric.score(codes_train, factors_train, codes_test, factors_test,
                        seed=seed, n_jobs=n_jobs, **params)


def _sample_factors(data, n: int, rng: np.random.Generator) -> np.ndarray:
    factors = np.asarray(data.sample_factors(n, rng))
    if factors.shape != (n, len(data.factor_sizes)):
        raise UserError(f"dataset {getattr(data, 'name', '?')} returned factors of shape {factors.shape}")
    return factors.astype(np.int64, copy=False)


__all__ = ["METRICS", "Metric", "compute_metric", "compute_metric_on_samples",
           "compute_posterior_metric", "default_metrics", "get_metric"]
