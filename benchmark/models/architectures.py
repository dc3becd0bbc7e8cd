"""Networks of the study: disentanglement_lib's conv encoder / deconv decoder, the FC variants and the
FactorVAE discriminator (dlib `methods/shared/architectures.py`, "row 3 of Table 1" of Higgins et al.
2017, beta-VAE).

PyTorch layout is NCHW; dlib is NHWC. The flatten order before the dense layers therefore differs, which
is a fixed permutation of the dense weights and irrelevant when training from scratch.

Initialisation follows TensorFlow's `tf.layers` defaults (Glorot-uniform kernels, zero biases) rather
than PyTorch's, so that training starts from the same distribution as dlib. Weights are drawn from an
explicit `torch.Generator`; global RNG state is neither read nor changed (see `init_weights`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "same" padding (before, after) for one spatial axis: output = ceil(size / stride).

    TF puts the extra pixel of an odd total at the end (right / bottom)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """`nn.Conv2d` with TensorFlow's "same" padding (asymmetric when the total is odd)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph = tf_same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
        pw = tf_same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
        if ph[0] == ph[1] and pw[0] == pw[1]:
            return F.conv2d(x, self.weight, self.bias, self.stride, (ph[0], pw[0]))
        return F.conv2d(F.pad(x, (pw[0], pw[1], ph[0], ph[1])), self.weight, self.bias, self.stride)


def deconv_same(in_ch: int, out_ch: int) -> nn.ConvTranspose2d:
    """TF `conv2d_transpose(kernel 4, stride 2, padding="same")`: output = 2 x input.

    The forward conv it transposes pads (1, 1) for even sizes, which is PyTorch's padding=1."""
    return nn.ConvTranspose2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1)


def init_weights(module: nn.Module, generator: torch.Generator) -> None:
    """TF `tf.layers` defaults: Glorot-uniform weights, zero biases, drawn from `generator`."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            with torch.no_grad():
                nn.init.xavier_uniform_(m.weight, generator=generator)
                if m.bias is not None:
                    m.bias.zero_()


class ConvEncoder(nn.Module):
    """dlib `conv_encoder`: 64x64xC → conv 32k4s2 → 32k4s2 → 64k2s2 → 64k2s2 → dense 256 → (mean, log_var).

    All ReLU, padding "same"; the two heads are linear. Input must be 64x64."""

    def __init__(self, in_channels: int, num_latent: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            Conv2dSame(in_channels, 32, 4, 2), nn.ReLU(),
            Conv2dSame(32, 32, 4, 2), nn.ReLU(),
            Conv2dSame(32, 64, 2, 2), nn.ReLU(),
            Conv2dSame(64, 64, 2, 2), nn.ReLU(),
        )
        self.dense = nn.Linear(4 * 4 * 64, 256)
        self.means = nn.Linear(256, num_latent)
        self.log_var = nn.Linear(256, num_latent)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.dense(self.convs(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.means(h), self.log_var(h)


class DeconvDecoder(nn.Module):
    """dlib `deconv_decoder`: z → dense 256 → dense 1024 → 4x4x64 → deconv 64, 32, 32, C (k4 s2 "same").

    Returns logits (N, C, 64, 64); the last layer is linear."""

    def __init__(self, num_latent: int, out_channels: int) -> None:
        super().__init__()
        self.dense = nn.Sequential(
            nn.Linear(num_latent, 256), nn.ReLU(), nn.Linear(256, 1024), nn.ReLU()
        )
        self.deconvs = nn.Sequential(
            deconv_same(64, 64), nn.ReLU(),
            deconv_same(64, 32), nn.ReLU(),
            deconv_same(32, 32), nn.ReLU(),
            deconv_same(32, out_channels),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconvs(self.dense(z).view(-1, 64, 4, 4))


class FCEncoder(nn.Module):
    """dlib `fc_encoder`: flatten → dense 1200 ReLU → dense 1200 ReLU → (mean, log_var); any input size."""

    def __init__(self, observation_shape: tuple[int, int, int], num_latent: int,
                 hidden: int = 1200) -> None:
        super().__init__()
        n = math.prod(observation_shape)
        self.body = nn.Sequential(nn.Linear(n, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.means = nn.Linear(hidden, num_latent)
        self.log_var = nn.Linear(hidden, num_latent)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.means(h), self.log_var(h)


class FCDecoder(nn.Module):
    """dlib `fc_decoder`: z → 3 x dense 1200 tanh → dense prod(shape) logits, reshaped to (C, H, W)."""

    def __init__(self, num_latent: int, observation_shape: tuple[int, int, int],
                 hidden: int = 1200) -> None:
        super().__init__()
        self.shape = tuple(observation_shape)
        self.body = nn.Sequential(
            nn.Linear(num_latent, hidden), nn.Tanh(),
            nn.Linear(hidden, hidden), nn.Tanh(),
            nn.Linear(hidden, hidden), nn.Tanh(),
            nn.Linear(hidden, math.prod(observation_shape)),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z).view(-1, *self.shape)


class FCDiscriminator(nn.Module):
    """dlib `fc_discriminator` (FactorVAE): 6 x dense 1000 leaky ReLU (slope 0.2, TF default) → 2 logits.

    `forward` returns (logits, probs) with probs = softmax clipped to [1e-6, 1 - 1e-6] as in dlib's
    `make_discriminator`."""

    def __init__(self, num_latent: int, hidden: int = 1000, layers: int = 6) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        width = num_latent
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        self.body = nn.Sequential(*mods)
        self.logits = nn.Linear(width, 2)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.logits(self.body(z))
        probs = torch.clamp(torch.softmax(logits, dim=1), 1e-6, 1 - 1e-6)
        return logits, probs


def make_encoder(architecture: str, observation_shape: tuple[int, int, int],
                 num_latent: int) -> nn.Module:
    if architecture == "conv":
        return ConvEncoder(observation_shape[0], num_latent)
    return FCEncoder(observation_shape, num_latent)


def make_decoder(architecture: str, observation_shape: tuple[int, int, int],
                 num_latent: int) -> nn.Module:
    if architecture == "conv":
        return DeconvDecoder(num_latent, observation_shape[0])
    return FCDecoder(num_latent, observation_shape)
