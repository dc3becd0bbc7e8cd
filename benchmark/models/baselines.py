"""Baselines of the β-VAE paper's comparison table (Higgins et al. 2017, Table 1): PCA, FastICA, raw
pixels, an untrained (randomly initialised) encoder and the ground truth (the factors themselves);
and sparse coding (Olshausen & Field 1996). They "train" by fitting on `fit_samples`
observations of the job's data stream (or not at all) and expose the same encode/decode interface.

Their representations are deterministic: "sampled" equals "mean" (except the untrained encoder, which
has a log-variance head). The ground truth encodes no observation: its codes are computed from the
factors the metrics draw (`System.factor_codes`). Their summary has `reconstruction_mse` (per-image summed squared error of
decode(encode(x)), batch mean) instead of the VAE terms, so values are never mixed with a Bernoulli NLL.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import torch
from sklearn.decomposition import PCA, FastICA, MiniBatchDictionaryLearning, sparse_encode
from sklearn.exceptions import ConvergenceWarning

from benchmark.errors import UserError
from benchmark.models.base import BuildContext, System
from benchmark.models.vae import GaussianVAE


class _LinearBaseline(System):
    """codes = (x − mean)·Wᵀ; reconstruction = codes·Aᵀ + mean, with W, A fitted by sklearn."""

    fitted = True

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.num_latent = ctx.num_latent
        pixels = math.prod(ctx.observation_shape)
        self.register_buffer("offset", torch.zeros(pixels))
        self.register_buffer("unmixing", torch.zeros(ctx.num_latent, pixels))
        self.register_buffer("mixing", torch.zeros(pixels, ctx.num_latent))

    def _estimator(self, seed: int):
        raise NotImplementedError

    def fit(self, draw_numpy: Callable[[int], np.ndarray], seed: int) -> None:
        x = np.asarray(draw_numpy(self.ctx.fit_samples), np.float32).reshape(self.ctx.fit_samples, -1)
        est = self._estimator(seed % 2**32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(x)
        unmixing, mixing = self._matrices(est)
        self.offset.copy_(torch.as_tensor(est.mean_, dtype=torch.float32))
        self.unmixing.copy_(torch.as_tensor(unmixing, dtype=torch.float32))
        self.mixing.copy_(torch.as_tensor(mixing, dtype=torch.float32))

    def encode(self, x: torch.Tensor):
        return (x.flatten(1) - self.offset) @ self.unmixing.T, None

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = z @ self.mixing.T + self.offset
        return x.clamp(0, 1).view(-1, *self.ctx.observation_shape)

    def summary_terms(self, x, step, generator):
        err = (self.decode(self.encode(x)[0]) - x).pow(2).flatten(1).sum(1).mean()
        return {"reconstruction_mse": err}


class PCABaseline(_LinearBaseline):
    """Principal components (randomized SVD, seeded); codes are the projections (not whitened)."""

    def _estimator(self, seed: int):
        return PCA(n_components=self.num_latent, svd_solver="randomized", random_state=seed)

    @staticmethod
    def _matrices(est):
        return est.components_, est.components_.T


class FastICABaseline(_LinearBaseline):
    """FastICA (Hyvärinen 1999; sklearn, logcosh, unit-variance whitening, seeded)."""

    def __init__(self, ctx: BuildContext, max_iter: int) -> None:
        super().__init__(ctx)
        self.max_iter = max_iter

    def _estimator(self, seed: int):
        return FastICA(n_components=self.num_latent, whiten="unit-variance", max_iter=self.max_iter,
                       random_state=seed)

    @staticmethod
    def _matrices(est):
        return est.components_, est.mixing_


class SparseCoding(System):
    """Sparse coding (Olshausen & Field 1996): a dictionary D of num_latent unit-norm atoms learnt on
    `fit_samples` observations (sklearn's MiniBatchDictionaryLearning, seeded); the code of x is
    argmin_z ½‖x − zD‖² + alpha·‖z‖₁ (LARS-lasso, exact and deterministic, as the estimator's own
    fit), so "sampled" equals "mean". No centring: the atoms model the images themselves."""

    fitted = True

    def __init__(self, ctx: BuildContext, alpha: float, max_iter: int) -> None:
        super().__init__()
        self.ctx, self.alpha, self.max_iter = ctx, alpha, max_iter
        self.num_latent = ctx.num_latent
        self.register_buffer("dictionary", torch.zeros(ctx.num_latent, math.prod(ctx.observation_shape)))

    def fit(self, draw_numpy: Callable[[int], np.ndarray], seed: int) -> None:
        x = np.asarray(draw_numpy(self.ctx.fit_samples), np.float32).reshape(self.ctx.fit_samples, -1)
        est = MiniBatchDictionaryLearning(n_components=self.num_latent, alpha=self.alpha,
                                          max_iter=self.max_iter, fit_algorithm="lars",
                                          random_state=seed % 2**32)
        est.fit(x)
        self.dictionary.copy_(torch.as_tensor(est.components_, dtype=torch.float32))

    def encode(self, x: torch.Tensor):
        d = self.dictionary.double().cpu().numpy()
        codes = sparse_encode(x.flatten(1).double().cpu().numpy(), d, algorithm="lasso_lars",
                              alpha=self.alpha)
        return torch.as_tensor(codes, dtype=x.dtype, device=x.device), None

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return (z @ self.dictionary).clamp(0, 1).view(-1, *self.ctx.observation_shape)

    def summary_terms(self, x, step, generator):
        codes = self.encode(x)[0]
        err = (self.decode(codes) - x).pow(2).flatten(1).sum(1).mean()
        return {"reconstruction_mse": err, "code_nonzero_fraction": (codes != 0).float().mean()}


class RawPixels(System):
    """The flattened image itself; `num_latent` = C·H·W (the config's num_latent is ignored)."""

    fitted = True

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__()
        self.shape = ctx.observation_shape
        self.num_latent = math.prod(ctx.observation_shape)

    def fit(self, draw_numpy, seed):
        pass

    def encode(self, x):
        return x.flatten(1), None

    def decode(self, z):
        return z.clamp(0, 1).view(-1, *self.shape)


class UntrainedEncoder(GaussianVAE):
    """The study's VAE at its seeded initialisation, never trained (0 steps); summary as a β=1 VAE."""

    fitted = True

    def make_optimizers(self):
        return {}

    def fit(self, draw_numpy, seed):
        pass


def normalised_factors(factors: np.ndarray, factor_sizes: tuple[int, ...]) -> np.ndarray:
    """Factor class indices (n, K) scaled to [0, 1] per factor: index / (size − 1) (0 for a factor of
    size 1), float64. Our datasets give factors as class indices; on dSprites the factor values are
    evenly spaced (scale 0.5-1, orientation 0-2π, positions 0-1; shape is categorical), so this equals
    the factor values min-max scaled to [0, 1], and it needs no dataset-specific value table."""
    scale = np.maximum(np.asarray(factor_sizes, dtype=np.float64) - 1.0, 1.0)
    return np.asarray(factors, dtype=np.float64) / scale


class GroundTruth(System):
    """The ground-truth factors as the representation (Higgins et al. 2017, Table 1, "Ground truth":
    the ceiling of every metric): codes = `normalised_factors`, one per factor (the config's
    num_latent is ignored). Nothing to fit; deterministic, so "sampled" equals "mean". It encodes no
    observation (the factors of an image are not recoverable from it in general: dSprites' square
    looks the same at four orientations), so the metrics suite codes the factor rows it draws
    directly (`encodes_observations = False`), and it has no decoder (no traversals)."""

    fitted = True
    encodes_observations = False

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__()
        self.factor_sizes = tuple(int(s) for s in ctx.factor_sizes)
        self.num_latent = len(self.factor_sizes)

    def fit(self, draw_numpy, seed):
        if not self.factor_sizes:
            raise UserError("ground_truth needs a dataset with ground-truth factors")

    def factor_codes(self, factors: np.ndarray) -> np.ndarray:
        return normalised_factors(factors, self.factor_sizes)

    def encode(self, x):
        raise UserError("ground_truth's codes are the factors: it encodes no observation")

    def decode(self, z):
        raise UserError("ground_truth has no decoder")
