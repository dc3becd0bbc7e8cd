"""scikit-learn's `GradientBoostingClassifier()` (default settings), refitted fast, bit for bit.

DCI (Eastwood & Williams, ICLR 2018) and downstream_gbt (Locatello et al., ICML 2019) fit one
`GradientBoostingClassifier()` per factor: 100 stages of depth-3 regression trees, one tree per
class per stage (11,300 trees for dSprites' factors on 10,000 rows). Most of sklearn's time goes
into sorting every feature at every node of every tree (introsort, O(n log n)).

This is a port of sklearn 1.9's algorithm, operation for operation: the best splitter with its
XorShift feature draws and constant-feature bookkeeping, the MSE criterion's running sums (forward
and reverse updates), the in-place partition of the sample array, the depth-first builder, the
leaf line search (numpy's pairwise summation, Friedman's (K-1)/K factor) and the raw-score updates,
in the same order with the same floating-point operations, so every split, raw score and
prediction is the one sklearn computes (the tests compare with sklearn itself). The gradient and
the initial prior are sklearn's own functions. Only the final average of the importances over the
trees is summed in another order (differences ~1e-16, none observed).

What is done differently is how a node's samples get sorted:
- Each feature is sorted once per fit; every tree keeps each node's sorted segment of every
  feature by stable partitioning. When a feature has no tied values inside the node, sorting has
  one possible result, that segment: O(n) instead of O(n log n), and the scan reads it directly.
- Tied samples matter only if they are not *twins* (same row and same target in this tree:
  interchangeable in every later step, so their order changes no value). For blocks of tied
  non-twins, the order sklearn's introsort leaves them in depends on its whole history, so the
  ported introsort is run on the node's real sample order, following only the partitions that
  contain such a block (`_introsort3_partial`, ~O(n log #blocks)).
- At the root, sklearn's sample order depends only on the sequence of features sorted so far in
  this tree (every tree starts from 0..n-1 and sorting ignores the targets), so root sorts are
  cached by that sequence and reused by later trees (`_root_sort`).

Used for the sklearn versions in ``VERIFIED`` only (`applies`); anything else goes to sklearn.
"""

from __future__ import annotations

import numpy as np

try:  # numba is a dependency; without it sklearn does the work.
    import numba
except ImportError:  # pragma: no cover
    numba = None

VERIFIED = ("1.9",)  # sklearn minor versions whose tree/boosting code this reproduces
RAND_R_MAX = 2147483647
EPSILON = float(np.finfo(np.float64).eps)  # sklearn's tree builder tolerance
FEATURE_THRESHOLD = 1e-7  # sklearn: values closer than this are not split apart
LEARNING_RATE = 0.1
MAX_DEPTH = 3


def available() -> bool:
    """True when this sklearn's GradientBoostingClassifier is the one ported here."""
    import sklearn

    return numba is not None and ".".join(sklearn.__version__.split(".")[:2]) in VERIFIED


def applies(x_train, y_train, x_test) -> bool:
    """Whether `fit_gbt` reproduces sklearn on these inputs: a verified sklearn, numeric 2-D
    codes that stay finite as float32 (sklearn's tree dtype; it rejects the others), and at
    least two classes (sklearn's own error otherwise)."""
    if not available():
        return False
    x_train = np.asarray(x_train)
    x_test = np.asarray(x_test)
    if x_train.ndim != 2 or x_test.ndim != 2 or x_train.shape[1] != x_test.shape[1]:
        return False
    if x_train.shape[0] < 2 or x_train.dtype.kind not in "fiu" or x_test.dtype.kind not in "fiu":
        return False
    with np.errstate(over="ignore"):
        finite = (np.isfinite(x_train.astype(np.float32)).all()
                  and np.isfinite(x_test.astype(np.float32)).all())
    return bool(finite) and np.unique(np.asarray(y_train)).size >= 2


def _njit(fn):
    return numba.njit(cache=True, nogil=True)(fn) if numba is not None else fn


