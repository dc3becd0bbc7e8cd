"""InfoGAN with continuous latent codes (Chen et al. 2016, "InfoGAN: Interpretable Representation
Learning by Information Maximizing Generative Adversarial Nets").

Generator G(n, c): the study's deconv decoder (or the FC decoder) on [n, c], n ~ N(0, I) of size
`noise_dim`, c ~ U(−1, 1) of size num_latent; its output logits pass through a sigmoid. Discriminator
D and recognition network Q share the study's encoder trunk (convs + dense 256); D has one logit, Q a
factored Gaussian (mean, log-variance) over c, as the paper treats continuous codes.

Losses: D minimises the standard GAN cross-entropy; G minimises the non-saturating loss
−log D(G(n, c)) plus λ·L_I with L_I = −log Q(c | G(n, c)) (Gaussian NLL, the variational MI lower bound
up to the constant H(c)); Q's head is updated with G, the shared trunk with D (the usual
implementation). D and G/Q take one simultaneous step from the same forward pass. Adam betas 0.5/0.999, learning rates 2e-4 (D) and 1e-3 (G, Q) as in the paper; the
config's learning_rate is not used.

Representation: Q's prediction of the codes for a real image, mean = μ_Q(x), sampled = μ_Q + σ_Q·ε.
decode(c) = G(0, c) (noise fixed at its mean) for traversals.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.models import losses
from benchmark.models.architectures import make_decoder, make_encoder
from benchmark.models.base import BuildContext, Draw, System


def gaussian_nll(c: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """−log N(c; mean, exp(logvar)) summed over codes, batch mean."""
    return -losses.gaussian_log_density(c, mean, logvar).sum(1).mean()


class InfoGAN(System):
    def __init__(self, ctx: BuildContext, noise_dim: int, info_weight: float, lr_discriminator: float,
                 lr_generator: float) -> None:
        super().__init__()
        self.ctx = ctx
        self.num_latent = ctx.num_latent
        self.noise_dim, self.info_weight = noise_dim, info_weight
        self.lr_d, self.lr_g = lr_discriminator, lr_generator
        self.generator = make_decoder(ctx.architecture, ctx.observation_shape, noise_dim + ctx.num_latent)
        # The encoder's `means` head is unused: D and Q get their own heads on the shared trunk.
        self.trunk = make_encoder(ctx.architecture, ctx.observation_shape, 1)
        width = self.trunk.means.in_features
        self.d_head = nn.Linear(width, 1)
        self.q_head = nn.Linear(width, 2 * ctx.num_latent)

    def _trunk_params(self) -> list[nn.Parameter]:
        return [p for n, p in self.trunk.named_parameters()
                if not n.startswith(("means.", "log_var."))]

    def make_optimizers(self):
        return {
            "discriminator": torch.optim.Adam(self._trunk_params() + list(self.d_head.parameters()),
                                              lr=self.lr_d, betas=(0.5, 0.999), eps=1e-8),
            "generator": torch.optim.Adam(list(self.generator.parameters())
                                          + list(self.q_head.parameters()),
                                          lr=self.lr_g, betas=(0.5, 0.999), eps=1e-8),
        }

    def q(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.q_head(h).chunk(2, dim=1)
        return mean, logvar

    def generate(self, n: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.generator(torch.cat([n, c], dim=1)))

    def _prior(self, batch: int, generator: torch.Generator, device) -> tuple[torch.Tensor, torch.Tensor]:
        n = torch.randn((batch, self.noise_dim), generator=generator, device=device)
        c = torch.rand((batch, self.num_latent), generator=generator, device=device) * 2 - 1
        return n, c

    def objective(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        n, c = self._prior(x.shape[0], generator, x.device)
        fake = self.generate(n, c)
        real_logit = self.d_head(self.trunk.trunk(x))
        fake_logit_d = self.d_head(self.trunk.trunk(fake.detach()))
        d_loss = (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                  + F.binary_cross_entropy_with_logits(fake_logit_d, torch.zeros_like(fake_logit_d)))
        h = self.trunk.trunk(fake)
        fake_logit = self.d_head(h)
        g_gan = F.binary_cross_entropy_with_logits(fake_logit, torch.ones_like(fake_logit))
        info = gaussian_nll(c, *self.q(h))
        g_loss = g_gan + self.info_weight * info
        return {"discriminator_loss": d_loss, "generator_loss": g_gan, "info_loss": info,
                "loss": d_loss + g_loss, "_g_loss": g_loss}

    def training_step(self, draw: Draw, step: int, generator: torch.Generator, optimizers):
        t = self.objective(draw(), generator)
        d_params = [p for g in optimizers["discriminator"].param_groups for p in g["params"]]
        g_params = [p for g in optimizers["generator"].param_groups for p in g["params"]]
        d_grads = torch.autograd.grad(t["discriminator_loss"], d_params, retain_graph=True)
        g_grads = torch.autograd.grad(t["_g_loss"], g_params)
        for p, g in zip(d_params + g_params, d_grads + g_grads, strict=True):
            p.grad = g
        optimizers["discriminator"].step()
        optimizers["generator"].step()
        return {k: v.detach() for k, v in t.items() if not k.startswith("_")}, 1

    def summary_terms(self, x, step, generator):
        t = self.objective(x, generator)
        return {k: v for k, v in t.items() if not k.startswith("_")}

    def encode(self, x: torch.Tensor):
        return self.q(self.trunk.trunk(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.generate(torch.zeros(z.shape[0], self.noise_dim, device=z.device), z)
