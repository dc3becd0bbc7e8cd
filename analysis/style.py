"""Matplotlib set-up shared by every figure: headless backend, fixed style, reproducible files."""

from __future__ import annotations

import functools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; no display is needed (or present on a cluster node)

import matplotlib.pyplot as plt  # noqa: E402

RC = {
    "figure.dpi": 100,
    "savefig.dpi": 110,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "disentanglement-benchmark",
    "path.simplify": True,
}
DIVERGING = "RdBu_r"  # centred colour scale for correlations: blue negative, red positive
QUALITATIVE = "tab10"


def styled(fn):
    """Run a drawing function under the package's style (leaves the caller's rcParams alone)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with plt.rc_context(RC):
            return fn(*args, **kwargs)

    return wrapper


def new_figure(width: float, height: float, nrows: int = 1, ncols: int = 1, **kwargs):
    """A figure and a 2-D array of its axes."""
    return plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, **kwargs)


def save(fig, path: Path) -> Path:
    """Write ``fig`` as PNG without the metadata that would differ between runs, and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    return path


def method_colors(methods) -> dict[str, tuple]:
    """One colour per method, stable for a given sorted list of methods."""
    cmap = plt.get_cmap(QUALITATIVE)
    return {m: cmap(i % cmap.N) for i, m in enumerate(methods)}
