"""The training loop: seeding, atomic checkpoints, resume, divergence guard, post-training summary.

`train(method, params, data, seed=..., config=..., checkpoint_dir=...)` trains any method of
`benchmark.models.METHODS` on any ground-truth dataset (only `observation_shape` and
`sample_observations(n, rng)` are used; `factor_sizes`, `sample_one_factor_varies` and
`sample_observations_from_factors` by the methods that use the factors, and the grid hooks of
`benchmark.data.device` when the data are gathered on the device: `config.data_on_device`) and
returns a `TrainedModel`.

Reproducibility: the seed is split (numpy SeedSequence) into independent streams for the weight
initialisation, the training noise (reparameterisation, shuffles), the data stream (one i.i.d. batch
per iteration, with replacement, as dlib's input pipeline), the baselines' fitting and the summary
evaluation. Every stream's state is in the checkpoint, so N steps + resume to 2N equals 2N steps in
one go, bitwise, on the CPU. On CUDA, results are reproducible only as far as cuDNN's kernels are
deterministic (not forced here: `torch.backends.cudnn.deterministic` is the executor's choice); a job
resumed on another device type continues with a noise stream derived from (seed, step).
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmark.allocator import MALLOC_ENV, apply_worker_env
from benchmark.data.device import data_sampler
from benchmark.errors import UserError
from benchmark.models import METHODS, validate_params
from benchmark.models.architectures import init_weights
from benchmark.models.base import BuildContext, System, objective_gradients
from benchmark.settings import (
    ADDED_KEYS,
    RESUME_KEYS,
    TrainingSettings,
    default_of,
    execution_options,
)

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"
PREVIOUS_NAME = "prev.pt"  # the checkpoint before last.pt, kept until a newer one is verified
CHECKPOINT_FORMAT = 1


class Diverged(Exception):
    """The loss became NaN or infinite at `step`; the job should be recorded as diverged."""

    def __init__(self, step: int, message: str) -> None:
        super().__init__(f"diverged at step {step}: {message}")
        self.step = step
        self.message = message


# --------------------------------------------------------------------------- allocator

# mallopt's parameter numbers (glibc malloc.h) for the variables of MALLOC_ENV.
_MALLOPT = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_TOP_PAD_": -2, "MALLOC_MMAP_THRESHOLD_": -3}
_INT_MAX = 2**31 - 1


def configure_allocator() -> dict[str, bool]:
    """Stop glibc returning freed activation buffers to the OS every step (docs/performance.md:
    page faults made steps 1.3-10x slower). Sets the env vars (inherited by child processes started
    afterwards) and applies the same settings to this process with `mallopt`. Idempotent; a no-op
    outside glibc. Returns {"env": ..., "mallopt": ...}: what was applied."""
    apply_worker_env()
    applied = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6")
            # mallopt takes an int: the 16 GiB trim threshold becomes ~2 GiB here.
            ok = [libc.mallopt(_MALLOPT[key], min(int(value), _INT_MAX))
                  for key, value in MALLOC_ENV.items()]
            applied = all(r == 1 for r in ok)
        except (OSError, AttributeError):
            applied = False
    return {"env": True, "mallopt": applied}


# --------------------------------------------------------------------------- helpers

def resolve_device(device: str) -> torch.device:
    """"auto" → CUDA when visible, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise UserError(f"unknown device {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available")
    return dev


def resolve_architecture(architecture: str, observation_shape: tuple[int, ...]) -> str:
    if architecture == "auto":
        return "conv" if tuple(observation_shape[1:]) == (64, 64) else "fc"
    if architecture == "conv" and tuple(observation_shape[1:]) != (64, 64):
        raise UserError(f"architecture 'conv' needs 64x64 observations, got {observation_shape}; "
                        "use architecture 'fc'")
    return architecture


def _streams(seed: int) -> dict[str, int]:
    """Independent 63-bit seeds for each random stream of a job."""
    names = ("init", "noise", "data", "fit", "eval_noise", "eval_data")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: int(c.generate_state(1, np.uint64)[0] >> np.uint64(1)) for n, c in zip(names, children, strict=True)}


def to_tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)


