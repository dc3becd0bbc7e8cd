"""Views of a trained model's representation, from its checkpoint (as the traversals).

- A t-SNE map (van der Maaten & Hinton, JMLR 2008) of the mean codes of a few thousand
  observations drawn with a fixed seed from the model's dataset, one small panel per ground-truth
  factor, each point coloured by that factor's value: which factors the representation separates.
- Linear interpolation between the mean codes of pairs of observations, decoded to images: one row
  per pair, the two inputs at its ends.

Both are pure functions of the checkpoint, the dataset and the seeds: the observations come from
``VIEW_DATA_SEED``, t-SNE runs at a fixed ``random_state`` on one thread (scikit-learn's
Barnes-Hut gradient sums over OpenMP threads, whose order is not fixed), so files are
byte-identical run to run. The model follows ``analysis.traversals.TrainedModel``; the dataset has
``sample(n, rng) -> (factors, observations)`` and ``factor_names`` (``benchmark.data``'s
contract). Nothing here imports torch.
"""

from __future__ import annotations

import math
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from analysis import report, style
from analysis.names import slug
from analysis.traversals import TrainedModel, mosaic

MIN_TSNE_POINTS = 10
VIEW_DATA_SEED = 1  # the traversals' observations come from seed 0; any fixed seed would do
TSNE_SEED = 0
TSNE_MAX_DIMENSIONS = 50  # wider codes (raw pixels) go through PCA first, as van der Maaten advises
INTERPOLATION_PAIRS = 5
INTERPOLATION_STEPS = 8


def study_view_points(study_dir: Path) -> int:
    """``figures.view_points`` of the study's ``spec.yaml`` (as ``benchmark run`` stored it), else
    ``DEFAULT_VIEW_POINTS``: a redraw of the figures uses what the run used."""
    import yaml

    from benchmark.spec import DEFAULT_VIEW_POINTS, FigureSettings  # lazy: pydantic

    path = Path(study_dir) / "spec.yaml"
    if not path.is_file():
        return DEFAULT_VIEW_POINTS
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return FigureSettings(**(raw.get("figures") or {})).view_points
    except Exception:  # noqa: BLE001 - a spec this run cannot read costs the setting, not the run
        return DEFAULT_VIEW_POINTS


def tsne_embedding(codes: np.ndarray, seed: int = TSNE_SEED) -> np.ndarray:
    """2-D t-SNE of ``codes`` (N, D) → (N, 2), scikit-learn's Barnes-Hut at its defaults
    (perplexity 30, or (N−1)/3 for few points; PCA initialisation), deterministic: every thread
    pool (OpenMP, BLAS) is held to one thread and ``random_state`` fixed."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = np.asarray(codes, dtype=np.float64)
    with threadpool_limits(limits=1):
        if x.shape[1] > TSNE_MAX_DIMENSIONS:
            x = PCA(TSNE_MAX_DIMENSIONS, svd_solver="full").fit_transform(x)
        perplexity = min(30.0, (x.shape[0] - 1) / 3)
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                    n_jobs=1)
        return tsne.fit_transform(x)


def interpolation_codes(a: np.ndarray, b: np.ndarray, steps: int = INTERPOLATION_STEPS
                        ) -> np.ndarray:
    """Codes on the segment from ``a`` to ``b`` (each (P, D)): (P, steps, D), ends included."""
    t = np.linspace(0.0, 1.0, steps)[None, :, None]
    return (1.0 - t) * a[:, None, :] + t * b[:, None, :]


@style.styled
def draw_tsne(embedding: np.ndarray, factors: np.ndarray, factor_names: list[str],
              factor_sizes: list[int], path: Path, title: str) -> Path:
    """One panel per factor: the embedding (N, 2), points coloured by the factor's value (class
    index, on a scale from 0 to the factor's size − 1)."""
    k = factors.shape[1]
    ncols = k if k <= 5 else math.ceil(k / 2)
    nrows = math.ceil(k / ncols)
    fig, axes = style.new_figure(2.3 * ncols, 2.3 * nrows + 0.5, nrows, ncols)
    for i, ax in enumerate(axes.flat):
        if i >= k:
            ax.set_visible(False)
            continue
        size = int(factor_sizes[i]) if i < len(factor_sizes) else int(factors[:, i].max()) + 1
        points = ax.scatter(embedding[:, 0], embedding[:, 1], c=factors[:, i], cmap="viridis",
                            vmin=0, vmax=max(size - 1, 1), s=3, linewidths=0)
        name = factor_names[i] if i < len(factor_names) else f"factor {i}"
        ax.set_title(f"{name} ({size} values)", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal", adjustable="datalim")
        for side in ax.spines.values():  # t-SNE's axes have no units
            side.set_visible(False)
        bar = fig.colorbar(points, ax=ax, fraction=0.046, pad=0.02)
        bar.ax.tick_params(labelsize=7)
        bar.locator = _integer_locator()
        bar.update_ticks()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return style.save(fig, path)


def _integer_locator():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(nbins=4, integer=True)


@style.styled
def draw_interpolations(model: TrainedModel, pairs: np.ndarray, path: Path, title: str,
                        steps: int = INTERPOLATION_STEPS) -> Path:
    """``pairs`` (P, 2, C, H, W): one row per pair, input A, the decoded codes on the segment
    between the two mean codes (``steps`` of them, ends included), input B."""
    p = pairs.shape[0]
    flat = np.asarray(pairs, dtype=np.float32).reshape(2 * p, *pairs.shape[2:])
    codes = np.asarray(model.represent("mean")(flat)).reshape(p, 2, -1)
    z = interpolation_codes(codes[:, 0], codes[:, 1], steps)
    images = np.asarray(model.decode(z.reshape(p * steps, -1).astype(np.float32)))
    images = images.reshape(p, steps, *images.shape[1:])
    tiles = np.concatenate([pairs[:, :1], images, pairs[:, 1:]], axis=1)
    picture = mosaic(tiles)
    h, w = pairs.shape[3], pairs.shape[4]
    fig = style.plt.figure(figsize=(0.5 * (steps + 2) + 0.8, 0.5 * p + 1.0))
    ax = fig.add_subplot()
    ax.imshow(picture, interpolation="nearest")
    labels = ["A", *(f"{t:.2f}" for t in np.linspace(0.0, 1.0, steps)), "B"]
    ax.set_xticks([(w + 2) * j + w / 2 for j in range(steps + 2)], labels)
    ax.set_yticks([(h + 2) * i + h / 2 for i in range(p)], [f"pair {i + 1}" for i in range(p)])
    ax.set_xlabel("t: decoded (1 − t)·code(A) + t·code(B)")
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title)
    return style.save(fig, path)


