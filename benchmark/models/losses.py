"""The objectives' maths as pure functions of tensors (dlib `methods/unsupervised/vae.py`, `losses.py`).

Shapes: observations / logits (N, C, H, W); latent statistics (N, D). "Batch mean" = mean over N.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def bernoulli_loss(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-sample Bernoulli NLL with logits, summed over pixels (dlib `bernoulli_loss`, activation
    "logits", no true-image entropy subtracted) → (N,)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def l2_loss(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-sample squared error of sigmoid(logits), summed over pixels (dlib `l2_loss`, "logits") → (N,)."""
    return (x - torch.sigmoid(logits)).pow(2).flatten(1).sum(1)


RECONSTRUCTION_LOSSES = {"bernoulli": bernoulli_loss, "l2": l2_loss}


def gaussian_kl_per_dim(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per sample and dimension: 0.5(μ² + σ² − log σ² − 1) → (N, D)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1.0)


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """dlib `compute_gaussian_kl`: batch mean of the per-sample KL summed over dimensions (scalar)."""
    return gaussian_kl_per_dim(mean, logvar).sum(1).mean()


def sample_gaussian(mean: torch.Tensor, logvar: torch.Tensor,
                    generator: torch.Generator | None) -> torch.Tensor:
    """Reparameterised sample z = μ + exp(logvar / 2)·ε (dlib `sample_from_latent_distribution`)."""
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return reparameterize(mean, logvar, eps)


