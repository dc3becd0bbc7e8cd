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
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.allocator import MALLOC_ENV, apply_worker_env
from benchmark.data.device import data_sampler
from benchmark.errors import UserError
from benchmark.models import METHODS, validate_params
from benchmark.models.architectures import init_weights
from benchmark.models.base import BuildContext, System
from benchmark.settings import RESUME_KEYS, TrainingSettings

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


# --------------------------------------------------------------------------- the trained model

class TrainedModel:
    """A trained (or fitted) model: its representation functions, decoder and training summary."""

    data_stream: dict | None = None  # how its training batches were drawn, when on the device

    def __init__(self, method: str, params: dict[str, Any], seed: int, config: TrainingSettings,
                 system: System, steps: int, summary: dict[str, float], train_seconds: float,
                 observation_shape: tuple[int, int, int], device: torch.device) -> None:
        self.method, self.params, self.seed, self.config = method, params, seed, config
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
                                       dict(ck["summary"]), self.train_seconds, obs_shape, device)

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
            while self.step < config.steps:
                metrics, advanced = system.training_step(self.draw, self.step, self.noise, self.optimizers)
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
        model = TrainedModel(self.method, self.params, self.seed, self.config, self.system, self.step,
                             summary, self.train_seconds, self.obs_shape, self.device)
        model.data_stream = self.data_stream
        return model


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
    mine.update({k: getattr(config, k) for k in RESUME_KEYS})
    theirs = {k: ck[k] for k in ("method", "params", "seed", "observation_shape")}
    theirs.update({k: ck["config"].get(k) for k in RESUME_KEYS})
    for k, v in mine.items():
        if theirs[k] != v:
            raise UserError(f"checkpoint {path} was written with {k}={theirs[k]!r}, not {v!r}")
