"""Rank correlation between scores, and the annotated heatmaps that show it.

Locatello et al., "Challenging Common Assumptions in the Unsupervised Learning of Disentangled
Representations", ICML 2019, Fig. 2: Spearman rank correlation between the disentanglement scores of
all models trained on one dataset, printed ×100 in each cell.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import style

MIN_MODELS = 3  # fewer paired scores leave a rank correlation meaningless


def rank_correlation(table: pd.DataFrame, rows: list[str], cols: list[str] | None = None,
                     min_models: int = MIN_MODELS) -> pd.DataFrame:
    """Spearman rank correlation between ``rows`` and ``cols`` columns of ``table`` (one row per
    model), each pair over the models that have both scores; NaN where fewer than ``min_models``
    pairs exist or a score is constant. ``cols`` defaults to ``rows`` (a square matrix)."""
    cols = rows if cols is None else cols
    both = list(dict.fromkeys([*rows, *cols]))
    values = table[both].apply(pd.to_numeric, errors="coerce").astype(float)
    corr = values.corr(method="spearman", min_periods=min_models)
    return corr.loc[rows, cols]


def as_percent(matrix: pd.DataFrame) -> pd.DataFrame:
    """The matrix ×100 rounded to integers as the paper prints it (NaN kept; no negative zero)."""
    out = np.rint(matrix.to_numpy(dtype=float) * 100) + 0.0
    return pd.DataFrame(out, index=matrix.index, columns=matrix.columns)


def _cells(ax, pct: pd.DataFrame, title: str, xlabel: str = "", ylabel: str = ""):
    """Draw the ×100 matrix ``pct`` on ``ax`` with its numbers; returns the image (for a colour
    bar). NaN cells are grey and marked "n/a"."""
    n_rows, n_cols = pct.shape
    data = np.ma.masked_invalid(pct.to_numpy())
    cmap = style.plt.get_cmap(style.DIVERGING).with_extremes(bad="0.85")
    im = ax.imshow(data, cmap=cmap, vmin=-100, vmax=100, aspect="auto")
    for i in range(n_rows):
        for j in range(n_cols):
            v = pct.iat[i, j]
            text = "n/a" if np.isnan(v) else f"{int(v)}"
            color = "white" if not np.isnan(v) and abs(v) >= 60 else "black"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=8)
    ax.set_xticks(range(n_cols), [str(c) for c in pct.columns], rotation=40, ha="right",
                  rotation_mode="anchor")
    ax.set_yticks(range(n_rows), [str(r) for r in pct.index])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.tick_params(length=0)
    return im


@style.styled
def draw_heatmap(matrix: pd.DataFrame, path: Path, title: str, xlabel: str = "",
                 ylabel: str = "", colorbar_label: str = "Spearman rank correlation ×100") -> Path:
    """An annotated heatmap of a correlation ``matrix`` (values in [-1, 1]) with a diverging colour
    scale centred on 0 (fixed to [-100, 100]); NaN cells are grey and marked "n/a". The printed
    numbers are also written beside the PNG as CSV (same name, ``.csv``)."""
    pct = as_percent(matrix)
    path.parent.mkdir(parents=True, exist_ok=True)
    pct.to_csv(path.with_suffix(".csv"), float_format="%.0f", lineterminator="\n")
    n_rows, n_cols = pct.shape
    fig, axes = style.new_figure(max(3.2, 0.62 * n_cols + 2.2), max(2.6, 0.48 * n_rows + 1.4))
    ax = axes[0, 0]
    im = _cells(ax, pct, title, xlabel, ylabel)
    cbar = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.03, ticks=[-100, -50, 0, 50, 100])
    cbar.set_label(colorbar_label)
    return style.save(fig, path)


@style.styled
def draw_heatmap_pair(left: pd.DataFrame, right: pd.DataFrame, titles: tuple[str, str],
                      path: Path, title: str) -> Path:
    """Two correlation matrices side by side on one colour scale (as ``draw_heatmap``), e.g. the
    same scores in two studies; both are written beside the PNG as one CSV, keyed by title."""
    pcts = [as_percent(left), as_percent(right)]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(dict(zip(titles, pcts))).to_csv(path.with_suffix(".csv"), float_format="%.0f",
                                              lineterminator="\n")
    n_rows, n_cols = pcts[0].shape
    fig, axes = style.new_figure(2 * max(3.2, 0.62 * n_cols + 2.2),
                                 max(2.6, 0.48 * n_rows + 1.6), ncols=2)
    for ax, pct, name in zip(axes[0], pcts, titles):
        im = _cells(ax, pct, name)
    if list(pcts[1].index) == list(pcts[0].index):
        axes[0, 1].set_yticklabels([])  # the same scores: labelled once, on the left
    cbar = fig.colorbar(im, ax=list(axes[0]), fraction=0.03, pad=0.02,
                        ticks=[-100, -50, 0, 50, 100])
    cbar.set_label("Spearman rank correlation ×100")
    fig.suptitle(title, y=1.02)
    return style.save(fig, path)
