"""Deterministic autoencoders of the autoencoder lecture: denoising (Vincent et al. 2008) and sparse
(Ng, CS294A lecture notes "Sparse autoencoder"). Same encoder/decoder as the study (the encoder's
log-variance head is unused); reconstruction loss and optimiser as the VAEs. Representations are
deterministic, so "sampled" equals "mean".
"""

from __future__ import annotations

import torch

from benchmark.models import losses
from benchmark.models.base import BuildContext, Draw
from benchmark.models.vae import GaussianVAE


def corrupt(x: torch.Tensor, kind: str, level: float, generator: torch.Generator) -> torch.Tensor:
    """Input corruption of Vincent et al. 2008: "masking" zeroes a fraction `level` of the pixels,
    "salt_pepper" sets a fraction `level` to 0 or 1 at random, "gaussian" adds N(0, level²)."""
    u = torch.rand(x.shape, generator=generator, device=x.device)
    if kind == "masking":
        return x * (u >= level)
    if kind == "salt_pepper":
        hit = u < level
        coin = torch.rand(x.shape, generator=generator, device=x.device) < 0.5
        return torch.where(hit, coin.to(x.dtype), x)
    if kind == "gaussian":
        return x + level * torch.randn(x.shape, generator=generator, device=x.device)
    raise ValueError(f"unknown corruption {kind!r}")


class _Autoencoder(GaussianVAE):
    def code(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[0]

    def encode(self, x):
        return self.code(x), None

    def objective(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def training_step(self, draw: Draw, step, generator, optimizers):
        t = self.objective(draw(), generator)
        opt = optimizers["vae"]
        opt.zero_grad(set_to_none=True)
        t["loss"].backward()
        opt.step()
        return {k: v.detach() for k, v in t.items()}, 1

    def summary_terms(self, x, step, generator):
        return self.objective(x, generator)


class DenoisingAE(_Autoencoder):
    """Reconstruct the clean x from a corrupted x̃: loss = NLL(x | dec(enc(x̃))) (Vincent et al. 2008).
    The representation is enc(x) of the clean input."""

    def __init__(self, ctx: BuildContext, corruption: str, noise_level: float) -> None:
        super().__init__(ctx)
        self.corruption, self.noise_level = corruption, noise_level

    def objective(self, x, generator):
        noisy = corrupt(x, self.corruption, self.noise_level, generator)
        recon = self.recon_fn(x, self.decoder(self.code(noisy))).mean()
        return {"reconstruction_loss": recon, "loss": recon}


class SparseAE(_Autoencoder):
    """Sigmoid code units h = σ(enc(x)); loss = NLL(x | dec(h)) + β·Σ_j KL(ρ || ρ̂_j) with ρ̂ the batch
    mean activation (Ng, CS294A). The lecture's weight decay term is left to the optimiser (none, as the
    study)."""

    def __init__(self, ctx: BuildContext, rho: float, sparsity_weight: float) -> None:
        super().__init__(ctx)
        self.rho, self.sparsity_weight = rho, sparsity_weight

    def code(self, x):
        return torch.sigmoid(self.encoder(x)[0])

    def objective(self, x, generator):
        h = self.code(x)
        recon = self.recon_fn(x, self.decoder(h)).mean()
        sparsity = losses.sparsity_kl(self.rho, h.mean(0))
        return {"reconstruction_loss": recon, "regularizer": self.sparsity_weight * sparsity,
                "loss": recon + self.sparsity_weight * sparsity}
