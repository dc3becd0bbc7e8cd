"""METHODS: every selectable method, its hyperparameters (type, default, allowed values) and builder.

Names and defaults follow disentanglement_lib's gin bindings (`vae.beta`, `annealed_vae.c_max`, ...);
the study sweeps one value per method (docs/dlib.md, "Defaults"), the others are fixed at these defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from benchmark.errors import UserError

if TYPE_CHECKING:
    from benchmark.models.base import BuildContext, System


@dataclass(frozen=True)
class Param:
    default: Any
    type: type  # float, int, str or bool; an int is accepted where a float is expected
    choices: tuple | None = None
    minimum: float | None = None
    doc: str = ""


@dataclass(frozen=True)
class MethodSpec:
    name: str
    build: Callable[[BuildContext, dict[str, Any]], System]
    params: Mapping[str, Param] = field(default_factory=dict)
    doc: str = ""


def _check_value(method: str, name: str, p: Param, value: Any) -> Any:
    where = f"hyperparameter {name!r} of method {method!r}"
    if p.type is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif p.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, p.type)
    if not ok:
        raise UserError(f"{where} must be {p.type.__name__}, got {type(value).__name__} {value!r}")
    if p.choices is not None and value not in p.choices:
        raise UserError(f"{where} must be one of {list(p.choices)}, got {value!r}")
    if p.minimum is not None and value < p.minimum:
        raise UserError(f"{where} must be >= {p.minimum}, got {value!r}")
    return value


def validate_params(method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Full hyperparameter dict of `method` (defaults filled in); UserError on an unknown method,
    an unknown hyperparameter, a wrong type or a value out of range."""
    from benchmark.models import METHODS

    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; known: {', '.join(sorted(METHODS))}")
    spec = METHODS[method]
    params = dict(params or {})
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        known = ", ".join(spec.params) or "none"
        raise UserError(f"unknown hyperparameter {unknown[0]!r} for method {method!r} "
                        f"(known: {known})")
    return {k: _check_value(method, k, p, params.get(k, p.default)) for k, p in spec.params.items()}
