"""Score distributions over methods, hyperparameters and seeds; total correlation; per-dim KL.

Locatello et al., ICML 2019: scores per method and regularisation strength (violins, §5.2 and
Fig. 4/7), the finding that random seeds and hyperparameters matter more than the method, and that
the sampled representation's Gaussian total correlation falls with regularisation while the mean
representation's does not (§5.1, Fig. 3). The per-dimension KL of trained models follows the
seeds poster (Fig. 3).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import style
from analysis.names import hyperparameter_name, method_name

_NO_SETTING = "default"
MAX_LINES = 20  # per setting in the KL figure; more models are summarised by quantiles


def _fmt(v: float) -> str:
    return f"{v:g}" if isinstance(v, (int, float, np.floating)) and not pd.isna(v) else str(v)


def swept_hyperparameters(w: pd.DataFrame, hp_cols: list[str]) -> dict[str, list[str]]:
    """For each method (``model``), the hyperparameter columns that vary across its models; for a
    method where none varies (e.g. one setting finished so far), the columns it has that vary in
    some other method (so β-TCVAE with only β=1 done still reads "β=1", not "default")."""
    model = w["model"].astype(str)
    varying = {m: [c for c in hp_cols if w.loc[model == m, c].dropna().nunique() > 1]
               for m in sorted(model.unique())}
    anywhere = {c for cols in varying.values() for c in cols}
    return {m: cols or [c for c in hp_cols if c in anywhere and w.loc[model == m, c].notna().all()]
            for m, cols in varying.items()}


def settings(w: pd.DataFrame, hp_cols: list[str]) -> pd.DataFrame:
    """Per row of ``w``: ``setting`` (a label such as "β=4", or "default" when the method sweeps
    nothing) and ``setting_order`` (a sort key: the swept values as a tuple)."""
    swept = swept_hyperparameters(w, hp_cols)
    labels = pd.Series(_NO_SETTING, index=w.index, dtype=object)
    orders = pd.Series([()] * len(w), index=w.index, dtype=object)
    model = w["model"].astype(str)
    for m, cols in swept.items():
        if not cols:
            continue
        rows = w.loc[model == m, cols]
        keys = rows.astype(float).fillna(-math.inf)
        for vals, g in keys.groupby(cols, sort=False, dropna=False):
            idx = g.index
            vals = vals if isinstance(vals, tuple) else (vals,)
            labels[idx] = ", ".join(
                f"{hyperparameter_name(c)}={_fmt(v) if v != -math.inf else 'n/a'}"
                for c, v in zip(cols, vals, strict=True))
            orders[idx] = pd.Series([tuple(float(v) for v in vals)] * len(idx), index=idx)
    return pd.DataFrame({"setting": labels, "setting_order": orders}, index=w.index)


def ordered_settings(d: pd.DataFrame) -> list[str]:
    """The distinct settings of ``d`` (with ``setting``, ``setting_order``) in value order."""
    pairs = d[["setting", "setting_order"]].drop_duplicates("setting")
    return [s for s, _ in sorted(zip(pairs["setting"], pairs["setting_order"], strict=False),
                                 key=lambda t: (t[1], t[0]))]


def variance_decomposition(values, method, setting) -> dict[str, float]:
    """Share of a score's variance explained by the method, by the hyperparameter setting within
    the method, and by the random seed (the rest, within a setting): a nested ANOVA, so the three
    sums of squares add up to the total. Returns NaN shares when the total variance is 0.

    ``values``, ``method``, ``setting``: equal-length sequences, one entry per model.
    """
    y = np.asarray(values, dtype=float)
    m = np.asarray([str(x) for x in method])
    s = np.asarray([f"{a}\x00{b}" for a, b in zip(method, setting, strict=False)])  # settings nest in methods
    keep = ~np.isnan(y)
    y, m, s = y[keep], m[keep], s[keep]
    total = float(((y - y.mean()) ** 2).sum()) if len(y) else 0.0
    if total <= 0:
        return {"method": math.nan, "hyperparameter": math.nan, "seed": math.nan}
    mean_m = pd.Series(y).groupby(m).transform("mean").to_numpy()
    mean_s = pd.Series(y).groupby(s).transform("mean").to_numpy()
    ss_method = float(((mean_m - y.mean()) ** 2).sum())
    ss_setting = float(((mean_s - mean_m) ** 2).sum())
    ss_seed = float(((y - mean_s) ** 2).sum())
    return {"method": ss_method / total, "hyperparameter": ss_setting / total,
            "seed": ss_seed / total}


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    ncols = min(max_cols, n)
    return math.ceil(n / ncols), ncols


def _violins(ax, groups: list[np.ndarray], color) -> None:
    """Violins for groups with spread; the points themselves for every group."""
    for i, g in enumerate(groups):
        g = g[~np.isnan(g)]
        if len(g) >= 2 and np.ptp(g) > 0:
            parts = ax.violinplot([g], positions=[i], widths=0.8, showextrema=False,
                                  showmedians=True)
            for body in parts["bodies"]:
                body.set_facecolor(color)
                body.set_alpha(0.45)
            parts["cmedians"].set_color("black")
        ax.scatter(np.full(len(g), i), g, s=6, color="black", alpha=0.5, zorder=3,
                   edgecolors="none")


@style.styled
def draw_violins(w: pd.DataFrame, score_col: str, score_name: str, path: Path,
                 title: str) -> Path:
    """Panel 1: the score's distribution per method; then one panel per method, per setting of
    its swept hyperparameter. ``w`` has columns model, setting, setting_order and ``score_col``."""
    d = w.dropna(subset=[score_col])
    methods = sorted(d["model"].astype(str).unique())
    colors = style.method_colors(methods)
    rows, cols = _grid(1 + len(methods))
    fig, axes = style.new_figure(3.0 * cols, 2.7 * rows, rows, cols, sharey=True)
    flat = axes.ravel()
    ax = flat[0]
    _violins(ax, [d.loc[d["model"].astype(str) == m, score_col].to_numpy(float)
                  for m in methods], "0.6")
    ax.set_xticks(range(len(methods)), [method_name(m) for m in methods], rotation=30,
                  ha="right", rotation_mode="anchor")
    ax.set_title("all methods")
    ax.set_ylabel(score_name)
    for ax, m in zip(flat[1:], methods, strict=False):
        dm = d[d["model"].astype(str) == m]
        order = ordered_settings(dm)
        _violins(ax, [dm.loc[dm["setting"] == s, score_col].to_numpy(float) for s in order],
                 colors[m])
        ax.set_xticks(range(len(order)), order, rotation=30, ha="right", rotation_mode="anchor")
        ax.set_title(method_name(m))
    for i, ax in enumerate(flat):
        if i % cols == 0:
            ax.set_ylabel(score_name)
    for ax in flat[1 + len(methods):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return style.save(fig, path)


@style.styled
def draw_variance_shares(shares: pd.DataFrame, path: Path, title: str) -> Path:
    """Stacked horizontal bars: per score (rows of ``shares``), the shares of variance explained by
    method, hyperparameter and seed (columns)."""
    fig, axes = style.new_figure(5.6, 0.42 * len(shares) + 1.3)
    ax = axes[0, 0]
    left = np.zeros(len(shares))
    colors = {"method": "#4C72B0", "hyperparameter": "#DD8452", "seed": "#8C8C8C"}
    y = np.arange(len(shares))
    for part in ("method", "hyperparameter", "seed"):
        v = shares[part].to_numpy(float)
        ax.barh(y, v, left=left, color=colors[part], label=part, height=0.65)
        for yi, (l0, vi) in enumerate(zip(left, v, strict=False)):
            if vi >= 0.08:
                ax.text(l0 + vi / 2, yi, f"{vi:.0%}", ha="center", va="center", fontsize=7,
                        color="white")
        left = left + v
    ax.set_yticks(y, list(shares.index))
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the score's variance")
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False)
    return style.save(fig, path)


@style.styled
def draw_total_correlation(mean_rows: pd.DataFrame, sampled_rows: pd.DataFrame, col: str,
                           path: Path, title: str) -> Path:
    """Per method, the Gaussian total correlation of the sampled and of the mean representation
    against the swept hyperparameter: medians joined by lines, every model as a dot."""
    methods = sorted(set(mean_rows["model"].astype(str)) | set(sampled_rows["model"].astype(str)))
    rows, cols = _grid(len(methods))
    fig, axes = style.new_figure(3.0 * cols, 2.6 * rows, rows, cols, sharey=True)
    flat = axes.ravel()
    positive = all((d[col].dropna() > 0).all() for d in (mean_rows, sampled_rows))
    for ax, m in zip(flat, methods, strict=False):
        both = pd.concat([mean_rows, sampled_rows])
        order = ordered_settings(both[both["model"].astype(str) == m])
        for d, label, color in ((sampled_rows, "sampled", "#DD8452"),
                                (mean_rows, "mean", "#4C72B0")):
            dm = d[d["model"].astype(str) == m]
            med = [dm.loc[dm["setting"] == s, col].median() for s in order]
            ax.plot(range(len(order)), med, marker="o", color=color, label=label, lw=1.5)
            x = [order.index(s) for s in dm["setting"]]
            ax.scatter(x, dm[col], s=6, color=color, alpha=0.4, edgecolors="none")
        ax.set_yscale("log" if positive else "symlog", **({} if positive else {"linthresh": 1e-3}))
        ax.set_xticks(range(len(order)), order, rotation=30, ha="right", rotation_mode="anchor")
        ax.set_title(method_name(m))
    for i, ax in enumerate(flat):
        if i % cols == 0:
            ax.set_ylabel("Gaussian total correlation")
    for ax in flat[len(methods):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    handles, labels = flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, title="representation", frameon=False, loc="center left",
               bbox_to_anchor=(1.0, 0.5))
    return style.save(fig, path)


@style.styled
def draw_kl_per_dimension(jobs: pd.DataFrame, kl_cols: list[str], path: Path,
                          title: str) -> Path:
    """Per method, each model's KL per latent dimension sorted from largest to smallest, coloured
    by its hyperparameter setting: how many dimensions a model keeps active. Settings with more
    than ``MAX_LINES`` models show the median and the 10-90% band instead of every model."""
    methods = sorted(jobs["model"].astype(str).unique())
    rows, cols = _grid(len(methods))
    fig, axes = style.new_figure(3.1 * cols, 2.6 * rows, rows, cols, sharey=True)
    flat = axes.ravel()
    x = np.arange(1, len(kl_cols) + 1)
    cmap = style.plt.get_cmap("viridis")
    for ax, m in zip(flat, methods, strict=False):
        dm = jobs[jobs["model"].astype(str) == m]
        order = ordered_settings(dm)
        shade = {s: cmap(i / max(1, len(order) - 1) * 0.9) for i, s in enumerate(order)}
        for s in order:
            kl = dm.loc[dm["setting"] == s, kl_cols].to_numpy(float)
            kl = -np.sort(-kl, axis=1)  # NaN (missing dims) sort last
            if len(kl) > MAX_LINES:  # many seeds: median and 10-90% band stay readable
                lo, med, hi = np.nanpercentile(kl, [10, 50, 90], axis=0)
                ax.fill_between(x, lo, hi, color=shade[s], alpha=0.2, lw=0)
                ax.plot(x, med, color=shade[s], lw=1.5, label=s)
                continue
            for k, line in enumerate(kl):
                ax.plot(x, line, color=shade[s], alpha=0.7, lw=1, label=s if k == 0 else None)
        ax.set_xticks(x)
        ax.set_xlabel("latent dimension (sorted by KL)")
        ax.set_title(method_name(m))
        if len(order) > 1 or order != [_NO_SETTING]:
            ax.legend(frameon=False, fontsize=7)
    for i, ax in enumerate(flat):
        if i % cols == 0:
            ax.set_ylabel("KL (nats)")
    for ax in flat[len(methods):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return style.save(fig, path)
