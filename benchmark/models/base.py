"""The interface every method implements so that one training loop drives them all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

# draw() -> a fresh float32 batch (N, C, H, W) on the system's device, from the job's data stream.
Draw = Callable[[], torch.Tensor]


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


class System(nn.Module):
    """A representation learner.

    Gradient-trained systems implement `training_step`; fitted baselines set `fitted = True` and
    implement `fit`. All implement `encode` (mean, log-variance or None) and `decode` (probabilities).
    """

    fitted: bool = False  # True: "trained" by `fit` on samples, no gradient steps
    num_latent: int

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def training_step(self, draw: Draw, step: int, generator: torch.Generator,
                      optimizers: dict[str, torch.optim.Optimizer]) -> tuple[dict[str, torch.Tensor], int]:
        """One iteration: returns (metrics incl. "loss", how many global steps it advanced)."""
        raise NotImplementedError

    def fit(self, draw_numpy: Callable[[int], np.ndarray], seed: int) -> None:
        raise NotImplementedError

    def summary_terms(self, x: torch.Tensor, step: int,
                      generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Batch-mean values of the summary quantities on one evaluation batch (no grad)."""
        return {}

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes (N, D) → images (N, C, H, W) with values in [0, 1]."""
        raise NotImplementedError
