"""Mutual Information Gap (Chen et al., "Isolating Sources of Disentanglement in VAEs", NeurIPS 2018).

As disentanglement_lib's `mig.py`: codes are histogram-discretised (20 equal-width bins per code),
factors are used as class indices, MI in nats with `sklearn.metrics.mutual_info_score` semantics,
MIG = mean over factors of (top-1 MI − top-2 MI) / H(factor).
"""

from __future__ import annotations

import numpy as np

from benchmark.errors import UserError
from benchmark.metrics import utils


def mig_from_mutual_info(mutual_info: np.ndarray, entropy: np.ndarray) -> float:
    """MIG from a (codes, factors) MI matrix and the factors' entropies (pure)."""
    if mutual_info.shape[0] < 2:
        raise UserError("mig needs at least two code dimensions")
    sorted_m = np.sort(mutual_info, axis=0)[::-1]
    return float(np.mean((sorted_m[0, :] - sorted_m[1, :]) / entropy))


def mig(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> dict[str, float]:
    """MIG of codes (N, D) against factors (N, K). Key: ``discrete_mig``."""
    codes, factors = utils.check_pair(codes, factors, "train")
    utils.require_multiclass(factors, "mig")
    m = utils.binned_mutual_info(codes, factors, num_bins)
    return {"discrete_mig": mig_from_mutual_info(m, utils.discrete_entropy(factors))}


def score(codes_train, factors_train, codes_test, factors_test, *, seed=0, n_jobs=1, num_bins=20):
    del codes_test, factors_test, seed, n_jobs
    return mig(codes_train, factors_train, num_bins)