def reparameterize(mean: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = μ + exp(logvar / 2)·ε for given standard-normal ε (Kingma & Welling 2014)."""
    return mean + torch.exp(0.5 * logvar) * eps


def anneal(c_max: float, step: int, iteration_threshold: int) -> float:
    """AnnealedVAE capacity C = min(c_max, c_max·step/threshold) (Burgess et al. 2018; dlib `anneal`)."""
    return min(float(c_max), float(c_max) * float(step) / float(iteration_threshold))


def scheduled_beta(schedule: str, beta_start: float, beta_end: float, step: int,
                   anneal_steps: int) -> float:
    """β at global step `step`, moving from beta_start (step 0) to beta_end (step ≥ anneal_steps):
    "linear" interpolates β, "exponential" interpolates log β (a constant decay rate per step).
    Burgess et al. 2018 ("Understanding disentangling in β-VAE", Sec. 4-5) argue for a strict
    information bottleneck early that is relaxed later; they anneal a capacity (`anneal`), this
    anneals the weight β itself."""
    t = min(1.0, float(step) / float(anneal_steps))
    if schedule == "linear":
        return float(beta_start) + (float(beta_end) - float(beta_start)) * t
    if schedule == "exponential":
        return float(beta_start) * (float(beta_end) / float(beta_start)) ** t
    raise ValueError(f"beta schedule must be 'linear' or 'exponential', got {schedule!r}")


def information_dropout_kl(log_f: torch.Tensor, alpha: torch.Tensor, prior_mean: torch.Tensor,
                           prior_log_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(log f, α²) ‖ N(μ, σ²)) per sample and unit → (N, D): the Information Dropout penalty for
    softplus activations f with multiplicative log-normal noise and a log-normal prior on the code
    (Achille & Soatto, TPAMI 2018, eq. (5) of Proposition 3, there with μ = 0; the authors'
    `KL_div2`): −log(α/σ) + (α² + (log f − μ)²)/(2σ²) − 1/2."""
    var = torch.exp(2.0 * prior_log_sigma)
    return (prior_log_sigma - torch.log(alpha) + (alpha.pow(2) + (log_f - prior_mean).pow(2)) / (2.0 * var)
            - 0.5)


def annealed_regularizer(kl: torch.Tensor, gamma: float, c: float) -> torch.Tensor:
    """γ·|KL − C| (Burgess et al. 2018, "Understanding disentangling in β-VAE")."""
    return gamma * torch.abs(kl - c)


def covariance(mean: torch.Tensor) -> torch.Tensor:
    """Biased batch covariance E[μμᵀ] − E[μ]E[μ]ᵀ (dlib `compute_covariance_z_mean`) → (D, D)."""
    e_mmt = (mean.unsqueeze(2) * mean.unsqueeze(1)).mean(0)
    e_m = mean.mean(0)
    return e_mmt - e_m.unsqueeze(1) * e_m.unsqueeze(0)


def dip_penalty(cov: torch.Tensor, lambda_od: float, lambda_d: float) -> torch.Tensor:
    """λ_od·Σ_{i≠j} cov_ij² + λ_d·Σ_i (cov_ii − 1)² (Kumar et al. 2018, DIP-VAE; dlib
    `regularize_diag_off_diag_dip`)."""
    diag = torch.diagonal(cov)
    off = cov - torch.diag(diag)
    return lambda_od * off.pow(2).sum() + lambda_d * (diag - 1.0).pow(2).sum()


def dip_covariance(mean: torch.Tensor, logvar: torch.Tensor, dip_type: str) -> torch.Tensor:
    """DIP-VAE-I regularises cov(μ); DIP-VAE-II regularises cov(z) = cov(μ) + E[diag(exp(logvar))]."""
    cov = covariance(mean)
    if dip_type == "i":
        return cov
    if dip_type == "ii":
        return cov + torch.diag(logvar.exp().mean(0))
    raise ValueError(f"dip_type must be 'i' or 'ii', got {dip_type!r}")


def gaussian_log_density(samples: torch.Tensor, mean: torch.Tensor,
                         logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(samples; mean, exp(logvar)) (dlib `gaussian_log_density`)."""
    tmp = samples - mean
    return -0.5 * (tmp * tmp * torch.exp(-logvar) + logvar + math.log(2.0 * math.pi))


def total_correlation(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Minibatch-weighted TC estimate (Chen et al. 2018, β-TCVAE), dlib's version.

    mean_j [ logsumexp_i Σ_l log q(z_jl | x_i) − Σ_l logsumexp_i log q(z_jl | x_i) ].
    dlib (and we) drop the −log(N·M) constants of the paper's estimator: they cancel between the two
    terms only up to (D−1)·log(N·M), a constant that does not change the gradient."""
    log_qz_prob = gaussian_log_density(z.unsqueeze(1), mean.unsqueeze(0), logvar.unsqueeze(0))
    log_qz_product = torch.logsumexp(log_qz_prob, dim=1).sum(1)
    log_qz = torch.logsumexp(log_qz_prob.sum(2), dim=1)
    return (log_qz - log_qz_product).mean()


def shuffle_codes(z: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Permute each latent dimension independently across the batch (dlib `shuffle_codes`; Kim & Mnih
    2018 Alg. 1): samples from the product of the marginals q̄(z) = Π_j q(z_j)."""
    return shuffle_codes_by(z, torch.rand(z.shape, generator=generator, device=z.device))


def shuffle_codes_by(z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """`shuffle_codes` with its uniform draws `u` (same shape as z) given: each column is sorted by u."""
    return torch.gather(z, 0, torch.argsort(u, dim=0))


def factor_vae_tc(logits: torch.Tensor) -> torch.Tensor:
    """Density-ratio TC estimate E[log D(z)/(1 − D(z))] = mean(logit_0 − logit_1) (Kim & Mnih 2018)."""
    return (logits[:, 0] - logits[:, 1]).mean()


def factor_vae_discriminator_loss(probs_z: torch.Tensor,
                                  probs_shuffled: torch.Tensor) -> torch.Tensor:
    """Loss the discriminator minimises: −[0.5·mean log p0(z) + 0.5·mean log p1(z_shuffled)] (dlib)."""
    return -(0.5 * probs_z[:, 0].log().mean() + 0.5 * probs_shuffled[:, 1].log().mean())


def sparsity_kl(rho: float, rho_hat: torch.Tensor) -> torch.Tensor:
    """Σ_j KL(Bernoulli(ρ) || Bernoulli(ρ̂_j)) of mean hidden activations ρ̂ (Ng, CS294A "Sparse
    autoencoder" notes)."""
    rho_hat = rho_hat.clamp(1e-6, 1 - 1e-6)
    return (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()
