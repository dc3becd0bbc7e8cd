"""AAM and MMIG from the seed poster (Dubois et al.), on MIG's discretised MI matrix.

AAM (axis-alignment) per factor k: (top MI − sum of the other codes' MI, floored at 0) / top MI
(0 when no code has information about k); score = mean over factors.
MMIG per factor k: (top-1 − top-2 MI) / (H(v_k) − max_{k'≠k} I(v_k; v_k')), i.e. MIG normalised by
the information about v_k that no other factor already carries; score = mean over factors.
Both use the histogram discretiser of MIG (20 bins); estimators differ from the poster's exact
q(z|x) MI, so values are not interchangeable with it.
"""

from __future__ import annotations

import numpy as np

from benchmark.errors import UserError
from benchmark.metrics import utils


def aam_from_mutual_info(mutual_info: np.ndarray) -> float:
    """Mean AAM over factors of a (codes × factors) MI matrix."""
    top = mutual_info.max(axis=0)
    rest = mutual_info.sum(axis=0) - top
    with np.errstate(divide="ignore", invalid="ignore"):
        per = np.where(top > 0, np.maximum(top - rest, 0.0) / top, 0.0)
    return float(np.mean(per))


def mmig_from_mutual_info(mutual_info: np.ndarray, factor_mi: np.ndarray) -> float:
    """Mean MMIG over factors; ``factor_mi`` is the (K, K) factor-factor MI (diagonal = entropy)."""
    if mutual_info.shape[0] < 2:
        raise UserError("mmig needs at least two code dimensions")
    k = factor_mi.shape[0]
    entropy = np.diag(factor_mi)
    off = factor_mi - np.diag(entropy)
    shared = off.max(axis=1) if k > 1 else np.zeros(k)
    denom = entropy - shared
    if np.any(denom <= 0):
        j = int(np.argmin(denom))
        raise UserError(f"mmig: factor {j} is determined by another factor in the sample")
    s = np.sort(mutual_info, axis=0)[::-1]
    return float(np.mean((s[0] - s[1]) / denom))


def _mi(codes_train, factors_train, num_bins):
    codes, factors = utils.check_pair(codes_train, factors_train, "train")
    utils.require_multiclass(factors, "aam/mmig")
    return utils.binned_mutual_info(codes, factors, num_bins), factors


def score_aam(codes_train, factors_train, codes_test, factors_test, *, seed=0, n_jobs=1,
              num_bins=20):
    del codes_test, factors_test, seed, n_jobs
    return {"aam": aam_from_mutual_info(_mi(codes_train, factors_train, num_bins)[0])}


def score_mmig(codes_train, factors_train, codes_test, factors_test, *, seed=0, n_jobs=1,
               num_bins=20):
    del codes_test, factors_test, seed, n_jobs
    m, factors = _mi(codes_train, factors_train, num_bins)
    return {"mmig": mmig_from_mutual_info(m, utils.discrete_mutual_info(factors, factors))}
