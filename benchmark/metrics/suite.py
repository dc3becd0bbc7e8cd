"""Evaluate one trained model: every requested metric on every representation, encoding once.

Per representation, one pool of (codes, factors) samples serves every metric that scores samples
(each takes prefixes of the pool's train and test parts), and the interventional metrics (BetaVAE,
FactorVAE) encode their own batches. When the dataset renders each factor combination identically
(noise-free) and the representation is deterministic, codes are looked up by factor combination:
each combination is rendered and encoded at most once (at most the grid, however many draws),
exactly the codes the protocol would compute, at a fraction of the encoder calls. Work that several
metrics repeat on the same rows (the discretised MI matrix; DCI's GBT fits, which are
downstream_gbt's at the same size) is done once per representation (`shared.shared_work`).

Posterior metrics (``mig_exact``, ``aam_exact``, ``mmig_exact``: exact-data MI of Chen et al. 2018
from q(z|x), `gaussian_mi`) are computed once per model, not per representation: they use the
Gaussian posterior itself, neither its mean nor a sample. Their rows have representation
"posterior" (`POSTERIOR`). The whole grid is encoded once for all of them and the MI matrix
estimated once. When they cannot be computed (no ``gaussian`` given, i.e. a deterministic encoder;
a noisy or too large dataset) each gets one row with value NaN and the reason under "skipped".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from benchmark.errors import UserError
from benchmark.metrics.api import run_metric, run_posterior_metric
from benchmark.metrics.registry import METRICS, default_metrics, get_metric
from benchmark.metrics.sampling import (
    FactorEncoder,
    GaussianEncoder,
    PosteriorUnavailable,
    encode_grid_posterior,
    grid_size,
    is_deterministic,
)
from benchmark.metrics.shared import shared_work

MAX_GRID = 2_000_000  # grid rows we keep a code table for (dSprites: 737,280)
# The grid lookup's table may take this share of the job's memory (``memory_bytes``), or
# DEFAULT_LOOKUP_BYTES when none is given: the rest is the model, the data, the sample pool and the
# metrics' working arrays. The interventional metrics hold CHUNK_SHARE of it in codes at once
# (`sampling.CHUNK_BYTES` when none is given; a few times that with their temporaries).
LOOKUP_SHARE = 0.25
DEFAULT_LOOKUP_BYTES = 2 * 2**30
CHUNK_SHARE = 1 / 32
POSTERIOR = "posterior"  # the representation column of the posterior metrics' rows


def evaluate(data, represents: Mapping[str, Callable[[np.ndarray], np.ndarray]], seed: int,
             metrics: list[str] | None = None, overrides: Mapping[str, Mapping[str, Any]] | None = None,
             progress: Callable[[int, int, str], None] | None = None, *, n_jobs: int = 1,
             lookup: str = "auto", encode_batch_size: int = 256,
             gaussian: GaussianEncoder | None = None,
             memory_bytes: int | None = None) -> list[dict[str, Any]]:
    """Score each representation with each metric; rows {representation, metric, key, value, eval_seconds}.

    ``metrics`` defaults to `default_metrics()` (what "all" means). ``overrides`` maps a metric
    name to dlib-named parameters; ``progress(done, total, label)`` is called after each metric;
    ``lookup`` is "auto", "always" or "never" (grid lookup, see module doc).
    Every representation sees the same factor samples (paired comparison, as dlib's fixed seeds).
    ``eval_seconds`` of a sample metric includes an equal share of the pool's encoding time.
    ``gaussian(observations) -> (mean, logvar)`` is the model's posterior, for the posterior
    metrics (rows with representation "posterior"; skipped rows carry a "skipped" reason).
    ``memory_bytes``: the memory this evaluation may use; the grid lookup keeps codes in
    `LOOKUP_SHARE` of it and encodes the rest directly, and BetaVAE and FactorVAE encode in pieces
    of `CHUNK_SHARE` of it (the same codes: results never depend on it).
    """
    names = default_metrics() if metrics is None else list(metrics)
    for name in list(names) + list(overrides or {}):
        get_metric(name)
    unused = set(overrides or {}) - set(names)
    if unused:
        raise UserError(f"overrides given for metric {sorted(unused)[0]!r}, which is not evaluated")
    if lookup not in ("auto", "always", "never"):
        raise UserError(f"lookup must be auto, always or never, got {lookup!r}")
    posterior = [n for n in names if METRICS[n].posterior is not None]
    names = [n for n in names if n not in posterior]
    if names and not represents:
        raise UserError("no representation to evaluate")
    if posterior and POSTERIOR in represents:
        raise UserError(f"representation name {POSTERIOR!r} is taken by the posterior metrics' rows")
    params = {n: METRICS[n].params((overrides or {}).get(n)) for n in names + posterior}
    lookup_bytes = (DEFAULT_LOOKUP_BYTES if memory_bytes is None
                    else int(LOOKUP_SHARE * memory_bytes))
    chunk_bytes = None if memory_bytes is None else int(CHUNK_SHARE * memory_bytes)
    sample_metrics = [n for n in names if METRICS[n].needs_samples]
    total, done, rows = len(names) * len(represents) + len(posterior), 0, []
    for rep_name, represent in represents.items() if names else ():
        with shared_work():
            rng = np.random.default_rng(seed)
            encoder = FactorEncoder(data, represent, rng, batch_size=encode_batch_size,
                                    chunk_bytes=chunk_bytes)
            t0 = time.perf_counter()
            if _want_grid(lookup, data, represent, params):
                encoder.use_grid(lookup_bytes)
            pool = None
            if sample_metrics:
                n_train = max(METRICS[n].sample_sizes(params[n])[0] for n in sample_metrics)
                n_test = max(METRICS[n].sample_sizes(params[n])[1] for n in sample_metrics)
                factors = np.asarray(data.sample_factors(n_train + n_test, rng), dtype=np.int64)
                codes = encoder(factors)
                pool = (codes[:n_train], factors[:n_train], codes[n_train:], factors[n_train:])
            pool_share = (time.perf_counter() - t0) / max(len(sample_metrics), 1)
            for name in names:
                metric = METRICS[name]
                t1 = time.perf_counter()
                scores = run_metric(metric, params[name], data, encoder, rng, seed=seed, n_jobs=n_jobs,
                                    pool=pool if metric.needs_samples else None)
                seconds = time.perf_counter() - t1 + (pool_share if metric.needs_samples else 0.0)
                rows += [{"representation": rep_name, "metric": name, "key": k, "value": float(v),
                          "eval_seconds": seconds} for k, v in scores.items()]
                done += 1
                if progress is not None:
                    progress(done, total, f"{rep_name}/{name}")
    if posterior:
        for row in _posterior_rows(data, gaussian, posterior, params, seed, n_jobs,
                                   encode_batch_size):
            rows.append(row)
            done += 1
            if progress is not None:
                progress(done, total, f"{POSTERIOR}/{row['metric']}")
    return rows


def _posterior_rows(data, gaussian: GaussianEncoder | None, names: list[str],
                    params: Mapping[str, Mapping[str, Any]], seed: int, n_jobs: int,
                    batch_size: int) -> list[dict[str, Any]]:
    """One row per posterior metric: the grid is encoded once and the MI matrix shared."""
    def skipped(reason: str) -> list[dict[str, Any]]:
        # A posterior metric's one key is its name; NaN marks "not computed" for the analysis.
        return [{"representation": POSTERIOR, "metric": n, "key": n, "value": float("nan"),
                 "eval_seconds": 0.0, "skipped": reason} for n in names]

    if gaussian is None:
        return skipped("no Gaussian posterior q(z|x) given (a deterministic encoder has none)")
    rows = []
    with shared_work():
        t0 = time.perf_counter()
        try:
            mean, logvar = encode_grid_posterior(data, gaussian, batch_size=batch_size,
                                                 max_rows=MAX_GRID)
        except PosteriorUnavailable as exc:  # this model or dataset cannot give them: keep the job
            return skipped(str(exc))
        share = (time.perf_counter() - t0) / len(names)
        for name in names:
            t1 = time.perf_counter()
            scores = run_posterior_metric(METRICS[name], params[name], mean, logvar,
                                          data.factor_sizes, seed=seed, n_jobs=n_jobs)
            seconds = time.perf_counter() - t1 + share
            rows += [{"representation": POSTERIOR, "metric": name, "key": k, "value": float(v),
                      "eval_seconds": seconds} for k, v in scores.items()]
    return rows


def _want_grid(lookup: str, data, represent, params) -> bool:
    if lookup == "never":
        return False
    size = grid_size(data)
    if lookup == "always":
        if not is_deterministic(data, represent):
            raise UserError("lookup='always' needs a noise-free dataset and a deterministic representation")
        return True
    # Lookup never encodes more than direct encoding; the table is bounded by MAX_GRID.
    return size <= MAX_GRID and is_deterministic(data, represent)
