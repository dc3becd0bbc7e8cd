"""How a node's samples get sorted: sklearn's introsort, run only where its result can matter.

sklearn sorts the node's samples by every feature it visits, at every node of every tree
(``sort_samples_and_feature_values``, sklearn/tree/_splitter.pyx, with the introsort of
sklearn/utils/_sorting.pyx): O(n log n) each time, most of its fit time. Every later step reads
that order (the split scan, the partition of the sample array), and in which order introsort leaves
*tied* values depends on its whole history. Here:

- Each feature is sorted once per fit (``sorted_init``); every tree keeps each node's sorted
  segment of every feature by stable partitioning (`benchmark.metrics.gbt.tree`). When a feature
  has no tied values inside the node, sorting has one possible result, that segment: O(n) instead
  of O(n log n), and the scan reads it directly.
- Tied samples matter only if they are not *twins* (same row and same target in this tree:
  interchangeable in every later step, so their order changes no value). For blocks of tied
  non-twins, the ported introsort is run on the node's real sample order, following only the
  partitions that contain such a block (`introsort3_partial`, ~O(n log #blocks)).
- At the root, sklearn's sample order depends only on the sequence of features sorted so far in
  this tree (every tree starts from 0..n-1 and sorting ignores the targets), so root sorts are
  cached by that sequence and reused by later trees (`root_sort`).

"Virtual" order: while a node's sample array equals the presorted segment of one feature ``virt``
(the last sorted one had no ties that matter), it is not written out; ``samples[start:end]`` is
``sorted_all[virt, start:end]`` until `materialise` copies it (``virt`` < 0: ``samples`` is real).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from benchmark.metrics.gbt.backend import njit

# --- sklearn/utils/_sorting.pyx: introsort with 3-way partition ------------------------------


@njit
def _swap(values, idx, i, j):
    values[i], values[j] = values[j], values[i]
    idx[i], idx[j] = idx[j], idx[i]


@njit
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


@njit
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


@njit
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


@njit
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


@njit
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


@njit
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


@njit
def introsort3_partial(values, idx, maxd, hard, n_hard):
    """sklearn's introsort_3way (`sklearn.utils._sorting`), skipping every segment that holds no
    value of ``hard[:n_hard]`` (sorted ascending): those segments' final order is the unique sorted
    order anyway, and sorting one never moves another. The segments that are followed get exactly
    introsort's treatment (its recursion on the left part becomes a stack: the parts are
    disjoint), so the tied samples of a hard value end in the order sklearn leaves them in; with
    every value hard this is the whole introsort. Cost ~O(n log(#hard)) instead of O(n log n).
    ``maxd`` is introsort's depth budget, 2 * floor(log2(n))."""
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


# --- which ties matter -----------------------------------------------------------------------


class Ties(NamedTuple):
    """The tied values that can make sklearn's sort order matter; the last three are per tree."""

    rows: np.ndarray  # (n,) per sample: the first sample with the same row of codes
    blocks: np.ndarray  # (B, 4) feature, first, end (positions in sorted_init[f]), rows differ
    twin: np.ndarray  # (n,) equal for the tree's twins (same row, same target)
    flag: np.ndarray  # (d, n) bool: the sample lies in a block of feature f that holds non-twins
    flagged_root: np.ndarray  # (d,) flagged samples of feature f at the root


def _rows(x32: np.ndarray) -> np.ndarray:
    """For each row, the index of the first row with the same values."""
    rows = np.ascontiguousarray(x32).view(np.int32)
    _, first, inverse = np.unique(rows.view(np.dtype((np.void, 4 * rows.shape[1]))).ravel(),
                                  return_index=True, return_inverse=True)
    return first[inverse.ravel()].astype(np.int64)


@njit
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


def find_ties(x32: np.ndarray, xt: np.ndarray, sorted_init: np.ndarray, y_enc: np.ndarray) -> Ties:
    """The fit's `Ties` (per-tree parts to be filled by `mark_ties`)."""
    d, n = xt.shape
    rows = _rows(x32)
    return Ties(rows, _tie_blocks(xt, sorted_init, rows, y_enc), np.empty(n, np.int64),
                np.zeros((d, n), np.bool_), np.zeros(d, np.int64))


@njit
def mark_ties(ties, sorted_init, y_enc, target):
    """This tree's twins and flags. The tree's target is a function of the row and of
    ``y_enc == target`` (its class indicator) in every stage, so twins are (row, indicator) pairs.
    Flags the samples of the tied blocks that hold two non-twins; returns whether the root cache
    applies (no such block within a single row)."""
    rows, blocks, twin, flag, flagged_root = ties
    for i in range(twin.shape[0]):
        twin[i] = 2 * rows[i] + (1 if y_enc[i] == target else 0)
    flagged_root[:] = 0
    root_cached = True
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
    return root_cached


# --- the node's sort -------------------------------------------------------------------------


class SortBuffers(NamedTuple):
    """Scratch space of one sort, sized n."""

    values: np.ndarray  # float32: the feature values introsort moves
    idx: np.ndarray  # int64: the sample ids moved with them
    hard: np.ndarray  # float32: values of the blocks that matter, ascending
    is_hard: np.ndarray  # bool per position: in such a block


def sort_buffers(n: int) -> SortBuffers:
    return SortBuffers(np.empty(n, np.float32), np.empty(n, np.int64), np.empty(n, np.float32),
                       np.zeros(n, np.bool_))


@njit
def materialise(samples, sorted_all, virt, start, end):
    """Write the virtual order (module doc) into ``samples[start:end]``; nothing if virt < 0."""
    if virt >= 0:
        for p in range(start, end):
            samples[p] = sorted_all[virt, p]


@njit
def sort_feature(xt, f, sorted_all, virt, samples, start, end, twin, n_flagged, buf):
    """sklearn's sort_samples_and_feature_values on samples[start:end] for feature f.

    Sorting has one possible result except inside blocks of tied values; a block matters only if
    it mixes samples that are not twins. Without such a block the result is the node's presorted
    segment of f: returns False and leaves ``samples`` alone (the caller reads sorted_all[f]).
    Otherwise the partial introsort, run on the real current order, decides the order inside
    those blocks: returns True with ``samples`` sorted.
    """
    sorted_f = sorted_all[f]
    hard = buf.hard
    is_hard = buf.is_hard
    n_hard = 0
    if n_flagged >= 2:  # a block that matters needs two flagged samples (see `mark_ties`)
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
    materialise(samples, sorted_all, virt, start, end)
    sim_v = buf.values
    sim_i = buf.idx
    for p in range(start, end):
        sim_i[p] = samples[p]
        sim_v[p] = xt[f, samples[p]]
    n = end - start
    introsort3_partial(sim_v[start:end], sim_i[start:end], 2 * np.int64(np.log2(n)), hard, n_hard)
    for p in range(start, end):
        samples[p] = sim_i[p] if is_hard[p] else sorted_f[p]
    return True


# --- the root's sort, cached across trees ----------------------------------------------------


class RootCache(NamedTuple):
    """Per feature, the tied blocks that hold different rows (non-twins in every tree), and the
    root sorts computed so far (`root_sort`)."""

    gpos_off: np.ndarray  # (d + 1,) feature f's entries of gpos: gpos_off[f]:gpos_off[f + 1]
    gpos: np.ndarray  # positions in sorted_init[f] of those blocks' samples
    ghard_off: np.ndarray  # (d + 1,) feature f's entries of ghard
    ghard: np.ndarray  # float32: those blocks' values, ascending per feature
    pool: np.ndarray  # sample ids at the gpos of each cached sort
    pool_used: np.ndarray  # (1,) entries of pool in use
    index: object  # numba typed Dict: sort history key -> offset into pool


def root_cache(xt: np.ndarray, sorted_init: np.ndarray, blocks: np.ndarray,
               pool_size: int = 1 << 21) -> RootCache:
    """An empty `RootCache` for this fit."""
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
    index = Dict.empty(key_type=types.int64, value_type=types.int64)
    return RootCache(gpos_off, np.array(gpos, np.int64), ghard_off, np.array(ghard, np.float32),
                     np.empty(pool_size, np.int64), np.zeros(1, np.int64), index)


@njit
def root_sort(xt, f, sorted_all, virt, samples, n, cache, key, use_cache, buf):
    """The root's sort of feature f, exact on every block of f whose tied samples hold different
    rows (cached blocks: ``cache.gpos`` of f, their positions in f's sorted order).

    At the root sklearn's sample array depends only on the features sorted so far in this tree
    (every tree starts from 0..n-1 and sorting ignores the targets), so the result is a function
    of that sequence since the last feature without such blocks (``key``) and is reused by every
    later tree whose root visits the same sequence.
    """
    g0 = cache.gpos_off[f]
    cnt = cache.gpos_off[f + 1] - g0
    gpos = cache.gpos
    pool = cache.pool
    pool_used = cache.pool_used
    index = cache.index
    if use_cache and key in index:
        off = index[key]
        for p in range(n):
            samples[p] = sorted_all[f, p]
        for j in range(cnt):
            samples[gpos[g0 + j]] = pool[off + j]
        return
    materialise(samples, sorted_all, virt, 0, n)
    sim_v = buf.values
    sim_i = buf.idx
    for p in range(n):
        sim_i[p] = samples[p]
        sim_v[p] = xt[f, samples[p]]
    h0 = cache.ghard_off[f]
    h1 = cache.ghard_off[f + 1]
    introsort3_partial(sim_v[:n], sim_i[:n], 2 * np.int64(np.log2(n)), cache.ghard[h0:h1], h1 - h0)
    for p in range(n):
        samples[p] = sorted_all[f, p]
    for j in range(cnt):
        samples[gpos[g0 + j]] = sim_i[gpos[g0 + j]]
    if use_cache and pool_used[0] + cnt <= pool.shape[0]:
        off = pool_used[0]
        for j in range(cnt):
            pool[off + j] = samples[gpos[g0 + j]]
        index[key] = off
        pool_used[0] = off + cnt
