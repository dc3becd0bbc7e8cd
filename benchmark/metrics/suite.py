"""Evaluate one trained model: every requested metric on every representation, encoding once.

Per representation, one pool of (codes, factors) samples serves every metric that scores samples
(each takes prefixes of the pool's train and test parts), and the interventional metrics (BetaVAE,
FactorVAE) encode their own batches. When the dataset renders each factor combination identically
(noise-free) and the representation is deterministic, codes are looked up by factor combination:
each combination is rendered and encoded at most once (at most the grid, however many draws),
exactly the codes the protocol would compute, at a fraction of the encoder calls. Work that several
metrics repeat on the same rows (the discretised MI matrix; DCI's GBT fits, which are
downstream_gbt's at the same size) is done once per representation (`shared.shared_work`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from benchmark.errors import UserError
from benchmark.metrics import METRICS, get_metric, run_metric
from benchmark.metrics.sampling import FactorEncoder, grid_size, is_deterministic
from benchmark.metrics.shared import shared_work

MAX_GRID = 2_000_000  # grid rows we keep a code table for (dSprites: 737,280)


def encode_budget(metrics: Mapping[str, dict[str, Any]]) -> int:
    """Observations the requested metrics would encode without a grid lookup."""
    n_train = max((get_metric(m).sample_sizes(p)[0] for m, p in metrics.items()
                   if get_metric(m).needs_samples), default=0)
    n_test = max((get_metric(m).sample_sizes(p)[1] for m, p in metrics.items()
                  if get_metric(m).needs_samples), default=0)
    total = n_train + n_test
    for m, p in metrics.items():
        if m == "beta_vae":
            total += 2 * p["batch_size"] * (p["num_train"] + p["num_eval"])
        elif m == "factor_vae":
            total += p["num_variance_estimate"] + p["batch_size"] * (p["num_train"] + p["num_eval"])
    return total


def evaluate(data, represents: Mapping[str, Callable[[np.ndarray], np.ndarray]], seed: int,
             metrics: list[str] | None = None, overrides: Mapping[str, Mapping[str, Any]] | None = None,
             progress: Callable[[int, int, str], None] | None = None, *, n_jobs: int = 1,
             lookup: str = "auto", encode_batch_size: int = 256) -> list[dict[str, Any]]:
    """Score each representation with each metric; rows {representation, metric, key, value, eval_seconds}.

    ``overrides`` maps a metric name to dlib-named parameters; ``progress(done, total, label)`` is
    called after each metric; ``lookup`` is "auto", "always" or "never" (grid lookup, see module doc).
    Every representation sees the same factor samples (paired comparison, as dlib's fixed seeds).
    ``eval_seconds`` of a sample metric includes an equal share of the pool's encoding time.
    """
    names = list(METRICS) if metrics is None else list(metrics)
    for name in list(names) + list(overrides or {}):
        get_metric(name)
    unused = set(overrides or {}) - set(names)
    if unused:
        raise UserError(f"overrides given for metric {sorted(unused)[0]!r}, which is not evaluated")
    if lookup not in ("auto", "always", "never"):
        raise UserError(f"lookup must be auto, always or never, got {lookup!r}")
    if not represents:
        raise UserError("no representation to evaluate")
    params = {n: METRICS[n].params((overrides or {}).get(n)) for n in names}
    sample_metrics = [n for n in names if METRICS[n].needs_samples]
    total, done, rows = len(names) * len(represents), 0, []
    for rep_name, represent in represents.items():
        with shared_work():
            rng = np.random.default_rng(seed)
            encoder = FactorEncoder(data, represent, rng, batch_size=encode_batch_size)
            t0 = time.perf_counter()
            if _want_grid(lookup, data, represent, params):
                encoder.use_grid()
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
