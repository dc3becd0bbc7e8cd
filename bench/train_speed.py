"""Training throughput (images/s) of every gradient-trained method at batch 64 on 64x64x1 data,
against a plain eager PyTorch β-VAE loop (same architecture, same optimiser, no harness).

    OMP_NUM_THREADS=1 python bench/train_speed.py [--threads 1] [--steps 30] [--warmup 10]
        [--device cpu|cuda|auto] [--methods beta_vae,factor_vae,...]

Prints a table: wall images/s, images per own CPU-second (robust on a shared machine, docs/performance.md)
and the ratio to the eager loop. Data come from a pre-rendered pool of random binary images, so the
numbers measure the model and the training loop, not dataset rendering.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.settings import TrainingSettings
from benchmark.training import configure_allocator, resolve_device, train

BATCH = 64
METHODS = ["beta_vae", "annealed_vae", "factor_vae", "dip_vae_i", "dip_vae_ii", "beta_tc_vae",
           "denoising_ae", "sparse_ae", "infogan"]


class Pool:
    """Minimal ground-truth-like data: i.i.d. draws from 2048 random blob images (1, 64, 64)."""

    observation_shape = (1, 64, 64)

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.images = (rng.random((2048, 1, 64, 64)) < 0.1).astype(np.float32)

    def sample_observations(self, n: int, rng) -> np.ndarray:
        return self.images[rng.integers(0, len(self.images), n)]


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def eager_loop(device: torch.device, warmup: int, steps: int) -> tuple[float, float]:
    """The reference: the study's β-VAE written as the shortest plain PyTorch loop."""
    enc = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),
                        nn.Conv2d(32, 64, 2, 2), nn.ReLU(), nn.Conv2d(64, 64, 2, 2), nn.ReLU(),
                        nn.Flatten(), nn.Linear(1024, 256), nn.ReLU(), nn.Linear(256, 20)).to(device)
    dec = nn.Sequential(nn.Linear(10, 256), nn.ReLU(), nn.Linear(256, 1024), nn.ReLU(),
                        nn.Unflatten(1, (64, 4, 4)), nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),
                        nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
                        nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(),
                        nn.ConvTranspose2d(32, 1, 4, 2, 1)).to(device)
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-4)
    pool, rng = Pool(), np.random.default_rng(0)
    t = None
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = _clock()
        x = torch.from_numpy(pool.sample_observations(BATCH, rng)).to(device)
        mean, logvar = enc(x).chunk(2, 1)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        recon = F.binary_cross_entropy_with_logits(dec(z), x, reduction="none").sum((1, 2, 3)).mean()
        kl = 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1).sum(1).mean()
        loss = recon + kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    loss.detach().item()  # synchronise
    end = _clock()
    return steps * BATCH / (end[0] - t[0]), steps * BATCH / max(end[1] - t[1], 1e-9)


def harness(method: str, device: torch.device, warmup: int, steps: int) -> tuple[float, float]:
    """`benchmark.training.train` on the same data; the clock starts at the progress call after the
    warm-up steps (FactorVAE: its global step advances twice per iteration, images are counted per
    iteration)."""
    marks: list[tuple[int, tuple[float, float]]] = []
    step_per_iter = 2 if method == "factor_vae" else 1
    cfg = TrainingSettings(steps=(warmup + steps) * step_per_iter, batch_size=BATCH,
                           log_every=warmup, checkpoint_every=10**9, device=str(device), eval_batches=0)
    train(method, {}, Pool(), seed=0, config=cfg,
          progress=lambda step, total, m: marks.append((step, _clock())))
    (s0, t0), (s1, t1) = marks[0], marks[-1]
    images = (s1 - s0) // step_per_iter * BATCH
    return images / (t1[0] - t0[0]), images / max(t1[1] - t0[1], 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--methods", default=",".join(METHODS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    configure_allocator()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{args.threads} threads"
    print(f"device: {name}; batch {BATCH}; 64x64x1; {args.steps} timed steps after {args.warmup} warm-up")
    base_wall, base_cpu = eager_loop(device, args.warmup, args.steps)
    rows = [("plain eager loop (beta_vae)", base_wall, base_cpu)]
    for m in args.methods.split(","):
        wall, cpu = harness(m, device, args.warmup, args.steps)
        rows.append((m, wall, cpu))
    print(f"{'method':30s} {'img/s':>9s} {'img/CPU-s':>10s} {'wall vs eager':>14s} {'CPU vs eager':>13s}")
    for m, wall, cpu in rows:
        print(f"{m:30s} {wall:9.0f} {cpu:10.0f} {wall / base_wall:14.2f} {cpu / base_cpu:13.2f}")


if __name__ == "__main__":
    main()
