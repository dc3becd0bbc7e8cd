"""DC-IGN (Kulkarni et al. 2015) and the ground_truth baseline (Higgins et al. 2017, Table 1): the
one-factor batch sampler, the latent blocks, the clamping forward and its gradient rule, training
through the normal loop (resume, packing), and the ground truth's representation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_training import assert_bitwise_equal, weights

from benchmark.data.synthetic import IdentityData, XYObject
from benchmark.errors import UserError
from benchmark.metrics.suite import evaluate
from benchmark.models.baselines import normalised_factors
from benchmark.models.dc_ign import clamp_to_batch_mean, invariance_penalty, latent_blocks
from benchmark.packing import train_pack
from benchmark.settings import TrainingSettings
from benchmark.training import DataStream, load_trained, train

SMALL = dict(batch_size=8, eval_batches=2, log_every=3, num_latent=6, learning_rate=1e-3,
             architecture="fc")


def tiny() -> XYObject:
    """16x16 grey squares: x 6, y 6, scale 2."""
    return XYObject(size=16, spacing=2, square_sizes=(3, 5), channels=1, name="xy16")


# ----------------------------------------------------------------------------- the batch sampler

@pytest.mark.parametrize("rng", [np.random.default_rng(3), np.random.RandomState(3)])
def test_one_factor_varies_batches_vary_only_that_factor(rng):
    data = IdentityData((3, 6, 10, 8, 5))
    seen = set()
    for _ in range(200):
        k, factors = data.sample_one_factor_varies(64, rng)
        assert factors.shape == (64, 5) and factors.dtype == np.int64
        for j in range(5):
            if j != k:
                assert (factors[:, j] == factors[0, j]).all(), (k, j)
        assert len(np.unique(factors[:, k])) > 1  # 64 draws of a factor of >= 3 values
        assert (factors >= 0).all() and (factors < np.array(data.factor_sizes)).all()
        seen.add(k)
    assert seen == set(range(5))


def test_one_factor_batches_are_reproducible_from_the_stream_state():
    data = tiny()
    a = DataStream(data, 8, np.random.default_rng(5), torch.device("cpu"))
    b = DataStream(data, 8, np.random.default_rng(5), torch.device("cpu"))
    xa, ka = a.one_factor_varies()
    xb, kb = b.one_factor_varies()
    assert ka == kb and torch.equal(xa, xb) and xa.shape == (8, 1, 16, 16)


# ----------------------------------------------------------------------------- latent blocks

def test_latent_blocks_split_num_latent_across_the_factors():
    assert latent_blocks(10, 5).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    # not a multiple: the first num_latent mod K factors get one unit more
    assert latent_blocks(7, 3).tolist() == [0, 0, 0, 1, 1, 2, 2]
    with pytest.raises(UserError, match="num_latent >= the dataset's 3 factors"):
        latent_blocks(2, 3)


# ----------------------------------------------------------------------------- clamping

def test_clamp_sets_units_outside_the_block_to_the_batch_mean():
    u = torch.randn(16, 6, generator=torch.Generator().manual_seed(0))
    keep = torch.tensor([False, False, True, True, False, False])
    out = clamp_to_batch_mean(u, keep)
    assert torch.equal(out[:, keep], u[:, keep])
    mean = u.mean(0)
    for j in np.flatnonzero(~keep.numpy()):
        assert torch.allclose(out[:, j], mean[j].expand(16))


def test_gradient_rule_replaces_the_clamped_units_gradient_by_their_deviation_from_the_mean():
    n, s = 16, 0.25
    g = torch.Generator().manual_seed(1)
    u = torch.randn(n, 6, generator=g, requires_grad=True)
    w = torch.randn(n, 6, generator=g)  # a downstream loss with a different gradient at every unit
    keep = torch.tensor([False, True, True, False, False, False])
    loss = (w * clamp_to_batch_mean(u, keep)).pow(2).sum() + s * invariance_penalty(u, keep)
    loss.backward()
    with torch.no_grad():
        clamped = clamp_to_batch_mean(u, keep)
        downstream = 2 * w * w * clamped  # d/dc (w·c)² at the clamp's output
        deviation = u - u.mean(0, keepdim=True)
    # block kept: the downstream gradient, unchanged
    assert torch.allclose(u.grad[:, keep], downstream[:, keep])
    # clamped units: only s·(u − ū)/N (our losses are batch means; the paper's loss is a sum)
    assert torch.allclose(u.grad[:, ~keep], s * deviation[:, ~keep] / n, atol=1e-7)


def test_dc_ign_system_clamps_both_heads_and_reports_the_invariance_term():
    data = tiny()
    cfg = TrainingSettings(steps=1, **SMALL)
    model = train("dc_ign", {}, data, seed=0, config=cfg)
    system = model.system
    assert system.blocks.tolist() == [0, 0, 1, 1, 2, 2]
    x = torch.from_numpy(data.sample_observations_from_factors(
        data.sample_one_factor_varies(8, np.random.default_rng(0))[1], 0))
    keep = torch.tensor([False, False, True, True, False, False])
    with torch.no_grad():
        t = system.terms(x, torch.zeros(8, 6), 0, system.coefficients(0), keep)
        mean, logvar = system.encoder(x)
    for head in ("_mean", "_logvar"):  # what reaches the decoder and the KL
        v = t[head]
        assert torch.allclose(v[:, ~keep], v[:, ~keep].mean(0).expand(8, -1))
    assert torch.equal(t["_mean"][:, keep], mean[:, keep])
    expected = invariance_penalty(mean, keep) + invariance_penalty(logvar, keep)
    assert float(t["invariance_loss"]) == pytest.approx(float(expected), rel=1e-6)
    assert float(t["loss"]) == pytest.approx(float(t["reconstruction_loss"] + t["kl_loss"]
                                                   + 0.01 * expected), rel=1e-6)


# ----------------------------------------------------------------------------- the training loop

def test_dc_ign_trains_resumes_bitwise_and_packs(tmp_path):
    data = tiny()
    full = train("dc_ign", {}, data, seed=2, config=TrainingSettings(steps=8, **SMALL))
    assert np.isfinite(list(full.summary.values())).all()
    assert "invariance_loss" in full.summary and "kl_dim_5" in full.summary
    codes = full.represent("mean")(data.sample_observations(4, 0))
    assert codes.shape == (4, 6) and full.has_posterior
    half = TrainingSettings(steps=4, checkpoint_every=4, **SMALL)
    train("dc_ign", {}, data, seed=2, config=half, checkpoint_dir=tmp_path / "ck")
    resumed = train("dc_ign", {}, data, seed=2, config=TrainingSettings(steps=8, checkpoint_every=4,
                                                                        **SMALL),
                    checkpoint_dir=tmp_path / "ck")
    assert_bitwise_equal(weights(full), weights(resumed))
    # a pack trains each model as train() does (CPU: train()'s own kernels)
    packed = train_pack("dc_ign", [{}, {"invariance_strength": 1.0}], data, [2, 3],
                        TrainingSettings(steps=8, **SMALL))
    assert_bitwise_equal(weights(full), weights(packed[0]))
    alone = train("dc_ign", {"invariance_strength": 1.0}, data, seed=3,
                  config=TrainingSettings(steps=8, **SMALL))
    assert_bitwise_equal(weights(alone), weights(packed[1]))


def test_dc_ign_needs_a_dataset_with_factors():
    class NoFactors:
        observation_shape = (1, 16, 16)

        def sample_observations(self, n, rng):
            return np.zeros((n, 1, 16, 16), np.float32)

    with pytest.raises(UserError, match="ground-truth factors"):
        train("dc_ign", {}, NoFactors(), seed=0, config=TrainingSettings(steps=2, **SMALL))


# ----------------------------------------------------------------------------- ground truth

def test_ground_truth_codes_are_the_normalised_factors(tmp_path):
    data = tiny()
    model = train("ground_truth", {}, data, seed=0, config=TrainingSettings(**SMALL),
                  checkpoint_dir=tmp_path)
    assert model.num_latent == 3 and not model.encodes_observations and not model.has_posterior
    factors = np.array([[0, 0, 0], [5, 2, 1], [3, 5, 0]])
    mean, sampled = model.represent("mean"), model.represent("sampled", seed=4)
    assert np.array_equal(mean.of_factors(factors), [[0, 0, 0], [1, 0.4, 1], [0.6, 1, 0]])
    assert np.array_equal(sampled.of_factors(factors), mean.of_factors(factors))
    with pytest.raises(UserError, match="not observations"):
        mean(data.sample_observations(2, 0))
    again = load_trained(tmp_path)  # its checkpoint records the factor sizes
    assert again.num_latent == 3 and np.array_equal(again.represent("mean").of_factors(factors),
                                                    mean.of_factors(factors))
    assert normalised_factors(np.array([[0, 0]]), (1, 2)).tolist() == [[0.0, 0.0]]  # size 1: 0


def test_ground_truth_is_every_metrics_ceiling():
    data = tiny()
    model = train("ground_truth", {}, data, seed=0, config=TrainingSettings(**SMALL))
    rows = evaluate(data, {"mean": model.represent("mean"), "sampled": model.represent("sampled")},
                    seed=0, metrics=["beta_vae", "mig"],
                    overrides={"beta_vae": {"batch_size": 16, "num_train": 200, "num_eval": 100},
                               "mig": {"num_train": 2000}})
    got = {(r["representation"], r["metric"], r["key"]): r["value"] for r in rows}
    for rep in ("mean", "sampled"):
        assert got[(rep, "beta_vae", "eval_accuracy")] == 1.0
        assert got[(rep, "mig", "discrete_mig")] > 0.9
    assert got[("mean", "mig", "discrete_mig")] == got[("sampled", "mig", "discrete_mig")]