def build_system(method: str, params: Mapping[str, Any], observation_shape: tuple[int, int, int],
                 config: TrainingSettings, seed: int, factor_sizes: tuple[int, ...] = ()) -> System:
    """The method's networks, initialised from the seed's "init" stream (global RNG untouched);
    `factor_sizes`: the dataset's, for the methods that use the factors (`BuildContext`)."""
    ctx = BuildContext(
        observation_shape=tuple(int(s) for s in observation_shape),
        num_latent=config.num_latent,
        architecture=resolve_architecture(config.architecture, observation_shape),
        reconstruction_loss=config.reconstruction_loss,
        learning_rate=float(config.learning_rate),
        batch_size=config.batch_size,
        fit_samples=config.fit_samples,
        factor_sizes=tuple(int(s) for s in factor_sizes),
    )
    with torch.random.fork_rng(devices=[]):  # module constructors draw from the global RNG
        system = METHODS[method].build(ctx, dict(params))
    gen = torch.Generator().manual_seed(_streams(seed)["init"])
    init_weights(system, gen)
    return system


# --------------------------------------------------------------------------- precision

# The layers whose matrix product or convolution bf16 autocast lowers (torch's autocast op lists).
AUTOCAST_LAYERS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


def _layer_autocast(systems: Iterable[nn.Module], device: torch.device) -> list:
    """bf16 autocast around each layer of `systems`: its matrix product or convolution (and bias)
    runs in bf16, from fp32 master weights (autograd returns their gradients in fp32); its output
    returns to fp32, so what lies between layers (activations, sampling) and every loss and its
    reduction is fp32 arithmetic. Hooks, not a wrapper: the same code path for `train()`, both pack
    strategies and any method, and removable (the returned handles) before the fp32 summary."""
    stack: list[torch.autocast] = []

    def enter(module: nn.Module, args: Any) -> None:
        ctx = torch.autocast(device.type, dtype=torch.bfloat16)
        ctx.__enter__()
        stack.append(ctx)

    def leave(module: nn.Module, args: Any, out: Any) -> Any:
        stack.pop().__exit__(None, None, None)
        return out.float() if isinstance(out, torch.Tensor) else out

    return [h for system in systems for m in system.modules() if isinstance(m, AUTOCAST_LAYERS)
            for h in (m.register_forward_pre_hook(enter),
                      m.register_forward_hook(leave, always_call=True))]


@contextmanager
def precision_scope(config: TrainingSettings, device: torch.device,
                    systems: Iterable[nn.Module]) -> Iterator[None]:
    """The arithmetic `config.precision` asks of the training forward passes of `systems`, undone on
    exit (another job in the same worker starts from the process's settings again). On CUDA the TF32
    switches of cuBLAS and cuDNN are set for the scope: on for tf32, off otherwise (fp32 means fp32,
    as dlib's GPUs computed it; PyTorch's default lets cuDNN use TF32 on Ampere and later). They are
    process-wide: an encoder running in another thread meanwhile sees them. A CPU has no TF32:
    there, tf32 is exactly fp32."""
    flags = None
    if device.type == "cuda":
        flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        tf32 = config.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    handles = _layer_autocast(systems, device) if config.precision == "bf16" else []
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        if flags is not None:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


# --------------------------------------------------------------------------- the trained model

