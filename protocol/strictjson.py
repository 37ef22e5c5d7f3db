"""JSON off the wire, one way for every decoder: NaN, Infinity and numbers that overflow to
infinity (`1e999`) are refused, since replies carrying them could not be encoded again and a
timer or a comparison with them misbehaves silently."""

from __future__ import annotations

import json
import math
from typing import Any


class NotFiniteError(ValueError):
    """A JSON number that is not finite."""


def _constant(name: str) -> Any:
    raise NotFiniteError(f"{name} is not valid JSON")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotFiniteError(f"number {text[:40]} is out of range")
    return value


_decoder = json.JSONDecoder(parse_constant=_constant, parse_float=_float)
_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def loads(text: str) -> Any:
    """Decode JSON text; ValueError (NotFiniteError for NaN/infinity) or RecursionError."""
    return _decoder.decode(text)


def dumps(value: Any) -> str:
    """Compact JSON; ValueError for NaN/infinity, TypeError for what JSON cannot hold."""
    return _encoder.encode(value)
