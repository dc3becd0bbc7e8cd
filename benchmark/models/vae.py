"""The study's VAE family (dlib `methods/unsupervised/vae.py`): one class per objective.

Loss = reconstruction (batch mean of per-sample summed NLL) + regularizer(KL, μ, logvar, z);
"elbo" in the summaries is dlib's `train_results.elbo`: −(reconstruction + KL), the ELBO itself
(higher is better; dlib's graph holds reconstruction + KL and reports its negation).
Optimiser: Adam(lr, betas 0.9/0.999, eps 1e-8) as dlib `shared.gin`.
"""

from __future__ import annotations

import torch

from benchmark.models import losses
from benchmark.models.architectures import FCDiscriminator, make_decoder, make_encoder
from benchmark.models.base import BuildContext, Draw, System


def adam(params, lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=1e-8)


class GaussianVAE(System):
    """Gaussian encoder + decoder with logits; subclasses override `regularizer` (β-VAE here).

    β-VAE: regularizer = β·KL (Higgins et al. 2017)."""

    def __init__(self, ctx: BuildContext, beta: float = 1.0) -> None:
        super().__init__()
        self.ctx = ctx
        self.num_latent = ctx.num_latent
        self.beta = beta
        self.encoder = make_encoder(ctx.architecture, ctx.observation_shape, ctx.num_latent)
        self.decoder = make_decoder(ctx.architecture, ctx.observation_shape, ctx.num_latent)
        self.recon_fn = losses.RECONSTRUCTION_LOSSES[ctx.reconstruction_loss]

    def regularizer(self, kl: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor,
                    z: torch.Tensor, step: int) -> torch.Tensor:
        return self.beta * kl

    def terms(self, x: torch.Tensor, step: int,
              generator: torch.Generator) -> dict[str, torch.Tensor]:
        mean, logvar = self.encoder(x)
        z = losses.sample_gaussian(mean, logvar, generator)
        recon = self.recon_fn(x, self.decoder(z)).mean()
        kl = losses.gaussian_kl(mean, logvar)
        reg = self.regularizer(kl, mean, logvar, z, step)
        return {"reconstruction_loss": recon, "kl_loss": kl, "regularizer": reg,
                "elbo": -(recon + kl), "loss": recon + reg, "_mean": mean, "_logvar": logvar, "_z": z}

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"vae": adam(list(self.encoder.parameters()) + list(self.decoder.parameters()),
                            self.ctx.learning_rate)}

    def training_step(self, draw: Draw, step: int, generator: torch.Generator,
                      optimizers: dict[str, torch.optim.Optimizer]):
        t = self.terms(draw(), step, generator)
        opt = optimizers["vae"]
        opt.zero_grad(set_to_none=True)
        t["loss"].backward()
        opt.step()
        return {k: v.detach() for k, v in t.items() if not k.startswith("_")}, 1

    def summary_terms(self, x: torch.Tensor, step: int, generator: torch.Generator):
        t = self.terms(x, step, generator)
        out = {k: v for k, v in t.items() if not k.startswith("_")}
        kl_dim = losses.gaussian_kl_per_dim(t["_mean"], t["_logvar"]).mean(0)
        for i in range(kl_dim.shape[0]):
            out[f"kl_dim_{i}"] = kl_dim[i]
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

    def regularizer(self, kl, mean, logvar, z, step):
        c = losses.anneal(self.c_max, step, self.iteration_threshold)
        return losses.annealed_regularizer(kl, self.gamma, c)


class DIPVAE(GaussianVAE):
    """KL + λ_od·Σ offdiag² + λ_d·Σ(diag − 1)² of cov(μ) (type i) or cov(z) (type ii), λ_d = factor·λ_od
    (Kumar et al. 2018)."""

    def __init__(self, ctx: BuildContext, lambda_od: float, lambda_d_factor: float,
                 dip_type: str) -> None:
        super().__init__(ctx)
        self.lambda_od, self.lambda_d_factor, self.dip_type = lambda_od, lambda_d_factor, dip_type

    def regularizer(self, kl, mean, logvar, z, step):
        cov = losses.dip_covariance(mean, logvar, self.dip_type)
        return kl + losses.dip_penalty(cov, self.lambda_od, self.lambda_d_factor * self.lambda_od)


class BetaTCVAE(GaussianVAE):
    """KL + (β − 1)·TC with the minibatch-weighted TC estimator (Chen et al. 2018, Eq. 4 with
    α = γ = 1), as dlib's `BetaTCVAE`: the full KL (which already holds one TC) plus (β − 1)·TC,
    the estimator's log(N·M) constants dropped as dlib's `total_correlation` drops them."""

    def regularizer(self, kl, mean, logvar, z, step):
        return kl + (self.beta - 1.0) * losses.total_correlation(z, mean, logvar)


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

    def regularizer(self, kl, mean, logvar, z, step):
        logits, probs = self.discriminator(z)
        self._probs_z = probs  # reused by the discriminator's loss: one forward, as dlib's graph
        return kl + self.gamma * losses.factor_vae_tc(logits)

    def training_step(self, draw: Draw, step: int, generator: torch.Generator, optimizers):
        x = draw()
        t = self.terms(x, step, generator)
        if self.shuffle == "same_batch":
            z = t["_z"]
        else:  # Kim & Mnih Alg. 2: the permuted codes come from a second, independent batch
            with torch.no_grad():
                m2, lv2 = self.encoder(draw())
                z = losses.sample_gaussian(m2, lv2, generator)
        probs_z, self._probs_z = self._probs_z, None
        _, probs_s = self.discriminator(losses.shuffle_codes(z.detach(), generator))
        d_loss = losses.factor_vae_discriminator_loss(probs_z, probs_s)
        vae_params = list(self.encoder.parameters()) + list(self.decoder.parameters())
        d_params = list(self.discriminator.parameters())
        # Each loss only updates its own networks (dlib's var_list): grads w.r.t. those alone.
        vae_grads = torch.autograd.grad(t["loss"], vae_params, retain_graph=True)
        d_grads = torch.autograd.grad(d_loss, d_params)
        for p, g in zip(vae_params + d_params, vae_grads + d_grads, strict=True):
            p.grad = g
        optimizers["vae"].step()
        optimizers["discriminator"].step()
        out = {k: v.detach() for k, v in t.items() if not k.startswith("_")}
        out["discriminator_loss"] = d_loss.detach()
        return out, self.steps_per_iteration
