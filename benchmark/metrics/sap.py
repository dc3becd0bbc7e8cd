"""SAP score (Kumar et al., "Variational Inference of Disentangled Latent Concepts...", ICLR 2018).

As disentanglement_lib's `sap_score.py`: with discrete factors (the study's setting), the score of
(code i, factor j) is the test accuracy of `LinearSVC(C=0.01, class_weight="balanced")` trained on
that single code; with ``continuous_factors=True`` it is R² = cov² / (var_code · var_factor), 0 for a
code with variance ≤ 1e-12. SAP = mean over factors of (top-1 − top-2) over codes.
"""

from __future__ import annotations

import numpy as np
from sklearn.svm import LinearSVC

from benchmark.errors import UserError
from benchmark.metrics import utils
from benchmark.metrics.parallel import run_fits


def avg_diff_top_two(matrix: np.ndarray) -> float:
    """Mean over columns (factors) of the gap between the two largest entries (codes)."""
    if matrix.shape[0] < 2:
        raise UserError("sap needs at least two code dimensions")
    s = np.sort(matrix, axis=0)
    return float(np.mean(s[-1, :] - s[-2, :]))


def _svm_accuracy(x, y, x_test, y_test, random_state):
    clf = LinearSVC(C=0.01, class_weight="balanced", random_state=random_state).fit(x[:, None], y)
    return np.mean(clf.predict(x_test[:, None]) == y_test)


def score_matrix(codes_train, factors_train, codes_test, factors_test, continuous_factors=False,
                 *, seed: int = 0, n_jobs: int = 1) -> np.ndarray:
    """(D, K) matrix of per-code predictiveness (accuracy, or R² for continuous factors)."""
    d, k = codes_train.shape[1], factors_train.shape[1]
    m = np.zeros((d, k))
    if continuous_factors:
        for i in range(d):
            for j in range(k):
                cov = np.cov(codes_train[:, i], factors_train[:, j], ddof=1)
                m[i, j] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1]) if cov[0, 0] > 1e-12 else 0.0
        return m
    # dlib's LinearSVCs draw one liblinear seed each from numpy's global stream, code-major order.
    states = utils.sklearn_random_states(seed, [1] * (d * k))
    pairs = [(i, j) for i in range(d) for j in range(k)]
    accs = run_fits(_svm_accuracy, [(codes_train[:, i], factors_train[:, j], codes_test[:, i],
                                     factors_test[:, j], states[n])
                                    for n, (i, j) in enumerate(pairs)], n_jobs)
    for (i, j), a in zip(pairs, accs, strict=True):
        m[i, j] = a
    return m


def sap(codes_train, factors_train, codes_test, factors_test, *, continuous_factors: bool = False,
        seed: int = 0, n_jobs: int = 1) -> dict[str, float]:
    """SAP score. Key: SAP_score."""
    codes_train, factors_train = utils.check_pair(codes_train, factors_train, "train")
    codes_test, factors_test = utils.check_pair(codes_test, factors_test, "test")
    utils.require_multiclass(factors_train, "sap")
    m = score_matrix(codes_train, factors_train, codes_test, factors_test, continuous_factors,
                     seed=seed, n_jobs=n_jobs)
    return {"SAP_score": avg_diff_top_two(m)}


score = sap
