"""Higgins et al., "β-VAE: Learning Basic Visual Concepts with a Constrained Variational Framework"
(ICLR 2017), Table 1: the BetaVAE score of each method on dSprites, ours (mean ± standard deviation
over seeds, in %) beside the paper's printed values.

`draw(w, out_dir, report)` writes, per dSprites dataset and source of a study that has BetaVAE scores
for every method the table names, ``<dataset>-<source>/higgins_table1.csv`` (numbers) and ``.md``
(the table as printed, with the protocol note) and adds a section to index.html. A study that trains
a method only this table uses (ground_truth, dc_ign) but lacks some row gets a skip naming the rows
that are missing. Study: ``study_specs/higgins_table1.yaml``.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis import report
from analysis.names import slug

SCORE = "beta_vae.eval_accuracy"
DATASETS = ("dsprites_full",)  # the paper's Table 1 is dSprites
WHAT = "Higgins et al. 2017, Table 1"
FILE = "higgins_table1"


@dataclass(frozen=True)
class Row:
    """One row of the paper's table: its label, our method (and hyperparameters it must have), and
    the paper's printed BetaVAE score in % (mean, standard deviation; None where none is printed)."""

    label: str
    model: str
    paper_mean: float
    paper_std: float | None
    params: tuple[tuple[str, float], ...] = ()


# In the paper's order. β-VAE: the paper's β = 4 on dSprites.
ROWS: tuple[Row, ...] = (
    Row("Ground truth", "ground_truth", 100.0, None),
    Row("Raw pixels", "raw_pixels", 45.75, 0.8),
    Row("PCA", "pca", 84.9, 0.4),
    Row("ICA", "fast_ica", 42.03, 10.6),
    Row("DC-IGN", "dc_ign", 99.3, 0.1),
    Row("InfoGAN", "infogan", 73.5, 0.9),
    Row("VAE untrained", "untrained_encoder", 44.14, 2.5),
    Row("VAE", "vae", 61.58, 0.5),
    Row("β-VAE (β = 4)", "beta_vae", 99.23, 0.1, (("beta", 4.0),)),
)
# Methods no other study trains: their presence marks a Table 1 study, whose missing rows are reported.
TABLE_ONLY = frozenset({"ground_truth", "dc_ign"})

NOTE = (
    "Both scores follow the paper's recipe: pick a factor k, draw L pairs of factor vectors that "
    "agree on k, encode both images of each pair, average |z1 − z2| over the L pairs into one "
    "point labelled k, and report a linear classifier's accuracy at predicting k on held-out points. "
    "The paper trains its linear classifier with Adagrad, with its own L and its own numbers of "
    "training and test points. disentanglement_lib's version, which we compute "
    "(benchmark/metrics/beta_vae.py, metric beta_vae, key eval_accuracy), uses L = batch_size = 64, "
    "10,000 training and 5,000 evaluation points (unless the study overrides them) and scikit-learn's "
    "LogisticRegression with its defaults (L2-regularised, lbfgs). So the two numbers estimate the "
    "same kind of quantity with another classifier and other sample sizes, on models trained with "
    "the study's architecture and settings, not the paper's: the paper's values are printed for "
    "orientation, not as a reproduction target. Ours: mean ± sample standard deviation over seeds "
    "(n = number of seeds)."
)


def _selected(w: pd.DataFrame, row: Row) -> pd.DataFrame:
    sel = w["model"].astype(str) == row.model
    for name, value in row.params:
        if name not in w:
            return w.iloc[:0]
        sel &= w[name].astype(float) == value
    return w[sel & w[SCORE].notna()] if SCORE in w else w.iloc[:0]


def _representations(w: pd.DataFrame) -> list[str]:
    reps = set(w["representation"].dropna().astype(str))
    return [r for r in ("mean", "sampled") if r in reps] + sorted(reps - {"mean", "sampled"})


