"""The study's VAE family (dlib `methods/unsupervised/vae.py`): one class per objective.

Loss = reconstruction (batch mean of per-sample summed NLL) + regularizer(KL, μ, logvar, z);
"elbo" in the summaries is dlib's `train_results.elbo`: −(reconstruction + KL), the ELBO itself
(higher is better; dlib's graph holds reconstruction + KL and reports its negation).
Optimiser: Adam(lr, betas 0.9/0.999, eps 1e-8) as dlib `shared.gin`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from benchmark.models import losses
from benchmark.models.architectures import FCDiscriminator, make_decoder, make_encoder
from benchmark.models.base import BuildContext, Coefficients, Draw, System


def adam(params, lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=1e-8)


@dataclass(frozen=True)
class BetaSchedule:
    """β moving from `start` to `end` over `steps` global steps (`losses.scheduled_beta`)."""

    kind: str  # "linear" | "exponential"
    start: float
    end: float
    steps: int

    def __call__(self, step: int) -> float:
        return losses.scheduled_beta(self.kind, self.start, self.end, step, self.steps)


class GaussianVAE(System):
    """Gaussian encoder + decoder with logits; subclasses override `regularizer` (β-VAE here).

    β-VAE: regularizer = β·KL (Higgins et al. 2017); with a `BetaSchedule`, β at each step is the
    schedule's (the summary then adds `beta`, its value at the final step). The schedule changes a
    coefficient only, so scheduled and constant β-VAEs are one class and train in one pack.

    The regularizers read their weights from `coefficients(step)` (python floats, derived values
    computed in double precision as always), or from `coef` when given: one 0-dim tensor per
    weight inside a pack."""

    def __init__(self, ctx: BuildContext, beta: float = 1.0, schedule: BetaSchedule | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.num_latent = ctx.num_latent
        self.beta, self.schedule = beta, schedule
        self.encoder = make_encoder(ctx.architecture, ctx.observation_shape, ctx.num_latent)
        self.decoder = make_decoder(ctx.architecture, ctx.observation_shape, ctx.num_latent)
        self.recon_fn = losses.RECONSTRUCTION_LOSSES[ctx.reconstruction_loss]

    def coefficients(self, step: int) -> dict[str, float]:
        return {"beta": self.beta if self.schedule is None else self.schedule(step)}

    def regularizer(self, kl: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor,
                    z: torch.Tensor, step: int, coef: Coefficients | None = None) -> torch.Tensor:
        c = self.coefficients(step) if coef is None else coef
        return c["beta"] * kl

    def noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """The reparameterisation's ε for a batch of n (what `losses.sample_gaussian` draws)."""
        return torch.randn((n, self.num_latent), generator=generator, device=generator.device)

    def terms(self, x: torch.Tensor, eps: torch.Tensor, step: int,
              coef: Coefficients) -> dict[str, torch.Tensor]:
        mean, logvar = self.encoder(x)
        z = losses.reparameterize(mean, logvar, eps)
        recon = self.recon_fn(x, self.decoder(z)).mean()
        kl = losses.gaussian_kl(mean, logvar)
        reg = self.regularizer(kl, mean, logvar, z, step, coef)
        return {"reconstruction_loss": recon, "kl_loss": kl, "regularizer": reg,
                "elbo": -(recon + kl), "loss": recon + reg, "_mean": mean, "_logvar": logvar, "_z": z}

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"vae": adam(list(self.encoder.parameters()) + list(self.decoder.parameters()),
                            self.ctx.learning_rate)}

    def iteration_inputs(self, draw: Draw, generator: torch.Generator) -> dict[str, torch.Tensor]:
        x = draw()
        return {"x": x, "eps": self.noise(x.shape[0], generator)}

    def objectives(self, inputs: Mapping[str, torch.Tensor], step: int, coef: Coefficients):
        t = self.terms(inputs["x"], inputs["eps"], step, coef)
        return {k: v.detach() for k, v in t.items() if not k.startswith("_")}, {"vae": t["loss"]}

    def summary_terms(self, x: torch.Tensor, step: int, generator: torch.Generator):
        t = self.terms(x, self.noise(x.shape[0], generator), step, self.coefficients(step))
        out = {k: v for k, v in t.items() if not k.startswith("_")}
        kl_dim = losses.gaussian_kl_per_dim(t["_mean"], t["_logvar"]).mean(0)
        for i in range(kl_dim.shape[0]):
            out[f"kl_dim_{i}"] = kl_dim[i]
        if self.schedule is not None:
            out["beta"] = torch.tensor(self.schedule(step), dtype=torch.float64, device=x.device)
        return out

    def encode(self, x: torch.Tensor):
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))


class AnnealedVAE(GaussianVAE):
    """γ·|KL − C|, C = min(c_max, c_max·step/iteration_threshold) (Burgess et al. 2018).

    `step` is the global step before this iteration's update, as TF's `get_global_step()` reads it."""

    def __init__(self, ctx: BuildContext, gamma: float, c_max: float,
                 iteration_threshold: int) -> None:
        super().__init__(ctx)
        self.gamma, self.c_max, self.iteration_threshold = gamma, c_max, iteration_threshold

    def coefficients(self, step):
        return {"gamma": self.gamma, "capacity": losses.anneal(self.c_max, step, self.iteration_threshold)}

    def regularizer(self, kl, mean, logvar, z, step, coef=None):
        c = self.coefficients(step) if coef is None else coef
        return losses.annealed_regularizer(kl, c["gamma"], c["capacity"])


