"""sklearn's ``GradientBoostingClassifier()`` fit (default settings), reproduced bit for bit.

A port of sklearn 1.9's boosting (sklearn/ensemble/_gb.py): per stage, the negative gradient of
the log loss (sklearn's own loss object), one regression tree per class column
(`benchmark.metrics.gbt.tree`), the leaf values by one Newton step (``_update_terminal_regions``:
numpy's pairwise sums, Friedman's (K-1)/K factor for K > 2 classes) and the raw-score updates
with the learning rate, in the same order with the same floating-point operations. The initial
raw scores are sklearn's own prior. Only the final average of the importances over the trees is
summed in another order (differences ~1e-16, none observed).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from benchmark.metrics.gbt.backend import njit
from benchmark.metrics.gbt.sort import find_ties, mark_ties, root_cache
from benchmark.metrics.gbt.tree import MAX_NODES, fit_tree, tree_arrays, workspace

RAND_R_MAX = 2147483647  # sklearn draws each tree's random_state below this
LEARNING_RATE = 0.1  # GradientBoostingClassifier's default

# --- numpy's pairwise summation (np.add.reduce of a contiguous float64 vector) ----------------


@njit
def _block_sum(a, lo, n):
    """numpy's pairwise_sum for n <= 128: plain loop below 8, else 8 accumulators."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0 = a[lo]
    r1 = a[lo + 1]
    r2 = a[lo + 2]
    r3 = a[lo + 3]
    r4 = a[lo + 4]
    r5 = a[lo + 5]
    r6 = a[lo + 6]
    r7 = a[lo + 7]
    i = 8
    stop = n - (n % 8)
    while i < stop:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit
def _pairwise(a, lo, n):
    """numpy's recursive pairwise_sum (halves rounded down to a multiple of 8), on an explicit
    stack: numba cannot reload cached recursive functions."""
    frames = np.empty((64, 3), np.int64)  # (lo, n, stage)
    vals = np.empty(64, np.float64)
    top = 0
    nv = 0
    frames[0, 0] = lo
    frames[0, 1] = n
    frames[0, 2] = 0
    while top >= 0:
        fl = frames[top, 0]
        fn = frames[top, 1]
        stage = frames[top, 2]
        if fn <= 128:
            vals[nv] = _block_sum(a, fl, fn)
            nv += 1
            top -= 1
            continue
        n2 = fn // 2
        n2 -= n2 % 8
        if stage == 0:
            frames[top, 2] = 1
            top += 1
            frames[top, 0] = fl
            frames[top, 1] = n2
            frames[top, 2] = 0
        elif stage == 1:
            frames[top, 2] = 2
            top += 1
            frames[top, 0] = fl + n2
            frames[top, 1] = fn - n2
            frames[top, 2] = 0
        else:
            vals[nv - 2] = vals[nv - 2] + vals[nv - 1]
            nv -= 1
            top -= 1
    return vals[0]


@njit
def np_sum(a):
    """``np.sum`` of a contiguous float64 vector, with numpy's rounding."""
    return _pairwise(a, 0, a.shape[0])


# --- one boosting stage ------------------------------------------------------------------------


class Problem(NamedTuple):
    """One fit's inputs, laid out for the port."""

    xt: np.ndarray  # (d, n) float32: training codes, one row per feature
    sorted_init: np.ndarray  # (d, n) int64: each feature's stable argsort
    y_enc: np.ndarray  # (n,) int64: class indices
    indicators: np.ndarray  # (n, K) float64: one-hot classes (binary: the class index, K = 1)
    xt_test: np.ndarray  # (d, m) float32: test codes, one row per feature


class StageWork(NamedTuple):
    """Scratch space of the leaf values and updates of one tree."""

    value: np.ndarray  # (nodes,) float64: each leaf's value (0 at split nodes)
    leaf_count: np.ndarray  # (nodes,) int64: samples per leaf
    leaf_end: np.ndarray  # (nodes,) int64: leaf j's samples are leaf_idx[end - count:end]
    leaf_of: np.ndarray  # (n,) int64: each sample's leaf
    leaf_idx: np.ndarray  # (n,) int64: samples grouped by leaf, ascending within a leaf
    tmp: np.ndarray  # (n,) float64: the vectors summed by `np_sum`
    tree_importance: np.ndarray  # (d,) float64


