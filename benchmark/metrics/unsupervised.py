"""Unsupervised scores of a representation (Locatello et al., ICML 2019, Sec. 4 and App.).

As disentanglement_lib's `unsupervised_metrics.py`: covariance of the codes (ddof 1), Gaussian total
correlation KL(N(0, Σ) ‖ N(0, diag Σ)), Gaussian Wasserstein correlation
2 tr Σ − 2 tr sqrtm(Σ ⊙ diag(Σ)ᵀ) (real part) and its normalisation by tr Σ, and the mean
off-diagonal discrete MI between histogram-discretised codes.

Defined values where dlib returns NaN: a constant code has variance 0, so dlib's TC is
log 0 − log 0 = NaN. A constant code is independent of every other code and adds nothing to the
total correlation, so it is left out of the TC (and out of the Wasserstein terms, where it adds 0
anyway). Codes that are exact linear functions of others still give +inf TC (mathematically right).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from benchmark.errors import UserError
from benchmark.metrics import utils


def gaussian_total_correlation(cov: np.ndarray) -> float:
    """0.5 (Σ log diag Σ − log det Σ): KL of N(0, Σ) from the product of its marginals."""
    return float(0.5 * (np.sum(np.log(np.diag(cov))) - np.linalg.slogdet(cov)[1]))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
    """2 tr Σ − 2 tr sqrtm(Σ ⊙ diag(Σ)[:, None]) (real part)."""
    sqrtm = scipy.linalg.sqrtm(cov * np.expand_dims(np.diag(cov), axis=1))
    return float(np.real(2 * np.trace(cov) - 2 * np.trace(sqrtm)))


def unsupervised(codes, *, num_bins: int = 20) -> dict[str, float]:
    """Keys: gaussian_total_correlation, gaussian_wasserstein_correlation(_norm), mutual_info_score."""
    codes = utils.check_codes(codes, "codes_train")
    d = codes.shape[1]
    if d < 2:
        raise UserError("unsupervised needs at least two code dimensions")
    cov = np.cov(codes.T)
    live = np.diag(cov) > 0.0
    if not live.any():
        raise UserError("unsupervised: every code dimension is constant")
    cov_live = cov[np.ix_(live, live)]
    with np.errstate(divide="ignore", invalid="ignore"):
        tc = gaussian_total_correlation(cov_live)
    wc = gaussian_wasserstein_correlation(cov_live)
    discrete = utils.binned(codes, num_bins)
    mi = utils.discrete_mutual_info(discrete, discrete)
    np.fill_diagonal(mi, 0)
    return {"gaussian_total_correlation": tc, "gaussian_wasserstein_correlation": wc,
            "gaussian_wasserstein_correlation_norm": wc / float(np.sum(np.diag(cov))),
            "mutual_info_score": float(np.sum(mi) / (d ** 2 - d))}


def score(codes_train, factors_train, codes_test, factors_test, *, seed=0, n_jobs=1, num_bins=20):
    del factors_train, codes_test, factors_test, seed, n_jobs
    return unsupervised(codes_train, num_bins=num_bins)
