"""FactorVAE score (Kim & Mnih, "Disentangling by Factorising", ICML 2018), as disentanglement_lib's
`factor_vae.py`.

Global variances (ddof 1) from ``num_variance_estimate`` codes; dimensions with standard deviation
below ``prune_dims_threshold`` (dlib gin ``prune_dims.threshold``, 0.05 in the study) are inactive.
A vote: fix a random factor k over a batch, d* = argmin over active dims of local var / global var,
votes[k, d*] += 1; the majority-vote classifier maps each dim to its most voted factor.

Bug fixed: dlib returns ``num_active_dims = len(active_dims)``, the length of the boolean mask, i.e.
always the code size; here it is the number of active dimensions.
"""

from __future__ import annotations

import numpy as np

from benchmark.metrics.sampling import encoded_chunks


def votes_accuracy(train_votes: np.ndarray, eval_votes: np.ndarray) -> dict[str, float]:
    """Majority-vote accuracies from (factors × dims) vote matrices (pure part of the score)."""
    classifier = np.argmax(train_votes, axis=0)
    cols = np.arange(train_votes.shape[1])
    return {"train_accuracy": float(np.sum(train_votes[classifier, cols]) / np.sum(train_votes)),
            "eval_accuracy": float(np.sum(eval_votes[classifier, cols]) / np.sum(eval_votes))}


def votes(sample_factors, encode, num_factors: int, rng: np.random.Generator, batch_size: int,
          num_points: int, global_variances: np.ndarray, active: np.ndarray) -> np.ndarray:
    """(K, D) vote counts from ``num_points`` batches with one factor held fixed."""
    labels = rng.integers(num_factors, size=num_points)
    f = sample_factors(num_points * batch_size, rng).reshape(num_points, batch_size, -1)
    p = np.arange(num_points)
    f[p, :, labels] = f[p, 0, labels][:, None]
    best = []  # codes in pieces of points that bound memory, the codes of one call on all
    for codes in encoded_chunks(encode, f.reshape(num_points * batch_size, -1), batch_size):
        codes = codes.reshape(-1, batch_size, codes.shape[1])
        local = np.var(codes[:, :, active], axis=1, ddof=1)
        best.append(np.argmin(local / global_variances[active], axis=1))
    best = np.concatenate(best)
    out = np.zeros((num_factors, global_variances.shape[0]), dtype=np.int64)
    np.add.at(out, (labels, best), 1)
    return out


def intervene(sample_factors, encode, factor_sizes, rng, *, seed=0, n_jobs=1, batch_size=64,
              num_train=10000, num_eval=5000, num_variance_estimate=10000,
              prune_dims_threshold=0.05):
    del seed, n_jobs
    k = len(factor_sizes)
    codes = encode(sample_factors(num_variance_estimate, rng))
    global_variances = np.var(codes, axis=0, ddof=1)
    active = np.sqrt(global_variances) >= prune_dims_threshold
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0.0}
    train = votes(sample_factors, encode, k, rng, batch_size, num_train, global_variances, active)
    ev = votes(sample_factors, encode, k, rng, batch_size, num_eval, global_variances, active)
    return {**votes_accuracy(train, ev), "num_active_dims": float(active.sum())}
