"""Draw every figure of a results store and write index.html (README.md, "Figures").

Per dataset (and dataset source: procedural and file-based renderings are never pooled) and per
representation (mean, sampled): the Spearman heatmap between scores (Locatello et al. 2019,
Fig. 2), scores vs downstream accuracy and efficiency (Fig. 5), efficiency vs a chosen score
(Fig. 6), score distributions per method and hyperparameter, and the variance explained by method,
hyperparameter and seed; per dataset: total correlation of the sampled vs the mean representation
(Fig. 3), per-dimension KL and latent traversals (seeds poster, Figs. 3 and 2).

A results root holding an imported study (``benchmark import``) and one of ours also gets a
comparison of the two (`draw_comparison`; any two studies with ``compare=(A, B)``), and an
index.html linking every study's index and every comparison.

Figures are a pure function of the store: inputs are sorted, PNG metadata carries no version or
date, and the index is built from the store alone.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import (
    compare,
    distributions,
    downstream,
    heatmaps,
    higgins_table1,
    load,
    report,
    traversals,
    views,
)
from analysis.names import (
    TC_COLUMN,
    downstream_columns,
    kl_dim_columns,
    method_name,
    score_columns,
    slug,
)
from benchmark.errors import UserError

DEFAULT_EFFICIENCY_SCORE = "factor_vae.eval_accuracy"  # Locatello et al. Fig. 6 uses it
REPRESENTATION_ORDER = {"mean": 0, "sampled": 1}
TRAVERSAL_OBSERVATIONS = 8
ACROSS_MODELS = "all models: total correlation, KL per dimension"  # their group in the index
# One traversal row per latent dimension: raw pixels' 4,096 rows would be a figure of 2,000 inches
# (and tens of GB of memory); such models are skipped with the reason.
MAX_TRAVERSAL_DIMS = 64
# Every contract column but the long JSON ones, which no figure needs.
FIGURE_COLUMNS = tuple(c for c in load.CONTRACT_COLUMNS if c not in ("job_config", "model_params"))


def get_dataset(name: str, source: str):
    """``benchmark.data.get_dataset`` (imported lazily: only traversals need observations)."""
    from benchmark.data import get_dataset as _get

    return _get(name, source)


def draw_all(results_dir: str | Path, out_dir: str | Path | None = None,
             traversal_jobs: Iterable[str] | None = None,
             efficiency_score: str = DEFAULT_EFFICIENCY_SCORE,
             compare: tuple[str, str] | list[str] | None = None,
             view_points: int | None = None) -> report.Report:
    """Draw every figure of the study (or of each study under a results root).

    ``out_dir`` defaults to ``<study dir>/figures`` (with several studies: ``out_dir/<study>``).
    ``traversal_jobs``: job or model ids to draw traversals for; None = one model per dataset and
    method (the first by hyperparameter, seed, id that has a checkpoint); empty = none. The same
    models get a t-SNE map of ``view_points`` mean codes and decoded interpolations
    (``analysis.views``; None = the study's spec.yaml ``figures.view_points`` or its default).
    ``efficiency_score``: the "metric.key" column plotted against efficiency (Fig. 6).
    ``compare``: two study names of the results root to compare; None = each imported study
    against each of ours, when the root holds both kinds. Comparisons go to
    ``<out_dir or root/figures>/compare-<A>-vs-<B>/``, beside an index.html linking everything.
    Returns the Report: figures written (path, caption), skips with reasons, index pages.
    """
    dirs = load.study_dirs(results_dir)
    pairs = _comparison_pairs(Path(results_dir), dirs, compare)
    out = report.Report(out_dir=Path(out_dir) if out_dir else dirs[0] / "figures")
    for d in dirs:
        target = None if out_dir is None else (
            Path(out_dir) if len(dirs) == 1 else Path(out_dir) / d.name)
        out.extend(draw_study(d, target, traversal_jobs, efficiency_score, view_points))
    if pairs:
        base = Path(out_dir) if out_dir else Path(results_dir) / "figures"
        for a, b in pairs:
            out.extend(draw_comparison(a, b, base / slug(f"compare-{a.name}-vs-{b.name}")))
        index = base / "index.html"
        report.write_links(index, f"Results under {Path(results_dir).name}", out.indexes)
        out.indexes.append(index)
    return out


def _comparison_pairs(root: Path, dirs: list[Path],
                      compare: tuple[str, str] | list[str] | None) -> list[tuple[Path, Path]]:
    from benchmark.store import ResultsStore

    by_name = {d.name: d for d in dirs}
    if compare is not None:
        a, b = compare
        missing = [s for s in (a, b) if s not in by_name]
        if missing or len(dirs) < 2:
            raise UserError(f"--compare {a} {b}: needs a results root holding both studies; "
                            f"{root} holds {', '.join(sorted(by_name)) or 'none'}")
        if a == b:
            raise UserError(f"--compare {a} {b}: name two different studies")
        return [(by_name[a], by_name[b])]
    if len(dirs) < 2:
        return []
    imported = [d for d in dirs if ResultsStore(d).import_record() is not None]
    return [(o, i) for o in dirs if o not in imported for i in imported]


def draw_study(study_dir: Path, out_dir: Path | None = None,
               traversal_jobs: Iterable[str] | None = None,
               efficiency_score: str = DEFAULT_EFFICIENCY_SCORE,
               view_points: int | None = None) -> report.Report:
    """Every figure of one study directory, and its index.html."""
    study_dir = Path(study_dir)
    if view_points is None:
        view_points = views.study_view_points(study_dir)
    out_dir = Path(out_dir) if out_dir is not None else study_dir / "figures"
    rep = report.Report(out_dir=out_dir)
    failures = load.load_failures(study_dir)
    try:
        df = load.load_results(study_dir, FIGURE_COLUMNS, cache=True, on_unreadable=rep.skip_file)
    except UserError as e:
        if failures.empty and not rep.unreadable:
            raise
        df = pd.DataFrame()
        rep.skip("every figure", str(e))
    if len(df):
        _draw_frame(df, study_dir, out_dir, rep, traversal_jobs, efficiency_score, view_points)
    studies = sorted(df["study"].dropna().astype(str).unique()) if "study" in df else []
    title = f"Study {', '.join(studies) or study_dir.name}"
    tables = report.summary_tables(df, failures)
    report.write_index(rep, title, tables, out_dir / "index.html")
    rep.indexes.append(out_dir / "index.html")
    return rep


def _representations(w: pd.DataFrame) -> list[str]:
    reps = w["representation"].dropna().astype(str).unique()
    return sorted(reps, key=lambda r: (REPRESENTATION_ORDER.get(r, 9), r))


def _draw_frame(df: pd.DataFrame, study_dir: Path, out_dir: Path, rep: report.Report,
                traversal_jobs, efficiency_score: str, view_points: int) -> None:
    hp_cols = load.hyperparameter_columns(df)
    w = downstream.with_efficiency(load.wide(df))
    w = pd.concat([w, distributions.settings(w, hp_cols)], axis=1)
    group_keys = w[["dataset", "dataset_source"]].astype(str).drop_duplicates()
    for dataset, source in sorted(map(tuple, group_keys.to_numpy())):
        wd = w[(w["dataset"].astype(str) == dataset) & (w["dataset_source"].astype(str) == source)]
        section = f"{dataset} ({source})"
        folder = out_dir / slug(f"{dataset}-{source}")
        for representation in _representations(wd):
            wr = wd[wd["representation"].astype(str) == representation]
            _per_representation(wr, representation, section, folder, rep, efficiency_score)
        _total_correlation(wd, section, folder, rep)
        _kl(wd, section, folder, rep)
    higgins_table1.draw(w, out_dir, rep)
    _traversals(w, study_dir, out_dir, rep, traversal_jobs, view_points)


def _present(w: pd.DataFrame, columns: dict[str, str]) -> dict[str, str]:
    return {c: n for c, n in columns.items() if c in w and w[c].notna().any()}


def _per_representation(wr: pd.DataFrame, representation: str, section: str, folder: Path,
                        rep: report.Report, efficiency_score: str) -> None:
    n = wr["job_id"].nunique()
    scores = _present(wr, score_columns(wr.columns))
    what = f"{representation} representation"
    # Fig. 2: rank correlation between scores.
    if len(scores) < 2:
        rep.skip(f"score rank correlation ({what})",
                 f"needs at least 2 disentanglement scores, found {len(scores)}", section)
    elif n < heatmaps.MIN_MODELS:
        rep.skip(f"score rank correlation ({what})",
                 f"needs at least {heatmaps.MIN_MODELS} models, found {n}", section)
    else:
        m = heatmaps.rank_correlation(wr, list(scores)).rename(index=scores, columns=scores)
        path = heatmaps.draw_heatmap(
            m, folder / f"{representation}-score_rank_correlation.png",
            f"{section}, {representation}: rank correlation ({n} models)")
        rep.add(path, f"Spearman rank correlation ×100 between the disentanglement scores of "
                      f"{n} models, {what} (Locatello et al. 2019, Fig. 2). n/a: a score is "
                      f"constant, or fewer than {heatmaps.MIN_MODELS} models have both.", section, what)
    # Fig. 5: scores vs downstream accuracy and efficiency.
    targets = _present(wr, downstream_columns(wr.columns))
    if not scores or not targets:
        rep.skip(f"scores vs downstream ({what})",
                 "needs disentanglement scores and downstream_lr/downstream_gbt results", section)
    elif n < heatmaps.MIN_MODELS:
        rep.skip(f"scores vs downstream ({what})",
                 f"needs at least {heatmaps.MIN_MODELS} models, found {n}", section)
    else:
        m = heatmaps.rank_correlation(wr, list(scores), list(targets))
        path = heatmaps.draw_heatmap(
            m.rename(index=scores, columns=targets),
            folder / f"{representation}-scores_vs_downstream.png",
            f"{section}, {representation}: scores vs downstream ({n} models)",
            xlabel="downstream test accuracy (training samples) and efficiency")
        rep.add(path, "Spearman rank correlation ×100 between each score and the downstream "
                      "test accuracy of logistic regression (LR) and gradient-boosted trees (GBT) "
                      "trained on 10 to 10000 samples, and their efficiency (accuracy with 100 "
                      f"samples / with 10000), {what} (Locatello et al. 2019, Fig. 5).", section, what)
    # Fig. 6: efficiency vs one score.
    _efficiency(wr, representation, section, folder, rep, efficiency_score, scores)
    # Distributions and variance shares.
    shares = {}
    for col, name in scores.items():
        path = distributions.draw_violins(
            wr, col, name, folder / f"{representation}-violins-{slug(col)}.png",
            f"{section}, {representation}: {name}")
        rep.add(path, f"{name} per method and per hyperparameter setting ({what}); dots are "
                      "models (one per seed), lines medians.", section, what)
        d = wr.dropna(subset=[col])
        shares[name] = distributions.variance_decomposition(d[col], d["model"], d["setting"])
    if scores:
        replicated = wr.groupby([wr["model"].astype(str), wr["setting"]]).size().max() >= 2
        table = pd.DataFrame(shares).T.dropna()
        if not replicated:
            rep.skip(f"variance explained ({what})",
                     "no hyperparameter setting has 2 or more seeds: seed variance is not "
                     "identifiable", section)
        elif table.empty:
            rep.skip(f"variance explained ({what})", "every score is constant", section)
        else:
            path = distributions.draw_variance_shares(
                table, folder / f"{representation}-variance_explained.png",
                f"{section}, {representation}: what explains a score")
            rep.add(path, "Share of each score's variance across models explained by the "
                          "method, by the hyperparameter setting within the method, and by the "
                          f"random seed (the rest; nested ANOVA), {what}.", section, what)
    else:
        rep.skip(f"score distributions ({what})", "no disentanglement scores", section)


def _efficiency(wr, representation, section, folder, rep, efficiency_score, scores) -> None:
    what = f"efficiency vs score ({representation} representation)"
    eff_col = next((c for c in ("downstream_gbt.efficiency", "downstream_lr.efficiency")
                    if c in wr and wr[c].notna().any()), None)
    if eff_col is None:
        rep.skip(what, "no downstream efficiency (needs 100- and 10000-sample accuracies)",
                 section)
        return
    if efficiency_score in scores:
        col = efficiency_score
    elif scores:
        col = next(iter(scores))
    else:
        rep.skip(what, "no disentanglement scores", section)
        return
    name = scores[col]
    pairs = wr[[col, eff_col]].dropna()
    if len(pairs) < 2:
        rep.skip(what, f"needs at least 2 models with {name} and efficiency, found "
                       f"{len(pairs)}", section)
        return
    path = downstream.draw_efficiency_scatter(
        wr, col, name, eff_col, folder / f"{representation}-efficiency_vs_{slug(col)}.png",
        f"{section}, {representation}")
    note = "" if col == efficiency_score else f" ({efficiency_score} absent, first score used)"
    rep.add(path, f"Statistical efficiency of {eff_col.partition('.')[0]} (mean test accuracy "
                  f"with 100 training samples / with 10000, unless the study set other "
                  f"efficiency_sizes) against {name}{note}, one dot per model "
                  f"(Locatello et al. 2019, Fig. 6).", section,
            f"{representation} representation")


def _total_correlation(wd: pd.DataFrame, section: str, folder: Path, rep: report.Report) -> None:
    what = "total correlation, sampled vs mean"
    if TC_COLUMN not in wd:
        rep.skip(what, "no unsupervised.gaussian_total_correlation rows", section)
        return
    mean = wd[(wd["representation"].astype(str) == "mean") & wd[TC_COLUMN].notna()]
    sampled = wd[(wd["representation"].astype(str) == "sampled") & wd[TC_COLUMN].notna()]
    if mean.empty or sampled.empty:
        rep.skip(what, "needs the unsupervised scores of both the mean and the sampled "
                       "representation", section)
        return
    path = distributions.draw_total_correlation(
        mean, sampled, TC_COLUMN, folder / "total_correlation_sampled_vs_mean.png",
        f"{section}: Gaussian total correlation")
    rep.add(path, "Gaussian total correlation of the sampled and of the mean representation per "
                  "method and regularisation strength: regularisation lowers it for the sampled "
                  "representation, not necessarily for the mean one (Locatello et al. 2019, "
                  "Fig. 3).", section, ACROSS_MODELS)


def _kl(wd: pd.DataFrame, section: str, folder: Path, rep: report.Report) -> None:
    kl_cols = [c for c in kl_dim_columns(wd.columns) if wd[c].notna().any()]
    if not kl_cols:
        rep.skip("per-dimension KL", "no training rows with kl_dim_i keys", section)
        return
    jobs = wd.drop_duplicates("job_id").dropna(subset=kl_cols, how="all")
    path = distributions.draw_kl_per_dimension(
        jobs, kl_cols, folder / "kl_per_dimension.png", f"{section}: KL per latent dimension")
    rep.add(path, "KL divergence to the prior per latent dimension of each trained model, sorted "
                  "from largest to smallest and coloured by hyperparameter setting: how many "
                  "dimensions each model keeps active (seeds poster, Fig. 3).", section, ACROSS_MODELS)


def _default_traversal_jobs(w: pd.DataFrame, study_dir: Path) -> list[str]:
    jobs = w.drop_duplicates("job_id")
    jobs = jobs[[(study_dir / "checkpoints" / str(m) / "last.pt").is_file()
                 for m in jobs["model_id"]]]
    jobs = jobs.assign(_order=jobs["setting_order"].map(lambda t: tuple(t)))
    picked = []
    for _, g in jobs.groupby([jobs["dataset"].astype(str), jobs["dataset_source"].astype(str),
                              jobs["model"].astype(str)], sort=True):
        g = g.sort_values(["_order", "seed", "job_id"], na_position="last")
        picked.append(str(g["job_id"].iloc[0]))
    return picked


def _traversals(w: pd.DataFrame, study_dir: Path, out_dir: Path, rep: report.Report,
                traversal_jobs, view_points: int) -> None:
    if traversal_jobs is not None and not list(traversal_jobs):
        return
    if not (study_dir / "checkpoints").is_dir():
        rep.skip("latent traversals", f"no checkpoints under {study_dir / 'checkpoints'}")
        return
    if traversal_jobs is None:
        wanted = _default_traversal_jobs(w, study_dir)
        if not wanted:
            rep.skip("latent traversals", "no job has a checkpoints/<model_id>/last.pt")
            return
    else:
        wanted = list(traversal_jobs)
    jobs = w.drop_duplicates("job_id")
    for ident in wanted:
        match = jobs[(jobs["job_id"].astype(str) == ident) | (jobs["model_id"].astype(str) == ident)]
        if match.empty:
            rep.skip(f"latent traversal of {ident}", "no such job or model id in the store")
            continue
        _traversal(match.iloc[0], study_dir, out_dir, rep, view_points)


def _traversal(job: pd.Series, study_dir: Path, out_dir: Path, rep: report.Report,
               view_points: int) -> None:
    dataset, source = str(job["dataset"]), str(job["dataset_source"])
    section = f"{dataset} ({source})"
    what = f"latent traversal of job {job['job_id']}"
    ckpt = study_dir / "checkpoints" / str(job["model_id"])
    if not (ckpt / "last.pt").is_file():
        rep.skip(what, f"no checkpoint {ckpt / 'last.pt'}", section)
        return
    try:
        model = traversals.load_model(ckpt)
        data = get_dataset(dataset, source)
        obs = data.sample_observations(TRAVERSAL_OBSERVATIONS, np.random.default_rng(0))
    except Exception as e:  # noqa: BLE001 - a missing model or dataset costs one figure, not all
        reason = traceback.format_exception_only(type(e), e)[-1].strip().splitlines()[0]
        rep.skip(what, f"cannot load the model or its data: {reason}", section)
        return
    if not getattr(model, "encodes_observations", True):
        rep.skip(what, f"{job['model']} codes the factors themselves: no encoder or decoder to "
                       "traverse", section)
        return
    if int(model.num_latent) > MAX_TRAVERSAL_DIMS:
        rep.skip(what, f"{int(model.num_latent)} latent dimensions: more than the "
                       f"{MAX_TRAVERSAL_DIMS} rows a traversal draws", section)
        return
    kl_cols = [c for c in kl_dim_columns(job.index) if pd.notna(job[c])]
    order = labels = None
    if kl_cols and len(kl_cols) == int(model.num_latent):
        kl = job[kl_cols].to_numpy(float)
        order = [int(i) for i in np.argsort(-kl, kind="stable")]
        labels = [f"z{i}  KL {kl[i]:.2f}" for i in order]
    setting = "" if job["setting"] == "default" else f", {job['setting']}"
    title = f"{method_name(job['model'])}{setting}, seed {job['seed']}"
    group = f"{title} (job {job['job_id']})"
    path = traversals.draw_traversal(
        model, obs, out_dir / slug(f"{dataset}-{source}") / f"traversal-{slug(job['job_id'])}.png",
        title, dim_order=order, dim_labels=labels)
    rep.add(path, f"Inputs, reconstructions and latent traversals (±2 around the prior mean, "
                  f"one row per dimension{', sorted by KL' if order else ''}) of job "
                  f"{job['job_id']}: {title} (seeds poster, Fig. 2).", section, group)
    views.add_views(rep, model, data, str(job["job_id"]), title, path.parent, section, group,
                    view_points)


def draw_comparison(dir_a: Path, dir_b: Path, out_dir: Path) -> report.Report:
    """Study A against study B, per dataset (by name) and representation both hold: the rank
    correlation between their scores side by side (Locatello et al. 2019, Fig. 2) and the scores
    of matched models (same method, hyperparameters and seed) one against the other; and an
    index.html."""
    a, b = Path(dir_a).name, Path(dir_b).name
    rep = report.Report(out_dir=out_dir)
    frames = []
    for d in (dir_a, dir_b):
        df = load.load_results(d, FIGURE_COLUMNS, cache=True)
        frames.append((downstream.with_efficiency(load.wide(df)), load.hyperparameter_columns(df)))
    (wa, hp_a), (wb, hp_b) = frames
    hp_cols = sorted(set(hp_a) & set(hp_b))  # what only one study records cannot match
    datasets = sorted(set(wa["dataset"].astype(str)) & set(wb["dataset"].astype(str)))
    if not datasets:
        rep.skip(f"comparison of {a} and {b}", "the two studies share no dataset")
    counts = []
    for dataset in datasets:
        da = wa[wa["dataset"].astype(str) == dataset]
        db = wb[wb["dataset"].astype(str) == dataset]
        section = f"{dataset}: {a} vs {b}"
        sources = (f"{a}: {', '.join(sorted(da['dataset_source'].astype(str).unique()))}; "
                   f"{b}: {', '.join(sorted(db['dataset_source'].astype(str).unique()))}")
        reps = [r for r in _representations(da) if r in set(_representations(db))]
        if not reps:
            rep.skip("comparison", "no representation in both studies", section)
        for representation in reps:
            ra = da[da["representation"].astype(str) == representation]
            rb = db[db["representation"].astype(str) == representation]
            sb = _present(rb, score_columns(rb.columns))
            scores = {c: n for c, n in _present(ra, score_columns(ra.columns)).items() if c in sb}
            matched = compare.matched_models(ra, rb, hp_cols, list(scores))
            counts.append({"dataset": dataset, "representation": representation,
                           f"models of {a}": ra["job_id"].nunique(),
                           f"models of {b}": rb["job_id"].nunique(), "matched": len(matched)})
            _compare_heatmaps(ra, rb, scores, (a, b), representation, section, sources,
                              out_dir / slug(dataset), rep)
            what = f"matched models' scores ({representation} representation)"
            if not scores:
                rep.skip(what, "no disentanglement score in both studies", section)
            elif matched.empty:
                rep.skip(what, f"no model of {a} has the method, hyperparameters and seed of "
                               f"one of {b}", section)
            else:
                path = compare.draw_matched_scatter(
                    matched, scores, (a, b),
                    out_dir / slug(dataset) / f"{representation}-matched_scores.png",
                    f"{dataset}, {representation}: {len(matched)} matched models")
                rep.add(path, f"Each score of the {len(matched)} models of {a} (x) and {b} (y) "
                              f"with the same method, hyperparameters and seed on {dataset} "
                              f"({sources}), {representation} representation; dashed: equal "
                              "scores; ρ: Spearman rank correlation of the pairs.", section)
    tables = {"Models per dataset and representation": pd.DataFrame(counts)}
    report.write_index(rep, f"Comparison: {a} vs {b}", tables, out_dir / "index.html")
    rep.indexes.append(out_dir / "index.html")
    return rep


def _compare_heatmaps(ra: pd.DataFrame, rb: pd.DataFrame, scores: dict[str, str],
                      names: tuple[str, str], representation: str, section: str, sources: str,
                      folder: Path, rep: report.Report) -> None:
    what = f"score rank correlation side by side ({representation} representation)"
    n = (ra["job_id"].nunique(), rb["job_id"].nunique())
    if len(scores) < 2:
        rep.skip(what, f"needs at least 2 scores in both studies, found {len(scores)}", section)
        return
    if min(n) < heatmaps.MIN_MODELS:
        rep.skip(what, f"needs at least {heatmaps.MIN_MODELS} models in each study, found "
                       f"{n[0]} and {n[1]}", section)
        return
    mats = [heatmaps.rank_correlation(r, list(scores)).rename(index=scores, columns=scores)
            for r in (ra, rb)]
    path = heatmaps.draw_heatmap_pair(
        mats[0], mats[1], (f"{names[0]} ({n[0]} models)", f"{names[1]} ({n[1]} models)"),
        folder / f"{representation}-score_rank_correlation-side_by_side.png",
        f"{section}, {representation}: rank correlation")
    rep.add(path, f"Spearman rank correlation ×100 between the disentanglement scores in each "
                  f"study ({sources}), {representation} representation (Locatello et al. 2019, "
                  "Fig. 2), side by side.", section)
