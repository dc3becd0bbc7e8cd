"""Packed training (`benchmark.packing`): each model of a pack is the model `train()` gives alone.

The loop strategy (the CPU default) runs `train()`'s own kernels: bitwise equal, asserted.

The vmap strategy runs batched kernels (grouped convolutions, batched matmuls) whose float sums are
reassociated: after one step a few weights differ by ~1e-6 (Adam's first steps turn rounding noise on
near-zero gradients into updates of up to lr = 1e-4), and these small models are chaotic from there
on. `train()` itself, run with 2 threads instead of 1, differs from itself by as much: after 10
steps, worst model (beta_tc_vae, beta 8, seed 2), the pack moves 0.65 % of the weights by more than a
tenth of an Adam step and its summary loss terms by 4.2e-4 relative; `train()` with 2 threads: 0.64 %
and 4.1e-4 (bench/results/train_pack_cpu.txt has every model). The vmap test therefore compares after
10 steps, where a wrong step, batch, noise or coefficient moves most weights by about one Adam step:
at most MOVED_FRACTION of the weights may differ by more than a tenth of a step (3x the worst
measured) and the loss terms by SUMMARY_RTOL relative (5x). Initial weights and batches: bitwise.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from test_models_toydata import Squares

from benchmark.errors import UserError
from benchmark.models import validate_params
from benchmark.packing import _Pack, train_pack
from benchmark.settings import TrainingSettings
from benchmark.training import Diverged, TrainingRun, _streams, build_system, train

TENTH_STEP, MOVED_FRACTION, SUMMARY_RTOL = 1e-5, 2e-2, 2e-3
LOSS_TERMS = ("reconstruction_loss", "kl_loss", "regularizer", "elbo", "loss")
SMALL = dict(batch_size=8, eval_batches=2, log_every=3)
SEEDS = [0, 1, 2]
# per method, three hyperparameter settings (one per model of the pack)
SWEEPS = {
    "beta_vae": [{"beta": b} for b in (1.0, 4.0, 16.0)],
    "annealed_vae": [{"gamma": g, "c_max": c, "iteration_threshold": 50}
                     for g, c in ((100.0, 5.0), (1000.0, 10.0), (10.0, 25.0))],
    "factor_vae": [{"gamma": g} for g in (10.0, 20.0, 50.0)],
    "dip_vae_i": [{"lambda_od": v} for v in (1.0, 2.0, 5.0)],
    "dip_vae_ii": [{"lambda_od": v, "lambda_d_factor": f} for v, f in ((1.0, 1.0), (2.0, 10.0), (5.0, 2.0))],
    "beta_tc_vae": [{"beta": b} for b in (1.0, 4.0, 8.0)],
}


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.system.state_dict().items()}


def assert_bitwise(a, b) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert a.summary == b.summary and a.steps == b.steps


def moved_fraction(a, b) -> float:
    """Fraction of the weights of a and b that differ by more than a tenth of an Adam step."""
    wa, wb = weights(a), weights(b)
    moved = sum(int(((wa[k] - wb[k]).abs() > TENTH_STEP).sum()) for k in wa)
    return moved / sum(v.numel() for v in wa.values())


def assert_close(a, b) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and a.steps == b.steps
    assert moved_fraction(a, b) <= MOVED_FRACTION
    assert a.summary.keys() == b.summary.keys()
    for k in LOSS_TERMS:
        assert a.summary[k] == pytest.approx(b.summary[k], rel=SUMMARY_RTOL), k


def alone(method, sweep, data, config, dirs=None):
    dirs = dirs or [None] * len(sweep)
    return [train(method, p, data, s, config, checkpoint_dir=d)
            for p, s, d in zip(sweep, SEEDS, dirs, strict=True)]


@pytest.mark.parametrize("method", sorted(SWEEPS))
def test_vmap_pack_equals_models_trained_alone(method):
    data = Squares(64, 3)
    cfg = TrainingSettings(steps=10, batch_size=8, eval_batches=4, log_every=5)
    packed = train_pack(method, SWEEPS[method], data, SEEDS, cfg, strategy="vmap")
    reference = alone(method, SWEEPS[method], data, cfg)
    for p, a in zip(packed, reference, strict=True):
        assert_close(p, a)
    if method == "beta_vae":  # the check has power: one step fewer fails it by far
        fewer = train(method, SWEEPS[method][0], data, SEEDS[0], TrainingSettings(steps=9, **SMALL))
        assert moved_fraction(packed[0], fewer) > 10 * MOVED_FRACTION


@pytest.mark.parametrize("method", sorted(SWEEPS))
def test_loop_pack_is_bitwise_train(method):
    data = Squares(64, 3)
    cfg = TrainingSettings(steps=12, batch_size=8, eval_batches=4, log_every=5)
    packed = train_pack(method, SWEEPS[method], data, SEEDS, cfg, strategy="loop")
    for p, a in zip(packed, alone(method, SWEEPS[method], data, cfg), strict=True):
        assert_bitwise(p, a)


@pytest.mark.parametrize("method,params", [("factor_vae", {"shuffle": "second_batch"}),
                                           ("factor_vae", {"steps_per_iteration": 1})])
def test_loop_pack_is_bitwise_train_other_settings(method, params):
    data = Squares(64, 3)
    cfg = TrainingSettings(steps=8, **SMALL)
    sweep = [{**params, **p} for p in SWEEPS[method]]
    packed = train_pack(method, sweep, data, SEEDS, cfg, strategy="loop")
    for p, a in zip(packed, alone(method, sweep, data, cfg), strict=True):
        assert_bitwise(p, a)


def test_initial_weights_are_bitwise_those_of_build_system():
    data, cfg = Squares(64, 3), TrainingSettings(steps=4, **SMALL)
    runs = [TrainingRun("factor_vae", p, data, s, cfg) for p, s in zip(SWEEPS["factor_vae"], SEEDS)]
    pack = _Pack(runs, [None] * 3, "vmap")
    for k, (p, s) in enumerate(zip(SWEEPS["factor_vae"], SEEDS)):
        own = build_system("factor_vae", validate_params("factor_vae", p), data.observation_shape, cfg,
                           s).state_dict()
        assert own.keys() == pack.params.keys()
        for n, w in own.items():
            assert torch.equal(pack.params[n][k], w), n


class Recording(Squares):
    """Squares that keeps every batch it hands out, per random stream (in order of first use)."""

    def __init__(self) -> None:
        super().__init__(64, 3)
        self.rngs: list = []
        self.batches: list[list[np.ndarray]] = []

    def sample_observations(self, n, rng):
        x = super().sample_observations(n, rng)
        if not any(r is rng for r in self.rngs):
            self.rngs.append(rng)
            self.batches.append([])
        self.batches[next(i for i, r in enumerate(self.rngs) if r is rng)].append(x.copy())
        return x


@pytest.mark.parametrize("strategy", ["vmap", "loop"])
def test_each_model_draws_bitwise_its_own_batches(strategy):
    cfg = TrainingSettings(steps=6, batch_size=8, eval_batches=0, log_every=3)
    sweep = [{"shuffle": "second_batch"}] * 3  # two batches per iteration
    packed_data, alone_data = Recording(), Recording()
    train_pack("factor_vae", sweep, packed_data, SEEDS, cfg, strategy=strategy)
    alone("factor_vae", sweep, alone_data, cfg)
    assert len(packed_data.batches) == len(alone_data.batches) == 3
    for mine, theirs in zip(packed_data.batches, alone_data.batches, strict=True):
        assert len(mine) == len(theirs) == 6  # 3 iterations (2 global steps each) x 2 batches
        for a, b in zip(mine, theirs, strict=True):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("strategy", ["vmap", "loop"])
def test_killed_pack_resumes_every_model_from_its_checkpoint(tmp_path, strategy):
    data = Squares(64, 3)
    cfg = TrainingSettings(steps=9, checkpoint_every=3, **{**SMALL, "log_every": 1})
    sweep = SWEEPS["beta_tc_vae"]
    full = train_pack("beta_tc_vae", sweep, data, SEEDS, cfg, strategy=strategy)
    dirs = [tmp_path / f"m{k}" for k in range(3)]

    def killer(step, total, metrics):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_pack("beta_tc_vae", sweep, data, SEEDS, cfg, checkpoint_dirs=dirs,
                   progress=[None, killer, None], strategy=strategy)
    for d in dirs:
        ck = torch.load(d / "last.pt", weights_only=True)
        assert ck["step"] == 3 and ck["summary"] is None
    resumed = train_pack("beta_tc_vae", sweep, data, SEEDS, cfg, checkpoint_dirs=dirs, strategy=strategy)
    for a, b in zip(resumed, full, strict=True):
        assert_bitwise(a, b)
    assert not list(tmp_path.glob("*/*.tmp"))


@pytest.mark.parametrize("strategy", ["vmap", "loop"])
def test_train_resumes_a_pack_and_a_pack_resumes_train(tmp_path, strategy):
    data = Squares(64, 3)
    half, whole = (TrainingSettings(steps=s, checkpoint_every=4, **SMALL) for s in (4, 8))
    sweep = SWEEPS["factor_vae"]
    reference = alone("factor_vae", sweep, data, whole)
    check = assert_bitwise if strategy == "loop" else assert_close
    # pack to step 4, train() alone to 8
    dirs = [tmp_path / "a" / str(k) for k in range(3)]
    train_pack("factor_vae", sweep, data, SEEDS, half, checkpoint_dirs=dirs, strategy=strategy)
    for a, b in zip(alone("factor_vae", sweep, data, whole, dirs), reference, strict=True):
        check(a, b)
    # train() alone to step 4, the pack to 8
    dirs = [tmp_path / "b" / str(k) for k in range(3)]
    alone("factor_vae", sweep, data, half, dirs)
    packed = train_pack("factor_vae", sweep, data, SEEDS, whole, checkpoint_dirs=dirs, strategy=strategy)
    for a, b in zip(packed, reference, strict=True):
        check(a, b)


def test_partly_done_pack_trains_only_the_missing_models(tmp_path):
    data = Squares(64, 3)
    cfg = TrainingSettings(steps=4, **SMALL)
    sweep = SWEEPS["beta_vae"]
    dirs = [tmp_path / str(k) for k in range(3)]
    done = train("beta_vae", sweep[1], data, SEEDS[1], cfg, checkpoint_dir=dirs[1])
    before = (dirs[1] / "last.pt").read_bytes()
    calls: list[int] = []
    packed = train_pack("beta_vae", sweep, data, SEEDS, cfg, checkpoint_dirs=dirs,
                        progress=[None, lambda *a: calls.append(1), None])
    assert not calls and (dirs[1] / "last.pt").read_bytes() == before
    assert_bitwise(packed[1], done)
    for a, b in zip(packed, alone("beta_vae", sweep, data, cfg), strict=True):
        assert_bitwise(a, b)


class NaNFor(Squares):
    """Squares whose batches for one job's data stream are NaN from its `after`-th draw on."""

    def __init__(self, seed: int, after: int) -> None:
        super().__init__(64, 3)
        self.target = np.random.default_rng(_streams(seed)["data"]).bit_generator.state
        self.after, self.seen, self.calls = after, [], 0

    def sample_observations(self, n, rng):
        if not self.seen and rng.bit_generator.state == self.target:
            self.seen.append(rng)
        x = super().sample_observations(n, rng)
        if self.seen and rng is self.seen[0]:
            self.calls += 1
            if self.calls > self.after:
                return x * np.nan
        return x


