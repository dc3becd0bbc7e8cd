"""METHODS: every selectable method, its hyperparameters (type, default, allowed values) and builder.

Names and defaults follow disentanglement_lib's gin bindings (`vae.beta`, `annealed_vae.c_max`, ...);
the study sweeps one value per method (docs/dlib.md), the others are fixed at these defaults.
The builders import their modules on first use, so listing or validating methods needs neither
torch nor scikit-learn.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from benchmark.errors import UserError

if TYPE_CHECKING:
    from benchmark.models.base import BuildContext, System


@dataclass(frozen=True)
class Param:
    default: Any
    type: type  # float, int, str or bool; an int is accepted where a float is expected
    choices: tuple | None = None
    minimum: float | None = None
    doc: str = ""
    # (other hyperparameter, its values): this one applies only then and is left out otherwise
    only_with: tuple[str, tuple] | None = None
    # left out of the filled-in params at its default: a setting added to a method after its jobs
    # existed leaves their ids (hashes of the params) unchanged
    omit_default: bool = False


@dataclass(frozen=True)
class MethodSpec:
    name: str
    build: Callable[[BuildContext, dict[str, Any]], System]
    params: Mapping[str, Param] = field(default_factory=dict)
    doc: str = ""
    # constraints across hyperparameters: the filled-in params -> an error message or None
    check: Callable[[dict[str, Any]], str | None] | None = None


_POS = 0.0  # minimum for weights that must not be negative


def _lazy(module: str):
    """The module, imported on first build: listing or validating methods needs neither torch nor
    sklearn, so `benchmark run --dry-run` of the 12,600-job study stays fast."""
    return importlib.import_module(f"benchmark.models.{module}")


CONSTANT = "constant"  # beta_vae's default schedule: β fixed at `beta`
_SCHEDULED = ("linear", "exponential")


def _beta_vae(ctx: BuildContext, p: dict[str, Any]) -> System:
    vae = _lazy("vae")
    schedule = p.get("beta_schedule", CONSTANT)
    if schedule == CONSTANT:
        return vae.GaussianVAE(ctx, beta=p["beta"])
    return vae.GaussianVAE(ctx, schedule=vae.BetaSchedule(schedule, p["beta_start"], p["beta_end"],
                                                          p["anneal_steps"]))


def _check_beta_schedule(p: dict[str, Any]) -> str | None:
    if p.get("beta_schedule") == "exponential" and min(p["beta_start"], p["beta_end"]) <= 0:
        return "the exponential beta_schedule needs beta_start and beta_end > 0"
    return None


METHODS: dict[str, MethodSpec] = {
    "beta_vae": MethodSpec(
        "beta_vae", _beta_vae,
        {"beta": Param(1.0, float, minimum=_POS, doc="weight of the KL term",
                       only_with=("beta_schedule", (CONSTANT,))),
         "beta_schedule": Param(CONSTANT, str, choices=(CONSTANT, *_SCHEDULED), omit_default=True,
                                doc="β fixed, or decayed from beta_start to beta_end over anneal_steps "
                                    "(Burgess et al. 2018: a strict bottleneck, then relaxed)"),
         "beta_start": Param(100.0, float, minimum=_POS, only_with=("beta_schedule", _SCHEDULED),
                             doc="β at step 0"),
         "beta_end": Param(1.0, float, minimum=_POS, only_with=("beta_schedule", _SCHEDULED),
                           doc="β from anneal_steps on"),
         "anneal_steps": Param(100000, int, minimum=1, only_with=("beta_schedule", _SCHEDULED),
                               doc="global steps from beta_start to beta_end")},
        "β-VAE (Higgins et al. 2017): reconstruction + β·KL; β optionally annealed.",
        check=_check_beta_schedule),
    "vae": MethodSpec(
        "vae", lambda ctx, p: _lazy("vae").GaussianVAE(ctx, beta=1.0), {},
        "Plain VAE (Kingma & Welling 2014): β-VAE with β = 1."),
    "annealed_vae": MethodSpec(
        "annealed_vae",
        lambda ctx, p: _lazy("vae").AnnealedVAE(ctx, p["gamma"], p["c_max"], p["iteration_threshold"]),
        {"c_max": Param(25.0, float, minimum=_POS, doc="final KL capacity C (nats)"),
         "gamma": Param(1000.0, float, minimum=_POS, doc="weight of |KL - C|"),
         "iteration_threshold": Param(100000, int, minimum=1, doc="steps to ramp C to c_max")},
        "AnnealedVAE (Burgess et al. 2018): γ·|KL − C|, C ramped linearly."),
    "factor_vae": MethodSpec(
        "factor_vae",
        lambda ctx, p: _lazy("vae").FactorVAE(ctx, p["gamma"], p["shuffle"], p["steps_per_iteration"],
                                              p["discriminator_learning_rate"]),
        {"gamma": Param(10.0, float, minimum=_POS, doc="weight of the TC term"),
         "shuffle": Param("same_batch", str, choices=("same_batch", "second_batch"),
                          doc="dlib permutes the same batch; Kim & Mnih a second batch"),
         "steps_per_iteration": Param(2, int, choices=(1, 2),
                                      doc="global steps per iteration: dlib 2, paper 1"),
         "discriminator_learning_rate": Param(1e-4, float, minimum=1e-12,
                                              doc="discriminator's Adam rate, fixed in dlib's study "
                                                  "whatever the VAE's learning_rate")},
        "FactorVAE (Kim & Mnih 2018): KL + γ·TC, TC from a density-ratio discriminator."),
    "dip_vae_i": MethodSpec(
        "dip_vae_i",
        lambda ctx, p: _lazy("vae").DIPVAE(ctx, p["lambda_od"], p["lambda_d_factor"], "i"),
        {"lambda_od": Param(1.0, float, minimum=_POS, doc="off-diagonal weight"),
         "lambda_d_factor": Param(10.0, float, minimum=_POS, doc="λ_d = factor·λ_od")},
        "DIP-VAE-I (Kumar et al. 2018): KL + moment matching of cov(μ)."),
    "dip_vae_ii": MethodSpec(
        "dip_vae_ii",
        lambda ctx, p: _lazy("vae").DIPVAE(ctx, p["lambda_od"], p["lambda_d_factor"], "ii"),
        {"lambda_od": Param(1.0, float, minimum=_POS, doc="off-diagonal weight"),
         "lambda_d_factor": Param(1.0, float, minimum=_POS, doc="λ_d = factor·λ_od")},
        "DIP-VAE-II (Kumar et al. 2018): KL + moment matching of cov(z)."),
    "beta_tc_vae": MethodSpec(
        "beta_tc_vae", lambda ctx, p: _lazy("vae").BetaTCVAE(ctx, beta=p["beta"]),
        {"beta": Param(1.0, float, minimum=_POS, doc="weight of the TC term")},
        "β-TCVAE (Chen et al. 2018): KL + (β − 1)·TC, minibatch-weighted estimator."),
    "information_dropout": MethodSpec(
        "information_dropout",
        lambda ctx, p: _lazy("information_dropout").InformationDropout(ctx, p["beta"], p["max_alpha"]),
        {"beta": Param(1.0, float, minimum=_POS, doc="weight of the KL term"),
         "max_alpha": Param(0.7, float, minimum=1e-6, doc="cap on the noise scale α (the authors' 0.7)")},
        "Information Dropout (Achille & Soatto 2018): softplus code × log-normal noise exp(α·ε), "
        "reconstruction + β·KL to a learned log-normal prior."),
    # --- baselines of the beta-VAE paper's comparison (fitted, not trained)
    "pca": MethodSpec(
        "pca", lambda ctx, p: _lazy("baselines").PCABaseline(ctx), {},
        "PCA baseline: projections on the top num_latent principal components."),
    "fast_ica": MethodSpec(
        "fast_ica", lambda ctx, p: _lazy("baselines").FastICABaseline(ctx, p["max_iter"]),
        {"max_iter": Param(200, int, minimum=1, doc="FastICA iterations")},
        "FastICA baseline (sklearn, unit-variance whitening)."),
    "sparse_coding": MethodSpec(
        "sparse_coding",
        lambda ctx, p: _lazy("baselines").SparseCoding(ctx, p["alpha"], p["max_iter"]),
        {"alpha": Param(1.0, float, minimum=1e-12, doc="weight of the codes' L1 penalty"),
         "max_iter": Param(10, int, minimum=1, doc="passes over the fit samples")},
        "Sparse coding (Olshausen & Field 1996): sklearn dictionary learning, codes = lasso codes."),
    "raw_pixels": MethodSpec(
        "raw_pixels", lambda ctx, p: _lazy("baselines").RawPixels(ctx), {},
        "The flattened image as its own representation (D = C*H*W)."),
    "untrained_encoder": MethodSpec(
        "untrained_encoder", lambda ctx, p: _lazy("baselines").UntrainedEncoder(ctx), {},
        "The study's encoder at its seeded random initialisation."),
    "ground_truth": MethodSpec(
        "ground_truth", lambda ctx, p: _lazy("baselines").GroundTruth(ctx), {},
        "The ground-truth factors, each scaled to [0, 1] (index / (size - 1)): every metric's ceiling."),
    # --- weakly supervised: batches in which one ground-truth factor varies
    "dc_ign": MethodSpec(
        "dc_ign", lambda ctx, p: _lazy("dc_ign").DCIGN(ctx, p["invariance_strength"]),
        {"invariance_strength": Param(0.01, float, minimum=_POS,
                                      doc="scale of the clamped units' pull to their batch mean "
                                          "(the paper's 1/100)")},
        "DC-IGN (Kulkarni et al. 2015): VAE, one latent block per factor; in batches where factor k "
        "varies, the other blocks are clamped to their batch mean."),
    # --- the autoencoder lecture
    "denoising_ae": MethodSpec(
        "denoising_ae",
        lambda ctx, p: _lazy("autoencoders").DenoisingAE(ctx, p["corruption"], p["noise_level"]),
        {"corruption": Param("masking", str, choices=("masking", "salt_pepper", "gaussian")),
         "noise_level": Param(0.25, float, minimum=_POS,
                              doc="fraction of corrupted pixels (masking, salt_pepper) or noise std")},
        "Denoising autoencoder (Vincent et al. 2008)."),
    "sparse_ae": MethodSpec(
        "sparse_ae", lambda ctx, p: _lazy("autoencoders").SparseAE(ctx, p["rho"], p["sparsity_weight"]),
        {"rho": Param(0.05, float, minimum=1e-6, doc="target mean activation"),
         "sparsity_weight": Param(3.0, float, minimum=_POS, doc="weight beta of the sparsity KL")},
        "Sparse autoencoder (Ng, CS294A): sigmoid codes, KL sparsity penalty."),
    # --- InfoGAN slides
    "infogan": MethodSpec(
        "infogan",
        lambda ctx, p: _lazy("infogan").InfoGAN(ctx, p["noise_dim"], p["info_weight"],
                                       p["lr_discriminator"], p["lr_generator"]),
        {"noise_dim": Param(64, int, minimum=1, doc="incompressible noise dimensions"),
         "info_weight": Param(1.0, float, minimum=_POS, doc="lambda of the MI term"),
         "lr_discriminator": Param(2e-4, float, minimum=1e-12),
         "lr_generator": Param(1e-3, float, minimum=1e-12)},
        "InfoGAN (Chen et al. 2016) with continuous codes; representation = Q's code prediction."),
}


def _check_value(method: str, name: str, p: Param, value: Any) -> Any:
    where = f"hyperparameter {name!r} of method {method!r}"
    if p.type is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif p.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, p.type)
    if not ok:
        raise UserError(f"{where} must be {p.type.__name__}, got {type(value).__name__} {value!r}")
    if p.choices is not None and value not in p.choices:
        raise UserError(f"{where} must be one of {list(p.choices)}, got {value!r}")
    if p.minimum is not None and value < p.minimum:
        raise UserError(f"{where} must be >= {p.minimum}, got {value!r}")
    return value


def validate_params(method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Full hyperparameter dict of `method` (defaults filled in, except a `Param.omit_default` at its
    default and a `Param.only_with` whose condition does not hold); UserError on an unknown method,
    an unknown or inapplicable hyperparameter, a wrong type, a value out of range or a failed
    `MethodSpec.check`."""
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; known: {', '.join(sorted(METHODS))}")
    spec = METHODS[method]
    params = dict(params or {})
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        known = ", ".join(spec.params) or "none"
        raise UserError(f"unknown hyperparameter {unknown[0]!r} for method {method!r} "
                        f"(known: {known})")
    full = {k: _check_value(method, k, p, params.get(k, p.default)) for k, p in spec.params.items()}
    out = {}
    for k, p in spec.params.items():
        if p.only_with is not None and full[p.only_with[0]] not in p.only_with[1]:
            other, values = p.only_with
            if k in params:
                raise UserError(f"hyperparameter {k!r} of method {method!r} applies only with {other} "
                                f"in {list(values)}, not {full[other]!r}")
            continue
        if not (p.omit_default and full[k] == p.default):
            out[k] = full[k]
    problem = spec.check(out) if spec.check is not None else None
    if problem:
        raise UserError(f"method {method!r}: {problem}")
    return out
