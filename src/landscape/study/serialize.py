"""Frozen dataclasses <-> plain JSON values, driven by the type hints (no key is special here)."""

from __future__ import annotations

import dataclasses
import math
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints


def to_json(obj: Any) -> Any:
    """Plain JSON values of a summary (NaN and infinities become null)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def from_json(cls: Any, data: Any) -> Any:
    """The inverse of ``to_json`` for the summary type ``cls`` (null becomes NaN for floats)."""
    origin = get_origin(cls)
    if origin in (Union, UnionType):  # X | None: null stays None, anything else is an X
        if data is None:
            return None
        (inner,) = [a for a in get_args(cls) if a is not type(None)]
        return from_json(inner, data)
    if origin is list:
        (item,) = get_args(cls)
        return [from_json(item, v) for v in data]
    if origin is dict:
        _, item = get_args(cls)
        return {k: from_json(item, v) for k, v in data.items()}
    if dataclasses.is_dataclass(cls):
        hints = get_type_hints(cls)
        return cls(
            **{f.name: from_json(hints[f.name], data[f.name]) for f in dataclasses.fields(cls) if f.name in data}
        )
    if cls is float:
        return math.nan if data is None else float(data)
    return data
