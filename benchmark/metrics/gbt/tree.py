"""sklearn's ``DecisionTreeRegressor(max_depth=3)`` as GradientBoostingClassifier grows it.

A port of sklearn 1.9's tree code (sklearn/tree/_splitter.pyx, _criterion.pyx, _tree.pyx) with
unit sample weights: the best splitter with its XorShift feature draws and constant-feature
bookkeeping, the MSE criterion's running sums (forward and reverse updates), the in-place partition
of the sample array and the depth-first builder, in the same order with the same floating-point
operations, so every split is the one sklearn finds. Only the node's sort is done differently
(`benchmark.metrics.gbt.sort`): each feature's sorted segment is kept per node by stable
partitioning (`_partition_sorted`) and introsort runs only where tied values make its order matter.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from benchmark.metrics.gbt.backend import njit
from benchmark.metrics.gbt.sort import (
    SortBuffers,
    materialise,
    root_sort,
    sort_buffers,
    sort_feature,
)

MAX_DEPTH = 3  # GradientBoostingClassifier's default max_depth
MAX_NODES = 2 ** (MAX_DEPTH + 1)  # more than a binary tree of that depth can hold
EPSILON = float(np.finfo(np.float64).eps)  # sklearn's tree builder tolerance
FEATURE_THRESHOLD = 1e-7  # sklearn: values closer than this are not split apart


class Tree(NamedTuple):
    """sklearn's node arrays (its ``Tree``), nodes in sklearn's depth-first order."""

    feature: np.ndarray  # int64: split feature, -2 at leaves
    threshold: np.ndarray  # float64: split threshold (go left if x <= threshold), -2 at leaves
    left: np.ndarray  # int64: left child, -1 at leaves
    right: np.ndarray  # int64: right child, -1 at leaves
    weight: np.ndarray  # float64: weighted_n_node_samples (unit weights: the sample count)
    impurity: np.ndarray  # float64: MSE of the node's targets
    start: np.ndarray  # int64: the node's samples are samples[start:end] ...
    end: np.ndarray  # int64: ... of the workspace after the fit (leaves' stay there)


class Stack(NamedTuple):
    """The depth-first builder's stack (sklearn's StackRecord), one row per node to split."""

    start: np.ndarray  # int64
    end: np.ndarray  # int64
    depth: np.ndarray  # int64
    parent: np.ndarray  # int64: -1 for the root
    is_left: np.ndarray  # int64 (0/1)
    n_constant: np.ndarray  # int64: features known constant in the node
    impurity: np.ndarray  # float64: from the parent's split (the root's is computed)
    flagged: np.ndarray  # (rows, d) int64: per feature, samples flagged by `sort.mark_ties`


class Workspace(NamedTuple):
    """Everything one tree fit writes, allocated once per boosting fit."""

    sorted_all: np.ndarray  # (d, n) int64: each feature's sorted segment of every current node
    samples: np.ndarray  # (n,) int64: sklearn's sample array
    goes_left: np.ndarray  # (n,) bool: per sample, side of the split being applied
    features: np.ndarray  # (d,) int64: sklearn's splitter.features (draw order, constants first)
    constant_features: np.ndarray  # (d,) int64: sklearn's splitter.constant_features
    right: np.ndarray  # (n,) int64: right part while partitioning a sorted segment
    node_flagged: np.ndarray  # (d,) int64: the current node's row of ``stack.flagged``
    state: np.ndarray  # (1,) uint32: the splitter's XorShift state
    stack: Stack
    sort: SortBuffers


def tree_arrays() -> Tree:
    i, f = np.int64, np.float64
    return Tree(*(np.empty(MAX_NODES, t) for t in (i, f, i, i, f, f, i, i)))


def workspace(d: int, n: int) -> Workspace:
    rows = 2 * MAX_DEPTH + 4
    stack = Stack(*(np.empty(rows, np.int64) for _ in range(6)), np.empty(rows, np.float64),
                  np.zeros((rows, d), np.int64))
    return Workspace(np.empty((d, n), np.int64), np.empty(n, np.int64), np.zeros(n, np.bool_),
                     np.empty(d, np.int64), np.empty(d, np.int64), np.empty(n, np.int64),
                     np.empty(d, np.int64), np.empty(1, np.uint32), stack, sort_buffers(n))


# --- sklearn/tree/_criterion.pyx: MSE with unit weights ----------------------------------------


@njit
def _node_sums(y, samples, start, end):
    """criterion.init over samples[start:end]: (sum, sum of squares, weight) of the targets."""
    sum_total = 0.0
    sq_total = 0.0
    w_node = 0.0
    for p in range(start, end):
        v = y[samples[p]]
        sum_total += v
        sq_total += v * v
        w_node += 1.0
    return sum_total, sq_total, w_node


@njit
def _update(y, samples, start, end, pos, new_pos, sum_total, w_node, sum_left, w_left):
    """RegressionCriterion.update (unit weights): (sum_left, w_left) at new_pos. Written out
    again in `_scan_feature`'s loop, where numba's call costs 2x (even with inline='always')."""
    if (new_pos - pos) <= (end - new_pos):
        for p in range(pos, new_pos):
            sum_left += y[samples[p]]
            w_left += 1.0
    else:
        sum_left = sum_total
        w_left = w_node
        for p in range(end - 1, new_pos - 1, -1):
            sum_left -= y[samples[p]]
            w_left -= 1.0
    return sum_left, w_left


@njit
def _children_impurity(y, samples, start, pos, end, sum_total, sq_total, w_node, impurity,
                       w_total):
    """After the partition at ``pos``: the children's impurities and the split's improvement
    (criterion.reset + update, children_impurity, impurity_improvement)."""
    sum_left, w_left = _update(y, samples, start, end, start, pos, sum_total, w_node, 0.0, 0.0)
    w_right = w_node - w_left
    sum_right = sum_total - sum_left
    sq_left = 0.0
    for q in range(start, pos):
        v = y[samples[q]]
        sq_left += v * v
    sq_right = sq_total - sq_left
    imp_left = sq_left / w_left - (sum_left / w_left) ** 2.0
    imp_right = sq_right / w_right - (sum_right / w_right) ** 2.0
    improvement = (w_node / w_total) * (impurity - (w_right / w_node * imp_right)
                                        - (w_left / w_node * imp_left))
    return imp_left, imp_right, improvement


# --- sklearn/tree/_splitter.pyx: BestSplitter -------------------------------------------------


@njit
def _rand_int(state, low, high):
    """sklearn's rand_int on its 32-bit XorShift (our_rand_r); ``state`` is a 1-element uint32."""
    s = state[0]
    if s == 0:
        s = np.uint32(1)
    s ^= np.uint32(s << np.uint32(13))
    s ^= np.uint32(s >> np.uint32(17))
    s ^= np.uint32(s << np.uint32(5))
    state[0] = s
    return low + np.int64(s % np.uint32(2147483648)) % (high - low)


