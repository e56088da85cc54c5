"""Validate a parsed YAML mapping against frozen dataclasses: unknown, missing, wrongly typed or
out-of-range keys become a ``StudyError`` naming the key, the bad value and what is allowed.

A field declares its rule with ``checked(**POSITIVE)`` and the like; nested dataclasses, lists,
mappings and booleans are checked recursively. YAML 1.1 leaves '1e-06' a string: it is read as a float.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import field
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from landscape.errors import StudyError

FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def rule(allowed: str, ok):
    return {"allowed": allowed, "ok": ok}


POSITIVE = rule("a number > 0", lambda v: v > 0)
NON_NEGATIVE = rule("a number >= 0", lambda v: v >= 0)
PROBABILITY = rule("a number in [0, 1)", lambda v: 0 <= v < 1)
NONEMPTY = rule("a non-empty list", lambda v: len(v) > 0)
ALL_POSITIVE = rule("a non-empty list of numbers > 0", lambda v: len(v) > 0 and all(x > 0 for x in v))


def one_of(*choices: str):
    return rule("one of " + ", ".join(repr(c) for c in choices), lambda v: v in choices)


def subset_of(*choices: str):
    return rule(
        "a non-empty list drawn from " + ", ".join(repr(c) for c in choices),
        lambda v: len(v) > 0 and len(set(v)) == len(v) and all(x in choices for x in v),
    )


def checked(default=dataclasses.MISSING, **check):
    return field(default=default, metadata=check)


def closest(key: str, options: list[str]) -> str:
    match = difflib.get_close_matches(key, options, n=1, cutoff=0.5)
    return f" Did you mean '{match[0]}'?" if match else ""


def suggest(name: str, key: str, own: list[str], elsewhere: dict[str, list[str]]) -> str:
    """' Did you mean ...?' for the unknown ``key`` of section ``name``, whose keys are ``own``: the same key
    in another section of ``elsewhere`` (section -> its keys; a key that moved), else the closest key of its
    own section, else the closest ``section.key`` of another section."""
    for other, keys in elsewhere.items():
        if key in keys:
            return f" Did you mean '{other}.{key}'?"
    qualified = [f"{other}.{k}" for other, keys in elsewhere.items() for k in keys]
    return closest(key, own) or closest(f"{name}.{key}", qualified)


def coerce(value: Any, typ: Any, key: str) -> Any:
    """Convert a YAML value to ``typ`` or raise; YAML 1.1 leaves '1e-06' as a string."""
    origin = get_origin(typ)
    if origin in (Union, UnionType) and type(None) in get_args(typ):  # an optional key: null, or the other type
        (other,) = [t for t in get_args(typ) if t is not type(None)]
        return None if value is None else coerce(value, other, key)
    if origin is list:
        if not isinstance(value, list):
            raise StudyError(f"params.yaml: '{key}' = {value!r} must be a list.")
        (item,) = get_args(typ)
        return [coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise StudyError(f"params.yaml: '{key}' = {value!r} must be a mapping.")
        k_t, v_t = get_args(typ)
        return {coerce(k, k_t, key): coerce(v, v_t, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(typ):
        return section(typ, value, key)
    if typ is object:
        return value  # checked by the caller (a variant's train overrides: against the train section)
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise StudyError(f"params.yaml: '{key}' = {value!r} must be true or false.")
    if isinstance(value, bool) and typ is not str:
        raise StudyError(f"params.yaml: '{key}' = {value!r} must be {typ.__name__}, not a boolean.")
    if typ is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int):
            return value
        raise StudyError(f"params.yaml: '{key}' = {value!r} must be an integer.")
    if typ is float:
        if isinstance(value, str) and FLOAT_RE.match(value.strip()):
            value = float(value)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
        raise StudyError(f"params.yaml: '{key}' = {value!r} must be a finite number.")
    if typ is str:
        if isinstance(value, str):
            return value
        raise StudyError(f"params.yaml: '{key}' = {value!r} must be a string.")
    raise TypeError(f"unsupported param type {typ!r}")


def section(cls: type, raw: Any, name: str, elsewhere: dict[str, list[str]] | None = None):
    """The dataclass ``cls`` from the mapping ``raw`` at ``name``; ``elsewhere`` (other sections' keys)
    widens the suggestion for an unknown key."""
    if not isinstance(raw, dict):
        raise StudyError(f"params.yaml: section '{name}' must be a mapping of keys, got {raw!r}.")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise StudyError(
                f"params.yaml: unknown key '{name}.{key}'.{suggest(name, str(key), list(fields), elsewhere or {})} "
                f"Allowed keys in '{name}': {', '.join(fields)}."
            )
    values = {}
    for fname, f in fields.items():
        key = f"{name}.{fname}"
        if fname not in raw and (f.default_factory is not dataclasses.MISSING or f.default is not dataclasses.MISSING):
            continue  # an optional key (e.g. a variant's train overrides or hidden widths): the dataclass's default
        if fname not in raw:
            raise StudyError(f"params.yaml: missing key '{key}'. Add it to params.yaml (see README, 'Parameters').")
        value = coerce(raw[fname], hints[fname], key)
        check = f.metadata
        if check and not check["ok"](value):
            raise StudyError(f"params.yaml: '{key}' = {raw[fname]!r} is not allowed; it must be {check['allowed']}.")
        values[fname] = value
    return cls(**values)