class DIPVAE(GaussianVAE):
    """KL + λ_od·Σ offdiag² + λ_d·Σ(diag − 1)² of cov(μ) (type i) or cov(z) (type ii), λ_d = factor·λ_od
    (Kumar et al. 2018)."""

    def __init__(self, ctx: BuildContext, lambda_od: float, lambda_d_factor: float,
                 dip_type: str) -> None:
        super().__init__(ctx)
        self.lambda_od, self.lambda_d_factor, self.dip_type = lambda_od, lambda_d_factor, dip_type

    def coefficients(self, step):
        return {"lambda_od": self.lambda_od, "lambda_d": self.lambda_d_factor * self.lambda_od}

    def regularizer(self, kl, mean, logvar, z, step, coef=None):
        c = self.coefficients(step) if coef is None else coef
        cov = losses.dip_covariance(mean, logvar, self.dip_type)
        return kl + losses.dip_penalty(cov, c["lambda_od"], c["lambda_d"])

    def pack_key(self) -> tuple:
        return (self.dip_type,)


class BetaTCVAE(GaussianVAE):
    """KL + (β − 1)·TC with the minibatch-weighted TC estimator (Chen et al. 2018, Eq. 4 with
    α = γ = 1), as dlib's `BetaTCVAE`: the full KL (which already holds one TC) plus (β − 1)·TC,
    the estimator's log(N·M) constants dropped as dlib's `total_correlation` drops them."""

    def coefficients(self, step):
        return {"tc_weight": self.beta - 1.0}

    def regularizer(self, kl, mean, logvar, z, step, coef=None):
        c = self.coefficients(step) if coef is None else coef
        return kl + c["tc_weight"] * losses.total_correlation(z, mean, logvar)


class FactorVAE(GaussianVAE):
    """KL + γ·TC with a density-ratio discriminator (Kim & Mnih 2018), as dlib implements it.

    dlib behaviour (default, for comparability with the study):
      * `shuffle="same_batch"`: the discriminator's "fake" samples are the per-dimension shuffle of the
        same batch's z (Kim & Mnih use a second, independent batch: `shuffle="second_batch"`).
      * `steps_per_iteration=2`: dlib's VAE and discriminator `minimize` both advance the global step, so
        `training_steps=300000` is 150k iterations (paper: 1).
    Both updates use gradients from the same forward pass (dlib's `tf.group`); discriminator Adam
    betas 0.5/0.9 and its own learning rate (dlib's study fixes it at 1e-4 whatever the VAE's rate,
    `shared.gin`)."""

    def __init__(self, ctx: BuildContext, gamma: float, shuffle: str,
                 steps_per_iteration: int, discriminator_learning_rate: float) -> None:
        super().__init__(ctx)
        self.gamma, self.shuffle, self.steps_per_iteration = gamma, shuffle, steps_per_iteration
        self.discriminator_learning_rate = discriminator_learning_rate
        self.discriminator = FCDiscriminator(ctx.num_latent)
        self._probs_z: torch.Tensor | None = None

    def make_optimizers(self):
        opts = super().make_optimizers()
        opts["discriminator"] = adam(self.discriminator.parameters(), self.discriminator_learning_rate,
                                     betas=(0.5, 0.9))
        return opts

    def pack_key(self) -> tuple:
        return (self.shuffle, self.steps_per_iteration)

    def coefficients(self, step):
        return {"gamma": self.gamma}

    def regularizer(self, kl, mean, logvar, z, step, coef=None):
        c = self.coefficients(step) if coef is None else coef
        logits, probs = self.discriminator(z)
        self._probs_z = probs  # reused by the discriminator's loss: one forward, as dlib's graph
        return kl + c["gamma"] * losses.factor_vae_tc(logits)

    def terms(self, x, eps, step, coef):
        t = super().terms(x, eps, step, coef)
        t["_probs_z"], self._probs_z = self._probs_z, None
        return t

    def iteration_inputs(self, draw: Draw, generator: torch.Generator):
        inputs = super().iteration_inputs(draw, generator)
        n = inputs["x"].shape[0]
        if self.shuffle == "second_batch":
            inputs["x2"] = draw()
            inputs["eps2"] = self.noise(n, generator)
        inputs["shuffle"] = torch.rand((n, self.num_latent), generator=generator, device=generator.device)
        return inputs

    def objectives(self, inputs, step, coef):
        t = self.terms(inputs["x"], inputs["eps"], step, coef)
        if self.shuffle == "same_batch":
            z = t["_z"]
        else:  # Kim & Mnih Alg. 2: the permuted codes come from a second, independent batch
            with torch.no_grad():
                z = losses.reparameterize(*self.encoder(inputs["x2"]), inputs["eps2"])
        _, probs_s = self.discriminator(losses.shuffle_codes_by(z.detach(), inputs["shuffle"]))
        d_loss = losses.factor_vae_discriminator_loss(t["_probs_z"], probs_s)
        out = {k: v.detach() for k, v in t.items() if not k.startswith("_")}
        out["discriminator_loss"] = d_loss.detach()
        return out, {"vae": t["loss"], "discriminator": d_loss}
