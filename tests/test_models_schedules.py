"""β-VAE with β annealed from high to low (`beta_schedule`): the schedule's values, the registry's
filled-in params (constant β-VAE jobs keep their ids), training, resume and packing."""

from __future__ import annotations

import math

import pytest
import torch
from test_models_toydata import Squares
from test_training import assert_bitwise_equal, weights

from benchmark.errors import UserError
from benchmark.models import validate_params
from benchmark.models.losses import scheduled_beta
from benchmark.packing import train_pack
from benchmark.settings import TrainingSettings
from benchmark.training import train

SMALL = dict(batch_size=8, eval_batches=2, log_every=3)
LINEAR = {"beta_schedule": "linear", "beta_start": 50.0, "beta_end": 2.0, "anneal_steps": 4}


def test_schedule_values():
    assert [scheduled_beta("linear", 10.0, 2.0, s, 4) for s in (0, 1, 2, 4, 9)] == [10, 8, 6, 2, 2]
    exp = [scheduled_beta("exponential", 100.0, 1.0, s, 4) for s in (0, 2, 4, 7)]
    assert exp == pytest.approx([100.0, 10.0, 1.0, 1.0])
    assert scheduled_beta("exponential", 100.0, 1.0, 1, 4) == pytest.approx(10 ** 1.5)
    assert scheduled_beta("linear", 1.0, 3.0, 1, 2) == 2.0  # a warm-up (low to high) works too
    with pytest.raises(ValueError, match="schedule"):
        scheduled_beta("cosine", 1.0, 1.0, 0, 1)


def test_constant_schedule_leaves_the_params_as_they_were():
    # job ids hash the filled-in params: constant β-VAE jobs must not see the new settings
    assert validate_params("beta_vae", {}) == {"beta": 1.0}
    assert validate_params("beta_vae", {"beta_schedule": "constant", "beta": 4}) == {"beta": 4.0}
    assert validate_params("beta_vae", {"beta_schedule": "exponential"}) == {
        "beta_schedule": "exponential", "beta_start": 100.0, "beta_end": 1.0, "anneal_steps": 100000}


@pytest.mark.parametrize("params,match", [
    ({"beta_schedule": "linear", "beta": 3}, "applies only with beta_schedule"),
    ({"beta_end": 3}, "applies only with beta_schedule"),
    ({"beta_schedule": "cosine"}, "must be one of"),
    ({"beta_schedule": "exponential", "beta_end": 0}, "> 0"),
    ({"beta_schedule": "linear", "anneal_steps": 0}, "anneal_steps"),
])
def test_bad_schedule_is_one_line_user_error(params, match):
    with pytest.raises(UserError, match=match) as err:
        validate_params("beta_vae", params)
    assert "\n" not in str(err.value)


def test_scheduled_training_uses_the_current_beta_and_reports_it():
    d = Squares(16, 4)
    cfg = TrainingSettings(steps=6, **SMALL)
    model = train("beta_vae", LINEAR, d, seed=0, config=cfg)
    s = model.summary
    assert s["beta"] == 2.0  # past anneal_steps: beta_end
    assert s["regularizer"] == pytest.approx(2.0 * s["kl_loss"], rel=1e-5)
    # the schedule changes the training: not β-VAE at the final β, nor at the first
    for beta in (2.0, 50.0):
        other = train("beta_vae", {"beta": beta}, d, seed=0, config=cfg)
        assert "beta" not in other.summary
        assert not torch.equal(weights(model)["encoder.means.weight"],
                               weights(other)["encoder.means.weight"])
    mid = train("beta_vae", {**LINEAR, "anneal_steps": 12}, d, seed=0, config=cfg)
    assert mid.summary["beta"] == 26.0 and math.isfinite(mid.summary["loss"])


def test_scheduled_is_deterministic_and_resumes_bitwise(tmp_path):
    d, n = Squares(16, 4), 3  # the schedule crosses the resume point (anneal_steps 4)
    full = train("beta_vae", LINEAR, d, seed=1,
                 config=TrainingSettings(steps=2 * n, checkpoint_every=n, **SMALL))
    again = train("beta_vae", LINEAR, d, seed=1,
                  config=TrainingSettings(steps=2 * n, checkpoint_every=n, **SMALL))
    assert_bitwise_equal(weights(full), weights(again))
    train("beta_vae", LINEAR, d, seed=1, config=TrainingSettings(steps=n, checkpoint_every=n, **SMALL),
          checkpoint_dir=tmp_path)
    resumed = train("beta_vae", LINEAR, d, seed=1,
                    config=TrainingSettings(steps=2 * n, checkpoint_every=n, **SMALL), checkpoint_dir=tmp_path)
    assert_bitwise_equal(weights(full), weights(resumed))
    assert resumed.summary == full.summary


def test_pack_of_scheduled_and_constant_models_is_bitwise_train():
    # per-model coefficient: each model's own β at each step, whatever its schedule
    data = Squares(16, 4)
    cfg = TrainingSettings(steps=6, **SMALL)
    sweep = [LINEAR, {"beta": 4.0}, {**LINEAR, "beta_schedule": "exponential"}]
    packed = train_pack("beta_vae", sweep, data, [0, 1, 2], cfg, strategy="loop")
    for p, s, m in zip(sweep, [0, 1, 2], packed, strict=True):
        alone = train("beta_vae", p, data, s, cfg)
        assert_bitwise_equal(weights(m), weights(alone))
        assert m.summary == alone.summary
