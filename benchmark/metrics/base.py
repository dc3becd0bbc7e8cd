"""The metric record: defaults (dlib's parameter names), the pure scorer, and how it samples."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmark.errors import UserError

# Parameters that only say how many samples to draw and how to encode them.
SAMPLING_PARAMS = frozenset({"num_train", "num_test", "batch_size"})


@dataclass(frozen=True)
class Metric:
    """One registered metric.

    ``score(codes_train, factors_train, codes_test, factors_test, *, seed, n_jobs, **params)`` scores
    given (codes, factors) samples; metrics that intervene on factors (BetaVAE, FactorVAE scores)
    have ``intervene(sample_factors, encode, factor_sizes, rng, *, seed, n_jobs, **params)`` instead;
    metrics of the Gaussian posterior over the whole factor grid (``mig_exact``...) have
    ``posterior(mean, logvar, factor_sizes, *, seed, n_jobs, **params)``, their one key is their name.
    ``defaults`` are unsupervised_study_v1's parameters under dlib's names.
    ``in_all``: whether ``metrics: all`` includes it. "all" is hashed into every job id as the list
    of its names, so a metric added later must be opt-in (False) or every existing id changes.
    """

    name: str
    defaults: Mapping[str, Any]
    summary: str
    score: Callable[..., dict[str, float]] | None = None
    intervene: Callable[..., dict[str, float]] | None = None
    uses_test: bool = True
    posterior: Callable[..., dict[str, float]] | None = None
    in_all: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def needs_samples(self) -> bool:
        return self.score is not None

    def params(self, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults updated with ``overrides``; an unknown parameter raises UserError."""
        out = dict(self.defaults)
        for key, value in (overrides or {}).items():
            if key not in self.defaults:
                known = ", ".join(sorted(self.defaults))
                raise UserError(f"metric {self.name} has no parameter {key!r} (known: {known})")
            out[key] = value
        for key in ("num_train", "num_test", "num_eval", "batch_size", "num_variance_estimate",
                    "n_estimators", "num_samples"):
            if key in out:
                values = out[key] if isinstance(out[key], (list, tuple)) else [out[key]]
                if not values or any(not _is_pos_int(v) for v in values):
                    raise UserError(f"metric {self.name}: {key} must be a positive integer, got {out[key]!r}")
        return out

    def sample_sizes(self, params: Mapping[str, Any]) -> tuple[int, int]:
        """(train rows, test rows) this metric draws from a pool of (codes, factors)."""
        n_train = params.get("num_train", 0)
        if isinstance(n_train, (list, tuple)):
            n_train = max(n_train)
        return int(n_train), int(params.get("num_test", 0)) if self.uses_test else 0

    def score_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in params.items() if k not in SAMPLING_PARAMS}


def _is_pos_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0
