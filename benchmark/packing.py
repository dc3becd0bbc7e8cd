"""Packed training: K models of one method trained as one on one device, each exactly as `train()`.

`train_pack(method, [params_k], data, seeds=[seed_k], config, checkpoint_dirs=[dir_k],
progress=[callback_k])` returns one result per model: its `TrainedModel`, or the exception `train()`
would have raised for it (`Diverged`, `UserError`, ...). One model's failure never fails the others.

How: the K systems are built and resumed one by one (`training.TrainingRun`, so each starts from
bitwise the weights, optimiser state and random streams `train()` gives it) and their parameters are
stacked (`torch.func.stack_module_state`). What is random is drawn per model outside the batched
computation, from that model's own streams and in `train()`'s order (`System.iteration_inputs`); the
per-model loss weights (β, γ, C, λ, ...) come from each model's `System.coefficients`. Adam is
elementwise, so one Adam over the stacked tensors is K independent Adams, and the gradient of the sum
of the K losses is each model's own gradient (the models share nothing). Two strategies run the
forward pass (`resolve_strategy`):
  * "vmap" (default on accelerators): one `vmap` of the method's `objectives` over `functional_call`
    advances all K models per kernel (grouped convolutions, batched matmuls; the loss weights as one
    tensor per weight), which is what removes the launch-bound idling of one small model per GPU.
    Numerically it differs from `train()` by the reassociation of the batched kernels only; these
    models amplify rounding as much as `train()` amplifies a change of thread count
    (tests/test_packing.py states the tolerance and the measurements behind it).
  * "loop" (default on the CPU): K `functional_call`s on slices of the stacked parameters, then one
    backward pass and one optimiser step: `train()`'s own kernels, bitwise its results. On a CPU the
    batched kernels are no faster (bench/results/train_pack_cpu.txt), so this is the CPU's choice.

Each model keeps its own `last.pt`, written in `train()`'s format at `train()`'s steps, so `train()`
resumes what a pack started and vice versa. A model whose loss becomes non-finite is recorded as
`Diverged` at its step and leaves the pack (its checkpoint stays at its last finite one); the others go
on. Models resuming from different steps, or differing in a setting that shapes the computation
(`System.pack_key`, e.g. FactorVAE's shuffle), train as separate packs one after the other. Methods
that own their training step (autoencoders, InfoGAN) and fitted baselines train one by one with
`train()`; the reason is logged.

`train_seconds` of a packed model is the wall time of its pack (the time it took to train it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from benchmark.errors import UserError
from benchmark.models.base import System, apply_updates
from benchmark.settings import TrainingSettings, execution_options
from benchmark.training import (
    DataStream,
    TrainedModel,
    TrainingRun,
    check_finite,
    precision_scope,
    window_end,
    window_means,
)

log = logging.getLogger(__name__)

Progress = Callable[[int, int, dict[str, float]], None]  # train()'s progress(step, total, metrics)
PackResult = TrainedModel | Exception

_CPU = torch.device("cpu")


STRATEGIES = ("auto", "vmap", "loop")


def resolve_strategy(strategy: str, device: torch.device) -> str:
    """"auto": vmap on an accelerator, where one kernel for K models is what packing is for; loop on
    the CPU, where the batched kernels are no faster (bench/results/train_pack_cpu.txt) and the
    looped forward passes are `train()`'s own computation."""
    if strategy == "auto":
        return "loop" if device.type == "cpu" else "vmap"
    return strategy


def packable(system: System) -> str | None:
    """None when `system` can train in a pack, else why not (logged by `train_pack`)."""
    if system.fitted:
        return "fitted, not trained"
    if type(system).training_step is not System.training_step:
        return "the method has its own training step"
    return None


