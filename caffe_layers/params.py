"""The checks every Python layer shares: its JSON param_str, its bottom counts, finite inputs.

BVLC Caffe hands a Python layer only ``param_str`` and ``phase``, not the
prototxt layer name, so error messages name the layer by its class and its
param_str, plus the optional ``"name"`` key that every layer accepts for
exactly this purpose (e.g. ``param_str: '{"name": "sparsity", "p": 2}'``).
"""
import json
import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable, Optional

import numpy as np

REQUIRED = object()
_KINDS = ("int", "float", "bool", "str", "float_list")


class LayerParamError(ValueError):
    """A layer's param_str is not valid JSON, names an unknown key, or holds a bad value."""


class LayerInputError(ValueError):
    """A layer got the wrong number of bottoms/tops or bottoms of the wrong shape or content."""


class NonFiniteInputError(LayerInputError):
    """A bottom blob holds NaN or Inf (raised instead of training on silently)."""


@dataclass(frozen=True)
class Param:
    """One param_str key: its kind (one of _KINDS), default, and optional value check.

    ``allowed`` describes the valid values for the error message; ``valid`` is
    a predicate on the converted value.
    """
    kind: str
    default: object = REQUIRED
    allowed: str = ""
    valid: Optional[Callable] = None

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"Param kind must be one of {_KINDS}, got {self.kind!r}")


NAME_PARAM = Param("str", "", "the prototxt layer name, used in error messages")


def _given_name(param_str):
    try:
        given = json.loads(param_str)
    except (TypeError, ValueError):
        return ""
    name = given.get("name") if isinstance(given, dict) else None
    return name if isinstance(name, str) else ""


def describe(layer):
    """'module.Class layer "name" (param_str '...')' for error messages."""
    cls = type(layer)
    param_str = getattr(layer, "param_str", "")
    name = _given_name(param_str)
    named = f' "{name}"' if name else ""
    return f"{cls.__module__}.{cls.__qualname__} layer{named} (param_str {param_str!r})"


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _convert(layer, key, spec, value):
    def fail(problem):
        expected = spec.allowed or spec.kind
        return LayerParamError(f"{describe(layer)}: key {key!r} {problem}; expected {expected}")

    if spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(f"must be an integer, got {value!r} ({type(value).__name__})")
    elif spec.kind == "float":
        if not _is_number(value):
            raise fail(f"must be a number, got {value!r} ({type(value).__name__})")
        value = float(value)
        if not math.isfinite(value):
            raise fail(f"must be finite, got {value!r}")
    elif spec.kind == "bool":
        if not isinstance(value, bool):
            raise fail(f"must be true or false, got {value!r} ({type(value).__name__})")
    elif spec.kind == "str":
        if not isinstance(value, str):
            raise fail(f"must be a string, got {value!r} ({type(value).__name__})")
    elif spec.kind == "float_list":
        if not isinstance(value, list) or not all(_is_number(v) for v in value):
            raise fail(f"must be a list of numbers, got {value!r}")
        value = [float(v) for v in value]
        if not all(math.isfinite(v) for v in value):
            raise fail(f"must hold finite numbers, got {value!r}")
    if spec.valid is not None and not spec.valid(value):
        raise fail(f"has the invalid value {value!r}")
    return value


def parse_params(layer, schema):
    """Parse ``layer.param_str`` (JSON object) against ``schema`` (key -> Param).

    Missing keys take their defaults; unknown keys, wrong types, invalid values
    and missing required keys raise LayerParamError naming the layer and key.
    Returns a namespace with one attribute per key (``name`` included).
    """
    schema = {"name": NAME_PARAM, **schema}
    text = (getattr(layer, "param_str", "") or "").strip()
    try:
        given = json.loads(text) if text else {}
    except ValueError as exc:
        raise LayerParamError(
            f"{describe(layer)}: param_str is not valid JSON ({exc}); write a JSON object, "
            f"e.g. param_str: '{{\"key\": value}}'") from None
    if not isinstance(given, dict):
        raise LayerParamError(f"{describe(layer)}: param_str must be a JSON object "
                              f"{{...}}, got {type(given).__name__}")
    unknown = sorted(set(given) - set(schema))
    if unknown:
        raise LayerParamError(f"{describe(layer)}: unknown key(s) {', '.join(map(repr, unknown))}; "
                              f"valid keys are {', '.join(map(repr, sorted(schema)))}")
    values = {}
    for key, spec in schema.items():
        if key in given:
            values[key] = _convert(layer, key, spec, given[key])
        elif spec.default is REQUIRED:
            raise LayerParamError(f"{describe(layer)}: required key {key!r} is missing "
                                  f"({spec.allowed or spec.kind})")
        else:
            values[key] = spec.default
    return SimpleNamespace(**values)


def blob_list(blobs):
    """A Python list of a layer's bottom/top blobs (pycaffe's vector supports indexing, not iteration)."""
    return [blobs[index] for index in range(len(blobs))]


def check_counts(layer, bottom, top, bottoms, tops=1):
    """Raise LayerInputError unless there are ``bottoms`` bottoms (an int, or (min, None)) and ``tops`` tops."""
    low, high = (bottoms, bottoms) if isinstance(bottoms, int) else bottoms
    if len(bottom) < low or (high is not None and len(bottom) > high):
        wanted = f"{low}" if low == high else f"at least {low}"
        raise LayerInputError(f"{describe(layer)}: needs {wanted} bottom blob(s), got {len(bottom)}")
    if len(top) != tops:
        raise LayerInputError(f"{describe(layer)}: needs {tops} top blob(s), got {len(top)}")


def check_finite(layer, what, array):
    """Raise NonFiniteInputError naming the layer if ``array`` holds NaN or Inf."""
    if np.isfinite(array).all():
        return
    nans = int(np.isnan(array).sum())
    infs = int(np.isinf(array).sum())
    raise NonFiniteInputError(
        f"{describe(layer)}: {what} holds {nans} NaN and {infs} Inf values (of {array.size}); "
        f"training has diverged upstream (lower base_lr, check the input data) - "
        f"refusing to go on with non-finite values")


def reshape_inner_product(layer, bottom, top, num_output):
    """An inner-product layer's reshape: bottom N x ... flattened to N x K must match the weights
    (blobs[0], num_output x K), else LayerInputError; top becomes N x num_output."""
    num = bottom[0].data.shape[0]
    inputs = bottom[0].count // num
    if inputs != layer.blobs[0].data.shape[1]:
        raise LayerInputError(f"{describe(layer)}: input has {inputs} values per sample but the "
                              f"weights expect {layer.blobs[0].data.shape[1]}")
    top[0].reshape(num, num_output)