# --- sklearn/utils/_sorting.pyx: introsort with 3-way partition ------------------------------

@_njit
def _swap(values, idx, i, j):
    values[i], values[j] = values[j], values[i]
    idx[i], idx[j] = idx[j], idx[i]


@_njit
def _median3(values, n):
    a = values[0]
    b = values[n // 2]
    c = values[n - 1]
    if a < b:
        if b < c:
            return b
        elif a < c:
            return c
        return a
    elif b < c:
        if a < c:
            return a
        return c
    return b


@_njit
def _sift_down(values, idx, start, end):
    root = start
    while True:
        child = root * 2 + 1
        maxind = root
        if child < end and values[maxind] < values[child]:
            maxind = child
        if child + 1 < end and values[maxind] < values[child + 1]:
            maxind = child + 1
        if maxind == root:
            break
        _swap(values, idx, root, maxind)
        root = maxind


@_njit
def _heapsort(values, idx, n):
    start = (n - 2) // 2
    end = n
    while True:
        _sift_down(values, idx, start, end)
        if start == 0:
            break
        start -= 1
    end = n - 1
    while end > 0:
        _swap(values, idx, 0, end)
        _sift_down(values, idx, 0, end)
        end = end - 1


@_njit
def _insertion_sort(values, idx, n):
    for i in range(1, n):
        temp_val = values[i]
        temp_idx = idx[i]
        j = i
        while j > 0 and values[j - 1] > temp_val:
            values[j] = values[j - 1]
            idx[j] = idx[j - 1]
            j -= 1
        values[j] = temp_val
        idx[j] = temp_idx


@_njit
def _partition3(v, ix, n):
    """introsort_3way's step: median-of-3 pivot, then [< pivot][== pivot][> pivot] by swaps.
    Returns (pivot, end of the < part, start of the > part)."""
    pivot = _median3(v, n)
    i = 0
    lo = 0
    r = n
    while i < r:
        if v[i] < pivot:
            _swap(v, ix, i, lo)
            i += 1
            lo += 1
        elif v[i] > pivot:
            r -= 1
            _swap(v, ix, i, r)
        else:
            i += 1
    return pivot, lo, r


# --- numpy's pairwise summation (np.add.reduce of a contiguous float64 vector) ----------------

@_njit
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


@_njit
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


@_njit
def np_sum(a):
    """``np.sum`` of a contiguous float64 vector, with numpy's rounding."""
    return _pairwise(a, 0, a.shape[0])


# --- sklearn/tree: best splitter, MSE criterion, depth-first builder ----------------------------

@_njit
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


@_njit
def _has_hard(hard, n_hard, lo, has_lo, hi, has_hi):
    """Whether a hard value v with lo < v < hi exists (``hard`` sorted ascending)."""
    a = 0
    b = n_hard
    if has_lo:  # first index with hard[i] > lo
        while a < b:
            mid = (a + b) // 2
            if hard[mid] > lo:
                b = mid
            else:
                a = mid + 1
    if a >= n_hard:
        return False
    return (not has_hi) or hard[a] < hi


@_njit
def _introsort3_partial(values, idx, maxd, hard, n_hard):
    """sklearn's introsort_3way (`sklearn.utils._sorting`), skipping every segment that holds no
    value of ``hard``: those segments' final order is the unique sorted order anyway, and sorting
    one never moves another. The segments that are followed get exactly introsort's treatment
    (its recursion on the left part becomes a stack: the parts are disjoint), so the tied samples
    of a hard value end in the order sklearn leaves them in; with every value hard this is the
    whole introsort. Cost ~O(n log(#hard)) instead of O(n log n)."""
    todo_i = np.empty((64, 5), np.int64)  # offset, length, depth budget, has_lo, has_hi
    todo_v = np.empty((64, 2), np.float32)  # lo, hi (exclusive value bounds of the segment)
    todo_i[0, 0] = 0
    todo_i[0, 1] = values.shape[0]
    todo_i[0, 2] = maxd
    todo_i[0, 3] = 0
    todo_i[0, 4] = 0
    todo_v[0, 0] = 0.0
    todo_v[0, 1] = 0.0
    top = 0
    while top >= 0:
        off = todo_i[top, 0]
        n = todo_i[top, 1]
        maxd = todo_i[top, 2]
        has_lo = todo_i[top, 3] == 1
        has_hi = todo_i[top, 4] == 1
        lo = todo_v[top, 0]
        hi = todo_v[top, 1]
        top -= 1
        while True:
            if not _has_hard(hard, n_hard, lo, has_lo, hi, has_hi):
                break
            if n <= 15:
                _insertion_sort(values[off:off + n], idx[off:off + n], n)
                break
            if maxd <= 0:
                _heapsort(values[off:off + n], idx[off:off + n], n)
                break
            maxd -= 1
            pivot, left, r = _partition3(values[off:off + n], idx[off:off + n], n)
            top += 1
            todo_i[top, 0] = off
            todo_i[top, 1] = left
            todo_i[top, 2] = maxd
            todo_i[top, 3] = 1 if has_lo else 0
            todo_i[top, 4] = 1
            todo_v[top, 0] = lo
            todo_v[top, 1] = pivot
            off += r
            n -= r
            lo = pivot
            has_lo = True


@_njit
def _sort_feature(xt, f, sorted_all, virt, samples, start, end, twin, n_flagged, sim_v, sim_i,
                  hard, is_hard):
    """sklearn's sort_samples_and_feature_values on samples[start:end] for feature f.

    Sorting has one possible result except inside blocks of tied values; a block matters only if
    it mixes samples that are not twins (twins: same row, same target, interchangeable in every
    later step). Without such a block the result is the node's presorted segment of f: returns
    False and leaves ``samples`` alone (the caller reads sorted_all[f]; ``samples`` is "virtually"
    sorted_all[virt] until materialised). Otherwise the partial introsort, run on the real current
    order, decides the order inside those blocks: returns True with ``samples`` sorted.
    """
    sorted_f = sorted_all[f]
    n_hard = 0
    if n_flagged >= 2:  # a block that matters needs two flagged samples (see _fit_stage)
        b0 = start
        for p in range(start + 1, end + 1):
            if p < end and xt[f, sorted_f[p]] == xt[f, sorted_f[b0]]:
                continue
            hard_block = False
            for q in range(b0 + 1, p):
                if twin[sorted_f[q]] != twin[sorted_f[b0]]:
                    hard_block = True
                    break
            for q in range(b0, p):
                is_hard[q] = hard_block
            if hard_block:
                hard[n_hard] = xt[f, sorted_f[b0]]
                n_hard += 1
            b0 = p
    if n_hard == 0:
        return False
    if virt >= 0:
        for p in range(start, end):
            samples[p] = sorted_all[virt, p]
    for p in range(start, end):
        sim_i[p] = samples[p]
        sim_v[p] = xt[f, samples[p]]
    n = end - start
    _introsort3_partial(sim_v[start:end], sim_i[start:end], 2 * np.int64(np.log2(n)), hard,
                        n_hard)
    for p in range(start, end):
        samples[p] = sim_i[p] if is_hard[p] else sorted_f[p]
    return True


@_njit
def _root_sort(xt, f, sorted_all, virt, samples, n, gpos, g0, g1, ghard, h0, h1, sim_v, sim_i,
               key, use_cache, cache, pool, pool_used):
    """The root's sort of feature f, exact on every block of f whose tied samples are not twins
    for some tree (``gpos[g0:g1]``: their positions in f's sorted order).

    At the root sklearn's sample array depends only on the features sorted so far in this tree
    (every tree starts from 0..n-1 and sorting ignores the targets), so the result is a function
    of that sequence since the last feature without such blocks (``key``) and is reused by every
    later tree whose root visits the same sequence.
    """
    cnt = g1 - g0
    if use_cache and key in cache:
        off = cache[key]
        for p in range(n):
            samples[p] = sorted_all[f, p]
        for j in range(cnt):
            samples[gpos[g0 + j]] = pool[off + j]
        return
    if virt >= 0:
        for p in range(n):
            samples[p] = sorted_all[virt, p]
    for p in range(n):
        sim_i[p] = samples[p]
        sim_v[p] = xt[f, samples[p]]
    _introsort3_partial(sim_v[:n], sim_i[:n], 2 * np.int64(np.log2(n)), ghard[h0:h1], h1 - h0)
    for p in range(n):
        samples[p] = sorted_all[f, p]
    for j in range(cnt):
        samples[gpos[g0 + j]] = sim_i[gpos[g0 + j]]
    if use_cache and pool_used[0] + cnt <= pool.shape[0]:
        off = pool_used[0]
        for j in range(cnt):
            pool[off + j] = samples[gpos[g0 + j]]
        cache[key] = off
        pool_used[0] = off + cnt


@_njit
def _update(y, samples, start, end, pos, new_pos, sum_total, w_node, sum_left, w_left):
    """RegressionCriterion.update (unit weights): (sum_left, w_left) at new_pos."""
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


@_njit
def _fit_tree(xt, sorted_init, y, twin, flag, flagged_root, flagged_stack, root, cache, root_cached,
              seed, w_total, sorted_all, samples, goes_left, features,
              constant_features, buf, sim_v, sim_i, hard, is_hard, stack, node_feature, node_threshold, node_left, node_right,
              node_w, node_impurity, node_start, node_end):
    """One DecisionTreeRegressor(max_depth=3).fit(X, y) as sklearn 1.9 grows it; returns node count.

    Node arrays receive sklearn's nodes in sklearn's (depth-first) order; a leaf's samples are
    samples[node_start:node_end].
    """
    d, n = xt.shape
    gpos_off, gpos, ghard_off, ghard, pool, pool_used = root
    base = d + 2
    max_chain = np.int64(60 / np.log2(base)) - 2  # keys stay below 2**62
    sorted_all[:, :] = sorted_init
    for i in range(n):
        samples[i] = i
    for f in range(d):
        features[f] = f
    state = np.empty(1, np.uint32)
    state[0] = np.uint32(seed)
    # stack rows: start, end, depth, parent, is_left, n_constant; impurity kept in `stack_imp`
    top = 0
    stack[0, 0] = 0
    stack[0, 1] = n
    stack[0, 2] = 0
    stack[0, 3] = -1
    stack[0, 4] = 0
    stack[0, 5] = 0
    stack_imp = np.empty(stack.shape[0], np.float64)
    stack_imp[0] = np.inf
    flagged_stack[0, :] = flagged_root
    node_flagged = np.empty(d, np.int64)
    node_count = 0
    first = True
    while top >= 0:
        start = stack[top, 0]
        end = stack[top, 1]
        depth = stack[top, 2]
        parent = stack[top, 3]
        is_left = stack[top, 4]
        n_known = stack[top, 5]
        impurity = stack_imp[top]
        node_flagged[:] = flagged_stack[top]
        top -= 1
        # node_reset: criterion.init over samples[start:end]
        sum_total = 0.0
        sq_total = 0.0
        w_node = 0.0
        for p in range(start, end):
            v = y[samples[p]]
            sum_total += v
            sq_total += v * v
            w_node += 1.0
        n_node = end - start
        is_leaf = depth >= MAX_DEPTH or n_node < 2
        if first:
            impurity = sq_total / w_node - (sum_total / w_node) ** 2.0
            first = False
        is_leaf = is_leaf or impurity <= EPSILON
        best_pos = end
        best_f = 0
        best_thr = 0.0
        imp_left = np.inf
        imp_right = np.inf
        improvement = -np.inf
        n_total = n_known
        if not is_leaf:
            # node_split_best
            f_i = d
            n_visited = 0
            n_found = 0
            n_drawn = 0
            n_total = n_known
            best_proxy = -np.inf
            virt = -1
            if depth == 0:
                # key of the root's sort history: sentinel 1, then the start marker (d + 1)
                ckey = base + d + 1
                clen = 0
            while f_i > n_total and (n_visited < d or n_visited <= n_found + n_drawn):
                n_visited += 1
                f_j = _rand_int(state, n_drawn, f_i - n_found)
                if f_j < n_known:
                    features[n_drawn], features[f_j] = features[f_j], features[n_drawn]
                    n_drawn += 1
                    continue
                f_j += n_found
                cur_f = features[f_j]
                if depth == 0 and root_cached:
                    g0 = gpos_off[cur_f]
                    g1 = gpos_off[cur_f + 1]
                    if g1 - g0 >= 2:
                        ckey = ckey * base + cur_f + 1
                        clen += 1
                        _root_sort(xt, cur_f, sorted_all, virt, samples, end, gpos, g0, g1, ghard,
                                   ghard_off[cur_f], ghard_off[cur_f + 1], sim_v, sim_i, ckey,
                                   clen <= max_chain, cache, pool, pool_used)
                        order = samples
                        virt = -1
                    else:  # a canonical order: the history restarts from it
                        ckey = base + cur_f
                        clen = 0
                        order = sorted_all[cur_f]
                        virt = cur_f
                elif _sort_feature(xt, cur_f, sorted_all, virt, samples, start, end, twin,
                                   node_flagged[cur_f], sim_v, sim_i, hard, is_hard):
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
                        best_f = cur_f
                        best_thr = prev / 2.0 + cur / 2.0
            if virt >= 0:  # sklearn's array is sorted by the last feature sorted
                for q in range(start, end):
                    samples[q] = sorted_all[virt, q]
            if best_pos < end:
                # partition_samples_final
                ps = start
                pe = end
                while ps < pe:
                    if np.float64(xt[best_f, samples[ps]]) <= best_thr:
                        ps += 1
                    else:
                        pe -= 1
                        samples[ps], samples[pe] = samples[pe], samples[ps]
                sum_left, w_left = _update(y, samples, start, end, start, best_pos, sum_total,
                                           w_node, 0.0, 0.0)
                w_right = w_node - w_left
                sum_right = sum_total - sum_left
                sq_left = 0.0
                for q in range(start, best_pos):
                    v = y[samples[q]]
                    sq_left += v * v
                sq_right = sq_total - sq_left
                imp_left = sq_left / w_left - (sum_left / w_left) ** 2.0
                imp_right = sq_right / w_right - (sum_right / w_right) ** 2.0
                improvement = (w_node / w_total) * (impurity - (w_right / w_node * imp_right)
                                                    - (w_left / w_node * imp_left))
            for q in range(n_known):
                features[q] = constant_features[q]
            for q in range(n_known, n_known + n_found):
                constant_features[q] = features[q]
            is_leaf = best_pos >= end or improvement + EPSILON < 0.0
        node = node_count
        node_count += 1
        if parent >= 0:
            if is_left:
                node_left[parent] = node
            else:
                node_right[parent] = node
        node_impurity[node] = impurity
        node_w[node] = w_node
        node_start[node] = start
        node_end[node] = end
        node_left[node] = -1
        node_right[node] = -1
        node_feature[node] = -2
        node_threshold[node] = -2.0
        if not is_leaf:
            node_feature[node] = best_f
            node_threshold[node] = best_thr
            # Children's sorted segments: stable partition of every feature's segment
            # (not needed when the children are leaves by depth).
            deeper = depth + 1 < MAX_DEPTH
            for q in range(start, best_pos if deeper else start):
                goes_left[samples[q]] = True
            for q in range(best_pos if deeper else end, end):
                goes_left[samples[q]] = False
            for f in range(d if deeper else 0):
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
                        buf[b] = s
                        b += 1
                        if flag[f, s]:
                            fl_right += 1
                for q in range(b):
                    sorted_all[f, a + q] = buf[q]
                flagged_stack[top + 1, f] = fl_right
                flagged_stack[top + 2, f] = fl_left
            top += 1
            stack[top, 0] = best_pos
            stack[top, 1] = end
            stack[top, 2] = depth + 1
            stack[top, 3] = node
            stack[top, 4] = 0
            stack[top, 5] = n_total
            stack_imp[top] = imp_right
            top += 1
            stack[top, 0] = start
            stack[top, 1] = best_pos
            stack[top, 2] = depth + 1
            stack[top, 3] = node
            stack[top, 4] = 1
            stack[top, 5] = n_total
            stack_imp[top] = imp_left
    return node_count


@_njit
def _fit_stage(xt, sorted_init, rows, blocks, y_enc, flag, flagged_root, flagged_stack, root, cache,
               xt_test, neg_g, indicators, raw, raw_test, seeds, n_classes,
               importance, sorted_all, samples, goes_left, features, constant_features, buf,
               sim_v, sim_i, hard, is_hard, stack, node_feature, node_threshold, node_left, node_right, node_w, node_impurity,
               node_start, node_end, leaf_idx, tmp, tree_imp):
    """One boosting stage: a tree per column of ``neg_g``, leaf line search, raw score updates.

    Returns the number of trees with a split; their unnormalised importances are added to
    ``importance``.
    """
    d, n = xt.shape
    m = xt_test.shape[1]
    relevant = 0
    factor = (n_classes - 1) / n_classes
    value = np.empty(node_w.shape[0], np.float64)
    leaf_cnt = np.empty(node_w.shape[0], np.int64)
    leaf_off = np.empty(node_w.shape[0], np.int64)
    leaf_of = np.empty(n, np.int64)
    twin = np.empty(n, np.int64)
    for k in range(neg_g.shape[1]):
        y = np.ascontiguousarray(neg_g[:, k])
        ind = indicators[:, k]
        # Twins for this tree: same row and same target (identical y in every stage).
        target = k if neg_g.shape[1] > 1 else 1
        for i in range(n):
            twin[i] = 2 * rows[i] + (1 if y_enc[i] == target else 0)
        # Flag the samples of the tied blocks that hold two non-twins in this tree.
        flagged_root[:] = 0
        root_cached = True  # no same-row block is hard in this tree: the root cache applies
        for b in range(blocks.shape[0]):
            f = blocks[b, 0]
            s0 = sorted_init[f, blocks[b, 1]]
            hard_block = False
            for q in range(blocks[b, 1] + 1, blocks[b, 2]):
                if twin[sorted_init[f, q]] != twin[s0]:
                    hard_block = True
                    break
            for q in range(blocks[b, 1], blocks[b, 2]):
                flag[f, sorted_init[f, q]] = hard_block
            if hard_block:
                flagged_root[f] += blocks[b, 2] - blocks[b, 1]
                if blocks[b, 3] == 0:
                    root_cached = False
        count = _fit_tree(xt, sorted_init, y, twin, flag, flagged_root, flagged_stack, root, cache,
                          root_cached, seeds[k], np.float64(n), sorted_all, samples,
                          goes_left, features, constant_features, buf, sim_v, sim_i, hard, is_hard,
                          stack, node_feature,
                          node_threshold, node_left, node_right, node_w, node_impurity,
                          node_start, node_end)
        # Leaves' samples in increasing index order (np.nonzero(leaf == j)), by counting sort.
        for j in range(count):
            leaf_cnt[j] = 0
        for j in range(count):
            if node_left[j] == -1:
                for q in range(node_start[j], node_end[j]):
                    leaf_of[samples[q]] = j
                leaf_cnt[j] = node_end[j] - node_start[j]
        acc = 0
        for j in range(count):
            leaf_off[j] = acc
            acc += leaf_cnt[j]
        for i in range(n):
            j = leaf_of[i]
            leaf_idx[leaf_off[j]] = i
            leaf_off[j] += 1
        for j in range(count):
            value[j] = 0.0
            if node_left[j] != -1:
                continue
            c = leaf_cnt[j]
            lo = leaf_off[j] - c
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
        for i in range(n):
            raw[i, k] += LEARNING_RATE * value[leaf_of[i]]
        for i in range(m):
            j = 0
            while node_left[j] != -1:
                if np.float64(xt_test[node_feature[j], i]) <= node_threshold[j]:
                    j = node_left[j]
                else:
                    j = node_right[j]
            raw_test[i, k] += LEARNING_RATE * value[j]
        if count > 1:
            relevant += 1
            for f in range(d):
                tree_imp[f] = 0.0
            for j in range(count):
                if node_left[j] != -1:
                    a = node_left[j]
                    b = node_right[j]
                    tree_imp[node_feature[j]] += (node_w[j] * node_impurity[j]
                                                  - node_w[a] * node_impurity[a]
                                                  - node_w[b] * node_impurity[b])
            for f in range(d):
                importance[f] += tree_imp[f] / node_w[0]
    return relevant


def _workspace(d: int, n: int) -> tuple:
    nodes = 2 ** (MAX_DEPTH + 1)
    # In `_fit_stage`'s argument order, from sorted_all to tree_imp.
    return (np.empty((d, n), np.int64), np.empty(n, np.int64),
            np.zeros(n, np.bool_), np.empty(d, np.int64), np.empty(d, np.int64),
            np.empty(n, np.int64), np.empty(n, np.float32), np.empty(n, np.int64),
            np.empty(n, np.float32), np.zeros(n, np.bool_), np.empty((2 * MAX_DEPTH + 4, 6), np.int64),
            np.empty(nodes, np.int64), np.empty(nodes, np.float64), np.empty(nodes, np.int64),
            np.empty(nodes, np.int64), np.empty(nodes, np.float64), np.empty(nodes, np.float64),
            np.empty(nodes, np.int64), np.empty(nodes, np.int64), np.empty(n, np.int64),
            np.empty(n, np.float64), np.empty(d, np.float64))


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


def fit_gbt(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
            random_state: np.random.RandomState, n_estimators: int = 100
            ) -> tuple[np.ndarray, float, float]:
    """(feature_importances_, train accuracy, test accuracy) of
    ``GradientBoostingClassifier(random_state=random_state, n_estimators=n_estimators)`` fitted on
    (x_train, y_train): sklearn's numbers (see module doc), advancing ``random_state`` as it does."""
    from sklearn._loss.loss import HalfBinomialLoss, HalfMultinomialLoss

    classes, y_enc = np.unique(y_train, return_inverse=True)
    n_classes = len(classes)
    y_float = y_enc.astype(np.float64)
    x32 = np.asarray(x_train, dtype=np.float32)
    x32_test = np.asarray(x_test, dtype=np.float32)
    xt = np.ascontiguousarray(x32.T)
    xt_test = np.ascontiguousarray(x32_test.T)
    d, n = xt.shape
    loss = HalfBinomialLoss() if n_classes == 2 else HalfMultinomialLoss(n_classes=n_classes)
    raw = _init_raw(y_float, n_classes, n, loss)
    raw_test = _init_raw(y_float, n_classes, xt_test.shape[1], loss)
    k_trees = raw.shape[1]
    if n_classes == 2:
        indicators = y_float.reshape(-1, 1)
    else:
        indicators = (y_enc[:, None] == np.arange(n_classes)[None, :]).astype(np.float64)
    indicators = np.ascontiguousarray(indicators)
    sorted_init = np.argsort(xt, axis=1, kind="stable").astype(np.int64)
    rows = _rows(x32)
    blocks = _tie_blocks(xt, sorted_init, rows, y_enc)
    flag = np.zeros((d, n), np.bool_)
    flagged_root = np.zeros(d, np.int64)
    flagged_stack = np.zeros((2 * MAX_DEPTH + 4, d), np.int64)
    root, cache = _root_cache(xt, sorted_init, blocks)
    work = _workspace(d, n)
    importance = np.zeros(d)
    relevant = 0
    for _ in range(n_estimators):
        neg_g = -loss.gradient(y_true=y_float, raw_prediction=raw, sample_weight=None)
        neg_g = np.ascontiguousarray(neg_g.reshape(-1, 1) if neg_g.ndim == 1 else neg_g)
        seeds = np.array([random_state.randint(0, RAND_R_MAX) for _ in range(k_trees)], np.int64)
        relevant += _fit_stage(xt, sorted_init, rows, blocks, y_enc, flag, flagged_root, flagged_stack,
                               root, cache, xt_test, neg_g, indicators, raw, raw_test, seeds,
                               n_classes, importance, *work)
    if relevant:
        avg = importance / relevant
        importance = avg / np.sum(avg)
    return (np.abs(importance), float(np.mean(classes[_decide(raw)] == y_train)),
            float(np.mean(classes[_decide(raw_test)] == y_test)))


def _rows(x32: np.ndarray) -> np.ndarray:
    """For each row, the index of the first row with the same values."""
    rows = np.ascontiguousarray(x32).view(np.int32)
    _, first, inverse = np.unique(rows.view(np.dtype((np.void, 4 * rows.shape[1]))).ravel(),
                                  return_index=True, return_inverse=True)
    return first[inverse.ravel()].astype(np.int64)


@_njit
def _tie_blocks(xt, sorted_init, rows, y_enc):
    """(feature, first, end, rows differ) for each block of tied values (positions in
    ``sorted_init``) that holds samples which are not twins in some tree (another row: in every
    tree; or the same row with another label: in the trees of those labels). Only those ties can
    make sklearn's sort order matter."""
    d, n = xt.shape
    out = np.empty((0, 4), np.int64)
    found = []
    for f in range(d):
        b0 = 0
        for p in range(1, n + 1):
            if p < n and xt[f, sorted_init[f, p]] == xt[f, sorted_init[f, b0]]:
                continue
            s0 = sorted_init[f, b0]
            mixed = False
            rows_differ = 0
            for q in range(b0 + 1, p):
                s = sorted_init[f, q]
                if rows[s] != rows[s0]:
                    rows_differ = 1
                    mixed = True
                    break
                if y_enc[s] != y_enc[s0]:
                    mixed = True
            if mixed:
                found.append((f, b0, p, rows_differ))
            b0 = p
    if len(found) == 0:
        return out
    out = np.empty((len(found), 4), np.int64)
    for i in range(len(found)):
        out[i, 0] = found[i][0]
        out[i, 1] = found[i][1]
        out[i, 2] = found[i][2]
        out[i, 3] = found[i][3]
    return out


def _root_cache(xt: np.ndarray, sorted_init: np.ndarray, blocks: np.ndarray,
                pool_size: int = 1 << 21) -> tuple:
    """Per feature: positions (in its sorted order) and values of the tied blocks that hold
    different rows (non-twins in every tree); plus the root sort cache (key -> offset into a pool
    of sample ids)."""
    from numba import types
    from numba.typed import Dict

    d = xt.shape[0]
    gpos_off = np.zeros(d + 1, np.int64)
    ghard_off = np.zeros(d + 1, np.int64)
    gpos: list[int] = []
    ghard: list[float] = []
    for f in range(d):
        for bf, b0, b1, rows_differ in blocks:
            if bf == f and rows_differ:
                gpos.extend(range(b0, b1))
                ghard.append(xt[f, sorted_init[f, b0]])
        gpos_off[f + 1] = len(gpos)
        ghard_off[f + 1] = len(ghard)
    cache = Dict.empty(key_type=types.int64, value_type=types.int64)
    return (gpos_off, np.array(gpos, np.int64), ghard_off, np.array(ghard, np.float32),
            np.empty(pool_size, np.int64), np.zeros(1, np.int64)), cache


def _decide(raw: np.ndarray) -> np.ndarray:
    """sklearn's predict on raw scores: argmax, or ``raw >= 0`` for binary."""
    if raw.shape[1] == 1:
        return (raw[:, 0] >= 0).astype(int)
    return np.argmax(raw, axis=1)
