"""Exact-data mutual information from Gaussian posteriors: ``mig_exact``, ``aam_exact``, ``mmig_exact``.

The estimator of Chen et al., "Isolating Sources of Disentanglement in Variational Autoencoders"
(NeurIPS 2018), §5 and the reference code rtqichen/beta-tcvae (``disentanglement_metrics.py``,
``metric_helpers/mi_metric.py``), written anew for any noise-free dataset
whose factor grid can be enumerated:

* Every element x_n of the grid (N = prod(factor_sizes), rows in the grid's row-major factor
  order) is encoded to its posterior q(z|x_n) = N(mean_n, diag(exp(logvar_n))).
* H(z_j) = E[-log q(z_j)] with the aggregate posterior q(z_j) = (1/N) Σ_n q(z_j|x_n), evaluated
  exactly (a logsumexp over all N rows), the expectation by Monte Carlo over ``num_samples`` draws
  z ~ q(z|x) of one z per randomly chosen x.
* H(z_j | v_k) = mean over the values v of factor k of the same estimator restricted to the rows
  with v_k = v (q(z_j|v) = mean of q(z_j|x_n) over those rows, samples drawn from those rows).
* I(z_j; v_k) = H(z_j) - H(z_j | v_k): a (D, K) matrix in nats.

Sampling design (ours; Chen draws separate samples per stratum, K+1 passes over the grid): one
set of draws serves all K+1 entropies. Each factor's values are spread over the draws in equal
numbers (a randomly permuted balanced sequence, independently per factor, so every draw's x is
uniform on the grid), which makes H(z_j | v_k) an exactly stratified mean over values, and the
same draws give H(z_j) (common random numbers, so the difference has less noise). The expectation
is Chen's; only the Monte-Carlo noise differs.

Cost: O(num_samples × N × D) Gaussian log-densities (one logsumexp over N per draw, plus one over
N/|V_k| per factor); memory O(N × D) for the parameters plus ``chunk_elements`` floats of work
(about 3 × 4 bytes each). dSprites (N = 737,280, D = 10) at Chen's num_samples = 10,000 is
7.4e10 densities: about 34 ms per draw on one CPU thread, so about 6 min (measured on 200 draws
of VAE-like posteriors on a 2-core Xeon VM, torch 2.13 CPU); lower ``num_samples`` for quick runs
(the estimate's noise falls as 1/sqrt(num_samples)).

Differences to the references, on purpose: every factor counts, shape included (Chen excludes
shape on dSprites); any grid works (Chen hard-codes dSprites' 3×6×40×32×32 and 3D faces);
the samples are real posterior samples (disentangling-vae's evaluation uses the means and
scrambles latents across samples: its issue #64). The values differ from ``mig``'s
(disentanglement_lib's 20-bin histogram of 10,000 mean codes) by design: another estimator of
another quantity (the sampled posterior, not the mean code).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from benchmark.errors import UserError
from benchmark.metrics.aam_mmig import aam_from_mutual_info, mmig_from_mutual_info
from benchmark.metrics.mig import mig_from_mutual_info

if TYPE_CHECKING:
    import torch

DEFAULT_NUM_SAMPLES = 10_000  # Chen et al.'s reference code
CHUNK_ELEMENTS = 1 << 24  # log-densities held at once (64 MiB in float32)
_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_mutual_info(mean: np.ndarray, logvar: np.ndarray, factor_sizes: Sequence[int],
                         num_samples: int = DEFAULT_NUM_SAMPLES, seed: int = 0, *,
                         chunk_elements: int = CHUNK_ELEMENTS) -> np.ndarray:
    """(D, K) matrix of I(z_j; v_k) in nats from the posteriors of the whole factor grid.

    ``mean`` and ``logvar`` are (N, D), one row per grid element in row-major factor order
    (``np.ravel_multi_index`` order), N = prod(factor_sizes); factors are uniform on the grid.
    Stratified Monte-Carlo estimator of Chen et al. (NeurIPS 2018); see the module docstring.
    Deterministic given ``seed``. Entries can be slightly negative (Monte-Carlo noise).
    """
    mean, logvar, sizes = check_posterior(mean, logvar, factor_sizes)
    num_samples = _positive_int(num_samples, "num_samples")
    chunk_elements = _positive_int(chunk_elements, "chunk_elements")
    rng = np.random.default_rng(seed)
    values = balanced_factor_draws(sizes, num_samples, rng)
    rows = np.ravel_multi_index(values.T, sizes)
    eps = rng.standard_normal(mean[rows].shape)
    z = mean[rows].astype(np.float64) + np.exp(0.5 * logvar[rows].astype(np.float64)) * eps
    log_marginal, log_conditional = log_aggregate_densities(mean, logvar, sizes, z, values,
                                                            chunk_elements=chunk_elements)
    return mutual_info_from_log_densities(log_marginal, log_conditional, values, sizes)


def balanced_factor_draws(sizes: Sequence[int], num_samples: int,
                          rng: np.random.Generator) -> np.ndarray:
    """(num_samples, K) factor values: each factor's values equally often (±1), randomly paired.

    Per factor a balanced sequence (which values get the one extra draw is random) is shuffled
    independently, so each draw is uniform on the grid and every stratum v_k = v gets its share.
    """
    cols = [rng.permutation(np.resize(rng.permutation(s), num_samples)) for s in sizes]
    return np.stack(cols, axis=1).astype(np.int64)


def log_aggregate_densities(mean: np.ndarray, logvar: np.ndarray, sizes: tuple[int, ...],
                            z: np.ndarray, values: np.ndarray, *,
                            chunk_elements: int = CHUNK_ELEMENTS) -> tuple[np.ndarray, np.ndarray]:
    """log q(z_ij) (S, D) and log q(z_ij | v_k = values[i, k]) (S, K, D) for given draws z (S, D).

    q(z_j) = (1/N) Σ_n N(z_j; mean_nj, exp(logvar_nj)); the conditional averages over the rows
    whose factor k equals draw i's own value. Computed in float32 (log-densities, then logsumexp,
    which is stable), in chunks of draws so that at most ``chunk_elements`` densities are held.
    """
    import torch  # here, not at the top: the registry reads DEFAULT_NUM_SAMPLES without torch

    n, d = mean.shape
    k = len(sizes)
    # (D, N) layout: the reductions run over the contiguous last axes.
    mu = torch.from_numpy(np.ascontiguousarray(mean.T, dtype=np.float32))
    lv = torch.from_numpy(np.ascontiguousarray(logvar.T, dtype=np.float32))
    neg_half_inv_var = torch.exp(-lv).mul_(-0.5)
    log_norm = lv.add(_LOG_2PI).mul_(-0.5)
    zt = torch.from_numpy(np.asarray(z, dtype=np.float32))
    vals = torch.from_numpy(np.asarray(values, dtype=np.int64))
    s_total = zt.shape[0]
    log_marginal = np.empty((s_total, d))
    log_conditional = np.empty((s_total, k, d))
    log_counts = [math.log(n // s) for s in sizes]
    step = max(1, chunk_elements // (n * d))
    buf = torch.empty((min(step, s_total), d, n))  # reused: fresh allocations cost page faults
    with torch.inference_mode():
        for start in range(0, s_total, step):
            stop = min(start + step, s_total)
            s = stop - start
            logq = buf[:s]
            torch.sub(zt[start:stop, :, None], mu, out=logq)  # (s, D, N)
            logq.square_()
            torch.addcmul(log_norm, logq, neg_half_inv_var, out=logq)
            grid = logq.view(s, d, *sizes)
            pick = torch.arange(s)
            for f in range(k):
                # Only the stratum of the draw's own value is needed: gather it, N/|V_k| rows.
                stratum = grid.movedim(2 + f, 1)[pick, vals[start:stop, f]]  # (s, D, ...) copy
                lse = _logsumexp_(stratum.reshape(s, d, -1)).double().numpy()
                log_conditional[start:stop, f] = lse - log_counts[f]
            log_marginal[start:stop] = _logsumexp_(logq).double().numpy() - math.log(n)
    return log_marginal, log_conditional


def _logsumexp_(x: torch.Tensor) -> torch.Tensor:
    """logsumexp over the last axis, overwriting ``x``.

    Terms more than 80 nats below the maximum are raised to exactly that (relative change below
    N·e^-80 ≈ 1e-29 for N ≤ 1e6): torch's exp is ~10x slower on arguments that underflow to
    subnormals, which most of a grid's densities do.
    """
    m = x.amax(dim=-1, keepdim=True)
    x.sub_(m).clamp_(min=-80.0).exp_()
    return x.sum(dim=-1).log_().add_(m.squeeze(-1))


def mutual_info_from_log_densities(log_marginal: np.ndarray, log_conditional: np.ndarray,
                                   values: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    """(D, K) MI: H(z_j) = mean of -log q(z_j); H(z_j|v_k) = mean over values of the stratum means."""
    h_z = -log_marginal.mean(axis=0)
    mi = np.empty((log_marginal.shape[1], len(sizes)))
    for f, size in enumerate(sizes):
        sums = np.zeros((size, log_marginal.shape[1]))
        np.add.at(sums, values[:, f], -log_conditional[:, f])
        counts = np.bincount(values[:, f], minlength=size)
        seen = counts > 0  # fewer draws than values: average over the values drawn
        mi[:, f] = h_z - (sums[seen] / counts[seen, None]).mean(axis=0)
    return mi


def uniform_factor_mutual_info(factor_sizes: Sequence[int]) -> np.ndarray:
    """(K, K) I(v_k; v_k') of independent uniform factors: log|V_k| on the diagonal, 0 elsewhere."""
    return np.diag(np.log(np.asarray(factor_sizes, dtype=np.float64)))


def mig_exact(mutual_info: np.ndarray, factor_sizes: Sequence[int]) -> float:
    """MIG (Chen et al. 2018): mean over factors of (I_(1) - I_(2)) / log|V_k|, MI clamped ≥ 0."""
    sizes = _scored_sizes(mutual_info, factor_sizes, "mig_exact")
    return mig_from_mutual_info(np.maximum(mutual_info, 0.0), np.log(np.asarray(sizes, float)))


def aam_exact(mutual_info: np.ndarray, factor_sizes: Sequence[int]) -> float:
    """AAM (Dubois et al.) of `aam_mmig.aam_from_mutual_info` on the exact MI, clamped ≥ 0."""
    _scored_sizes(mutual_info, factor_sizes, "aam_exact")
    return aam_from_mutual_info(np.maximum(mutual_info, 0.0))


def mmig_exact(mutual_info: np.ndarray, factor_sizes: Sequence[int]) -> float:
    """MMIG (Dubois et al.) of `aam_mmig.mmig_from_mutual_info` on the exact MI, clamped ≥ 0.

    H(v_k) and I(v_k; v_k') are exact for the uniform grid (log|V_k| and 0), so the normaliser is
    log|V_k| and MMIG equals MIG here; it differs only on correlated factors, which a grid lacks.
    """
    sizes = _scored_sizes(mutual_info, factor_sizes, "mmig_exact")
    return mmig_from_mutual_info(np.maximum(mutual_info, 0.0), uniform_factor_mutual_info(sizes))


_SCORES = {"mig_exact": mig_exact, "aam_exact": aam_exact, "mmig_exact": mmig_exact}


def score(name: str, mean: np.ndarray, logvar: np.ndarray, factor_sizes: Sequence[int], *,
          seed: int = 0, n_jobs: int = 1, num_samples: int = DEFAULT_NUM_SAMPLES) -> dict[str, float]:
    """``{name: value}`` for name in mig_exact, aam_exact, mmig_exact (the registry's scorer).

    Inside `shared.shared_work()` the MI matrix is estimated once for all three.
    """
    del n_jobs  # torch's intra-op threads do the work
    from benchmark.metrics import shared

    mean, logvar, sizes = check_posterior(mean, logvar, factor_sizes)
    key = shared.digest(mean, logvar, repr(sizes), int(num_samples), int(seed)) if shared.active() else None
    mi = shared.memo("gaussian_mi", key,
                     lambda: gaussian_mutual_info(mean, logvar, sizes, num_samples, seed)).copy()
    return {name: _SCORES[name](mi, sizes)}


def check_posterior(mean, logvar, factor_sizes) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Validated (mean, logvar, factor_sizes); anything malformed raises UserError."""
    sizes = tuple(factor_sizes) if isinstance(factor_sizes, (list, tuple, np.ndarray)) else None
    if not sizes or any(not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < 1
                        for s in sizes):
        raise UserError(f"factor_sizes must be a non-empty sequence of positive integers, got {factor_sizes!r}")
    sizes = tuple(int(s) for s in sizes)
    arrays = []
    for what, arr in (("mean", mean), ("logvar", logvar)):
        a = np.asarray(arr)
        if a.ndim != 2 or 0 in a.shape:
            raise UserError(f"posterior {what} must be a non-empty (N, D) array, got shape {a.shape}")
        if not np.issubdtype(a.dtype, np.floating):
            raise UserError(f"posterior {what} must be floating point, got dtype {a.dtype}")
        if not np.all(np.isfinite(a)):
            raise UserError(f"posterior {what} contains {int(np.sum(~np.isfinite(a)))} NaN or inf values")
        arrays.append(a)
    mean, logvar = arrays
    if mean.shape != logvar.shape:
        raise UserError(f"posterior mean {mean.shape} and logvar {logvar.shape} differ in shape")
    if mean.shape[0] != math.prod(sizes):
        raise UserError(f"the posteriors have {mean.shape[0]} rows but the factor grid "
                        f"{'x'.join(map(str, sizes))} has {math.prod(sizes)}: one row per grid element is needed")
    return mean, logvar, sizes


def _scored_sizes(mutual_info: np.ndarray, factor_sizes: Sequence[int], name: str) -> tuple[int, ...]:
    sizes = tuple(int(s) for s in factor_sizes)
    if mutual_info.ndim != 2 or mutual_info.shape[1] != len(sizes):
        raise UserError(f"{name}: MI matrix of shape {mutual_info.shape} does not have {len(sizes)} factor columns")
    if mutual_info.shape[0] < 2:
        raise UserError(f"{name} needs at least two code dimensions")
    if min(sizes) < 2:
        raise UserError(f"{name}: factor {sizes.index(min(sizes))} takes a single value; "
                        "it needs at least two")
    return sizes


def _positive_int(v, what: str) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise UserError(f"{what} must be a positive integer, got {v!r}")
    return int(v)