@pytest.mark.parametrize("strategy", ["vmap", "loop"])
def test_diverged_model_leaves_the_pack_and_the_others_go_on(tmp_path, strategy):
    cfg = TrainingSettings(steps=12, checkpoint_every=2, **SMALL)
    sweep = SWEEPS["dip_vae_i"]
    with pytest.raises(Diverged) as alone_err:
        train("dip_vae_i", sweep[1], NaNFor(SEEDS[1], 7), SEEDS[1], cfg)
    dirs = [tmp_path / str(k) for k in range(3)]
    packed = train_pack("dip_vae_i", sweep, NaNFor(SEEDS[1], 7), SEEDS, cfg, checkpoint_dirs=dirs,
                        strategy=strategy)
    assert isinstance(packed[1], Diverged)
    assert packed[1].step == alone_err.value.step == 7 and "nan" in str(packed[1])
    ck = torch.load(dirs[1] / "last.pt", weights_only=True)
    assert ck["step"] == 6 and all(torch.isfinite(v).all() for v in ck["model"].values())
    check = assert_bitwise if strategy == "loop" else assert_close
    reference = alone("dip_vae_i", sweep, Squares(64, 3), cfg)
    for k in (0, 2):
        check(packed[k], reference[k])
        assert torch.load(dirs[k] / "last.pt", weights_only=True)["step"] == 12


