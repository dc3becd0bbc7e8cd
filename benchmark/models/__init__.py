"""Models of the study and of the seed papers, selectable by name.

`METHODS[name]` is a `MethodSpec` (hyperparameters with defaults and a builder);
`validate_params(method, params)` returns the full, checked hyperparameter dict. Both live in
`benchmark.models.registry`.
"""

from benchmark.models.registry import METHODS, MethodSpec, Param, validate_params

__all__ = ["METHODS", "MethodSpec", "Param", "validate_params"]
