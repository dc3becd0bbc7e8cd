"""Interventional Robustness Score (Suter et al., "Robustly Disentangled Causal Mechanisms", ICML 2019).

As disentanglement_lib's `irs.py` (sample config: diff_quantile 0.99; factors histogram-discretised
with 20 bins; constant codes dropped).

Bug fixed: dlib reports ``num_active_dims = np.sum(active_mus)``, the sum of the active codes' values;
here it is the number of active (non-constant) code dimensions.
"""

from __future__ import annotations

import numpy as np

from benchmark.metrics import utils


def scalable_disentanglement_score(gen_factors: np.ndarray, latents: np.ndarray,
                                   diff_quantile: float = 0.99) -> dict[str, np.ndarray | float]:
    """IRS matrix and its weighted average (dlib's `scalable_disentanglement_score`)."""
    num_gen, num_lat = gen_factors.shape[1], latents.shape[1]
    max_deviations = np.max(np.abs(latents - latents.mean(axis=0)), axis=0)
    cum_deviations = np.zeros([num_lat, num_gen])
    for i in range(num_gen):
        unique_factors = np.unique(gen_factors[:, i], axis=0)
        for value in unique_factors:
            match = gen_factors[:, i] == value
            diffs = np.abs(latents[match, :] - np.mean(latents[match, :], axis=0))
            cum_deviations[:, i] += np.percentile(diffs, q=diff_quantile * 100, axis=0)
        cum_deviations[:, i] /= unique_factors.shape[0]
    irs_matrix = 1.0 - cum_deviations / max_deviations[:, np.newaxis]
    scores = irs_matrix.max(axis=1)
    if np.sum(max_deviations) > 0.0:
        avg = np.average(scores, weights=max_deviations)
    else:
        avg = np.mean(scores)
    return {"disentanglement_scores": scores, "avg_score": float(avg), "IRS_matrix": irs_matrix,
            "parents": irs_matrix.argmax(axis=1), "max_deviations": max_deviations}


def irs(codes, factors, *, diff_quantile: float = 0.99, num_bins: int = 20) -> dict[str, float]:
    """Keys: IRS, num_active_dims (a count, unlike dlib)."""
    codes, factors = utils.check_pair(codes, factors, "train")
    factors_discrete = utils.histogram_discretize(factors.astype(np.float64), num_bins)
    active = codes[:, codes.var(axis=0) > 0.0]
    if active.shape[1] == 0:
        return {"IRS": 0.0, "num_active_dims": 0.0}
    value = scalable_disentanglement_score(factors_discrete, active, diff_quantile)["avg_score"]
    return {"IRS": value, "num_active_dims": float(active.shape[1])}


def score(codes_train, factors_train, codes_test, factors_test, *, seed=0, n_jobs=1,
          diff_quantile=0.99, num_bins=20):
    del codes_test, factors_test, seed, n_jobs
    return irs(codes_train, factors_train, diff_quantile=diff_quantile, num_bins=num_bins)