def _stage_work(d: int, n: int) -> StageWork:
    return StageWork(np.empty(MAX_NODES, np.float64), np.empty(MAX_NODES, np.int64),
                     np.empty(MAX_NODES, np.int64), np.empty(n, np.int64), np.empty(n, np.int64),
                     np.empty(n, np.float64), np.empty(d, np.float64))


@njit
def _group_leaves(tree, count, samples, work):
    """Each leaf's samples in increasing index order (sklearn's ``np.nonzero(leaf == j)``), by
    counting sort."""
    leaf_count = work.leaf_count
    leaf_end = work.leaf_end
    leaf_of = work.leaf_of
    for j in range(count):
        leaf_count[j] = 0
    for j in range(count):
        if tree.left[j] == -1:
            for q in range(tree.start[j], tree.end[j]):
                leaf_of[samples[q]] = j
            leaf_count[j] = tree.end[j] - tree.start[j]
    acc = 0
    for j in range(count):
        leaf_end[j] = acc
        acc += leaf_count[j]
    for i in range(leaf_of.shape[0]):
        j = leaf_of[i]
        work.leaf_idx[leaf_end[j]] = i
        leaf_end[j] += 1


@njit
def _line_search(y, ind, tree, count, n_classes, work):
    """sklearn's ``_update_terminal_regions`` for the log loss: each leaf's value is one Newton
    step, sum(-gradient) / sum(hessian) over its samples (the hessian p(1-p) from the class
    indicator ``ind`` and the residual ``y``), times (K-1)/K for K > 2 classes."""
    factor = (n_classes - 1) / n_classes
    value = work.value
    tmp = work.tmp
    leaf_idx = work.leaf_idx
    for j in range(count):
        value[j] = 0.0
        if tree.left[j] != -1:
            continue
        c = work.leaf_count[j]
        lo = work.leaf_end[j] - c
        for q in range(c):
            tmp[q] = y[leaf_idx[lo + q]]
        numerator = np_sum(tmp[:c]) / np.float64(c)
        if n_classes > 2:
            numerator *= factor
        for q in range(c):
            i = leaf_idx[lo + q]
            prob = ind[i] - y[i]
            tmp[q] = prob * (1.0 - prob)
        denominator = np_sum(tmp[:c]) / np.float64(c)
        value[j] = 0.0 if abs(denominator) < 1e-150 else numerator / denominator


@njit
def _update_raw(raw, raw_test, k, xt_test, tree, work):
    """raw[:, k] += learning_rate * leaf value, for the training rows (by their leaf) and the
    test rows (by tree.apply)."""
    value = work.value
    for i in range(raw.shape[0]):
        raw[i, k] += LEARNING_RATE * value[work.leaf_of[i]]
    for i in range(xt_test.shape[1]):
        j = 0
        while tree.left[j] != -1:
            if np.float64(xt_test[tree.feature[j], i]) <= tree.threshold[j]:
                j = tree.left[j]
            else:
                j = tree.right[j]
        raw_test[i, k] += LEARNING_RATE * value[j]


@njit
def _add_importance(tree, count, tree_importance, importance):
    """The tree's feature_importances_ before normalisation (impurity decrease per feature over
    the root weight), added to ``importance``."""
    tree_importance[:] = 0.0
    for j in range(count):
        if tree.left[j] != -1:
            a = tree.left[j]
            b = tree.right[j]
            tree_importance[tree.feature[j]] += (tree.weight[j] * tree.impurity[j]
                                                 - tree.weight[a] * tree.impurity[a]
                                                 - tree.weight[b] * tree.impurity[b])
    for f in range(importance.shape[0]):
        importance[f] += tree_importance[f] / tree.weight[0]


@njit
def _fit_stage(problem, ties, cache, neg_g, raw, raw_test, seeds, n_classes, importance, ws, tree,
               work):
    """One boosting stage: a tree per column of ``neg_g``, its leaf values, the raw score updates.

    Returns the number of trees with a split; their unnormalised importances are added to
    ``importance``.
    """
    relevant = 0
    for k in range(neg_g.shape[1]):
        y = np.ascontiguousarray(neg_g[:, k])
        root_cached = mark_ties(ties, problem.sorted_init, problem.y_enc,
                                k if neg_g.shape[1] > 1 else 1)
        count = fit_tree(problem.xt, problem.sorted_init, y, ties, cache, root_cached, seeds[k],
                         ws, tree)
        _group_leaves(tree, count, ws.samples, work)
        _line_search(y, problem.indicators[:, k], tree, count, n_classes, work)
        _update_raw(raw, raw_test, k, problem.xt_test, tree, work)
        if count > 1:
            relevant += 1
            _add_importance(tree, count, work.tree_importance, importance)
    return relevant


