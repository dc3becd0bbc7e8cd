"""Latent traversals and reconstructions of trained models (the seeds poster, Fig. 2).

A traversal encodes one observation to its mean code, then sweeps one latent dimension at a time
over fixed values while holding the others, and decodes each code (as disentanglement_lib's
``visualize_model``). The model is anything with the trained-model protocol of
``benchmark.training.load_trained``: ``num_latent``, ``represent("mean")`` (obs (N,C,H,W) float32 →
codes (N,D)), ``decode(z (N,D)) → (N,C,H,W) in [0,1]`` and ``reconstruct(obs) → (N,C,H,W)``.
Nothing here imports torch; loading a checkpoint does, lazily, in ``load_model``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from analysis import style

TRAVERSAL_VALUES = np.linspace(-2.0, 2.0, 9)  # ± 2 prior standard deviations, as dlib's GIFs


class TrainedModel(Protocol):
    num_latent: int

    def represent(self, mode: str = "mean"): ...
    def decode(self, z: np.ndarray) -> np.ndarray: ...
    def reconstruct(self, obs: np.ndarray) -> np.ndarray: ...


def load_model(checkpoint_dir: Path) -> TrainedModel:
    """``benchmark.training.load_trained(checkpoint_dir, device="cpu")`` (imports torch)."""
    from benchmark.training import load_trained  # lazy: only traversals need a model

    return load_trained(checkpoint_dir, device="cpu")


def traversal_grid(model: TrainedModel, observation: np.ndarray,
                   values: np.ndarray = TRAVERSAL_VALUES) -> np.ndarray:
    """Decoded traversals of one observation (C,H,W): array (D, len(values), C, H, W), row d sets
    latent dimension d of the observation's mean code to each of ``values``."""
    code = np.asarray(model.represent("mean")(observation[None].astype(np.float32)))[0]
    d, v = code.shape[0], len(values)
    z = np.repeat(code[None, None, :], d, axis=0).repeat(v, axis=1)  # (D, V, D)
    for i in range(d):
        z[i, :, i] = values
    images = np.asarray(model.decode(z.reshape(d * v, d).astype(np.float32)))
    return images.reshape(d, v, *images.shape[1:])


def mosaic(images: np.ndarray, pad: int = 2) -> np.ndarray:
    """Tile an (R, K, C, H, W) array into one (R·(H+pad)−pad, K·(W+pad)−pad, 3) RGB image with
    white gaps; values clipped to [0, 1]; one channel is shown as grey."""
    r, k, c, h, w = images.shape
    img = np.clip(images, 0.0, 1.0)
    if c == 1:
        img = np.repeat(img, 3, axis=2)
    elif c != 3:
        img = np.repeat(img[:, :, :1], 3, axis=2)  # odd channel counts: show the first channel
    out = np.ones((r * (h + pad) - pad, k * (w + pad) - pad, 3))
    for i in range(r):
        for j in range(k):
            y, x = i * (h + pad), j * (w + pad)
            out[y:y + h, x:x + w] = img[i, j].transpose(1, 2, 0)
    return out


@style.styled
def draw_traversal(model: TrainedModel, observations: np.ndarray, path: Path, title: str,
                   dim_order: list[int] | None = None, dim_labels: list[str] | None = None,
                   values: np.ndarray = TRAVERSAL_VALUES) -> Path:
    """Top: ``observations`` (N,C,H,W) and their reconstructions. Below: traversals of the first
    observation, one row per latent dimension (in ``dim_order``, labelled ``dim_labels``)."""
    obs = np.asarray(observations, dtype=np.float32)
    recon = np.asarray(model.reconstruct(obs))
    grid = traversal_grid(model, obs[0], values)
    d = grid.shape[0]
    order = list(range(d)) if dim_order is None else list(dim_order)
    labels = [f"z{i}" for i in order] if dim_labels is None else list(dim_labels)
    top = mosaic(np.stack([obs, recon]))
    bottom = mosaic(grid[order])
    h = obs.shape[2]
    width = 0.55 * max(len(obs), len(values)) + 1.2
    fig = style.plt.figure(figsize=(width, 0.55 * (2 + d) + 1.2))
    gs = fig.add_gridspec(2, 1, height_ratios=[top.shape[0], bottom.shape[0]], hspace=0.04)
    ax_top, ax_bot = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    ax_top.imshow(top, interpolation="nearest")
    ax_top.set_yticks([h / 2, h * 1.5 + 2], ["input", "reconstruction"])
    ax_top.set_xticks([])
    ax_bot.imshow(bottom, interpolation="nearest")
    ax_bot.set_yticks([(h + 2) * i + h / 2 for i in range(d)], labels)
    w = obs.shape[3]
    ax_bot.set_xticks([(w + 2) * j + w / 2 for j in range(len(values))],
                      [f"{v:+.1f}" for v in values])
    ax_bot.set_xlabel("value of the traversed latent dimension")
    for ax in (ax_top, ax_bot):
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
    ax_top.set_title(title)
    return style.save(fig, path)
