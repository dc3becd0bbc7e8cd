"""Architectures (dlib shapes, TF "same" padding) and the METHODS registry's validation."""

from __future__ import annotations

import pytest
import torch

from benchmark.errors import UserError
from benchmark.models import METHODS, validate_params
from benchmark.models.architectures import (
    ConvEncoder,
    DeconvDecoder,
    FCDiscriminator,
    init_weights,
    tf_same_padding,
)
from benchmark.models.base import BuildContext


def test_tf_same_padding_matches_tensorflow_rule():
    assert tf_same_padding(64, 4, 2) == (1, 1)
    assert tf_same_padding(16, 2, 2) == (0, 0)
    assert tf_same_padding(5, 4, 2) == (1, 2)  # odd total: the extra pixel goes after, as TF


def test_conv_encoder_decoder_shapes_and_parameter_count():
    enc, dec = ConvEncoder(3, 10), DeconvDecoder(10, 3)
    shapes = []
    h = torch.zeros(2, 3, 64, 64)
    for layer in enc.convs:
        h = layer(h)
        shapes.append(tuple(h.shape[1:]))
    assert shapes[::2] == [(32, 32, 32), (32, 16, 16), (64, 8, 8), (64, 4, 4)]
    mean, logvar = enc(torch.zeros(2, 3, 64, 64))
    assert mean.shape == logvar.shape == (2, 10)
    assert dec(mean).shape == (2, 3, 64, 64)
    # dlib's conv_encoder: conv weights+biases, dense 1024->256, two heads 256->10
    n_enc = (4*4*3*32 + 32) + (4*4*32*32 + 32) + (2*2*32*64 + 64) + (2*2*64*64 + 64) \
        + (1024*256 + 256) + 2 * (256*10 + 10)
    assert sum(p.numel() for p in enc.parameters()) == n_enc
    n_dec = (10*256 + 256) + (256*1024 + 1024) + (4*4*64*64 + 64) + (4*4*64*32 + 32) \
        + (4*4*32*32 + 32) + (4*4*32*3 + 3)
    assert sum(p.numel() for p in dec.parameters()) == n_dec


def test_discriminator_probs_are_clipped():
    disc = FCDiscriminator(10)
    assert len([m for m in disc.body if isinstance(m, torch.nn.Linear)]) == 6
    with torch.no_grad():
        disc.logits.bias.copy_(torch.tensor([100.0, -100.0]))
    with torch.no_grad():
        _, probs = disc(torch.zeros(4, 10))
    assert float(probs.max()) == pytest.approx(1 - 1e-6) and float(probs.min()) == pytest.approx(1e-6)


def test_init_is_glorot_uniform_zero_bias_and_seeded():
    a, b = ConvEncoder(1, 10), ConvEncoder(1, 10)
    init_weights(a, torch.Generator().manual_seed(0))
    init_weights(b, torch.Generator().manual_seed(0))
    for (k, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), k
    assert float(a.dense.bias.detach().abs().max()) == 0.0
    limit = (6 / (1024 + 256)) ** 0.5
    w = float(a.dense.weight.detach().abs().max())
    assert 0.9 * limit < w <= limit


def test_validate_params_fills_defaults():
    assert validate_params("beta_vae", {}) == {"beta": 1.0}
    assert validate_params("beta_vae", {"beta": 4}) == {"beta": 4.0}
    assert validate_params("annealed_vae", {"c_max": 5}) == {
        "c_max": 5.0, "gamma": 1000.0, "iteration_threshold": 100000}
    assert validate_params("dip_vae_i", {})["lambda_d_factor"] == 10.0
    assert validate_params("dip_vae_ii", {})["lambda_d_factor"] == 1.0
    assert validate_params("factor_vae", {})["shuffle"] == "same_batch"
    assert validate_params("factor_vae", {})["discriminator_learning_rate"] == 1e-4


def test_factor_vae_discriminator_rate_is_its_own():
    # dlib's study fixes the discriminator's Adam rate at 1e-4 whatever the VAE's learning rate.
    ctx = BuildContext((1, 16, 16), 3, "fc", "bernoulli", learning_rate=1e-3, batch_size=8)
    for params, rate in [({}, 1e-4), ({"discriminator_learning_rate": 3e-5}, 3e-5)]:
        system = METHODS["factor_vae"].build(ctx, validate_params("factor_vae", params))
        opts = system.make_optimizers()
        assert opts["vae"].param_groups[0]["lr"] == 1e-3
        assert opts["discriminator"].param_groups[0]["lr"] == rate
    with pytest.raises(UserError, match="discriminator_learning_rate"):
        validate_params("factor_vae", {"discriminator_learning_rate": 0.0})


@pytest.mark.parametrize("method,params,match", [
    ("nope", {}, "unknown method 'nope'"),
    ("beta_vae", {"gamma": 1.0}, "unknown hyperparameter 'gamma'"),
    ("beta_vae", {"beta": "big"}, "'beta'.*must be float"),
    ("beta_vae", {"beta": True}, "'beta'.*must be float"),
    ("beta_vae", {"beta": -1.0}, "'beta'.*>= 0"),
    ("annealed_vae", {"iteration_threshold": 1.5}, "'iteration_threshold'.*must be int"),
    ("factor_vae", {"shuffle": "other"}, "'shuffle'.*one of"),
])
def test_validate_params_errors_are_one_line_and_name_the_problem(method, params, match):
    with pytest.raises(UserError, match=match) as err:
        validate_params(method, params)
    assert "\n" not in str(err.value)


def test_study_methods_are_registered():
    for name in ["beta_vae", "annealed_vae", "factor_vae", "dip_vae_i", "dip_vae_ii", "beta_tc_vae",
                 "vae"]:
        assert name in METHODS
