"""Sparse coding (Olshausen & Field 1996), a fitted baseline: deterministic, sparse codes, a finished
fit is reloaded (not refitted), "sampled" = "mean", a bad hyperparameter is a one-line error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_models_toydata import Squares
from test_training import assert_bitwise_equal, weights

from benchmark.errors import UserError
from benchmark.models import validate_params
from benchmark.settings import TrainingSettings
from benchmark.training import load_trained, train

CFG = TrainingSettings(num_latent=6, fit_samples=300, eval_batches=2, batch_size=16)


class CountingFits(Squares):
    def __init__(self):
        super().__init__(16, 4)
        self.calls = 0

    def sample_observations(self, n, rng):
        self.calls += n == CFG.fit_samples
        return super().sample_observations(n, rng)


def test_deterministic_sparse_codes_and_sampled_is_mean():
    d = Squares(16, 4)
    a = train("sparse_coding", {"alpha": 0.5}, d, seed=0, config=CFG)
    b = train("sparse_coding", {"alpha": 0.5}, d, seed=0, config=CFG)
    assert a.steps == 0 and not a.has_posterior
    assert_bitwise_equal(weights(a), weights(b))
    assert a.summary == b.summary
    obs = d.sample_observations(40, 1)
    codes = a.represent("mean")(obs)
    assert codes.shape == (40, 6)
    np.testing.assert_array_equal(codes, b.represent("mean")(obs))
    np.testing.assert_array_equal(a.represent("sampled", seed=3)(obs), codes)
    # the L1 penalty zeroes codes, more of them the larger alpha
    sparse = train("sparse_coding", {"alpha": 2.0}, d, seed=0, config=CFG).represent("mean")(obs)
    assert 0 < (sparse != 0).mean() < (codes != 0).mean() < 1
    assert a.summary["code_nonzero_fraction"] < 1
    other = train("sparse_coding", {"alpha": 0.5}, d, seed=1, config=CFG)
    assert not torch.equal(weights(a)["dictionary"], weights(other)["dictionary"])


def test_dictionary_atoms_reconstruct():
    d = Squares(16, 2)  # 8 distinct images
    model = train("sparse_coding", {"alpha": 0.01}, d, seed=0,
                  config=TrainingSettings(num_latent=8, fit_samples=300, eval_batches=2, batch_size=16))
    norms = np.linalg.norm(weights(model)["dictionary"].numpy(), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)  # unit-norm atoms
    obs = d.sample_observations(20, 1)
    assert np.abs(model.reconstruct(obs) - obs).max() < 0.2


def test_finished_fit_is_reloaded_not_refitted(tmp_path):
    d = CountingFits()
    first = train("sparse_coding", {}, d, seed=2, config=CFG, checkpoint_dir=tmp_path)
    assert d.calls == 1
    again = train("sparse_coding", {}, d, seed=2, config=CFG, checkpoint_dir=tmp_path)
    assert d.calls == 1  # resumed from the finished checkpoint
    assert_bitwise_equal(weights(first), weights(again))
    assert again.summary == first.summary
    obs = d.sample_observations(10, 0)
    np.testing.assert_array_equal(load_trained(tmp_path).represent("mean")(obs),
                                  first.represent("mean")(obs))
    with pytest.raises(UserError, match="alpha"):  # another job's checkpoint is refused
        train("sparse_coding", {"alpha": 3.0}, d, seed=2, config=CFG, checkpoint_dir=tmp_path)


def test_bad_alpha_is_one_line_user_error():
    with pytest.raises(UserError, match="alpha") as err:
        validate_params("sparse_coding", {"alpha": 0})
    assert "\n" not in str(err.value)
