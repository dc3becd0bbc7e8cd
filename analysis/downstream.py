"""Disentanglement scores against downstream accuracy and sample efficiency.

Locatello et al., ICML 2019, §5.5: a downstream task predicts each ground-truth factor from the
representation with logistic regression (LR) or gradient-boosted trees (GBT) trained on 10, 100,
1000 or 10000 samples; statistical efficiency is the mean test accuracy with 100 samples divided by
that with 10000. Fig. 5: rank correlation of each score with those accuracies and efficiencies;
Fig. 6: efficiency of GBT against one score, model by model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import style
from analysis.names import PREDICTORS, method_name


def with_efficiency(w: pd.DataFrame) -> pd.DataFrame:
    """``w`` with ``<predictor>.efficiency`` filled where the rows lack it but hold both the
    100- and 10000-sample mean test accuracies (efficiency = acc@100 / acc@10000)."""
    out = w.copy()
    for metric in PREDICTORS:
        lo, hi = f"{metric}.100:mean_test_accuracy", f"{metric}.10000:mean_test_accuracy"
        if lo not in out or hi not in out:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            eff = out[lo].astype(float) / out[hi].astype(float)
        col = f"{metric}.efficiency"
        out[col] = out[col].fillna(eff) if col in out else eff
    return out


@style.styled
def draw_efficiency_scatter(w: pd.DataFrame, score_col: str, score_name: str,
                            efficiency_col: str, path: Path, title: str) -> Path:
    """Efficiency (y) against one score (x), one point per model, coloured by method."""
    data = w[["model", score_col, efficiency_col]].dropna()
    methods = sorted(data["model"].astype(str).unique())
    colors = style.method_colors(methods)
    fig, axes = style.new_figure(4.6, 3.4)
    ax = axes[0, 0]
    for m in methods:
        d = data[data["model"].astype(str) == m]
        ax.scatter(d[score_col], d[efficiency_col], s=14, alpha=0.75, color=colors[m],
                   label=method_name(m), edgecolors="none")
    predictor = PREDICTORS.get(efficiency_col.partition(".")[0], "")
    ax.set_xlabel(score_name)
    ax.set_ylabel(f"{predictor} statistical efficiency".strip())
    ax.set_title(title)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return style.save(fig, path)
