"""Training settings: one type for a study spec's `training:` and for `benchmark.training.train`.

Defaults are the study's (disentanglement_lib unsupervised_study_v1, `shared.gin`) where it has one.
What a setting means for a trained model sits next to it, as an `Annotated` mark:

- `NOT_IN_ID`: cannot change the trained weights, so it stays out of the model id (and job id);
- `MATCH_ON_RESUME`: a checkpoint written with another value cannot be resumed;
- `ADDED`: added after model ids existed: in the model id only away from its default (every earlier
  id stands) and, like `MATCH_ON_RESUME`, a checkpoint written with another value is not resumed;
- `EXECUTION`: how the kernels run (memory layout, compilation): changes the trained weights only by
  rounding, as the thread count does, so it stays out of the model id; rows record it in
  `provenance` (docs/performance.md, section on precision and execution options).

Not every value a field accepts is offered to a study spec: `NOT_YET_VALIDATED` lists those whose
effect on trained models has not been measured against fp32 yet (`bench/precision_check.py`).

Torch-free: `benchmark run --dry-run` loads specs of thousands of jobs without importing torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from benchmark.errors import UserError


@dataclass(frozen=True)
class _Mark:
    meaning: str


NOT_IN_ID = _Mark("cannot change the weights: not in the model id")
MATCH_ON_RESUME = _Mark("must match between a checkpoint and the run that resumes it")
ADDED = _Mark("in the model id away from its default only; must match on resume")
EXECUTION = _Mark("kernel choice only (rounding): not in the model id, recorded in provenance")

# Values a study spec may not use until `bench/precision_check.py` has compared them with fp32 on
# the hardware they are for (docs/performance.md). Python callers (the check itself) may.
NOT_YET_VALIDATED: dict[tuple[str, str], str] = {
    ("precision", "tf32"): "TF32 acts on CUDA only and has not been validated on a GPU yet",
    ("compile", "cudagraphs"): "CUDA graphs have not been validated on a GPU yet",
}


def validation_message(exc: ValidationError, prefix: str = "") -> str:
    """pydantic's first error as one line: `where: what (and N more problems)`."""
    errors = exc.errors()
    loc = [str(p) for p in ([prefix] if prefix else []) + list(errors[0]["loc"])]
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{'.'.join(loc) or '(top level)'}: {errors[0]['msg']}{more}"