def add_views(rep: report.Report, model: TrainedModel, data: Any, job_id: str, title: str,
              folder: Path, section: str, group: str, points: int) -> None:
    """Draw the interpolations and the t-SNE map of one model into ``folder`` and add them to
    ``rep`` (index ``section`` and ``group``) with their captions, or a skip with its reason.
    ``points`` = 0 draws neither."""
    if points <= 0:
        return
    try:
        factors, obs = data.sample(max(points, 2 * INTERPOLATION_PAIRS),
                                   np.random.default_rng(VIEW_DATA_SEED))
        factors, obs = np.asarray(factors), np.asarray(obs, dtype=np.float32)
        codes = np.asarray(model.represent("mean")(obs[:points]), dtype=np.float64)
    except Exception as e:  # noqa: BLE001 - a dataset or model that cannot serve costs two views
        reason = traceback.format_exception_only(type(e), e)[-1].strip().splitlines()[0]
        rep.skip(f"t-SNE and interpolations of job {job_id}",
                 f"cannot draw observations or encode them: {reason}", section)
        return
    name = getattr(data, "name", "the dataset")
    where = (section, group)
    # Interpolations first: beside the (narrow) traversal in the index, the wide t-SNE below.
    pairs = obs[:2 * INTERPOLATION_PAIRS].reshape(INTERPOLATION_PAIRS, 2, *obs.shape[1:])
    try:
        path = draw_interpolations(model, pairs, folder / f"interpolation-{slug(job_id)}.png",
                                   f"Interpolations: {title}")
        rep.add(path, f"Linear interpolation between the mean codes of {INTERPOLATION_PAIRS} "
                      f"pairs of observations of {name} (seed {VIEW_DATA_SEED}), decoded in "
                      f"{INTERPOLATION_STEPS} steps from A to B; the inputs at both ends of each "
                      f"row. Job {job_id}: {title}.", *where)
    except NotImplementedError:
        rep.skip(f"interpolations of job {job_id}", "the model has no decoder", section)
    what = f"t-SNE of the mean codes of job {job_id}"
    if points < MIN_TSNE_POINTS:
        rep.skip(what, f"needs at least {MIN_TSNE_POINTS} observations, the study asks for "
                       f"{points}", section)
    elif not np.isfinite(codes).all():
        rep.skip(what, "the mean codes are not all finite", section)
    elif np.ptp(codes, axis=0).max() == 0:
        rep.skip(what, "every observation has the same mean code", section)
    else:
        path = draw_tsne(tsne_embedding(codes), factors[:points], list(data.factor_names),
                         list(getattr(data, "factor_sizes", ())),
                         folder / f"tsne-{slug(job_id)}.png", f"t-SNE of the mean codes: {title}")
        rep.add(path, f"t-SNE map (scikit-learn, random_state {TSNE_SEED}) of the mean codes of "
                      f"{points} observations drawn from {name} (seed {VIEW_DATA_SEED}), one "
                      "panel per ground-truth factor, each point coloured by the factor's value "
                      "(class index): smooth colour gradients mean the representation keeps "
                      f"that factor. Job {job_id}: {title}.", *where)
