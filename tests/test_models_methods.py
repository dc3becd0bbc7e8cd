"""Every method trains (its loss goes down on tiny data), the baselines fit, FactorVAE's dlib options."""

from __future__ import annotations

import numpy as np
import pytest
from test_models_toydata import Squares

from benchmark.models import METHODS
from benchmark.settings import TrainingSettings
from benchmark.training import train

GRADIENT_METHODS = ["beta_vae", "vae", "annealed_vae", "factor_vae", "dip_vae_i", "dip_vae_ii",
                    "beta_tc_vae", "denoising_ae", "sparse_ae", "information_dropout"]
FITTED = ["pca", "fast_ica", "raw_pixels", "untrained_encoder", "sparse_coding"]
FACTOR_METHODS = ["dc_ign", "ground_truth"]  # use the dataset's factors: tests/test_models_dc_ign.py


def test_registry_lists_every_method():
    assert set(METHODS) == set(GRADIENT_METHODS + FITTED + FACTOR_METHODS + ["infogan"])


def curve(method, params=None, steps=40, key="loss", data=None, **cfg):
    seen = []
    cfg = {"batch_size": 16, "learning_rate": 1e-3, "eval_batches": 1, "log_every": 1, **cfg}
    model = train(method, params or {}, data or Squares(16, 4), seed=0,
                  config=TrainingSettings(steps=steps, **cfg),
                  progress=lambda step, total, m: seen.append(m[key]))
    return model, np.array(seen)


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_each_method_lowers_its_loss(method):
    params = {"beta": 4.0} if method == "beta_tc_vae" else {}
    model, losses = curve(method, params)
    assert np.isfinite(losses).all()
    assert losses[-5:].mean() < 0.9 * losses[:5].mean(), (losses[:5], losses[-5:])
    assert model.represent("mean")(Squares(16, 4).sample_observations(4, 0)).shape == (4, 10)


def test_infogan_learns_to_recover_its_codes():
    model, info = curve("infogan", steps=60, key="info_loss")
    assert info[-10:].mean() < info[:10].mean() - 1.0
    codes = model.represent("mean")(Squares(16, 4).sample_observations(4, 0))
    assert codes.shape == (4, 10)
    assert model.decode(codes).shape == (4, 1, 16, 16)


def test_conv_methods_run_on_64x64():
    d = Squares(64, 3)
    for method in ["beta_tc_vae", "factor_vae", "infogan", "sparse_ae"]:
        _, losses = curve(method, steps=3, data=d, batch_size=4)
        assert np.isfinite(losses).all()


class Counting(Squares):
    def __init__(self):
        super().__init__(16, 4)
        self.calls = 0

    def sample_observations(self, n, rng):
        self.calls += 1
        return super().sample_observations(n, rng)


@pytest.mark.parametrize("params,iterations", [
    ({}, 5),  # dlib: the global step advances twice per iteration
    ({"steps_per_iteration": 1}, 10),
    ({"shuffle": "second_batch", "steps_per_iteration": 1}, 20),  # Kim & Mnih: two batches
])
def test_factor_vae_step_counting_and_shuffle_options(params, iterations):
    d = Counting()
    model = train("factor_vae", params, d, seed=0,
                  config=TrainingSettings(steps=10, batch_size=8, eval_batches=0))
    assert model.steps == 10
    assert d.calls == iterations


def test_pca_reconstructs_low_rank_data_and_is_deterministic():
    d = Squares(16, 2)  # 8 distinct images: rank <= 8 < 10 components
    cfg = TrainingSettings(fit_samples=300, eval_batches=2, batch_size=16)
    model = train("pca", {}, d, seed=0, config=cfg)
    assert model.steps == 0
    assert model.summary["reconstruction_mse"] < 1e-6
    obs = d.sample_observations(20, 1)
    np.testing.assert_allclose(model.reconstruct(obs), obs, atol=1e-4)
    again = train("pca", {}, d, seed=0, config=cfg)
    np.testing.assert_array_equal(model.represent("mean")(obs), again.represent("mean")(obs))
    np.testing.assert_array_equal(model.represent("sampled", seed=1)(obs), model.represent("mean")(obs))


def test_fast_ica_codes_are_white():
    d = Squares(16, 4)
    model = train("fast_ica", {}, d, seed=0,
                  config=TrainingSettings(num_latent=4, fit_samples=2000, eval_batches=1))
    codes = model.represent("mean")(d.sample_observations(4000, 7))
    np.testing.assert_allclose(np.cov(codes.T), np.eye(4), atol=0.15)


def test_raw_pixels_and_untrained_encoder():
    d = Squares(16, 4)
    obs = d.sample_observations(5, 0)
    raw = train("raw_pixels", {}, d, seed=0, config=TrainingSettings(eval_batches=0))
    assert raw.num_latent == 256
    np.testing.assert_array_equal(raw.represent("mean")(obs), obs.reshape(5, -1))
    cfg = TrainingSettings(steps=0, eval_batches=1, batch_size=8)
    untrained = train("untrained_encoder", {}, d, seed=3, config=cfg)
    vae0 = train("beta_vae", {}, d, seed=3, config=cfg)
    assert untrained.steps == 0
    np.testing.assert_array_equal(untrained.represent("mean")(obs), vae0.represent("mean")(obs))
    assert "kl_dim_0" in untrained.summary


def test_untrained_encoder_samples_but_pca_does_not():
    # The untrained encoder keeps its random log-variance head: "sampled" is not its mean, unlike
    # the deterministic baselines (README, Models and training).
    d = Squares(16, 4)
    obs = d.sample_observations(6, 0)
    cfg = TrainingSettings(steps=0, eval_batches=1, batch_size=8, num_latent=4, fit_samples=64)
    untrained = train("untrained_encoder", {}, d, seed=3, config=cfg)
    assert untrained.has_posterior
    assert not np.allclose(untrained.represent("sampled", seed=0)(obs), untrained.represent("mean")(obs))
    pca = train("pca", {}, d, seed=3, config=cfg)
    assert not pca.has_posterior
    np.testing.assert_array_equal(pca.represent("sampled", seed=0)(obs), pca.represent("mean")(obs))
