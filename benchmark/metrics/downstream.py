"""Downstream prediction of each factor from the codes (Locatello et al., ICML 2019, Sec. 5.5).

As disentanglement_lib's `downstream_task.py`: one predictor per factor, `LogisticRegressionCV(Cs=10,
cv=KFold(5))` (downstream_lr) or `GradientBoostingClassifier()` (downstream_gbt); keys per training
size S: ``S:mean_train_accuracy``, ``S:mean_test_accuracy``, ``S:min_train_accuracy``,
``S:min_test_accuracy``, ``S:train_accuracy_factor_i``, ``S:test_accuracy_factor_i``.

Additions: ``efficiency`` = ``A:mean_test_accuracy / B:mean_test_accuracy`` for
``efficiency_sizes = (A, B)``, the paper's statistical efficiency (100 / 10000) that dlib never
computed. From a dataset, the training sets of the sizes are nested prefixes of one sample and share
one test set (dlib draws fresh ones per size; each size's estimate has the same distribution), and
each size's estimators get the random states of a one-size run (so the largest size's GBT fits are
exactly DCI's and are shared with it inside a suite).
Defined value where dlib crashes: a factor with a single class in a (small) training set is
predicted as that class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import KFold

from benchmark.metrics import utils
from benchmark.metrics.dci import gbt_fits, gbt_trees
from benchmark.metrics.parallel import run_fits


def _fit(kind: str, x, y, x_test, y_test, random_state, n_estimators=100):
    if np.unique(y).size < 2:
        return float(np.mean(y == y[0])), float(np.mean(y_test == y[0]))
    if kind == "lr":
        # scoring=None means accuracy, pinned here because sklearn 1.11 changes the default.
        model = LogisticRegressionCV(Cs=10, cv=KFold(n_splits=5), scoring="accuracy")
    else:
        model = GradientBoostingClassifier(random_state=random_state, n_estimators=n_estimators)
    model.fit(x, y)
    return float(np.mean(model.predict(x) == y)), float(np.mean(model.predict(x_test) == y_test))


def _trees(kind: str, y: np.ndarray, n_estimators: int = 100) -> int:
    return gbt_trees(y, n_estimators) if kind == "gbt" and np.unique(y).size >= 2 else 0


def downstream(kind: str, codes_train, factors_train, codes_test, factors_test, *, seed: int = 0,
               n_jobs: int = 1, states: list | None = None,
               n_estimators: int = 100) -> dict[str, float]:
    """Accuracy keys for one training size (= the number of training rows)."""
    codes_train, factors_train = utils.check_pair(codes_train, factors_train, "train")
    codes_test, factors_test = utils.check_pair(codes_test, factors_test, "test")
    k = factors_train.shape[1]
    if states is None:
        states = utils.sklearn_random_states(
            seed, [_trees(kind, factors_train[:, j], n_estimators) for j in range(k)])
    res: list = [None] * k
    single = [j for j in range(k) if np.unique(factors_train[:, j]).size < 2]
    for j in single:
        res[j] = _fit(kind, codes_train, factors_train[:, j], codes_test, factors_test[:, j], None)
    multi = [j for j in range(k) if j not in single]
    if kind == "gbt":  # the same fits as DCI's at this size: shared inside a suite
        fits = gbt_fits(codes_train, factors_train, codes_test, factors_test,
                        [states[j] for j in multi], n_estimators, n_jobs, columns=multi)
        done = [(f[1], f[2]) for f in fits]
    else:
        done = run_fits(_fit, [(kind, codes_train, factors_train[:, j], codes_test,
                                factors_test[:, j], states[j], n_estimators) for j in multi], n_jobs)
    for j, r in zip(multi, done, strict=True):
        res[j] = r
    train = [r[0] for r in res]
    test = [r[1] for r in res]
    s = str(len(codes_train))
    out = {f"{s}:mean_train_accuracy": float(np.mean(train)),
           f"{s}:mean_test_accuracy": float(np.mean(test)),
           f"{s}:min_train_accuracy": float(np.min(train)),
           f"{s}:min_test_accuracy": float(np.min(test))}
    for i in range(k):
        out[f"{s}:train_accuracy_factor_{i}"] = train[i]
        out[f"{s}:test_accuracy_factor_{i}"] = test[i]
    return out


def downstream_sizes(kind: str, params: dict, pool, *, seed: int = 0, n_jobs: int = 1):
    """All training sizes from one pool; each size scored exactly as `downstream` scores those rows.

    Each size's estimators get the random states `downstream(..., seed=seed)` gives them (dlib's
    one global stream after ``np.random.seed(seed)``, restarted per size), so every row of the
    result can be reproduced from the arrays alone with ``compute_metric_on_samples``, and the
    largest size's GBT fits are DCI's fits on the same rows (computed once inside a suite).
    """
    c_tr, f_tr, c_te, f_te = pool
    sizes: Sequence[int] = params["num_train"]
    sizes = [sizes] if isinstance(sizes, int) else list(sizes)
    n_test = params["num_test"]
    n_estimators = params.get("n_estimators", 100)
    out: dict[str, float] = {}
    for s in sizes:
        out.update(downstream(kind, c_tr[:s], f_tr[:s], c_te[:n_test], f_te[:n_test], seed=seed,
                              n_jobs=n_jobs, n_estimators=n_estimators))
    a, b = params.get("efficiency_sizes", (100, 10000))
    if f"{a}:mean_test_accuracy" in out and f"{b}:mean_test_accuracy" in out:
        out["efficiency"] = out[f"{a}:mean_test_accuracy"] / out[f"{b}:mean_test_accuracy"]
    return out


def score_lr(codes_train, factors_train, codes_test, factors_test, *, seed=0, n_jobs=1, **_):
    return downstream("lr", codes_train, factors_train, codes_test, factors_test, seed=seed,
                      n_jobs=n_jobs)


def score_gbt(codes_train, factors_train, codes_test, factors_test, *, seed=0, n_jobs=1,
              n_estimators=100, **_):
    return downstream("gbt", codes_train, factors_train, codes_test, factors_test, seed=seed,
                      n_jobs=n_jobs, n_estimators=n_estimators)
