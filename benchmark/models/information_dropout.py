"""Information Dropout (Achille & Soatto, "Information Dropout: Learning Optimal Representations
Through Noisy Computation", TPAMI 2018) as an autoencoder, the paper's VAE special case.

The study's encoder gives, per latent unit, an activation f(x) = softplus(mean head) and a noise
scale α(x) = 0.001 + max_alpha·sigmoid(second head) (the authors' code: α capped so the noise never
drowns the signal); the code is z = f(x)·exp(α(x)·ε), ε ~ N(0, 1): multiplicative log-normal noise.
Loss = reconstruction + β·KL (the paper's Information Dropout loss, eq. (6)), the KL of log z's
Gaussian against a log-normal prior N(μ, σ²) (eq. (5), Proposition 3: softplus activations with a
log-normal prior, KL = (α² + (log f − μ)²)/(2σ²) − log(α/σ) − 1/2). Proposition 3 fixes the
prior's mean at 0; its two scalars are learned with the networks here, as the authors' code
learns them (`losses.information_dropout_kl`; σ is kept as log σ so it stays positive). Equation
numbers are those of arXiv:1611.01353 as cited beside a public PyTorch port of the authors' code;
the TPAMI typesetting was not at hand to confirm that it numbers them alike.

Representations: "mean" = f(x), the noise-free activation (the median of z); "sampled" = f(x)·exp(α·ε).
The posterior over z is log-normal, not Gaussian, so `encode` gives no log-variance and the metrics
that need a Gaussian q(z|x) skip this method.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.models import losses
from benchmark.models.base import BuildContext
from benchmark.models.vae import GaussianVAE, adam

ALPHA_FLOOR = 0.001  # the authors' small constant: log α stays finite


class InformationDropout(GaussianVAE):
    """Encoder, decoder, noise draws and packing as the β-VAE; `terms` is Information Dropout's."""

    def __init__(self, ctx: BuildContext, beta: float, max_alpha: float) -> None:
        super().__init__(ctx, beta=beta)
        self.max_alpha = max_alpha
        self.prior_mean = nn.Parameter(torch.zeros(()))
        self.prior_log_sigma = nn.Parameter(torch.zeros(()))

    def make_optimizers(self):
        return {"vae": adam(list(self.encoder.parameters()) + list(self.decoder.parameters())
                            + [self.prior_mean, self.prior_log_sigma], self.ctx.learning_rate)}

    def activation_and_alpha(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, a = self.encoder(x)
        return F.softplus(h), ALPHA_FLOOR + self.max_alpha * torch.sigmoid(a)

    def terms(self, x, eps, step, coef):
        f, alpha = self.activation_and_alpha(x)
        z = f * torch.exp(alpha * eps)
        recon = self.recon_fn(x, self.decoder(z)).mean()
        # the authors' log(max(f, 1e-4)): a dead softplus unit must not give log 0
        kl_dim = losses.information_dropout_kl(torch.log(f.clamp_min(1e-4)), alpha, self.prior_mean,
                                               self.prior_log_sigma)
        kl = kl_dim.sum(1).mean()
        reg = coef["beta"] * kl
        return {"reconstruction_loss": recon, "kl_loss": kl, "regularizer": reg,
                "elbo": -(recon + kl), "loss": recon + reg, "_kl_dim": kl_dim, "_z": z}

    def summary_terms(self, x, step, generator):
        t = self.terms(x, self.noise(x.shape[0], generator), step, self.coefficients(step))
        out = {k: v for k, v in t.items() if not k.startswith("_")}
        kl_dim = t["_kl_dim"].mean(0)
        for i in range(kl_dim.shape[0]):
            out[f"kl_dim_{i}"] = kl_dim[i]
        return out

    def encode(self, x: torch.Tensor):
        return self.activation_and_alpha(x)[0], None

    def sample(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        f, alpha = self.activation_and_alpha(x)
        eps = torch.randn(f.shape, generator=generator, device=f.device, dtype=f.dtype)
        return f * torch.exp(alpha * eps)