@njit
def _scan_feature(y, xrow, order, start, end, sum_total, w_node, best_proxy):
    """node_split_best's scan of one feature, samples sorted as ``order[start:end]``: the MSE
    proxy improvement at every position between values more than FEATURE_THRESHOLD apart.
    Returns (proxy, position, threshold) of the last split that beat ``best_proxy`` (position =
    end: none did)."""
    best_pos = end
    best_thr = 0.0
    pos = start
    sum_left = 0.0
    w_left = 0.0
    p = start
    cur = np.float64(xrow[order[start]])
    while p < end:
        p += 1
        prev = cur
        while p < end:
            cur = np.float64(xrow[order[p]])
            if cur > prev + FEATURE_THRESHOLD:
                break
            prev = cur
            p += 1
        if p >= end:
            continue
        # `_update`, written out: numba's call (even inline='always') costs 2x here
        if (p - pos) <= (end - p):
            for q in range(pos, p):
                sum_left += y[order[q]]
                w_left += 1.0
        else:
            sum_left = sum_total
            w_left = w_node
            for q in range(end - 1, p - 1, -1):
                sum_left -= y[order[q]]
                w_left -= 1.0
        pos = p
        w_right = w_node - w_left
        sum_right = sum_total - sum_left
        proxy = (0.0 + sum_left * sum_left) / w_left + (0.0 + sum_right * sum_right) / w_right
        if proxy > best_proxy:
            best_proxy = proxy
            best_pos = p
            best_thr = prev / 2.0 + cur / 2.0
    return best_proxy, best_pos, best_thr


