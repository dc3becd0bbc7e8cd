"""The interface every method implements so that one training loop drives them all."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from benchmark.models.losses import sample_gaussian


class Draw(Protocol):
    """The job's training data stream (`training.DataStream`), drawn with the job's data generator."""

    def __call__(self) -> torch.Tensor:
        """A fresh float32 i.i.d. batch (N, C, H, W) on the system's device (dlib's input pipeline)."""

    def one_factor_varies(self) -> tuple[torch.Tensor, int]:
        """(batch, k): a batch in which only ground-truth factor k varies, the others fixed to one
        random draw (`GroundTruthData.sample_one_factor_varies`; weakly supervised methods)."""

# A method's scalar loss weights at one step (β, γ, C, ...): python floats when one model trains,
# 0-dim tensors (one value per model) inside a pack (`benchmark.packing`).
Coefficients = Mapping[str, "float | torch.Tensor"]


@dataclass(frozen=True)
class BuildContext:
    """What a method needs to build its networks (resolved from the dataset and the TrainingSettings)."""

    observation_shape: tuple[int, int, int]
    num_latent: int
    architecture: str  # "conv" | "fc"
    reconstruction_loss: str  # "bernoulli" | "l2"
    learning_rate: float
    batch_size: int
    fit_samples: int = 10_000  # observations fitted baselines are fitted on
    # the dataset's factor sizes, for methods that use the factors (dc_ign, ground_truth); empty
    # where no dataset is at hand (cost estimates build systems without one)
    factor_sizes: tuple[int, ...] = ()


class System(nn.Module):
    """A representation learner.

    Gradient-trained systems either fill the hooks of the base class's `training_step` flow
    (`iteration_inputs`, `coefficients`, `objectives`) or override `training_step` itself; fitted
    baselines set `fitted = True` and implement `fit`. All implement `encode` (mean, log-variance or
    None) and `decode` (probabilities).

    The flow separates what is random (drawn per model from its own streams) and what is per-model
    scalar (the coefficients) from the pure forward pass, so that `benchmark.packing` can run the same
    `objectives` for K models at once under `torch.func.vmap`: a system that keeps the base
    `training_step` can be packed.
    """

    fitted: bool = False  # True: "trained" by `fit` on samples, no gradient steps
    # False: the representation is a function of the ground-truth factors (`factor_codes`), not of
    # observations; such a system has no encoder or decoder (the ground_truth baseline)
    encodes_observations: bool = True
    num_latent: int
    steps_per_iteration: int = 1  # global steps one `training_step` advances

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def training_step(self, draw: Draw, step: int, generator: torch.Generator,
                      optimizers: dict[str, torch.optim.Optimizer]) -> tuple[dict[str, torch.Tensor], int]:
        """One iteration: returns (metrics incl. "loss", how many global steps it advanced)."""
        inputs = self.iteration_inputs(draw, generator)
        metrics, objectives = self.objectives(inputs, step, self.coefficients(step))
        apply_updates(objectives, optimizers)
        return metrics, self.steps_per_iteration

    def iteration_inputs(self, draw: Draw, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Everything random one iteration consumes: batches from `draw` and noise from `generator`
        (on `generator.device`), drawn in a fixed order so the streams advance as the method's loop."""
        raise NotImplementedError

    def coefficients(self, step: int) -> dict[str, float]:
        """The objective's scalar weights at global step `step` (python floats)."""
        return {}

    def objectives(self, inputs: Mapping[str, torch.Tensor], step: int,
                   coef: Coefficients) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The forward pass, deterministic given its inputs: (detached metrics incl. "loss", the loss
        each optimiser of `make_optimizers` minimises, by the optimiser's name)."""
        raise NotImplementedError

    def pack_key(self) -> tuple:
        """Settings that shape the computation beyond the coefficients: models in one pack share them."""
        return ()

    def fit(self, draw_numpy: Callable[[int], np.ndarray], seed: int) -> None:
        raise NotImplementedError

    def summary_terms(self, x: torch.Tensor, step: int,
                      generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Batch-mean values of the summary quantities on one evaluation batch (no grad)."""
        return {}

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def sample(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The "sampled" representation of x: μ + σ·ε from `encode`'s Gaussian, μ itself for a
        deterministic encoder; a method whose noise is not Gaussian overrides it."""
        mean, logvar = self.encode(x)
        return mean if logvar is None else sample_gaussian(mean, logvar, generator)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes (N, D) → images (N, C, H, W) with values in [0, 1]."""
        raise NotImplementedError

    def factor_codes(self, factors: np.ndarray) -> np.ndarray:
        """Codes (n, D) of factor rows (n, K), for a system that does not encode observations."""
        raise NotImplementedError


def apply_updates(objectives: Mapping[str, torch.Tensor],
                  optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
    """Each optimiser minimises its own objective over its own parameters only (dlib's `var_list`),
    with every gradient taken from the same forward pass before any update (dlib's `tf.group`)."""
    for params, gs in objective_gradients(objectives, optimizers):
        for p, g in zip(params, gs, strict=True):
            p.grad = g
    for opt in optimizers.values():
        opt.step()


def objective_gradients(objectives: Mapping[str, torch.Tensor],
                        optimizers: Mapping[str, torch.optim.Optimizer]) -> list[tuple[list, tuple]]:
    """(parameters, their gradients) per optimiser: of its own objective, from one forward pass."""
    names = list(optimizers)
    grads = []
    for i, name in enumerate(names):
        params = [p for g in optimizers[name].param_groups for p in g["params"]]
        grads.append((params, torch.autograd.grad(objectives[name], params,
                                                  retain_graph=i < len(names) - 1)))
    return grads
