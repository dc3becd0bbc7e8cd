"""DC-IGN (Kulkarni, Whitney, Kohli & Tenenbaum, "Deep Convolutional Inverse Graphics Network",
NeurIPS 2015): the weakly supervised row of the β-VAE paper's Table 1 (Higgins et al. 2017).

A VAE (the study's encoder and decoder, reconstruction + KL) whose latent units are split into one
block per ground-truth factor (`latent_blocks`). Each training batch comes from the data stream's
`one_factor_varies`: only factor k varies across it. The paper's training procedure (Sec. 3,
"Training with specific transformations", steps 1-8, and "Invariance targeting"):
  * forward: every encoder output outside block k is *clamped* to its batch mean before it reaches
    the decoder (`clamp_to_batch_mean`); block k passes unchanged;
  * backward: block k gets the reconstruction's (and KL's) gradient as usual; the gradient of each
    clamped unit is *replaced* by its difference from the batch mean, scaled down ("a factor of
    1/100 works well": `invariance_strength`, default 0.01), which pulls the units of the factors
    that did not vary towards one value across the batch, i.e. makes them invariant to factor k.
The authors' code (github.com/willwhitney/dc-ign: `SelectiveOutputClamp`, `SelectiveGradientFilter`
with `force_invariance`, inserted after both the mean and the log-σ heads) clamps and filters both
heads of the encoder, and computes the KL on the clamped heads; so do we.

The replaced gradient is the gradient of `invariance_penalty` (½·Σ of the clamped units' squared
deviations from their batch mean, batch-averaged as all our losses): its derivative at a clamped
unit is (u − ū)/N, the paper's difference from the mean in the units of our batch-mean loss (the
authors sum their loss over the batch), and the clamped values themselves are detached, so no
other gradient reaches them. The rule is thus a loss term and a detach, pure tensor operations that
`torch.func.vmap` packs like any VAE.

Representations as the VAEs': "mean" = μ(x), "sampled" = μ + σ·ε, with no clamping (clamping needs a
batch in which one factor varies, which evaluation does not have). The summary is the VAE's, on
i.i.d. batches.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from benchmark.errors import UserError
from benchmark.models import losses
from benchmark.models.base import BuildContext, Coefficients, Draw
from benchmark.models.vae import GaussianVAE


def latent_blocks(num_latent: int, num_factors: int) -> np.ndarray:
    """The factor each latent unit is assigned to, (num_latent,) int64: consecutive blocks, one per
    factor in the dataset's factor order, as equal as possible; when num_latent is not a multiple of
    num_factors the first num_latent mod num_factors factors get one unit more (numpy's
    `array_split`). The paper assigns one unit per pose/light factor and the rest to the intrinsic
    ones; our factors have no such distinction, so they share the units evenly."""
    if num_factors < 1:
        raise UserError("dc_ign needs a dataset with ground-truth factors")
    if num_latent < num_factors:
        raise UserError(f"dc_ign needs num_latent >= the dataset's {num_factors} factors (one latent "
                        f"block per factor), got num_latent {num_latent}")
    block = np.empty(num_latent, dtype=np.int64)
    for k, units in enumerate(np.array_split(np.arange(num_latent), num_factors)):
        block[units] = k
    return block


def clamp_to_batch_mean(u: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """u (N, D) with every column outside `keep` (D,) bool replaced by its batch mean, detached: the
    forward clamp of DC-IGN (Kulkarni et al. 2015, Sec. 3, step 5); no gradient reaches a clamped unit
    through it."""
    return torch.where(keep, u, u.mean(0, keepdim=True).detach())


def invariance_penalty(u: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """½·Σ_j∉keep (u_ij − ū_j)², averaged over the batch: its gradient at a clamped unit u_ij is
    (u_ij − ū_j)/N (the deviations sum to zero over the batch, so ū's own gradient cancels) and zero at
    the kept units: DC-IGN's replacement gradient (Sec. 3, step 7, "Invariance targeting")."""
    dev = u - u.mean(0, keepdim=True)
    return 0.5 * (dev.pow(2) * (~keep).to(u.dtype)).sum(1).mean()


class DCIGN(GaussianVAE):
    """Reconstruction + KL on the clamped encoder heads + invariance_strength · invariance penalty."""

    def __init__(self, ctx: BuildContext, invariance_strength: float) -> None:
        super().__init__(ctx, beta=1.0)
        self.invariance_strength = invariance_strength
        # no factors at hand (a cost estimate builds the system without a dataset): found at training
        self.blocks = latent_blocks(ctx.num_latent, len(ctx.factor_sizes)) if ctx.factor_sizes else None

    def coefficients(self, step: int) -> dict[str, float]:
        return {"invariance_strength": self.invariance_strength}

    def iteration_inputs(self, draw: Draw, generator: torch.Generator) -> dict[str, torch.Tensor]:
        if self.blocks is None:
            raise UserError("dc_ign needs a dataset with ground-truth factors")
        x, k = draw.one_factor_varies()
        keep = torch.as_tensor(self.blocks == k, device=x.device)
        return {"x": x, "eps": self.noise(x.shape[0], generator), "keep": keep}

    def terms(self, x: torch.Tensor, eps: torch.Tensor, step: int, coef: Coefficients,
              keep: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The loss on a batch where only the factor of the `keep` block varies; with `keep` None
        (the summary's i.i.d. batches) nothing is clamped: the plain VAE terms."""
        mean, logvar = self.encoder(x)
        invariance = torch.zeros((), dtype=mean.dtype, device=mean.device)
        if keep is not None:
            invariance = invariance_penalty(mean, keep) + invariance_penalty(logvar, keep)
            mean, logvar = clamp_to_batch_mean(mean, keep), clamp_to_batch_mean(logvar, keep)
        z = losses.reparameterize(mean, logvar, eps)
        recon = self.recon_fn(x, self.decoder(z)).mean()
        kl = losses.gaussian_kl(mean, logvar)
        reg = kl + coef["invariance_strength"] * invariance
        return {"reconstruction_loss": recon, "kl_loss": kl, "regularizer": reg,
                "invariance_loss": invariance, "elbo": -(recon + kl), "loss": recon + reg,
                "_mean": mean, "_logvar": logvar, "_z": z}

    def objectives(self, inputs: Mapping[str, torch.Tensor], step: int, coef: Coefficients):
        t = self.terms(inputs["x"], inputs["eps"], step, coef, inputs["keep"])
        return {k: v.detach() for k, v in t.items() if not k.startswith("_")}, {"vae": t["loss"]}
