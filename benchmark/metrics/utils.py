"""Shared maths for the metrics: input checks, the histogram discretiser, discrete mutual information.

Orientation: public functions take samples as rows, ``codes`` (N, D) and ``factors`` (N, K); matrices
derived from them follow disentanglement_lib: rows = codes, columns = factors.
"""

from __future__ import annotations

import numpy as np

from benchmark.errors import UserError

# sklearn's tree splitter seeds itself with randint(0, RAND_R_MAX) once per tree.
_RAND_R_MAX = 2147483647


def check_codes(codes: np.ndarray, what: str = "codes") -> np.ndarray:
    """Codes as a float64 (N, D) array; NaN/inf or a wrong shape raise UserError."""
    arr = np.asarray(codes)
    if arr.ndim != 2:
        raise UserError(f"{what} must be a 2-D array (samples, dimensions), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise UserError(f"{what} is empty (shape {arr.shape})")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise UserError(f"{what} must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise UserError(f"{what} contain {bad} NaN or inf values")
    return arr


def check_factors(factors: np.ndarray, num_rows: int, what: str = "factors") -> np.ndarray:
    """Factors as an int64 (N, K) array of class indices matching ``num_rows`` codes."""
    arr = np.asarray(factors)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise UserError(f"{what} must be a 2-D array (samples, factors), got shape {arr.shape}")
    if arr.shape[0] != num_rows:
        raise UserError(f"{what} has {arr.shape[0]} rows but the codes have {num_rows}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
            raise UserError(f"{what} must be integer class indices, got dtype {arr.dtype}")
        if not np.all(arr == np.round(arr)):
            raise UserError(f"{what} must be integer class indices (found non-integer values)")
    return arr.astype(np.int64, copy=False)


def check_pair(codes, factors, split: str) -> tuple[np.ndarray, np.ndarray]:
    c = check_codes(codes, f"codes_{split}")
    return c, check_factors(factors, c.shape[0], f"factors_{split}")


def require_multiclass(factors: np.ndarray, metric: str, split: str = "train") -> None:
    """A factor with a single class makes entropies zero and classifiers undefined."""
    for j in range(factors.shape[1]):
        if np.unique(factors[:, j]).size < 2:
            raise UserError(
                f"{metric}: factor {j} takes a single value in the {split} sample; "
                "it needs at least two classes"
            )


def histogram_discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Equal-width bins over each code's range, labels 1..num_bins (dlib `_histogram_discretize`).

    Same arithmetic as dlib: ``np.digitize(x, np.histogram(x, num_bins)[1][:-1])`` per dimension.
    """
    if int(num_bins) < 1:
        raise UserError(f"num_bins must be a positive integer, got {num_bins}")
    out = np.zeros(codes.shape, dtype=np.int64)
    for i in range(codes.shape[1]):
        x = codes[:, i]
        out[:, i] = np.digitize(x, np.histogram(x, int(num_bins))[1][:-1])
    return out


def binned(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """`histogram_discretize`, computed once per content inside `shared.shared_work()`."""
    from benchmark.metrics import shared

    key = shared.digest(codes, int(num_bins)) if shared.active() else None
    return shared.memo("binned", key, lambda: histogram_discretize(codes, num_bins)).copy()


def binned_mutual_info(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """(D, K) discrete MI of histogram-discretised codes and factors (MIG's matrix).

    MIG, AAM, MMIG and modularity use this same matrix; inside `shared.shared_work()` it is
    computed once per (codes, factors, num_bins) content.
    """
    from benchmark.metrics import shared

    def compute() -> np.ndarray:
        return discrete_mutual_info(binned(codes, num_bins), factors)

    key = shared.digest(codes, factors, int(num_bins)) if shared.active() else None
    return shared.memo("binned_mi", key, compute).copy()


def _labels(x: np.ndarray) -> tuple[np.ndarray, int]:
    classes, inverse = np.unique(x, return_inverse=True)
    return inverse.ravel(), classes.size


def _mutual_info_labels(a: np.ndarray, na: int, b: np.ndarray, nb: int) -> float:
    """Mutual information (nats) of two label vectors, as `sklearn.metrics.mutual_info_score`."""
    if na == 1 or nb == 1:
        return 0.0
    cont = np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb)
    nzx, nzy = np.nonzero(cont)
    nz_val = cont[nzx, nzy].astype(np.float64)
    total = nz_val.sum()
    pi = cont.sum(axis=1)
    pj = cont.sum(axis=0)
    log_cont = np.log(nz_val)
    cont_nm = nz_val / total
    outer = pi.take(nzx).astype(np.int64) * pj.take(nzy).astype(np.int64)
    log_outer = -np.log(outer) + np.log(pi.sum()) + np.log(pj.sum())
    mi = cont_nm * (log_cont - np.log(total)) + cont_nm * log_outer
    mi = np.where(np.abs(mi) < np.finfo(mi.dtype).eps, 0.0, mi)
    return float(np.clip(mi.sum(), 0.0, None))


def discrete_mutual_info(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(D, K) matrix of I(code_i; factor_j) in nats for discrete codes (N, D) and factors (N, K)."""
    code_labels = [_labels(codes[:, i]) for i in range(codes.shape[1])]
    factor_labels = [_labels(factors[:, j]) for j in range(factors.shape[1])]
    m = np.zeros((codes.shape[1], factors.shape[1]))
    for i, (a, na) in enumerate(code_labels):
        for j, (b, nb) in enumerate(factor_labels):
            m[i, j] = _mutual_info_labels(a, na, b, nb)
    return m


def discrete_entropy(factors: np.ndarray) -> np.ndarray:
    """(K,) entropies in nats, computed as dlib does: I(y_j; y_j)."""
    out = np.zeros(factors.shape[1])
    for j in range(factors.shape[1]):
        a, na = _labels(factors[:, j])
        out[j] = _mutual_info_labels(a, na, a, na)
    return out


def sklearn_random_states(seed: int, trees_per_fit: list[int]) -> list[np.random.RandomState]:
    """One RandomState per sequential sklearn fit, positioned as if all fits shared one stream.

    disentanglement_lib creates its estimators without ``random_state``, so they draw from numpy's
    global RNG one after the other; after ``np.random.seed(seed)`` fit ``i`` sees the stream advanced
    by the draws of fits ``0..i-1`` (a tree-based fit draws one integer per tree). Handing each
    (possibly parallel) fit its own state positioned this way reproduces dlib's values exactly.
    """
    rs = np.random.RandomState(seed)
    states = []
    for n in trees_per_fit:
        copy = np.random.RandomState()
        copy.set_state(rs.get_state())
        states.append(copy)
        if n:
            rs.randint(0, _RAND_R_MAX, size=n)
    return states