class TrainingSettings(BaseModel):
    """How a model is trained. Bad values raise a one-line `UserError` naming the setting."""

    model_config = ConfigDict(extra="forbid")

    # 0 trains nothing: the initial weights (fitted baselines ignore steps); a study asks for >= 1.
    steps: Annotated[int, Field(ge=0)] = 300_000
    batch_size: Annotated[int, Field(gt=0), MATCH_ON_RESUME] = 64
    learning_rate: Annotated[float, Field(gt=0), MATCH_ON_RESUME] = 1e-4
    num_latent: Annotated[int, Field(gt=0), MATCH_ON_RESUME] = 10
    checkpoint_every: Annotated[int, Field(gt=0), NOT_IN_ID] = 1000
    device: Annotated[str, NOT_IN_ID] = "auto"
    # conv: dlib's conv encoder / deconv decoder (64x64 inputs); fc: its fully connected variant
    # (any size); auto: conv for 64x64, fc otherwise.
    architecture: Annotated[Literal["auto", "conv", "fc"], MATCH_ON_RESUME] = "auto"
    reconstruction_loss: Annotated[Literal["bernoulli", "l2"], MATCH_ON_RESUME] = "bernoulli"
    # Fresh batches the post-training summary averages over (dlib: 1000).
    eval_batches: Annotated[int, Field(ge=0)] = 1000
    # Observations the fitted baselines (PCA, ICA) see.
    fit_samples: Annotated[int, Field(gt=0), MATCH_ON_RESUME] = 10_000
    log_every: Annotated[int, Field(gt=0), NOT_IN_ID] = 100
    # Where training batches are drawn (`benchmark.data.device`): "on" gathers them on the device
    # from the dataset's grid held in its memory, "off" samples them on the host; "auto" = on for
    # accelerators, off on the CPU. The batches are the host's, bitwise, except noisy-dSprites' noise
    # on an accelerator (same distribution): README, "Data at device speed".
    data_on_device: Annotated[Literal["auto", "on", "off"], NOT_IN_ID] = "auto"

    @field_validator("data_on_device", mode="before")
    @classmethod
    def _yaml_switch(cls, value: Any) -> Any:
        return {True: "on", False: "off"}[value] if isinstance(value, bool) else value  # YAML's on/off
    # Arithmetic of the training forward passes (benchmark.training.precision_scope): fp32, as dlib;
    # tf32: fp32 with TF32 matrix products and convolutions on CUDA (on a CPU exactly fp32); bf16:
    # every layer's matrix product or convolution under bf16 autocast, fp32 weights, optimiser,
    # activations between layers and losses. Evaluation encodes in fp32 whatever the value.
    precision: Annotated[Literal["fp32", "tf32", "bf16"], ADDED] = "fp32"
    # Conv weights in channels-last memory layout while training (no gain measured on a CPU).
    channels_last: Annotated[bool, EXECUTION] = False
    # torch.compile of the forward pass of models trained one at a time (packs run eager): off,
    # inductor (torch.compile's default mode) or cudagraphs (its "reduce-overhead" mode, CUDA only);
    # with bf16 it trains eager (the per-layer autocast hooks are not compiled).
    compile: Annotated[Literal["off", "inductor", "cudagraphs"], EXECUTION] = "off"

    def __init__(self, **values: Any) -> None:
        # pydantic calls this for the settings nested in a spec too: load_spec adds the file name.
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise UserError(validation_message(exc, "training")) from None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainingSettings:
        """From a user's mapping; an unknown key is a UserError listing the known ones."""
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            raise UserError(f"unknown training setting {unknown[0]!r} "
                            f"(known: {', '.join(sorted(cls.model_fields))})")
        return cls(**values)


def fields_marked(mark: _Mark) -> tuple[str, ...]:
    """The settings carrying `mark`, in declaration order."""
    return tuple(name for name, f in TrainingSettings.model_fields.items() if mark in f.metadata)


NOT_IN_MODEL_ID: frozenset[str] = frozenset(fields_marked(NOT_IN_ID))
RESUME_KEYS: tuple[str, ...] = fields_marked(MATCH_ON_RESUME)
ADDED_KEYS: tuple[str, ...] = fields_marked(ADDED)
EXECUTION_KEYS: tuple[str, ...] = fields_marked(EXECUTION)


def default_of(name: str) -> Any:
    """The default of setting `name` (what a checkpoint or job written before it existed had)."""
    return TrainingSettings.model_fields[name].default


def model_id_settings(training: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a model id hashes: all but the NOT_IN_ID and EXECUTION ones, an ADDED one only
    away from its default."""
    return {k: v for k, v in training.items()
            if k not in NOT_IN_MODEL_ID and k not in EXECUTION_KEYS
            and not (k in ADDED_KEYS and v == default_of(k))}


def execution_options(config: TrainingSettings) -> dict[str, Any]:
    """The EXECUTION settings away from their defaults (what the rows' provenance adds)."""
    return {k: getattr(config, k) for k in EXECUTION_KEYS if getattr(config, k) != default_of(k)}


def check_offered(config: TrainingSettings) -> None:
    """ValueError when `config` uses a value of `NOT_YET_VALIDATED` (study specs call this)."""
    for (name, value), why in NOT_YET_VALIDATED.items():
        if getattr(config, name) == value:
            raise ValueError(f"{name} {value!r} is not offered yet: {why} "
                             "(bench/precision_check.py, run by bash bench/gpu_check.sh)")
