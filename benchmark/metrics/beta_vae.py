"""BetaVAE score (Higgins et al., "beta-VAE", ICLR 2017), as disentanglement_lib's `beta_vae.py`.

A training point: pick a factor k uniformly, draw two batches of ``batch_size`` factor vectors that
agree on factor k, feature = mean over the batch of |r(x1) − r(x2)|, label = k. A
`LogisticRegression` (sklearn defaults) predicts k; keys train_accuracy, eval_accuracy.
All batches' factors are drawn at once (same distribution as dlib's loop) and encoded in pieces of
points that bound memory (`sampling.encoded_pairs`: the codes of encoding everything at once).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from benchmark.metrics.sampling import encoded_pairs


def beta_vae_from_features(train_points, train_labels, eval_points, eval_labels,
                           seed: int = 0) -> dict[str, float]:
    """Accuracies of the logistic regression on given feature vectors (pure part of the score)."""
    model = LogisticRegression(random_state=np.random.RandomState(seed))
    model.fit(train_points, train_labels)
    return {"train_accuracy": float(np.mean(model.predict(train_points) == train_labels)),
            "eval_accuracy": float(model.score(eval_points, eval_labels))}


def features(sample_factors, encode, num_factors: int, rng: np.random.Generator,
             batch_size: int, num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """(num_points, D) difference features and their factor labels."""
    labels = rng.integers(num_factors, size=num_points)
    f1 = sample_factors(num_points * batch_size, rng)
    f2 = sample_factors(num_points * batch_size, rng)
    fixed = np.repeat(labels, batch_size)
    rows = np.arange(len(f1))
    f2[rows, fixed] = f1[rows, fixed]
    out, done = None, 0
    for c1, c2 in encoded_pairs(encode, f1, f2, batch_size):
        part = np.abs(c1 - c2).reshape(-1, batch_size, c1.shape[1]).mean(axis=1)
        if out is None:  # filled piece by piece: (num_points, D) once, not the pieces as well
            out = np.empty((num_points, part.shape[1]), dtype=part.dtype)
        out[done:done + len(part)] = part
        done += len(part)
    return out, labels


def intervene(sample_factors, encode, factor_sizes, rng, *, seed=0, n_jobs=1, batch_size=64,
              num_train=10000, num_eval=5000):
    del n_jobs
    k = len(factor_sizes)
    x_tr, y_tr = features(sample_factors, encode, k, rng, batch_size, num_train)
    x_ev, y_ev = features(sample_factors, encode, k, rng, batch_size, num_eval)
    return beta_vae_from_features(x_tr, y_tr, x_ev, y_ev, seed)