@njit
def _best_split(xt, y, ws, ties, cache, root_cached, start, end, depth, n_known, sum_total, w_node):
    """node_split_best: draws the features in sklearn's order (known constant ones are skipped,
    newly found constant ones recorded), sorts the node by each drawn feature (`sort`), scans it.
    Leaves samples[start:end] as sklearn does, sorted by the last feature sorted.

    Returns (position, feature, threshold, number of constant features) of the best split;
    position == end when there is none.
    """
    d = xt.shape[0]
    features = ws.features
    constant_features = ws.constant_features
    samples = ws.samples
    sorted_all = ws.sorted_all
    f_i = d
    n_visited = 0
    n_found = 0
    n_drawn = 0
    n_total = n_known
    best_proxy = -np.inf
    best_pos = end
    best_f = 0
    best_thr = 0.0
    virt = -1  # samples[start:end] is sorted_all[virt, start:end] (see `sort`)
    # The root's sort history (`sort.root_sort`'s key): base-(d + 2) digits, a sentinel 1, then
    # the start marker d + 1, then the sorted features + 1.
    base = d + 2
    max_chain = np.int64(60 / np.log2(base)) - 2  # keys stay below 2**62
    ckey = base + d + 1
    clen = 0
    while f_i > n_total and (n_visited < d or n_visited <= n_found + n_drawn):
        n_visited += 1
        f_j = _rand_int(ws.state, n_drawn, f_i - n_found)
        if f_j < n_known:
            features[n_drawn], features[f_j] = features[f_j], features[n_drawn]
            n_drawn += 1
            continue
        f_j += n_found
        cur_f = features[f_j]
        if depth == 0 and root_cached:
            if cache.gpos_off[cur_f + 1] - cache.gpos_off[cur_f] >= 2:
                ckey = ckey * base + cur_f + 1
                clen += 1
                root_sort(xt, cur_f, sorted_all, virt, samples, end, cache, ckey,
                          clen <= max_chain, ws.sort)
                order = samples
                virt = -1
            else:  # a canonical order: the history restarts from it
                ckey = base + cur_f
                clen = 0
                order = sorted_all[cur_f]
                virt = cur_f
        elif sort_feature(xt, cur_f, sorted_all, virt, samples, start, end, ties.twin,
                          ws.node_flagged[cur_f], ws.sort):
            order = samples
            virt = -1
        else:
            order = sorted_all[cur_f]
            virt = cur_f
        xrow = xt[cur_f]
        if np.float64(xrow[order[end - 1]]) <= np.float64(xrow[order[start]]) + FEATURE_THRESHOLD:
            features[f_j], features[n_total] = features[n_total], features[f_j]
            n_found += 1
            n_total += 1
            continue
        f_i -= 1
        features[f_i], features[f_j] = features[f_j], features[f_i]
        proxy, pos, thr = _scan_feature(y, xrow, order, start, end, sum_total, w_node, best_proxy)
        if pos < end:
            best_proxy = proxy
            best_pos = pos
            best_f = cur_f
            best_thr = thr
    materialise(samples, sorted_all, virt, start, end)
    for q in range(n_known):
        features[q] = constant_features[q]
    for q in range(n_known, n_known + n_found):
        constant_features[q] = features[q]
    return best_pos, best_f, best_thr, n_total


@njit
def _partition_samples(xt, samples, start, end, f, threshold):
    """partition_samples_final: samples with x[f] <= threshold to the front, by swaps."""
    ps = start
    pe = end
    while ps < pe:
        if np.float64(xt[f, samples[ps]]) <= threshold:
            ps += 1
        else:
            pe -= 1
            samples[ps], samples[pe] = samples[pe], samples[ps]


@njit
def _partition_sorted(ws, flag, start, pos, end, right_row, left_row):
    """The children's sorted segments: a stable partition of every feature's segment by the
    side each sample went to; their flagged counts go to stack rows right_row and left_row."""
    samples = ws.samples
    goes_left = ws.goes_left
    sorted_all = ws.sorted_all
    right = ws.right
    flagged = ws.stack.flagged
    for q in range(start, pos):
        goes_left[samples[q]] = True
    for q in range(pos, end):
        goes_left[samples[q]] = False
    for f in range(sorted_all.shape[0]):
        a = start
        b = 0
        fl_left = 0
        fl_right = 0
        for q in range(start, end):
            s = sorted_all[f, q]
            if goes_left[s]:
                sorted_all[f, a] = s
                a += 1
                if flag[f, s]:
                    fl_left += 1
            else:
                right[b] = s
                b += 1
                if flag[f, s]:
                    fl_right += 1
        for q in range(b):
            sorted_all[f, a + q] = right[q]
        flagged[right_row, f] = fl_right
        flagged[left_row, f] = fl_left


