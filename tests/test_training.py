"""Training loop: determinism, checkpoint/resume equivalence, divergence guard, API of the result."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_models_toydata import Squares

from benchmark.errors import UserError
from benchmark.settings import TrainingSettings
from benchmark.training import (
    Diverged,
    configure_allocator,
    load_trained,
    train,
)

SMALL = dict(batch_size=8, eval_batches=2, log_every=3)


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.system.state_dict().items()}


def assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_same_seed_same_weights_different_seed_different():
    d = Squares(16, 4)
    cfg = TrainingSettings(steps=5, **SMALL)
    a, b = train("beta_vae", {}, d, seed=3, config=cfg), train("beta_vae", {}, d, seed=3, config=cfg)
    c = train("beta_vae", {}, d, seed=4, config=cfg)
    assert_bitwise_equal(weights(a), weights(b))
    assert a.summary == b.summary
    assert not torch.equal(weights(a)["encoder.means.weight"], weights(c)["encoder.means.weight"])


def test_training_does_not_touch_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train("beta_vae", {}, Squares(16, 4), seed=0, config=TrainingSettings(steps=2, **SMALL))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("method", ["beta_vae", "factor_vae"])
def test_resume_equals_uninterrupted(tmp_path, method):
    d = Squares(16, 4)
    n = 4
    full = train(method, {}, d, seed=1, config=TrainingSettings(steps=2 * n, checkpoint_every=n, **SMALL))
    # stop at n (the run finishes and checkpoints), then resume the same job to 2n
    train(method, {}, d, seed=1, config=TrainingSettings(steps=n, checkpoint_every=n, **SMALL),
          checkpoint_dir=tmp_path)
    resumed = train(method, {}, d, seed=1, config=TrainingSettings(steps=2 * n, checkpoint_every=n, **SMALL),
                    checkpoint_dir=tmp_path)
    assert resumed.steps == full.steps == 2 * n
    assert_bitwise_equal(weights(full), weights(resumed))
    assert resumed.summary == full.summary


def test_killed_run_resumes_from_periodic_checkpoint(tmp_path):
    d = Squares(16, 4)
    cfg = TrainingSettings(steps=9, checkpoint_every=3, **{**SMALL, "log_every": 1})
    full = train("beta_tc_vae", {"beta": 4}, d, seed=2, config=cfg)

    def killer(step, total, metrics):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("beta_tc_vae", {"beta": 4}, d, seed=2, config=cfg, checkpoint_dir=tmp_path,
              progress=killer)
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ck["step"] == 3 and ck["summary"] is None
    resumed = train("beta_tc_vae", {"beta": 4}, d, seed=2, config=cfg, checkpoint_dir=tmp_path)
    assert_bitwise_equal(weights(full), weights(resumed))
    # a finished job is not retrained: same object state straight from the checkpoint
    again = train("beta_tc_vae", {"beta": 4}, d, seed=2, config=cfg, checkpoint_dir=tmp_path)
    assert again.summary == resumed.summary
    assert_bitwise_equal(weights(again), weights(resumed))
    assert not list(tmp_path.glob("*.tmp"))


def test_checkpoint_of_other_job_is_refused(tmp_path):
    d = Squares(16, 4)
    cfg = TrainingSettings(steps=2, **SMALL)
    train("beta_vae", {"beta": 2}, d, seed=0, config=cfg, checkpoint_dir=tmp_path)
    with pytest.raises(UserError, match="beta"):
        train("beta_vae", {"beta": 4}, d, seed=0, config=cfg, checkpoint_dir=tmp_path)
    with pytest.raises(UserError, match="seed"):
        train("beta_vae", {"beta": 2}, d, seed=1, config=cfg, checkpoint_dir=tmp_path)


class NaNAfter(Squares):
    """Returns NaN images from the `after`-th call of sample_observations on."""

    def __init__(self, after: int) -> None:
        super().__init__(16, 4)
        self.calls, self.after = 0, after

    def sample_observations(self, n, rng):
        x = super().sample_observations(n, rng)
        self.calls += 1
        return x * np.nan if self.calls > self.after else x


def test_divergence_guard_reports_step_and_keeps_last_good_checkpoint(tmp_path):
    cfg = TrainingSettings(steps=20, checkpoint_every=2, **SMALL)
    with pytest.raises(Diverged) as err:
        train("beta_vae", {}, NaNAfter(7), seed=0, config=cfg, checkpoint_dir=tmp_path)
    assert err.value.step == 7  # the 8th iteration (step index 7) saw the first NaN loss
    assert "nan" in str(err.value)
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ck["step"] == 6
    assert all(torch.isfinite(v).all() for v in ck["model"].values())


def test_trained_model_api(tmp_path):
    d = Squares(16, 4)
    model = train("beta_vae", {"beta": 2}, d, seed=0,
                  config=TrainingSettings(steps=3, num_latent=4, **SMALL), checkpoint_dir=tmp_path)
    keys = {"reconstruction_loss", "kl_loss", "regularizer", "elbo", "loss"}
    assert keys | {f"kl_dim_{i}" for i in range(4)} == set(model.summary)
    s = model.summary
    # dlib's train_results.elbo: -(reconstruction + KL), the ELBO itself (its graph negates it).
    assert s["elbo"] == pytest.approx(-(s["reconstruction_loss"] + s["kl_loss"]))
    assert s["kl_loss"] == pytest.approx(sum(s[f"kl_dim_{i}"] for i in range(4)), rel=1e-5)
    assert s["regularizer"] == pytest.approx(2 * s["kl_loss"], rel=1e-5)
    obs = d.sample_observations(10, 0)
    mean = model.represent("mean")(obs)
    assert mean.shape == (10, 4) and np.array_equal(mean, model.represent("mean")(obs))
    s1, s2 = model.represent("sampled", seed=5), model.represent("sampled", seed=5)
    a = s1(obs)
    assert np.array_equal(a, s2(obs)) and not np.array_equal(a, mean)
    assert not np.array_equal(a, s1(obs))  # fresh noise per call
    loaded = load_trained(tmp_path)
    assert loaded.num_latent == 4 and loaded.steps == 3 and loaded.summary == model.summary
    np.testing.assert_array_equal(loaded.represent("mean")(obs), mean)
    img = loaded.decode(np.zeros((2, 4), np.float32))
    assert img.shape == (2, 1, 16, 16) and img.min() >= 0 and img.max() <= 1
    assert loaded.reconstruct(obs).shape == obs.shape
    with pytest.raises(UserError, match="shape"):
        model.represent("mean")(obs[:, :, :8])
    with pytest.raises(UserError, match="representation"):
        model.represent("median")


def test_conv_architecture_trains_on_64x64(tmp_path):
    d = Squares(64, 3)
    model = train("beta_vae", {}, d, seed=0, config=TrainingSettings(steps=2, **SMALL))
    assert type(model.system.encoder).__name__ == "ConvEncoder"
    assert model.represent("mean")(d.sample_observations(3, 0)).shape == (3, 10)


def test_bad_config_and_params_raise_user_errors():
    d = Squares(16, 4)
    with pytest.raises(UserError, match="batch_size"):
        train("beta_vae", {}, d, seed=0, config=TrainingSettings(batch_size=0))
    with pytest.raises(UserError, match="conv"):
        train("beta_vae", {}, d, seed=0, config=TrainingSettings(steps=1, architecture="conv"))
    with pytest.raises(UserError, match="gamma"):
        train("beta_vae", {"gamma": 1}, d, seed=0, config=TrainingSettings(steps=1))
    with pytest.raises(UserError, match="seed"):
        train("beta_vae", {}, d, seed=-1, config=TrainingSettings(steps=1))


def test_train_config_from_dict():
    assert TrainingSettings.from_dict({"steps": 5}).steps == 5
    with pytest.raises(UserError, match="'stepz'"):
        TrainingSettings.from_dict({"stepz": 5})
    with pytest.raises(UserError, match="architecture"):
        TrainingSettings.from_dict({"architecture": "mlp"})


def test_configure_allocator_sets_env(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    out = configure_allocator()
    import os
    assert os.environ["MALLOC_MMAP_THRESHOLD_"] == "33554432"
    assert out["env"] is True


def test_checkpoints_keep_the_previous_one_and_resume_from_it(tmp_path):
    d = Squares(16, 4)
    cfg = TrainingSettings(steps=6, checkpoint_every=2, **SMALL)
    full = train("beta_vae", {}, d, seed=1, config=cfg)

    def stop_at_5(step, total, metrics):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("beta_vae", {}, d, seed=1, config=TrainingSettings(steps=6, checkpoint_every=2,
              **{**SMALL, "log_every": 1}), checkpoint_dir=tmp_path, progress=stop_at_5)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    prev = torch.load(tmp_path / "prev.pt", weights_only=True)
    assert (prev["step"], last["step"]) == (2, 4)
    # last.pt gone (set aside as unreadable): resume from prev.pt, same weights as in one go.
    (tmp_path / "last.pt").unlink()
    resumed = train("beta_vae", {}, d, seed=1, config=cfg, checkpoint_dir=tmp_path)
    assert_bitwise_equal(weights(full), weights(resumed))
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_checkpoint_that_does_not_read_back_replaces_nothing(tmp_path, monkeypatch):
    import benchmark.training as training

    d = Squares(16, 4)
    cfg = TrainingSettings(steps=2, **SMALL)
    train("beta_vae", {}, d, seed=0, config=cfg, checkpoint_dir=tmp_path)
    good = (tmp_path / "last.pt").read_bytes()
    monkeypatch.setattr(training.torch, "save", lambda obj, f: f.write(b"half a checkpoint"))
    with pytest.raises(UserError, match="cannot read checkpoint"):
        training._atomic_save({"x": 1}, tmp_path / "last.pt")
    assert (tmp_path / "last.pt").read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_unreadable_checkpoints_are_named(tmp_path):
    from benchmark.training import unreadable_checkpoints

    d = Squares(16, 4)
    train("beta_vae", {}, d, seed=0, config=TrainingSettings(steps=4, checkpoint_every=2, **SMALL),
          checkpoint_dir=tmp_path)
    assert unreadable_checkpoints(tmp_path) == []
    data = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(data[:len(data) // 2])
    ((path, why),) = unreadable_checkpoints(tmp_path)
    assert path == tmp_path / "last.pt" and why.startswith("cannot read checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint"):  # train alone does not guess
        train("beta_vae", {}, d, seed=0, config=TrainingSettings(steps=4, **SMALL),
              checkpoint_dir=tmp_path)


@pytest.mark.parametrize("other,match", [
    (dict(method="factor_vae"), "method='beta_vae'"),
    (dict(config=TrainingSettings(steps=2, architecture="fc", **SMALL)), "architecture='conv'"),
])
def test_a_checkpoint_of_another_method_or_architecture_is_refused_in_one_line(tmp_path, other,
                                                                                match):
    d = Squares(64, 3)
    train("beta_vae", {}, d, seed=0, config=TrainingSettings(steps=2, architecture="conv", **SMALL),
          checkpoint_dir=tmp_path)
    kwargs = {"method": "beta_vae", "config": TrainingSettings(steps=2, architecture="conv", **SMALL),
              **other}
    with pytest.raises(UserError, match=match) as err:
        train(kwargs["method"], {}, d, seed=0, config=kwargs["config"], checkpoint_dir=tmp_path)
    assert "\n" not in str(err.value)
