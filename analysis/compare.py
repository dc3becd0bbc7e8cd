"""Two studies side by side, e.g. ours against disentanglement_lib's released results.

Models of the two studies are matched when they share the dataset (by name: our procedural
rendering of dSprites meets dlib's file), the representation, the method, every hyperparameter
and the random seed; a matched pair is the same configuration trained twice (different code,
different initial weights), so the scatter of their scores shows how far a score carries over.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import style
from analysis.names import method_name

MATCH_KEYS = ("dataset", "representation", "model", "seed")
_ABSENT = -1e300  # stands for a hyperparameter a method does not have, so that it can match


def matched_models(wa: pd.DataFrame, wb: pd.DataFrame, hp_cols: list[str],
                   columns: list[str]) -> pd.DataFrame:
    """The models of ``wa`` and ``wb`` (wide frames, one row per job × representation) with the
    same dataset, representation, method, hyperparameters (``hp_cols``) and seed: one row per
    pair with ``MATCH_KEYS``, ``hp_cols``, ``job_id_a``, ``job_id_b`` and ``<column>_a`` /
    ``<column>_b`` for each of ``columns``. A configuration seen twice in one study (two dataset
    sources) keeps its first job, by job id."""
    keys = [*MATCH_KEYS, *hp_cols]

    def side(w: pd.DataFrame) -> pd.DataFrame:
        d = w.reindex(columns=[*keys, "job_id", *columns]).copy()
        d["dataset"] = d["dataset"].astype(str)
        d["model"] = d["model"].astype(str)
        d["representation"] = d["representation"].astype(str)
        d["seed"] = pd.to_numeric(d["seed"]).astype(float)
        for c in hp_cols:
            d[c] = pd.to_numeric(d[c], errors="coerce").astype(float).round(9).fillna(_ABSENT)
        return d.sort_values("job_id").drop_duplicates(keys)

    out = side(wa).merge(side(wb), on=keys, suffixes=("_a", "_b"))
    for c in hp_cols:
        out[c] = out[c].where(out[c] != _ABSENT)
    return out.sort_values(["model", *hp_cols, "seed", "job_id_a"]).reset_index(drop=True)


def spearman(x: pd.Series, y: pd.Series) -> float:
    """Spearman's rank correlation of the pairs where both are present (NaN below 3 pairs or for
    a constant series)."""
    pairs = pd.concat([x.astype(float), y.astype(float)], axis=1).dropna()
    if len(pairs) < 3:
        return float("nan")
    return float(pairs.iloc[:, 0].corr(pairs.iloc[:, 1], method="spearman"))


@style.styled
def draw_matched_scatter(matched: pd.DataFrame, scores: dict[str, str], labels: tuple[str, str],
                         path: Path, title: str) -> Path:
    """One panel per score: study A's value (x) against study B's (y) for each matched pair,
    coloured by method, with the diagonal and Spearman's ρ; the ρ and pair count per score are
    written beside the PNG as CSV."""
    methods = sorted(matched["model"].astype(str).unique())
    colors = style.method_colors(methods)
    ncols = min(3, len(scores))
    nrows = -(-len(scores) // ncols)
    fig, axes = style.new_figure(3.3 * ncols + 1.2, 3.0 * nrows, nrows, ncols)
    table = []
    for ax, (col, name) in zip(axes.flat, scores.items()):
        x, y = matched[f"{col}_a"].astype(float), matched[f"{col}_b"].astype(float)
        rho, n = spearman(x, y), int((x.notna() & y.notna()).sum())
        table.append({"score": name, "pairs": n, "spearman": rho})
        for m in methods:
            sel = matched["model"].astype(str) == m
            ax.scatter(x[sel], y[sel], s=12, alpha=0.7, color=colors[m], label=method_name(m),
                       edgecolors="none")
        both = pd.concat([x, y]).dropna()
        if len(both):
            lo, hi = float(both.min()), float(both.max())
            ax.plot([lo, hi], [lo, hi], color="0.6", linewidth=0.8, linestyle="--")
        ax.set_title(f"{name}: ρ = {rho:.2f} ({n} pairs)" if not np.isnan(rho)
                     else f"{name}: ρ n/a ({n} pairs)")
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
    for ax in list(axes.flat)[len(scores):]:
        ax.set_visible(False)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(table).to_csv(path.with_suffix(".csv"), index=False, float_format="%.4f",
                               lineterminator="\n")
    return style.save(fig, path)
