"""What ``benchmark datasets`` shows: the dataset list, and a PNG grid of samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data.registry import DESCRIPTORS, get_dataset, resolve_data_dir
from benchmark.errors import UserError


def describe_datasets(data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One dict per dataset: name, description, factor_names, factor_sizes, observation_shape,
    sources (available), files_present (bool), expected_files (relative to the data directory).

    Everything comes from the dataset's descriptor (``info.DatasetInfo``); MPI3D sizes are those of
    the released files (the loader infers them from the file).
    """
    root = resolve_data_dir(data_dir)
    rows = []
    for info in DESCRIPTORS.values():
        names, sizes, shape = info.grid()
        rows.append({
            "name": info.name,
            "description": info.description,
            "factor_names": list(names),
            "factor_sizes": [int(s) for s in sizes],
            "observation_shape": list(shape),
            "sources": list(info.sources),
            "files_present": info.files_present(root),
            "expected_files": info.expected_files(),
        })
    return rows


def sample_grid(images: np.ndarray, columns: int) -> np.ndarray:
    """Tile float (n, C, H, W) images in [0, 1] into one uint8 (rows*H + gaps, cols*W + gaps, 3) image."""
    n, c, h, w = images.shape
    if c == 1:
        images = np.repeat(images, 3, axis=1)
    elif c != 3:  # e.g. the identity set's (K, 1, 1): show each channel as grey bars
        images = np.repeat(images.reshape(n, 1, 1, -1).repeat(8, axis=2).repeat(8, axis=3), 3, axis=1)
        h, w = images.shape[2:]
    rows = -(-n // columns)
    pad = 2
    canvas = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 0.5, dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        canvas[y : y + h, x : x + w] = images[i].transpose(1, 2, 0)
    return (np.clip(canvas, 0, 1) * 255).round().astype(np.uint8)


def write_sample_grid(name: str, out_png: str | Path, source: str = "procedural",
                      data_dir: str | Path | None = None, n: int = 64, seed: int = 0) -> Path:
    """Draw ``n`` random samples of a dataset (one seed) into a PNG grid at ``out_png``; returns the path."""
    from PIL import Image

    if n < 1:
        raise UserError(f"the number of samples must be positive, got {n}")
    ds = get_dataset(name, source=source, data_dir=data_dir)
    images = ds.sample_observations(n, np.random.default_rng(seed))
    grid = sample_grid(images, columns=int(np.ceil(np.sqrt(n))))
    out = Path(out_png)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        scale = max(1, 512 // grid.shape[1])
        Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST).save(out)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from exc
    return out
