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
    cbar = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.03, ticks=[-100, -50, 0, 50, 100])
    cbar.set_label(colorbar_label)
    return style.save(fig, path)