def table(w: pd.DataFrame) -> pd.DataFrame:
    """One row per Table 1 row: the paper's mean and std (%), and per representation ours: mean,
    sample std over seeds (NaN with one seed) and the number of seeds, in %."""
    reps = _representations(w)
    out = []
    for row in ROWS:
        d = _selected(w, row)
        rec = {"row": row.label, "method": row.model, "paper_mean": row.paper_mean,
               "paper_std": row.paper_std if row.paper_std is not None else math.nan}
        for r in reps:
            v = 100.0 * d.loc[d["representation"].astype(str) == r, SCORE].astype(float)
            rec[f"{r}_mean"] = float(v.mean()) if len(v) else math.nan
            rec[f"{r}_std"] = float(v.std(ddof=1)) if len(v) > 1 else math.nan
            rec[f"{r}_seeds"] = int(len(v))
        out.append(rec)
    return pd.DataFrame(out)


def _cell(mean: float, std: float, n: int | None = None) -> str:
    if math.isnan(mean):
        return "–"
    text = f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"
    return text if n is None else f"{text} (n = {n})"


def printed(t: pd.DataFrame) -> pd.DataFrame:
    """The table as the report shows it: one formatted column per source."""
    reps = [c[: -len("_mean")] for c in t.columns if c.endswith("_mean") and c != "paper_mean"]
    out = pd.DataFrame({"Model": t["row"],
                        "paper (%)": [_cell(m, s) for m, s in zip(t["paper_mean"], t["paper_std"],
                                                                 strict=True)]})
    for r in reps:
        out[f"ours, {r} representation (%)"] = [
            _cell(m, s, int(n)) for m, s, n in zip(t[f"{r}_mean"], t[f"{r}_std"], t[f"{r}_seeds"],
                                                   strict=True)]
    return out


def _markdown(shown: pd.DataFrame, title: str) -> str:
    lines = [f"# {title}", "", "| " + " | ".join(shown.columns) + " |",
             "|" + "|".join("---" for _ in shown.columns) + "|"]
    lines += ["| " + " | ".join(str(v) for v in rec) + " |" for rec in shown.itertuples(index=False)]
    return "\n".join(lines + ["", NOTE, ""])


def draw(w: pd.DataFrame, out_dir: Path, rep: report.Report) -> None:
    """The table for each dSprites dataset and source of the study (see the module docstring)."""
    if SCORE not in w:
        return
    groups = w[["dataset", "dataset_source"]].astype(str).drop_duplicates()
    for dataset, source in sorted(map(tuple, groups.to_numpy())):
        if dataset not in DATASETS:
            continue
        wd = w[(w["dataset"].astype(str) == dataset) & (w["dataset_source"].astype(str) == source)]
        section = f"{dataset} ({source})"
        have = {row.model for row in ROWS if len(_selected(wd, row))}
        missing = [row.label for row in ROWS if row.model not in have]
        if missing:
            if have & TABLE_ONLY:
                rep.skip(WHAT, f"needs BetaVAE scores of every row's method; missing: "
                               f"{', '.join(missing)}", section)
            continue
        t = table(wd)
        folder = out_dir / slug(f"{dataset}-{source}")
        folder.mkdir(parents=True, exist_ok=True)
        title = f"{WHAT}: BetaVAE score on {section}"
        shown = printed(t)
        csv, md = folder / f"{FILE}.csv", folder / f"{FILE}.md"
        t.to_csv(csv, index=False, float_format="%.6g")
        md.write_text(_markdown(shown, title), encoding="utf-8")
        links = " ".join(f'<a href="{html.escape(p.relative_to(out_dir).as_posix())}">{label}</a>'
                         for p, label in ((csv, "numbers (CSV)"), (md, "Markdown")))
        body = (shown.to_html(border=0, classes="tbl", index=False, escape=True)
                + f"<p>{links}</p><p>{html.escape(NOTE)}</p>")
        rep.add_section(title, body)