# --- the fit -----------------------------------------------------------------------------------


def _init_raw(y_float: np.ndarray, n_classes: int, rows: int, loss) -> np.ndarray:
    """sklearn's `_init_raw_predictions` with the prior DummyClassifier (what `init=None` uses)."""
    from sklearn.dummy import DummyClassifier

    n = len(y_float)
    prior = DummyClassifier(strategy="prior").fit(np.zeros((n, 1)), y_float, sample_weight=np.ones(n))
    proba = prior.predict_proba(np.zeros((rows, 1)))
    if n_classes == 2:
        proba = proba[:, 1]
    eps = np.finfo(np.float64).eps
    proba = np.clip(proba, eps, 1 - eps, dtype=np.float64)
    raw = loss.link.link(proba)
    return np.ascontiguousarray(raw.reshape(-1, 1) if raw.ndim == 1 else raw)


def _decide(raw: np.ndarray) -> np.ndarray:
    """sklearn's predict on raw scores: argmax, or ``raw >= 0`` for binary."""
    if raw.shape[1] == 1:
        return (raw[:, 0] >= 0).astype(int)
    return np.argmax(raw, axis=1)


def fit_gbt(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
            random_state: np.random.RandomState, n_estimators: int = 100
            ) -> tuple[np.ndarray, float, float]:
    """(feature_importances_, train accuracy, test accuracy) of
    ``GradientBoostingClassifier(random_state=random_state, n_estimators=n_estimators)`` fitted on
    (x_train, y_train): sklearn's numbers, advancing ``random_state`` as it does. Only where
    `benchmark.metrics.gbt.applies`."""
    from sklearn._loss.loss import HalfBinomialLoss, HalfMultinomialLoss

    classes, y_enc = np.unique(y_train, return_inverse=True)
    n_classes = len(classes)
    y_float = y_enc.astype(np.float64)
    x32 = np.asarray(x_train, dtype=np.float32)
    xt = np.ascontiguousarray(x32.T)
    xt_test = np.ascontiguousarray(np.asarray(x_test, dtype=np.float32).T)
    d, n = xt.shape
    loss = HalfBinomialLoss() if n_classes == 2 else HalfMultinomialLoss(n_classes=n_classes)
    raw = _init_raw(y_float, n_classes, n, loss)
    raw_test = _init_raw(y_float, n_classes, xt_test.shape[1], loss)
    if n_classes == 2:
        indicators = y_float.reshape(-1, 1)
    else:
        indicators = (y_enc[:, None] == np.arange(n_classes)[None, :]).astype(np.float64)
    sorted_init = np.argsort(xt, axis=1, kind="stable").astype(np.int64)
    problem = Problem(xt, sorted_init, y_enc.astype(np.int64), np.ascontiguousarray(indicators),
                      xt_test)
    ties = find_ties(x32, xt, sorted_init, problem.y_enc)
    cache = root_cache(xt, sorted_init, ties.blocks)
    ws, tree, work = workspace(d, n), tree_arrays(), _stage_work(d, n)
    importance = np.zeros(d)
    relevant = 0
    for _ in range(n_estimators):
        neg_g = -loss.gradient(y_true=y_float, raw_prediction=raw, sample_weight=None)
        neg_g = np.ascontiguousarray(neg_g.reshape(-1, 1) if neg_g.ndim == 1 else neg_g)
        seeds = np.array([random_state.randint(0, RAND_R_MAX) for _ in range(raw.shape[1])],
                         np.int64)
        relevant += _fit_stage(problem, ties, cache, neg_g, raw, raw_test, seeds, n_classes,
                               importance, ws, tree, work)
    if relevant:
        avg = importance / relevant
        importance = avg / np.sum(avg)
    return (np.abs(importance), float(np.mean(classes[_decide(raw)] == y_train)),
            float(np.mean(classes[_decide(raw_test)] == y_test)))
