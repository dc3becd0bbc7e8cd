"""`training.precision` and the execution options (`channels_last`, `compile`): ids, training,
checkpoints, restoration of the process's settings, packs.

Measured on the CPU (bench/results/precision_cpu.txt): bf16 moves losses and scores by about as
much as another thread count does; the packed loop strategy in bf16 is bitwise `train()` in bf16
(the same kernels in the same order), asserted below.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from conftest import tiny_spec
from test_models_toydata import Squares

from benchmark.errors import UserError
from benchmark.packing import train_pack
from benchmark.settings import TrainingSettings
from benchmark.spec import expand, load_spec
from benchmark.training import AUTOCAST_LAYERS, Diverged, load_trained, train

SMALL = dict(batch_size=8, eval_batches=2, log_every=3)


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.system.state_dict().items()}


def bitwise(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _jobs(write_spec, name, **training):
    spec = tiny_spec(training={"steps": 4, "batch_size": 8, "checkpoint_every": 2, **training})
    return expand(load_spec(write_spec(spec, name)))


def test_default_precision_and_execution_options_keep_every_id(write_spec):
    base = _jobs(write_spec, "base.yaml")
    for i, extra in enumerate([{"precision": "fp32"}, {"channels_last": True},
                               {"compile": "inductor"}]):
        same = _jobs(write_spec, f"same{i}.yaml", **extra)
        assert [j.job_id for j in same] == [j.job_id for j in base]
        assert [j.model_id for j in same] == [j.model_id for j in base]
        assert all("precision" not in j.config()["training"] for j in same)


def test_bf16_is_another_model(write_spec):
    base, bf16 = _jobs(write_spec, "base.yaml"), _jobs(write_spec, "bf16.yaml", precision="bf16")
    assert not {j.model_id for j in base} & {j.model_id for j in bf16}
    assert all(j.config()["training"]["precision"] == "bf16" for j in bf16)


@pytest.mark.parametrize("training,match", [({"precision": "tf32"}, "tf32' is not offered"),
                                            ({"compile": "cudagraphs"}, "not offered"),
                                            ({"precision": "fp16"}, "precision")])
def test_options_not_validated_are_not_offered_to_a_spec(write_spec, training, match):
    with pytest.raises(UserError, match=match) as err:
        _jobs(write_spec, "x.yaml", **training)
    assert "\n" not in str(err.value)


def _process_state() -> tuple:
    return (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"),
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
            torch.get_float32_matmul_precision())


def _hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.system.modules())


def test_bf16_trains_records_its_precision_and_resumes_only_in_bf16(tmp_path):
    d = Squares(64, 3)
    before = _process_state()
    losses: list[float] = []
    cfg = TrainingSettings(steps=6, checkpoint_every=3, precision="bf16", **SMALL)
    model = train("beta_vae", {}, d, seed=0, config=cfg, checkpoint_dir=tmp_path,
                  progress=lambda s, t, m: losses.append(m["loss"]))
    assert len(losses) == 2 and np.isfinite(losses).all()
    assert _process_state() == before and _hooks(model) == 0
    fp32 = train("beta_vae", {}, d, seed=0, config=TrainingSettings(steps=6, **SMALL))
    assert not bitwise(model, fp32)  # bf16 did act
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ck["config"]["precision"] == "bf16"
    with pytest.raises(UserError, match="precision='bf16', not 'fp32'"):
        train("beta_vae", {}, d, seed=0, config=TrainingSettings(steps=9, checkpoint_every=3, **SMALL),
              checkpoint_dir=tmp_path)
    resumed = train("beta_vae", {}, d, seed=0, config=TrainingSettings(
        steps=9, checkpoint_every=3, precision="bf16", **SMALL), checkpoint_dir=tmp_path)
    assert resumed.steps == 9
    # evaluation is fp32 whatever the training precision: the model encodes as a freshly loaded one
    obs = d.sample_observations(5, 0)
    np.testing.assert_array_equal(resumed.represent("mean")(obs),
                                  load_trained(tmp_path).represent("mean")(obs))


def test_a_checkpoint_from_before_precision_existed_resumes_as_fp32(tmp_path):
    d = Squares(16, 4)
    train("beta_vae", {}, d, seed=0, config=TrainingSettings(steps=2, **SMALL), checkpoint_dir=tmp_path)
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    for key in ("precision", "channels_last", "compile"):
        del ck["config"][key]
    torch.save(ck, tmp_path / "last.pt")
    assert train("beta_vae", {}, d, seed=0, config=TrainingSettings(steps=4, **SMALL),
                 checkpoint_dir=tmp_path).steps == 4
    with pytest.raises(UserError, match="precision='fp32', not 'bf16'"):
        train("beta_vae", {}, d, seed=0, config=TrainingSettings(steps=6, precision="bf16", **SMALL),
              checkpoint_dir=tmp_path)


class NaNAfter(Squares):
    def __init__(self, after: int) -> None:
        super().__init__(64, 3)
        self.calls, self.after = 0, after

    def sample_observations(self, n, rng):
        self.calls += 1
        x = super().sample_observations(n, rng)
        return x * np.nan if self.calls > self.after else x


def test_a_failed_bf16_job_leaves_the_process_as_it_was():
    before = _process_state()
    with pytest.raises(Diverged):
        train("beta_vae", {}, NaNAfter(3), seed=0,
              config=TrainingSettings(steps=8, precision="bf16", **SMALL))
    assert _process_state() == before


@pytest.mark.parametrize("method,sweep", [("beta_vae", [{"beta": 1.0}, {"beta": 8.0}]),
                                          ("factor_vae", [{"gamma": 10.0}, {"gamma": 40.0}])])
def test_packed_bf16_loop_is_bitwise_bf16_alone(method, sweep):
    d = Squares(64, 3)
    cfg = TrainingSettings(steps=6, precision="bf16", **SMALL)
    packed = train_pack(method, sweep, d, [0, 1], cfg, strategy="loop")
    for p, (params, seed) in zip(packed, zip(sweep, [0, 1]), strict=True):
        assert bitwise(p, train(method, params, d, seed, cfg))
        assert _hooks(p) == 0


def test_packed_bf16_vmap_trains_and_restores():
    before = _process_state()
    cfg = TrainingSettings(steps=4, precision="bf16", **SMALL)
    packed = train_pack("beta_tc_vae", [{"beta": 1.0}, {"beta": 6.0}], Squares(64, 3), [0, 1], cfg,
                        strategy="vmap")
    assert all(np.isfinite(p.summary["loss"]) for p in packed)
    assert _process_state() == before and all(_hooks(p) == 0 for p in packed)


def test_autocast_covers_every_layer_of_the_study_architectures():
    from benchmark.models import validate_params
    from benchmark.training import build_system

    system = build_system("factor_vae", validate_params("factor_vae", {}), (1, 64, 64),
                          TrainingSettings(), 0)
    weighted = [m for m in system.modules() if any(True for _ in m.parameters(recurse=False))]
    assert weighted and all(isinstance(m, AUTOCAST_LAYERS) for m in weighted)


def test_channels_last_trains_and_gives_contiguous_weights_back():
    d = Squares(64, 3)
    model = train("beta_vae", {}, d, 0, TrainingSettings(steps=4, channels_last=True, **SMALL))
    assert all(w.is_contiguous() for w in weights(model).values())
    assert model.execution == {"channels_last": True}
    plain = train("beta_vae", {}, d, 0, TrainingSettings(steps=4, **SMALL))
    for k, w in weights(plain).items():  # kernel choice only: rounding, not another model
        torch.testing.assert_close(weights(model)[k], w, rtol=0, atol=1e-5)


def test_cuda_graphs_are_refused_off_cuda():
    with pytest.raises(UserError, match="needs a CUDA device") as err:
        train("beta_vae", {}, Squares(16, 4), 0,
              TrainingSettings(steps=1, compile="cudagraphs", device="cpu", **SMALL))
    assert "\n" not in str(err.value)


def test_a_failing_compile_is_one_logged_reason_and_eager_training(monkeypatch, caplog):
    def broken(fn, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("no C++ compiler\nfound")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    d = Squares(64, 3)
    cfg = TrainingSettings(steps=4, compile="inductor", **SMALL)
    with caplog.at_level(logging.WARNING, logger="benchmark.training"):
        model = train("beta_vae", {}, d, 0, cfg)
    assert "not applied, trains eager: torch.compile failed: RuntimeError: no C++ compiler found" \
        in caplog.text
    assert model.execution["compile"].startswith("off (torch.compile failed")
    assert "objectives" not in vars(model.system)
    assert bitwise(model, train("beta_vae", {}, d, 0, TrainingSettings(steps=4, **SMALL)))


def test_compile_is_not_applied_to_methods_with_their_own_step_nor_to_packs(caplog):
    d = Squares(64, 3)
    cfg = TrainingSettings(steps=2, compile="inductor", **SMALL)
    with caplog.at_level(logging.INFO):
        ae = train("denoising_ae", {}, d, 0, cfg)
        packed = train_pack("beta_vae", [{}, {}], d, [0, 1], cfg)
    assert "own training step" in ae.execution["compile"]
    bf16 = train("beta_vae", {}, d, 0, TrainingSettings(steps=2, compile="inductor", precision="bf16",
                                                        **SMALL))
    assert "autocast" in bf16.execution["compile"] and "objectives" not in vars(bf16.system)
    assert all(p.execution["compile"] == "not applied (packed)" for p in packed)


@pytest.mark.slow
def test_compiled_training_is_fp32_training_up_to_rounding():
    """torch.compile for real (a C++ compiler is needed on the CPU: about a minute)."""
    d = Squares(64, 3)
    cfg = dict(steps=6, **SMALL)
    compiled = train("annealed_vae", {}, d, 0, TrainingSettings(compile="inductor", **cfg))
    assert compiled.execution == {"compile": "inductor"}
    assert "objectives" not in vars(compiled.system)
    eager = train("annealed_vae", {}, d, 0, TrainingSettings(**cfg))
    assert compiled.summary["loss"] == pytest.approx(eager.summary["loss"], rel=1e-4)


@pytest.mark.slow
def test_a_compile_that_fails_in_the_backward_pass_trains_eager():
    """FactorVAE's two backward passes through one compiled graph (retain_graph) are refused by
    torch.compile's donated buffers: the probe meets it, not the job."""
    d = Squares(64, 3)
    model = train("factor_vae", {}, d, 0, TrainingSettings(steps=4, compile="inductor", **SMALL))
    assert model.execution["compile"] == "inductor" or "torch.compile failed" in model.execution["compile"]
    assert np.isfinite(model.summary["loss"])