# --- sklearn/tree/_tree.pyx: DepthFirstTreeBuilder -------------------------------------------


@njit
def _reset(ws, sorted_init, seed):
    """A new tree: every node segment is the presorted order, samples 0..n-1, features 0..d-1,
    the splitter's RNG seeded with the tree's random_state."""
    ws.sorted_all[:, :] = sorted_init
    for i in range(ws.samples.shape[0]):
        ws.samples[i] = i
    for f in range(ws.features.shape[0]):
        ws.features[f] = f
    ws.state[0] = np.uint32(seed)


@njit
def _push(stack, top, start, end, depth, parent, is_left, n_constant, impurity):
    stack.start[top] = start
    stack.end[top] = end
    stack.depth[top] = depth
    stack.parent[top] = parent
    stack.is_left[top] = is_left
    stack.n_constant[top] = n_constant
    stack.impurity[top] = impurity


@njit
def _add_node(tree, node, parent, is_left, impurity, weight, start, end):
    """tree._add_node as a leaf (a split sets feature and threshold afterwards)."""
    if parent >= 0:
        if is_left:
            tree.left[parent] = node
        else:
            tree.right[parent] = node
    tree.impurity[node] = impurity
    tree.weight[node] = weight
    tree.start[node] = start
    tree.end[node] = end
    tree.left[node] = -1
    tree.right[node] = -1
    tree.feature[node] = -2
    tree.threshold[node] = -2.0


@njit
def fit_tree(xt, sorted_init, y, ties, cache, root_cached, seed, ws, tree):
    """One ``DecisionTreeRegressor(max_depth=3).fit(X, y)`` as sklearn 1.9 grows it (codes
    transposed in ``xt``, each feature's stable argsort in ``sorted_init``, tree random_state
    ``seed``); fills ``tree`` and returns its node count. A leaf's samples are
    ``ws.samples[tree.start:tree.end]``. ``ties``, ``cache``, ``root_cached``: see `sort`.
    """
    n = xt.shape[1]
    w_total = np.float64(n)
    _reset(ws, sorted_init, seed)
    stack = ws.stack
    _push(stack, 0, 0, n, 0, -1, 0, 0, np.inf)
    stack.flagged[0, :] = ties.flagged_root
    top = 0
    node_count = 0
    while top >= 0:
        start = stack.start[top]
        end = stack.end[top]
        depth = stack.depth[top]
        parent = stack.parent[top]
        is_left = stack.is_left[top]
        n_known = stack.n_constant[top]
        impurity = stack.impurity[top]
        ws.node_flagged[:] = stack.flagged[top]
        top -= 1
        sum_total, sq_total, w_node = _node_sums(y, ws.samples, start, end)
        if node_count == 0:  # the root; the others' impurity comes from their parent's split
            impurity = sq_total / w_node - (sum_total / w_node) ** 2.0
        pos = end  # no split
        best_f = 0
        best_thr = 0.0
        n_constant = n_known
        imp_left = np.inf
        imp_right = np.inf
        is_leaf = depth >= MAX_DEPTH or end - start < 2 or impurity <= EPSILON
        if not is_leaf:
            pos, best_f, best_thr, n_constant = _best_split(
                xt, y, ws, ties, cache, root_cached, start, end, depth, n_known, sum_total, w_node)
            is_leaf = pos >= end
        if not is_leaf:
            _partition_samples(xt, ws.samples, start, end, best_f, best_thr)
            imp_left, imp_right, improvement = _children_impurity(
                y, ws.samples, start, pos, end, sum_total, sq_total, w_node, impurity, w_total)
            is_leaf = improvement + EPSILON < 0.0
        node = node_count
        node_count += 1
        _add_node(tree, node, parent, is_left, impurity, w_node, start, end)
        if is_leaf:
            continue
        tree.feature[node] = best_f
        tree.threshold[node] = best_thr
        if depth + 1 < MAX_DEPTH:  # children at MAX_DEPTH are leaves: they need no sorting
            _partition_sorted(ws, ties.flag, start, pos, end, top + 1, top + 2)
        _push(stack, top + 1, pos, end, depth + 1, node, 0, n_constant, imp_right)
        _push(stack, top + 2, start, pos, depth + 1, node, 1, n_constant, imp_left)
        top += 2
    return node_count
