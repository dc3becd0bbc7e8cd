"""Modularity and explicitness (Ridgeway & Mozer, "Learning Deep Disentangled Embeddings With the
F-Statistic Loss", NeurIPS 2018), as disentanglement_lib's `modularity_explicitness.py`.

Modularity from the discrete MI matrix of histogram-discretised codes (20 bins); explicitness = ROC-AUC
(macro over one-hot classes) of one `LogisticRegression()` per factor on z-scored codes.

Defined value where dlib crashes: a constant code has standard deviation 0, dlib divides by it and
sklearn rejects the NaNs. Here a zero standard deviation is replaced by 1, so the constant code
becomes a constant 0 feature, which carries no information, as it should.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import MultiLabelBinarizer

from benchmark.errors import UserError
from benchmark.metrics import utils
from benchmark.metrics.parallel import run_fits


def modularity(mutual_information: np.ndarray) -> float:
    """Modularity of a (codes × factors) MI matrix; a code with no information scores 0."""
    squared_mi = np.square(np.asarray(mutual_information, dtype=np.float64))
    max_squared_mi = np.max(squared_mi, axis=1)
    numerator = np.sum(squared_mi, axis=1) - max_squared_mi
    denominator = max_squared_mi * (squared_mi.shape[1] - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = 1.0 - numerator / denominator
    score[max_squared_mi == 0.0] = 0.0
    return float(np.mean(score))


def explicitness_per_factor(x_train, y_train, x_test, y_test) -> tuple[float, float]:
    """ROC-AUC (train, test) of a logistic regression predicting one factor from all codes."""
    clf = LogisticRegression().fit(x_train, y_train)
    mlb = MultiLabelBinarizer()
    roc_train = roc_auc_score(mlb.fit_transform(np.expand_dims(y_train, 1)), clf.predict_proba(x_train))
    y_test_bin = mlb.fit_transform(np.expand_dims(y_test, 1))
    if y_test_bin.shape[1] != len(clf.classes_):
        raise UserError("modularity_explicitness: the test sample's classes differ from the "
                        "training sample's for some factor; use more samples")
    roc_test = roc_auc_score(y_test_bin, clf.predict_proba(x_test))
    return float(roc_train), float(roc_test)


def modularity_explicitness(codes_train, factors_train, codes_test, factors_test, *,
                            num_bins: int = 20, seed: int = 0, n_jobs: int = 1) -> dict[str, float]:
    """Keys: modularity_score, explicitness_score_train, explicitness_score_test."""
    del seed  # lbfgs logistic regression is deterministic
    codes_train, factors_train = utils.check_pair(codes_train, factors_train, "train")
    codes_test, factors_test = utils.check_pair(codes_test, factors_test, "test")
    utils.require_multiclass(factors_train, "modularity_explicitness")
    mi = utils.binned_mutual_info(codes_train, factors_train, num_bins)
    mean = codes_train.mean(axis=0)
    std = codes_train.std(axis=0)
    std = np.where(std == 0.0, 1.0, std)
    x_train, x_test = (codes_train - mean) / std, (codes_test - mean) / std
    res = run_fits(explicitness_per_factor,
                   [(x_train, factors_train[:, j], x_test, factors_test[:, j])
                    for j in range(factors_train.shape[1])], n_jobs)
    return {"modularity_score": modularity(mi),
            "explicitness_score_train": float(np.mean([r[0] for r in res])),
            "explicitness_score_test": float(np.mean([r[1] for r in res]))}


score = modularity_explicitness