def test_one_models_failure_never_fails_its_pack_mates(tmp_path):
    data = Squares(64, 3)
    cfg = TrainingSettings(steps=4, **SMALL)
    sweep = SWEEPS["annealed_vae"]
    dirs = [tmp_path / str(k) for k in range(3)]
    train("annealed_vae", {"gamma": 7.0}, data, SEEDS[0], cfg, checkpoint_dir=dirs[0])  # another job's

    def broken(step, total, metrics):
        raise RuntimeError("progress sink is gone")

    packed = train_pack("annealed_vae", sweep, data, SEEDS, cfg, checkpoint_dirs=dirs,
                        progress=[None, broken, None], strategy="vmap")
    assert isinstance(packed[0], UserError) and "gamma" in str(packed[0])
    assert isinstance(packed[1], RuntimeError)
    assert_close(packed[2], train("annealed_vae", sweep[2], data, SEEDS[2], cfg))


def test_methods_with_their_own_step_train_one_by_one(caplog):
    data = Squares(64, 3)
    cfg = TrainingSettings(steps=3, **SMALL)
    sweep = [{"noise_level": v} for v in (0.1, 0.2, 0.3)]
    with caplog.at_level(logging.INFO, logger="benchmark.packing"):
        packed = train_pack("denoising_ae", sweep, data, SEEDS, cfg)
    assert "own training step" in caplog.text
    for a, b in zip(packed, alone("denoising_ae", sweep, data, cfg), strict=True):
        assert_bitwise(a, b)


def test_models_that_cannot_share_a_computation_train_in_separate_packs():
    data = Squares(64, 3)
    cfg = TrainingSettings(steps=4, **SMALL)
    sweep = [{"shuffle": "same_batch"}, {"shuffle": "second_batch"}, {"shuffle": "same_batch"}]
    packed = train_pack("factor_vae", sweep, data, SEEDS, cfg, strategy="loop")
    for a, b in zip(packed, alone("factor_vae", sweep, data, cfg), strict=True):
        assert_bitwise(a, b)


def test_bad_pack_input_raises_user_errors():
    data, cfg = Squares(64, 3), TrainingSettings(steps=1, **SMALL)
    with pytest.raises(UserError, match="one params"):
        train_pack("beta_vae", [{}], data, [0, 1], cfg)
    with pytest.raises(UserError, match="strategy"):
        train_pack("beta_vae", [{}], data, [0], cfg, strategy="grouped")
