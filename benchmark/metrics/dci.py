"""DCI: Disentanglement, Completeness, Informativeness (Eastwood & Williams, ICLR 2018).

As disentanglement_lib's `dci.py`: one `GradientBoostingClassifier()` (sklearn defaults) per factor,
importance = |feature_importances_|, D and C from base-K / base-D entropies of the normalised
importance matrix (rows = codes, columns = factors).

Naming fix: dlib stores informativeness in variables called ``train_err`` / ``test_err`` although
they hold mean classification *accuracies*; the keys ``informativeness_train`` / ``_test`` here are
the same accuracies (higher is better), named for what they are.
"""

from __future__ import annotations

import numpy as np
import scipy.stats
from sklearn.ensemble import GradientBoostingClassifier

from benchmark.metrics import gbt, shared, utils


def disentanglement_per_code(importance_matrix: np.ndarray) -> np.ndarray:
    """1 − entropy (base K) of each code's importance over the K factors."""
    return 1.0 - scipy.stats.entropy(importance_matrix.T + 1e-11, base=importance_matrix.shape[1])


def disentanglement(importance_matrix: np.ndarray) -> float:
    """Disentanglement of an importance matrix (codes × factors), weighted by code importance."""
    importance_matrix = np.asarray(importance_matrix, dtype=np.float64)
    per_code = disentanglement_per_code(importance_matrix)
    if importance_matrix.sum() == 0.0:
        importance_matrix = np.ones_like(importance_matrix)
    code_importance = importance_matrix.sum(axis=1) / importance_matrix.sum()
    return float(np.sum(per_code * code_importance))


def completeness_per_factor(importance_matrix: np.ndarray) -> np.ndarray:
    """1 − entropy (base D) of each factor's importance over the D codes."""
    return 1.0 - scipy.stats.entropy(importance_matrix + 1e-11, base=importance_matrix.shape[0])


def completeness(importance_matrix: np.ndarray) -> float:
    """Completeness of an importance matrix (codes × factors), weighted by factor importance."""
    importance_matrix = np.asarray(importance_matrix, dtype=np.float64)
    per_factor = completeness_per_factor(importance_matrix)
    if importance_matrix.sum() == 0.0:
        importance_matrix = np.ones_like(importance_matrix)
    factor_importance = importance_matrix.sum(axis=0) / importance_matrix.sum()
    return float(np.sum(per_factor * factor_importance))


def gbt_trees(y: np.ndarray, n_estimators: int = 100) -> int:
    """Trees one GradientBoostingClassifier fit grows (each draws one integer from its RNG)."""
    k = np.unique(y).size
    return n_estimators * (1 if k == 2 else k)


def fit_gbt(x_train, y_train, x_test, y_test, random_state, n_estimators=100):
    """(|feature importances|, train accuracy, test accuracy) of one GradientBoostingClassifier.

    `benchmark.metrics.gbt` computes sklearn's numbers for sklearn's model several times faster
    (see its docstring); sklearn itself runs where that port does not apply (another sklearn
    version, no numba, inputs sklearn would reject).
    """
    if gbt.applies(x_train, y_train, x_test):
        return gbt.fit_gbt(x_train, y_train, x_test, y_test, random_state, n_estimators)
    model = GradientBoostingClassifier(random_state=random_state,
                                       n_estimators=n_estimators).fit(x_train, y_train)
    return (np.abs(model.feature_importances_), float(np.mean(model.predict(x_train) == y_train)),
            float(np.mean(model.predict(x_test) == y_test)))


def _fit_and_backend(x_train, y_train, x_test, y_test, random_state, n_estimators):
    """(`fit_gbt`'s result, the back-end label that fitted it): the label travels back with the
    result from a joblib worker, to be counted by the calling process (`gbt.record_fit`)."""
    label = gbt.backend_label(x_train, y_train, x_test)
    return fit_gbt(x_train, y_train, x_test, y_test, random_state, n_estimators), label


def gbt_fits(codes_train, factors_train, codes_test, factors_test, states, n_estimators: int = 100,
             n_jobs: int = 1, columns: list[int] | None = None) -> list[tuple]:
    """`fit_gbt` per factor column; identical fits (same rows, state, stages) are shared in a suite.

    DCI and downstream_gbt at DCI's training size fit exactly the same models, so inside
    `shared.shared_work()` they are fitted once (keys are content digests, see `shared`). Each
    result returned is counted by back-end in `gbt.fit_counts()` (`benchmark.metrics.gbt.backend`).
    """
    columns = list(range(factors_train.shape[1])) if columns is None else columns
    args = [(codes_train, factors_train[:, j], codes_test, factors_test[:, j], states[n], n_estimators)
            for n, j in enumerate(columns)]
    keys = [shared.digest(*a) for a in args] if shared.active() else [None] * len(args)
    costs = [gbt_trees(factors_train[:, j], n_estimators) for j in columns]
    fits = shared.memo_fits("gbt", _fit_and_backend, args, keys, n_jobs, costs)
    for _, label in fits:
        gbt.record_fit(label)
    return [fit for fit, _ in fits]


def importance_gbt(codes_train, factors_train, codes_test, factors_test, *, seed: int = 0,
                   n_jobs: int = 1, n_estimators: int = 100) -> tuple[np.ndarray, float, float]:
    """(importance (D, K), mean train accuracy, mean test accuracy) from one GBT per factor.

    The fits' random states reproduce dlib's shared global stream after ``np.random.seed(seed)``.
    ``n_estimators`` is sklearn's (and so dlib's) 100 unless a quick run lowers it.
    """
    k = factors_train.shape[1]
    states = utils.sklearn_random_states(
        seed, [gbt_trees(factors_train[:, j], n_estimators) for j in range(k)])
    fits = gbt_fits(codes_train, factors_train, codes_test, factors_test, states, n_estimators, n_jobs)
    importance = np.stack([f[0] for f in fits], axis=1)
    return importance, float(np.mean([f[1] for f in fits])), float(np.mean([f[2] for f in fits]))


def dci(codes_train, factors_train, codes_test, factors_test, *, seed: int = 0,
        n_jobs: int = 1, n_estimators: int = 100) -> dict[str, float]:
    """DCI scores. Keys: disentanglement, completeness, informativeness_train, informativeness_test."""
    codes_train, factors_train = utils.check_pair(codes_train, factors_train, "train")
    codes_test, factors_test = utils.check_pair(codes_test, factors_test, "test")
    utils.require_multiclass(factors_train, "dci")
    importance, acc_train, acc_test = importance_gbt(codes_train, factors_train, codes_test,
                                                     factors_test, seed=seed, n_jobs=n_jobs,
                                                     n_estimators=n_estimators)
    return {"informativeness_train": acc_train, "informativeness_test": acc_test,
            "disentanglement": disentanglement(importance), "completeness": completeness(importance)}


score = dci
