"""Information Dropout (Achille & Soatto 2018): its loss against a hand computation, its
representations, determinism, bitwise resume, packing and a bad hyperparameter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_models_methods import curve
from test_models_toydata import Squares
from test_training import assert_bitwise_equal, weights

from benchmark.errors import UserError
from benchmark.models import validate_params
from benchmark.packing import train_pack
from benchmark.settings import TrainingSettings
from benchmark.training import build_system, train

SMALL = dict(batch_size=8, eval_batches=2, log_every=3)


def softplus(v):
    return math.log1p(math.exp(v))


def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def test_loss_matches_a_hand_computation():
    d = Squares(16, 4)
    cfg = TrainingSettings(num_latent=2, batch_size=2)
    system = build_system("information_dropout", {"beta": 3.0, "max_alpha": 0.5}, d.observation_shape,
                          cfg, seed=0)
    with torch.no_grad():
        system.prior_mean.fill_(0.2)
        system.prior_log_sigma.fill_(math.log(1.5))
    x = torch.from_numpy(d.sample_observations(2, 0))
    eps = torch.tensor([[0.3, -1.2], [2.0, 0.1]])
    with torch.no_grad():
        t = system.terms(x, eps, 0, system.coefficients(0))
        h, a = (v.double().numpy() for v in system.encoder(x))
        logits = system.decoder(
            torch.tensor([[softplus(h[n, j]) * math.exp((0.001 + 0.5 * sigmoid(a[n, j])) * float(eps[n, j]))
                           for j in range(2)] for n in range(2)], dtype=torch.float32))
    kl = recon = 0.0
    for n in range(2):
        for j in range(2):
            f, alpha = softplus(h[n, j]), 0.001 + 0.5 * sigmoid(a[n, j])
            mu, sigma = 0.2, 1.5  # KL(N(log f, α²) ‖ N(μ, σ²))
            kl += -math.log(alpha / sigma) + (alpha ** 2 + (math.log(f) - mu) ** 2) / (2 * sigma ** 2) - 0.5
        p = 1.0 / (1.0 + np.exp(-logits[n].double().numpy()))
        xn = x[n].double().numpy()
        recon += -(xn * np.log(p) + (1 - xn) * np.log(1 - p)).sum()
    kl, recon = kl / 2, recon / 2
    assert float(t["kl_loss"]) == pytest.approx(kl, rel=1e-5)
    assert float(t["reconstruction_loss"]) == pytest.approx(recon, rel=1e-5)
    assert float(t["loss"]) == pytest.approx(recon + 3.0 * kl, rel=1e-5)
    assert float(t["elbo"]) == pytest.approx(-(recon + kl), rel=1e-5)


def test_trains_and_represents():
    model, losses = curve("information_dropout")
    assert np.isfinite(losses).all()
    assert losses[-5:].mean() < 0.9 * losses[:5].mean(), (losses[:5], losses[-5:])
    s = model.summary
    assert s["kl_loss"] == pytest.approx(sum(s[f"kl_dim_{i}"] for i in range(10)), rel=1e-5)
    obs = Squares(16, 4).sample_observations(6, 0)
    mean = model.represent("mean")(obs)
    assert mean.shape == (6, 10) and (mean > 0).all()  # softplus activations
    sampled = model.represent("sampled", seed=1)(obs)
    assert np.array_equal(sampled, model.represent("sampled", seed=1)(obs))
    assert not np.array_equal(sampled, mean) and (sampled > 0).all()
    # log-normal noise capped at max_alpha: |log(z / f)| = α|ε| < 0.701·|ε|
    assert np.abs(np.log(sampled / mean)).max() < 0.701 * 6
    assert not model.has_posterior  # log-normal posterior: no Gaussian q(z|x) for the MI metrics


def test_deterministic_and_resumes_bitwise(tmp_path):
    d, n, p = Squares(16, 4), 3, {"beta": 2.0}
    cfg = lambda steps: TrainingSettings(steps=steps, checkpoint_every=n, **SMALL)  # noqa: E731
    full = train("information_dropout", p, d, seed=1, config=cfg(2 * n))
    again = train("information_dropout", p, d, seed=1, config=cfg(2 * n))
    assert_bitwise_equal(weights(full), weights(again))
    train("information_dropout", p, d, seed=1, config=cfg(n), checkpoint_dir=tmp_path)
    resumed = train("information_dropout", p, d, seed=1, config=cfg(2 * n), checkpoint_dir=tmp_path)
    assert_bitwise_equal(weights(full), weights(resumed))
    assert resumed.summary == full.summary
    assert not torch.equal(weights(full)["prior_log_sigma"], torch.zeros(()))  # the prior is learned


def test_loop_pack_is_bitwise_train():
    data, cfg = Squares(16, 4), TrainingSettings(steps=4, **SMALL)
    sweep = [{"beta": b} for b in (1.0, 4.0, 16.0)]
    packed = train_pack("information_dropout", sweep, data, [0, 1, 2], cfg, strategy="loop")
    for p, s, m in zip(sweep, [0, 1, 2], packed, strict=True):
        alone = train("information_dropout", p, data, s, cfg)
        assert_bitwise_equal(weights(m), weights(alone))
        assert m.summary == alone.summary


def test_bad_max_alpha_is_one_line_user_error():
    with pytest.raises(UserError, match="max_alpha") as err:
        validate_params("information_dropout", {"max_alpha": 0})
    assert "\n" not in str(err.value)