def train_pack(method: str, params: Sequence[Mapping[str, Any] | None], data: Any, seeds: Sequence[int],
               config: TrainingSettings | None = None,
               checkpoint_dirs: Sequence[str | Path | None] | None = None,
               progress: Sequence[Progress | None] | None = None,
               strategy: str = "auto") -> list[PackResult]:
    """Train len(seeds) models of `method` on `data` together; see the module docstring.

    `params[k]`, `seeds[k]`, `checkpoint_dirs[k]` and `progress[k]` are model k's, as `train()` takes
    them. Returns, per model, its `TrainedModel` or the exception its training raised. A UserError
    about the pack as a whole (lengths, config, strategy) is raised; KeyboardInterrupt stops the whole pack
    (each model resumes from its own checkpoint)."""
    config = config if config is not None else TrainingSettings()  # validated when built
    if strategy not in STRATEGIES:
        raise UserError(f"pack strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    n = len(seeds)
    dirs = [None] * n if checkpoint_dirs is None else list(checkpoint_dirs)
    callbacks = [None] * n if progress is None else list(progress)
    if n == 0 or len(params) != n or len(dirs) != n or len(callbacks) != n:
        raise UserError(f"a pack needs one params, seed, checkpoint_dir and progress per model: got "
                        f"{len(params)}, {n}, {len(dirs)}, {len(callbacks)}")
    results: list[PackResult | None] = [None] * n
    groups: dict[tuple, list[int]] = {}
    runs: dict[int, TrainingRun] = {}
    for i in range(n):
        try:
            runs[i] = TrainingRun(method, params[i], data, seeds[i], config, dirs[i])
        except Exception as e:  # a bad checkpoint or hyperparameter fails this model only
            results[i] = e
            continue
        if runs[i].result is not None:  # finished earlier: nothing to train
            results[i] = runs.pop(i).result
            continue
        reason = packable(runs[i].system)
        key = ("alone", i) if reason else (runs[i].system.pack_key(), runs[i].step)
        if reason:
            log.info("%s model %d of the pack trains alone: %s", method, i, reason)
        groups.setdefault(key, []).append(i)
    for members in groups.values():
        if len(members) == 1:
            i = members[0]
            try:
                results[i] = runs[i].train(callbacks[i])
            except Exception as e:
                results[i] = e
            continue
        pack, error = None, None
        try:
            pack = _Pack([runs[i] for i in members], [callbacks[i] for i in members],
                         resolve_strategy(strategy, runs[members[0]].device))
            pack.train()
        except Exception as e:  # the shared computation failed: no model of the pack can go on
            log.warning("%s pack of %d models failed: %s: %s", method, len(members), type(e).__name__, e)
            error = e
        for j, i in enumerate(members):
            results[i] = pack.results[j] if pack is not None and pack.results[j] is not None else error
    return results  # type: ignore[return-value]  # every slot is filled above


class _Objectives(nn.Module):
    """`functional_call` calls `forward`: here the system's objectives, with the parameters it is given."""

    def __init__(self, system: System) -> None:
        super().__init__()
        self.system = system

    def forward(self, inputs, step, coef):
        return self.system.objectives(inputs, step, coef)


class _Pack:
    """K runs at the same step with the same `pack_key`, advanced in lock-step."""

    def __init__(self, runs: list[TrainingRun], progress: list[Progress | None], strategy: str) -> None:
        self.runs, self.progress, self.strategy = list(runs), list(progress), strategy
        self.index = list(range(len(runs)))  # position of each live run in the caller's list
        self.results: list[PackResult | None] = [None] * len(runs)
        self.config = runs[0].config
        self.device = runs[0].device
        for name in execution_options(self.config):  # they apply to one model at a time
            log.info("training.%s is not applied in a pack: it trains eager, contiguous", name)
            for run in self.runs:
                run.execution[name] = "not applied (packed)"
        self._stack()

    # ------------------------------------------------------------------ stacked state <-> runs

    def _stack(self) -> None:
        """Stacked parameters, buffers and optimiser states from the runs' own (bitwise copies)."""
        systems = [r.system.train() for r in self.runs]
        self.forward = _Objectives(systems[0])
        self.params, self.buffers = stack_module_state(systems)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        names = [{id(p): n for n, p in s.named_parameters()} for s in systems]
        self._opt_params: dict[str, list[list[str]]] = {}  # optimiser -> param group -> names
        for opt_name, opt0 in self.runs[0].optimizers.items():
            groups = [[names[0][id(p)] for p in g["params"]] for g in opt0.param_groups]
            self._opt_params[opt_name] = groups
            stacked = type(opt0)([{**{k: v for k, v in g.items() if k != "params"},
                                   "params": [self.params[n] for n in group]}
                                  for g, group in zip(opt0.param_groups, groups, strict=True)],
                                 **opt0.defaults)
            for group in groups:
                for pname in group:
                    states = [_state_of(r, opt_name, pname) for r in self.runs]
                    if states[0]:
                        stacked.state[self.params[pname]] = _stack_state(states, self.params[pname].shape[1:])
            self.optimizers[opt_name] = stacked

    def _unstack(self) -> None:
        """Write each model's slice of the stacked state back into its run (before a checkpoint)."""
        with torch.no_grad():
            for k, run in enumerate(self.runs):
                for n, p in run.system.named_parameters():
                    p.copy_(self.params[n][k])
                for n, b in run.system.named_buffers():
                    b.copy_(self.buffers[n][k])
                for opt_name, groups in self._opt_params.items():
                    stacked = self.optimizers[opt_name]
                    for group in groups:
                        for pname in group:
                            state = stacked.state.get(self.params[pname])
                            if state:
                                mine = dict(run.system.named_parameters())[pname]
                                run.optimizers[opt_name].state[mine] = _slice_state(
                                    state, k, self.params[pname].shape)

    def _drop(self, failed: dict[int, Exception]) -> None:
        """Record the failed models and go on with the others."""
        self._unstack()
        for k, e in failed.items():
            self.results[self.index[k]] = e
            log.info("model %d of the pack leaves it: %s", self.index[k], e)
        keep = [k for k in range(len(self.runs)) if k not in failed]
        self.runs = [self.runs[k] for k in keep]
        self.progress = [self.progress[k] for k in keep]
        self.index = [self.index[k] for k in keep]
        if self.runs:
            self._stack()

    # ------------------------------------------------------------------ training

    def _draw(self, run: TrainingRun) -> DataStream:
        # Gathered on the device from the dataset's grid when the data are there, else drawn on the
        # host and moved to the device as one stacked tensor.
        return DataStream(run.data, self.config.batch_size, run.data_rng, _CPU, run.sample)

    def _iteration(self, step: int) -> tuple[dict[str, torch.Tensor], int]:
        drawn, failed = [], {}
        for k, run in enumerate(self.runs):
            try:  # each model's own random draws (in train()'s order) and loss weights
                drawn.append((run.system.iteration_inputs(self._draw(run), run.noise),
                              run.system.coefficients(step)))
            except Exception as e:
                failed[k] = e
        if failed:
            self._drop(failed)
            if not self.runs:
                return {}, 0
        inputs, coefs = [d[0] for d in drawn], [d[1] for d in drawn]
        if self.strategy == "vmap":
            metrics, objectives = self._vmapped(step, inputs, coefs)
        else:
            metrics, objectives = self._looped(step, inputs, coefs)
        # the models share nothing: the gradient of the sum is each model's own gradient
        apply_updates({n: v.sum() for n, v in objectives.items()}, self.optimizers)
        return metrics, self.runs[0].system.steps_per_iteration

    def _vmapped(self, step: int, inputs: list[dict[str, torch.Tensor]], coefs: list[dict[str, float]]):
        """All K forward passes as one: every kernel runs once over the K models (grouped convolutions,
        batched matmuls), the per-model loss weights as one tensor per weight."""
        batch = {key: torch.stack([inp[key] for inp in inputs]).to(self.device) for key in inputs[0]}
        dtype = next(iter(self.params.values())).dtype
        coef = {key: torch.tensor([c[key] for c in coefs], dtype=dtype, device=self.device)
                for key in coefs[0]}
        state = ({f"system.{n}": v for n, v in self.params.items()},
                 {f"system.{n}": v for n, v in self.buffers.items()})

        def one(state, inp, c):
            return functional_call(self.forward, state, (inp, step, c), strict=True)

        return vmap(one)(state, batch, coef)

    def _looped(self, step: int, inputs: list[dict[str, torch.Tensor]], coefs: list[dict[str, float]]):
        """The K forward passes one after the other on slices of the stacked parameters, each the very
        computation of `train()`; the backward pass and the optimiser step are still one for all."""
        params = {f"system.{n}": v.unbind(0) for n, v in self.params.items()}
        buffers = {f"system.{n}": v.unbind(0) for n, v in self.buffers.items()}
        outs = [functional_call(self.forward, ({n: v[k] for n, v in params.items()},
                                               {n: v[k] for n, v in buffers.items()}),
                                ({key: v.to(self.device) for key, v in inp.items()}, step, c), strict=True)
                for k, (inp, c) in enumerate(zip(inputs, coefs, strict=True))]
        return tuple({key: torch.stack([o[j][key] for o in outs]) for key in outs[0][j]} for j in (0, 1))

    def train(self) -> list[PackResult | None]:
        """Train every model to `config.steps` and finish it; results land in `self.results`."""
        # every system of the pack: model 0's runs the forward of all, another's after model 0 left
        with precision_scope(self.config, self.device, [r.system for r in self.runs]):
            self._loop()
        if self.runs:
            self._unstack()
        for k, run in enumerate(self.runs):
            try:
                self.results[self.index[k]] = run.finish()
            except Exception as e:
                self.results[self.index[k]] = e
        return self.results

    def _loop(self) -> None:
        """The lock-step iterations, as `train()`'s loop: windows, divergence, checkpoints."""
        config = self.config
        step = last_ck = self.runs[0].step
        window: list[tuple[int, dict[str, torch.Tensor]]] = []
        saving = any(r.ck_path is not None for r in self.runs)
        t0 = time.perf_counter()
        while step < config.steps and self.runs:
            metrics, advanced = self._iteration(step)
            if not self.runs:
                break
            window.append((step, metrics))
            step += advanced
            ck_due, window_done = window_end(step, last_ck, len(window), config)
            if not window_done:
                continue
            now = time.perf_counter()
            failed: dict[int, Exception] = {}
            for k, run in enumerate(self.runs):
                run.step = step
                run.train_seconds += now - t0
                mine = [(s, {name: v[k] for name, v in m.items()}) for s, m in window]
                try:  # as train(): divergence check, then progress, then the checkpoint
                    check_finite(mine)
                    if self.progress[k] is not None:
                        self.progress[k](step, config.steps, window_means(mine))
                except Exception as e:
                    failed[k] = e
            t0, window = now, []
            if failed:
                self._drop(failed)
            if ck_due and saving and step < config.steps and self.runs:
                self._unstack()
                failed = {}
                for k, run in enumerate(self.runs):
                    try:
                        run.save()
                    except Exception as e:
                        failed[k] = e
                if failed:
                    self._drop(failed)
                last_ck = step


def _state_of(run: TrainingRun, opt_name: str, pname: str) -> dict:
    param = dict(run.system.named_parameters())[pname]
    return run.optimizers[opt_name].state.get(param, {})


def _stack_state(states: list[dict], shape: torch.Size) -> dict:
    """One optimiser state over stacked parameters: per-element tensors (Adam's moments) are stacked;
    the rest (Adam's step count) is shared, so it must agree across the models."""
    out = {}
    for key, v in states[0].items():
        if isinstance(v, torch.Tensor) and v.shape == shape:
            out[key] = torch.stack([s[key] for s in states])
        else:
            if any(not _same(s[key], v) for s in states):
                raise UserError(f"optimiser state {key!r} differs across the pack")
            out[key] = v.clone() if isinstance(v, torch.Tensor) else v
    return out


def _slice_state(state: dict, k: int, stacked_shape: torch.Size) -> dict:
    return {key: (v[k].clone() if v.shape == stacked_shape else v.clone())
            if isinstance(v, torch.Tensor) else v for key, v in state.items()}


def _same(a: Any, b: Any) -> bool:
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