class TrainedModel:
    """A trained (or fitted) model: its representation functions, decoder and training summary.

    Whatever `config.precision` it was trained in, it encodes and decodes in fp32 (fp32 weights, no
    autocast): evaluation is the same computation for every precision option."""

    def __init__(self, method: str, params: dict[str, Any], seed: int, config: TrainingSettings,
                 system: System, steps: int, summary: dict[str, float], train_seconds: float,
                 observation_shape: tuple[int, int, int], device: torch.device,
                 execution: dict[str, Any] | None = None, data_stream: dict | None = None) -> None:
        self.method, self.params, self.seed, self.config = method, params, seed, config
        self.data_stream = data_stream  # how its training batches were drawn, when on the device
        # how the kernels ran (the EXECUTION settings away from their defaults, and what became of
        # them): the rows' provenance records it
        self.execution = execution_options(config) if execution is None else execution
        self.system = system.eval()
        self.steps = steps
        self.summary = summary
        self.train_seconds = train_seconds
        self.observation_shape = tuple(observation_shape)
        self.device = device

    @property
    def num_latent(self) -> int:
        return int(self.system.num_latent)

    @property
    def encodes_observations(self) -> bool:
        """False for a representation of the factors themselves (ground_truth): no encoder, decoder
        or traversal; `represent` then gives a function the metrics call with factor rows."""
        return bool(self.system.encodes_observations)

    def _check_obs(self, obs: np.ndarray) -> None:
        if obs.ndim != 4 or tuple(obs.shape[1:]) != self.observation_shape:
            raise UserError(f"observations must have shape (N, {', '.join(map(str, self.observation_shape))}), "
                            f"got {tuple(obs.shape)}")

    def represent(self, kind: str = "mean", seed: int | None = None,
                  batch_size: int = 64) -> Callable[[np.ndarray], np.ndarray]:
        """`fn(obs (N,C,H,W) float32) -> codes (N, D)`: "mean" = μ(x); "sampled" = μ + σ·ε with ε from
        a generator seeded by `seed` (fresh noise on every call; `System.sample`). Deterministic encoders (autoencoders,
        PCA, ...) return the same codes for both."""
        if kind not in ("mean", "sampled"):
            raise UserError(f"representation must be 'mean' or 'sampled', got {kind!r}")
        if not self.encodes_observations:
            return _factor_representation(self.method, self.system.factor_codes)
        gen = torch.Generator(device=self.device).manual_seed(0 if seed is None else int(seed))

        def represent_fn(obs: np.ndarray) -> np.ndarray:
            obs = np.asarray(obs)
            self._check_obs(obs)
            out = [np.zeros((0, self.num_latent), np.float32)]
            with torch.inference_mode():
                for i in range(0, obs.shape[0], batch_size):
                    x = to_tensor(obs[i:i + batch_size], self.device)
                    z = self.system.sample(x, gen) if kind == "sampled" else self.system.encode(x)[0]
                    out.append(z.float().cpu().numpy())
            return np.concatenate(out)

        # No noise of its own: the codes depend on each call's observations only, so the metrics may
        # encode BetaVAE's paired batches in pieces (`sampling.FactorEncoder.pairs`).
        represent_fn.deterministic = kind == "mean" or (
            type(self.system).sample is System.sample and not self.has_posterior)
        return represent_fn

    @property
    def has_posterior(self) -> bool:
        """Whether the encoder gives a Gaussian q(z|x) (a log-variance); False for AE, PCA, ..."""
        if not self.encodes_observations:
            return False
        if not hasattr(self, "_has_posterior"):
            probe = torch.zeros((1, *self.observation_shape), device=self.device)
            with torch.inference_mode():
                self._has_posterior = self.system.encode(probe)[1] is not None
        return self._has_posterior

    def represent_gaussian(self, batch_size: int = 64) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """`fn(obs (N,C,H,W) float32) -> (mean, logvar)`, each (N, D) float32: the Gaussian posterior
        q(z|x) that the exact-data MI metrics (`benchmark.metrics.gaussian_mi`) need. A deterministic
        encoder (autoencoders, PCA, ...) has no log-variance: UserError (see `has_posterior`)."""
        if not self.has_posterior:
            raise UserError(f"{self.method} has a deterministic encoder: no Gaussian posterior q(z|x)")

        def gaussian_fn(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            obs = np.asarray(obs)
            self._check_obs(obs)
            means = [np.zeros((0, self.num_latent), np.float32)]
            logvars = [np.zeros((0, self.num_latent), np.float32)]
            with torch.inference_mode():
                for i in range(0, obs.shape[0], batch_size):
                    mean, logvar = self.system.encode(to_tensor(obs[i:i + batch_size], self.device))
                    means.append(mean.float().cpu().numpy())
                    logvars.append(logvar.float().cpu().numpy())
            return np.concatenate(means), np.concatenate(logvars)

        return gaussian_fn

    def decode(self, z: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Codes (N, D) → images (N, C, H, W) in [0, 1] (for traversals)."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.num_latent:
            raise UserError(f"codes must have shape (N, {self.num_latent}), got {tuple(z.shape)}")
        out = [np.zeros((0, *self.observation_shape), np.float32)]
        with torch.inference_mode():
            for i in range(0, z.shape[0], batch_size):
                x = self.system.decode(to_tensor(z[i:i + batch_size], self.device))
                out.append(x.float().clamp(0, 1).cpu().numpy())
        return np.concatenate(out)

    def reconstruct(self, obs: np.ndarray) -> np.ndarray:
        """decode(mean code of obs): images (N, C, H, W) in [0, 1]."""
        return self.decode(self.represent("mean")(obs))


def _factor_representation(method: str, codes: Callable[[np.ndarray], np.ndarray]):
    """The representation of a system that codes factors, not observations: calling it with
    observations is an error; the metrics suite finds `of_factors` and calls that with the factor
    rows it draws (`benchmark.metrics.sampling.FactorEncoder`). Deterministic: mean = sampled."""

    def represent_fn(obs: np.ndarray) -> np.ndarray:
        raise UserError(f"{method} codes the ground-truth factors, not observations")

    represent_fn.of_factors = codes
    return represent_fn


# --------------------------------------------------------------------------- checkpoints

def _atomic_save(obj: dict, path: Path) -> None:
    """Writes the checkpoint `path` so that a good one always remains: the new file is written and
    fsynced under a temporary name and read back; only then does the current one become
    PREVIOUS_NAME and the new one take its name (a crash in between leaves prev.pt to resume from)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        _load_checkpoint(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if path.exists():
        os.replace(path, path.with_name(PREVIOUS_NAME))
    os.replace(tmp, path)


def _load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign file: say which
        raise UserError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}".splitlines()[0]) from e


def _checkpoint_paths(checkpoint_dir: Path) -> list[Path]:
    """Where to resume from, newest first: last.pt, then prev.pt."""
    return [checkpoint_dir / CHECKPOINT_NAME, checkpoint_dir / PREVIOUS_NAME]


def unreadable_checkpoints(checkpoint_dir: str | Path) -> list[tuple[Path, str]]:
    """(path, why) of each checkpoint in `checkpoint_dir` that cannot be loaded (truncated,
    overwritten): the caller sets them aside, and `train` resumes from the next one or restarts."""
    out = []
    for path in _checkpoint_paths(Path(checkpoint_dir)):
        if path.is_file():
            try:
                _load_checkpoint(path)
            except UserError as e:
                out.append((path, str(e)))
    return out


def load_trained(checkpoint_dir: str | Path, device: str = "cpu") -> TrainedModel:
    """The model saved in `checkpoint_dir/last.pt` (finished or not), on `device`."""
    path = Path(checkpoint_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}")
    ck = _load_checkpoint(path)
    config = TrainingSettings(**ck["config"])
    dev = resolve_device(device)
    system = build_system(ck["method"], ck["params"], tuple(ck["observation_shape"]), config,
                          ck["seed"], tuple(ck.get("factor_sizes") or ()))
    system.load_state_dict(ck["model"])
    system.to(dev)
    return TrainedModel(ck["method"], dict(ck["params"]), ck["seed"], config, system, ck["step"],
                        dict(ck.get("summary") or {}), ck["train_seconds"],
                        tuple(ck["observation_shape"]), dev)


# --------------------------------------------------------------------------- training

def _summary(system: System, sample: Callable[[int, Any], torch.Tensor], config: TrainingSettings, step: int,
             seeds: dict[str, int], device: torch.device) -> dict[str, float]:
    """dlib's `train_results`: each quantity averaged over `eval_batches` fresh batches (stochastic
    forward pass, as TF's EVAL mode with tf.metrics.mean)."""
    if config.eval_batches == 0:
        return {}
    rng = np.random.default_rng(seeds["eval_data"])
    gen = torch.Generator(device=device).manual_seed(seeds["eval_noise"])
    totals: dict[str, torch.Tensor] = {}
    system.eval()
    with torch.no_grad():
        for _ in range(config.eval_batches):
            x = sample(config.batch_size, rng)
            for k, v in system.summary_terms(x, step, gen).items():
                totals[k] = totals.get(k, 0.0) + v.double()
    return {k: float(v) / config.eval_batches for k, v in totals.items()}


def check_finite(window: list[tuple[int, dict[str, torch.Tensor]]]) -> None:
    losses = torch.stack([m["loss"].float() for _, m in window])
    bad = ~torch.isfinite(losses)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise Diverged(window[i][0], f"loss is {float(losses[i])}")


def window_end(step: int, last_ck: int, iterations: int, config: TrainingSettings) -> tuple[bool, bool]:
    """(a checkpoint is due, the metrics window ends) after an iteration that reached `step`; the
    window is checked for divergence and reported at its end, before any checkpoint is written."""
    ck_due = step // config.checkpoint_every > last_ck // config.checkpoint_every
    return ck_due, ck_due or step >= config.steps or iterations >= config.log_every


def window_means(window: list[tuple[int, dict[str, torch.Tensor]]]) -> dict[str, float]:
    return {k: float(torch.stack([m[k] for _, m in window]).float().mean()) for k in window[-1][1]}


class DataStream:
    """A job's training batches (`models.base.Draw`), all drawn with its data generator `rng` (whose
    state the checkpoint keeps): `stream()` one i.i.d. batch (dlib's input pipeline);
    `stream.one_factor_varies()` a batch in which only one factor varies (weakly supervised methods,
    `GroundTruthData.sample_one_factor_varies`) and that factor's index."""

    def __init__(self, data: Any, batch_size: int, rng: np.random.Generator, device: torch.device,
                 sample: Callable[[int, Any, torch.device | None], torch.Tensor] | None = None) -> None:
        self.data, self.batch_size, self.rng, self.device = data, batch_size, rng, device
        self.sample = sample  # `TrainingRun.sample`: the device grid's gather when the data are there

    def __call__(self) -> torch.Tensor:
        if self.sample is not None:
            return self.sample(self.batch_size, self.rng, self.device)
        return to_tensor(self.data.sample_observations(self.batch_size, self.rng), self.device)

    def one_factor_varies(self) -> tuple[torch.Tensor, int]:
        if not hasattr(self.data, "sample_one_factor_varies"):
            raise UserError(f"{type(self.data).__name__} has no ground-truth factors to vary")
        k, factors = self.data.sample_one_factor_varies(self.batch_size, self.rng)
        obs = self.data.sample_observations_from_factors(factors, self.rng)
        return to_tensor(obs, self.device), int(k)


class TrainingRun:
    """One job between steps: its networks, optimisers, random streams, step and checkpoint.

    `train()` drives one run; `benchmark.packing` drives several in lock-step. Construction builds
    the system and resumes from `checkpoint_dir/last.pt` when present; when that checkpoint is
    finished, `result` is the trained model and nothing is left to train."""

    def __init__(self, method: str, params: Mapping[str, Any] | None, data: Any, seed: int,
                 config: TrainingSettings, checkpoint_dir: str | Path | None = None) -> None:
        params = validate_params(method, params)
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise UserError(f"seed must be a non-negative integer, got {seed!r}")
        seed = int(seed)
        configure_allocator()
        self.method, self.params, self.seed, self.config, self.data = method, params, seed, config, data
        self.device = device = resolve_device(config.device)
        self.obs_shape = obs_shape = tuple(int(s) for s in data.observation_shape)
        self.seeds = seeds = _streams(seed)
        self.factor_sizes = tuple(int(s) for s in getattr(data, "factor_sizes", ()))
        self.system = system = build_system(method, params, obs_shape, config, seed,
                                            self.factor_sizes).to(device)
        self.optimizers = system.make_optimizers()
        self.noise = torch.Generator(device=device).manual_seed(seeds["noise"])
        self.data_rng = np.random.default_rng(seeds["data"])
        self.step, self.train_seconds = 0, 0.0
        self.result: TrainedModel | None = None
        self._sampler: Any = None  # the device grid's sampler, or False: the host (on first draw)
        self.draw = DataStream(data, config.batch_size, self.data_rng, device, self.sample)
        self.execution = execution_options(config)
        if config.compile == "cudagraphs" and device.type != "cuda":
            raise UserError(f"training.compile 'cudagraphs' needs a CUDA device, not {device.type}")
        self.ck_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
        if self.ck_path is None:
            return
        # last.pt, else prev.pt (last.pt set aside as corrupt, or a crash between the renames)
        resume_from = next((p for p in _checkpoint_paths(self.ck_path.parent) if p.is_file()), None)
        if resume_from is None:
            return
        ck = _load_checkpoint(resume_from)
        _check_compatible(ck, method, params, seed, config, obs_shape, resume_from)
        try:
            system.load_state_dict(ck["model"])
            for name, opt in self.optimizers.items():
                opt.load_state_dict(ck["optimizers"][name])
        except (KeyError, RuntimeError, ValueError) as e:  # weights of another network
            raise UserError(f"checkpoint {resume_from} does not fit {method}: "
                            f"{type(e).__name__}: {' '.join(str(e).split())}"[:300]) from e
        if ck.get("noise_device", "cpu") == device.type:
            self.noise.set_state(ck["noise_rng"])
        else:  # CPU and CUDA generator states are not interchangeable: continue on a derived stream
            self.noise.manual_seed((seeds["noise"] + int(ck["step"])) % 2**63)
        self.data_rng.bit_generator.state = ck["data_rng"]
        self.step, self.train_seconds = int(ck["step"]), float(ck["train_seconds"])
        if ck.get("summary") is not None and (system.fitted or self.step >= config.steps):
            if self.step > config.steps and not system.fitted:
                raise UserError(f"checkpoint {resume_from} is at step {self.step}, past the requested "
                                f"{config.steps} steps")
            self.result = TrainedModel(method, params, seed, config, system, self.step,
                                       dict(ck["summary"]), self.train_seconds, obs_shape, device,
                                       ck.get("execution"))

    def train(self, progress: Callable[[int, int, dict[str, float]], None] | None = None) -> TrainedModel:
        """Train to `config.steps` (or fit), then `finish`; see `train()`."""
        if self.result is not None:
            return self.result
        system, config = self.system, self.config
        t0 = time.perf_counter()
        if system.fitted:
            system.fit(lambda n: self.data.sample_observations(n, self.data_rng), self.seeds["fit"])
            system.to(self.device)
        else:
            system.train()
            window: list[tuple[int, dict[str, torch.Tensor]]] = []
            last_ck = self.step
            with precision_scope(config, self.device, [system]), self.execution_scope():
                while self.step < config.steps:
                    metrics, advanced = system.training_step(self.draw, self.step, self.noise,
                                                             self.optimizers)
                    window.append((self.step, metrics))
                    self.step += advanced
                    ck_due, window_done = window_end(self.step, last_ck, len(window), config)
                    if window_done:
                        check_finite(window)
                        if progress is not None:
                            progress(self.step, config.steps, window_means(window))
                        window = []
                        if ck_due and self.ck_path is not None and self.step < config.steps:
                            self.train_seconds += time.perf_counter() - t0
                            t0 = time.perf_counter()
                            self.save()
                            last_ck = self.step
        self.train_seconds += time.perf_counter() - t0
        return self.finish()

    def sample(self, n: int, rng: Any, device: torch.device | None = None) -> torch.Tensor:
        """`n` observations drawn from `rng` as `data.sample_observations` draws them, as a tensor."""
        if self._sampler is None:  # built on first use: a finished model needs no grid
            self._sampler = data_sampler(self.data, self.device, self.config.data_on_device) or False
        if self._sampler:
            return self._sampler.sample_observations(n, rng)
        return to_tensor(self.data.sample_observations(n, rng), device or self.device)

    @property
    def data_stream(self) -> dict | None:
        """How batches were drawn, for the rows' provenance: the device sampler's, None on the host."""
        return self._sampler.provenance if self._sampler else None

    @contextmanager
    def execution_scope(self) -> Iterator[None]:
        """`config.channels_last` and `config.compile` while this run trains alone (a pack runs
        eager, in the default layout: `benchmark.packing`); the system is back to eager, contiguous
        weights on exit. What was applied is in `self.execution`."""
        system, config = self.system, self.config
        if config.channels_last:
            system.to(memory_format=torch.channels_last)
        compiled = config.compile != "off" and self._compile()
        try:
            yield
        finally:
            if compiled:
                del system.objectives  # the class's eager method again
            if config.channels_last:
                system.to(memory_format=torch.contiguous_format)

    def _compile(self) -> bool:
        """torch.compile of the system's forward pass (`objectives`), tried at once on a throw-away
        batch (forward and backward, no update, no random stream of the job touched) so that a
        failure (no C++ compiler, an unsupported operation) is one logged reason and eager training,
        not a failed job. The coefficients enter as tensors: a schedule's new value each step would
        otherwise recompile. Methods with their own training step run eager."""
        system, config, device = self.system, self.config, self.device
        if type(system).training_step is not System.training_step:
            return self._eager("the method has its own training step")
        if config.precision == "bf16":  # a graph compiled without them would silently drop them
            return self._eager("bf16's per-layer autocast hooks are not part of a compiled graph")
        mode = "reduce-overhead" if config.compile == "cudagraphs" else "default"
        graph = torch.compile(type(system).objectives, mode=mode)

        def objectives(inputs, step, coef):
            if config.compile == "cudagraphs":
                torch.compiler.cudagraph_mark_step_begin()
            coef = {k: torch.as_tensor(v, dtype=torch.float32, device=device) for k, v in coef.items()}
            metrics, objs = graph(system, inputs, step, coef)
            # CUDA graphs reuse their output buffers: the metrics outlive the step in the window
            return {k: v.clone() for k, v in metrics.items()}, objs

        try:
            probe = torch.Generator(device=device).manual_seed(0)
            # a throw-away stream of the job's own kind (a method may draw weakly supervised batches)
            draw = DataStream(self.data, self.config.batch_size, np.random.default_rng(0), device)
            inputs = system.iteration_inputs(draw, probe)
            _, objs = objectives(inputs, self.step, system.coefficients(self.step))
            objective_gradients(objs, self.optimizers)  # the training step's backward passes
        except Exception as e:  # any compiler failure means: train eager
            reason = " ".join(f"{type(e).__name__}: {e}".split())[:200]
            return self._eager(f"torch.compile failed: {reason}")
        system.objectives = objectives
        return True

    def _eager(self, why: str) -> bool:
        log.warning("%s seed %d: training.compile %r not applied, trains eager: %s",
                    self.method, self.seed, self.config.compile, why)
        self.execution["compile"] = f"off ({why})"
        return False

    def checkpoint(self, summary: dict | None) -> dict:
        """The `last.pt` content: everything a resume needs, and the summary once finished."""
        return {
            "format": CHECKPOINT_FORMAT, "method": self.method, "params": self.params, "seed": self.seed,
            "config": self.config.model_dump(), "observation_shape": list(self.obs_shape),
            "factor_sizes": list(self.factor_sizes),
            "step": self.step, "train_seconds": self.train_seconds,
            "model": {k: v.detach().cpu() for k, v in self.system.state_dict().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "noise_rng": self.noise.get_state(), "noise_device": self.device.type,
            "data_rng": self.data_rng.bit_generator.state, "summary": summary,
            "execution": self.execution,
        }

    def save(self, summary: dict | None = None) -> None:
        if self.ck_path is not None:
            _atomic_save(self.checkpoint(summary), self.ck_path)

    def finish(self) -> TrainedModel:
        """Evaluate the summary, write the final checkpoint, return the trained model (Diverged when
        the summary is not finite)."""
        summary = _summary(self.system, self.sample, self.config, self.step, self.seeds, self.device)
        if any(not math.isfinite(v) for v in summary.values()):
            raise Diverged(self.step, "summary evaluation is not finite")
        self.save(summary)
        return TrainedModel(self.method, self.params, self.seed, self.config, self.system, self.step,
                            summary, self.train_seconds, self.obs_shape, self.device, self.execution,
                            self.data_stream)


def train(method: str, params: Mapping[str, Any] | None, data: Any, seed: int,
          config: TrainingSettings | None = None, checkpoint_dir: str | Path | None = None,
          progress: Callable[[int, int, dict[str, float]], None] | None = None) -> TrainedModel:
    """Train (or fit) `method` on `data`; resume from `checkpoint_dir/last.pt` when present.

    Raises `Diverged(step, message)` when the loss becomes NaN/inf (no checkpoint is written past the
    last finite step), `UserError` on bad input or an incompatible checkpoint."""
    config = config if config is not None else TrainingSettings()  # validated when built
    return TrainingRun(method, params, data, seed, config, checkpoint_dir).train(progress)


def _check_compatible(ck: dict, method: str, params: dict, seed: int, config: TrainingSettings,
                      obs_shape: tuple, path: Path) -> None:
    if ck.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"checkpoint {path} has unknown format {ck.get('format')!r}")
    mine = {"method": method, "params": params, "seed": seed, "observation_shape": list(obs_shape)}
    mine.update({k: getattr(config, k) for k in RESUME_KEYS + ADDED_KEYS})
    theirs = {k: ck[k] for k in ("method", "params", "seed", "observation_shape")}
    theirs.update({k: ck["config"].get(k) for k in RESUME_KEYS})
    # a checkpoint written before an ADDED setting existed was written at its default
    theirs.update({k: ck["config"].get(k, default_of(k)) for k in ADDED_KEYS})
    for k, v in mine.items():
        if theirs[k] != v:
            raise UserError(f"checkpoint {path} was written with {k}={theirs[k]!r}, not {v!r}")
