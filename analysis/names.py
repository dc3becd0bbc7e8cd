"""Names as the papers write them, and which ``metric.key`` columns are the scores.

Locatello et al. (ICML 2019), Fig. 2, compares six disentanglement scores: BetaVAE Score,
FactorVAE Score, MIG, DCI Disentanglement, Modularity and SAP. Their result keys follow
disentanglement_lib (docs/dlib.md).
"""

from __future__ import annotations

import re

# (metric, key) → the score's name in the paper, in the paper's order; then the additions.
SCORES: dict[str, str] = {
    "beta_vae.eval_accuracy": "BetaVAE Score",
    "factor_vae.eval_accuracy": "FactorVAE Score",
    "mig.discrete_mig": "MIG",
    "dci.disentanglement": "DCI Disentanglement",
    "modularity_explicitness.modularity_score": "Modularity",
    "sap.SAP_score": "SAP",
    "irs.IRS": "IRS",
    "aam.aam": "AAM",
    "aam.AAM": "AAM",
    "aam.discrete_aam": "AAM",
    "mmig.mmig": "MMIG",
    "mmig.MMIG": "MMIG",
    "mmig.discrete_mmig": "MMIG",
    # the opt-in exact-data estimators (Chen et al. 2018), rows of representation "posterior"
    "mig_exact.mig_exact": "MIG (exact)",
    "aam_exact.aam_exact": "AAM (exact)",
    "mmig_exact.mmig_exact": "MMIG (exact)",
}
# Metrics whose keys are not disentanglement scores (they get their own figures).
NON_SCORE_METRICS = frozenset({"train", "downstream_lr", "downstream_gbt", "unsupervised"})

METHODS: dict[str, str] = {
    "beta_vae": "β-VAE", "betavae": "β-VAE", "vae": "VAE",
    "annealed_vae": "AnnealedVAE", "factor_vae": "FactorVAE",
    "dip_vae_i": "DIP-VAE-I", "dip_vae_ii": "DIP-VAE-II",
    "beta_tc_vae": "β-TCVAE", "beta_tcvae": "β-TCVAE", "betatcvae": "β-TCVAE",
    "pca": "PCA", "ica": "ICA", "fast_ica": "ICA", "raw_pixels": "raw pixels",
    "untrained_encoder": "untrained encoder", "denoising_ae": "denoising AE",
    "sparse_ae": "sparse AE", "infogan": "InfoGAN", "dc_ign": "DC-IGN",
    "ground_truth": "ground truth",
}
HYPERPARAMETERS: dict[str, str] = {
    "beta": "β", "gamma": "γ", "c_max": "C_max", "lambda_od": "λ_od", "lambda_d": "λ_d",
    "lambda_d_factor": "λ_d factor", "rho": "ρ", "noise_level": "noise", "info_weight": "λ_info",
}
PREDICTORS: dict[str, str] = {"downstream_lr": "LR", "downstream_gbt": "GBT"}
TC_COLUMN = "unsupervised.gaussian_total_correlation"
_KL_DIM = re.compile(r"^train\.kl_dim_(\d+)$")


def method_name(model: str) -> str:
    """The method as the paper writes it (``beta_vae`` → ``β-VAE``); unknown names unchanged."""
    return METHODS.get(str(model), str(model))


def hyperparameter_name(column: str) -> str:
    """The hyperparameter's symbol (``beta`` → ``β``); unknown names unchanged."""
    return HYPERPARAMETERS.get(column, column)


def score_columns(columns) -> dict[str, str]:
    """The disentanglement-score columns among ``columns`` ("metric.key") → display name, in the
    paper's order, then other single-score metrics not known here (named by their metric)."""
    cols = [str(c) for c in columns if "." in str(c)]  # "metric.key"; id columns have no dot
    known = {c: SCORES[c] for c in SCORES if c in cols}
    ordered = {c: known[c] for c in SCORES if c in known}
    by_metric: dict[str, list[str]] = {}
    for c in cols:
        metric, _, _ = c.partition(".")
        by_metric.setdefault(metric, []).append(c)
    seen_metrics = {c.partition(".")[0] for c in ordered}
    for metric in sorted(by_metric):
        if metric in NON_SCORE_METRICS or metric in seen_metrics:
            continue
        keys = by_metric[metric]
        if len(keys) == 1:  # an unknown metric with one key: that key is its score
            ordered[keys[0]] = metric.upper() if len(metric) <= 4 else metric
    # Two keys mapped to one name (e.g. aam.aam and aam.AAM): keep the first.
    unique: dict[str, str] = {}
    for c, name in ordered.items():
        if name not in unique.values():
            unique[c] = name
    return unique


def downstream_columns(columns) -> dict[str, str]:
    """Downstream test-accuracy and efficiency columns → label ("LR 100", "GBT Eff."), ordered
    LR then GBT, sample sizes ascending, efficiency last (Locatello et al. Fig. 5)."""
    cols = {str(c) for c in columns}
    out: dict[str, str] = {}
    for metric, short in PREDICTORS.items():
        sizes = sorted(
            int(m.group(1)) for c in cols
            if (m := re.fullmatch(rf"{metric}\.(\d+):mean_test_accuracy", c))
        )
        for s in sizes:
            out[f"{metric}.{s}:mean_test_accuracy"] = f"{short} {s}"
    for metric, short in PREDICTORS.items():
        if f"{metric}.efficiency" in cols:
            out[f"{metric}.efficiency"] = f"{short} Eff."
    return out


def kl_dim_columns(columns) -> list[str]:
    """``train.kl_dim_i`` columns ordered by i."""
    found = [(int(m.group(1)), str(c)) for c in columns if (m := _KL_DIM.match(str(c)))]
    return [c for _, c in sorted(found)]


def slug(text: str) -> str:
    """A file-name-safe form of ``text``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "_"
