"""Typed, validated view of ``params.yaml``.

Every section is a frozen dataclass. ``load_params`` reads the YAML once,
checks every key (unknown, missing, type, range, consistency) and raises
``StudyError`` with the key, the bad value and what is allowed. The library
never reads ``params.yaml`` itself; stages pass these objects down.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from landscape.errors import StudyError

N_TRAIN_IMAGES = 60000
FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _check(allowed: str, ok):
    return {"allowed": allowed, "ok": ok}


POSITIVE = _check("a number > 0", lambda v: v > 0)
NON_NEGATIVE = _check("a number >= 0", lambda v: v >= 0)
PROBABILITY = _check("a number in [0, 1)", lambda v: 0 <= v < 1)
NONEMPTY = _check("a non-empty list", lambda v: len(v) > 0)
ALL_POSITIVE = _check("a non-empty list of numbers > 0", lambda v: len(v) > 0 and all(x > 0 for x in v))


def one_of(*choices: str):
    return _check("one of " + ", ".join(repr(c) for c in choices), lambda v: v in choices)


def subset_of(*choices: str):
    return _check(
        "a non-empty list drawn from " + ", ".join(repr(c) for c in choices),
        lambda v: len(v) > 0 and len(set(v)) == len(v) and all(x in choices for x in v),
    )


def checked(default=dataclasses.MISSING, **check):
    return field(default=default, metadata=check)


MODEL_NAMES = ("mlp", "cnn")
NOISE_MODES = ("absolute", "relative", "filter")
BN_MODES = ("frozen", "recalibrated")


@dataclass(frozen=True)
class DataParams:
    mirror: str
    urls: list[str]
    sha256: dict[str, str]
    val_size: int = checked(**_check(f"an integer in [1, {N_TRAIN_IMAGES - 1}]", lambda v: 0 < v < N_TRAIN_IMAGES))
    split_seed: int = checked(**NON_NEGATIVE)
    train_eval_size: int = checked(**POSITIVE)


@dataclass(frozen=True)
class TrainParams:
    seed: int = checked(**NON_NEGATIVE)
    epochs: int = checked(**POSITIVE)
    batch_size: int = checked(**POSITIVE)
    optimizer: str = checked(**one_of("sgd", "adam"))
    lr: float = checked(**POSITIVE)
    momentum: float = checked(**PROBABILITY)
    weight_decay: float = checked(**NON_NEGATIVE)
    schedule: str = checked(**one_of("constant", "cosine"))
    device: str = checked(**one_of("auto", "cpu", "cuda"))
    eval_batch_size: int = checked(**POSITIVE)


@dataclass(frozen=True)
class MLPParams:
    hidden: list[int] = checked(**ALL_POSITIVE)


@dataclass(frozen=True)
class CNNParams:
    channels: list[int] = checked(**ALL_POSITIVE)
    fc: int = checked(**POSITIVE)
    dropout_conv: float = checked(**PROBABILITY)
    dropout_fc: float = checked(**PROBABILITY)


@dataclass(frozen=True)
class RobustnessParams:
    sigmas: list[float] = checked(**_check("a non-empty list of numbers >= 0", lambda v: len(v) > 0 and min(v) >= 0))
    trials: int = checked(**POSITIVE)
    seed: int = checked(**NON_NEGATIVE)
    modes: list[str] = checked(**subset_of(*NOISE_MODES))
    bn: list[str] = checked(**subset_of(*BN_MODES))
    drops: list[float] = checked(**ALL_POSITIVE)
    bisect_steps: int = checked(**NON_NEGATIVE)
    train_samples: int = checked(**POSITIVE)
    val_samples: int = checked(**POSITIVE)
    bn_samples: int = checked(**POSITIVE)


@dataclass(frozen=True)
class SliceParams:
    directions: int = checked(**POSITIVE)
    points: int = checked(
        **_check("an odd integer >= 3 (the grid must contain alpha = 0)", lambda v: v >= 3 and v % 2 == 1)
    )
    span: float = checked(**POSITIVE)
    normalization: str = checked(**one_of("filter", "layer", "none"))
    ignore: str = checked(**one_of("biasbn", "none"))
    train_samples: int = checked(**POSITIVE)
    val_samples: int = checked(**POSITIVE)
    seed: int = checked(**NON_NEGATIVE)
    bn: str = checked(**one_of(*BN_MODES))
    bn_samples: int = checked(**POSITIVE)
    fit_fraction: float = checked(**_check("a number in (0, 1]", lambda v: 0 < v <= 1))
    taus: list[float] = checked(**ALL_POSITIVE)


@dataclass(frozen=True)
class Params:
    data: DataParams
    train: TrainParams
    mlp: MLPParams
    cnn: CNNParams
    robustness: RobustnessParams
    slice: SliceParams

    def model(self, name: str) -> MLPParams | CNNParams:
        return getattr(self, name)


def _closest(key: str, options: list[str]) -> str:
    match = difflib.get_close_matches(key, options, n=1, cutoff=0.5)
    return f" Did you mean '{match[0]}'?" if match else ""


def _coerce(value: Any, typ: Any, key: str) -> Any:
    """Convert a YAML value to ``typ`` or raise; YAML 1.1 leaves '1e-06' as a string."""
    origin = get_origin(typ)
    if origin is list:
        if not isinstance(value, list):
            raise StudyError(f"params.yaml: '{key}' = {value!r} must be a list.")
        (item,) = get_args(typ)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise StudyError(f"params.yaml: '{key}' = {value!r} must be a mapping.")
        k_t, v_t = get_args(typ)
        return {_coerce(k, k_t, key): _coerce(v, v_t, f"{key}.{k}") for k, v in value.items()}
    if typ is bool or isinstance(value, bool) and typ is not str:
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


def _section(cls: type, raw: Any, name: str):
    if not isinstance(raw, dict):
        raise StudyError(f"params.yaml: section '{name}' must be a mapping of keys, got {raw!r}.")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise StudyError(
                f"params.yaml: unknown key '{name}.{key}'.{_closest(str(key), list(fields))} "
                f"Allowed keys in '{name}': {', '.join(fields)}."
            )
    values = {}
    for fname, f in fields.items():
        key = f"{name}.{fname}"
        if fname not in raw:
            raise StudyError(f"params.yaml: missing key '{key}'. Add it to params.yaml (see README, 'Parameters').")
        value = _coerce(raw[fname], hints[fname], key)
        check = f.metadata
        if check and not check["ok"](value):
            raise StudyError(f"params.yaml: '{key}' = {raw[fname]!r} is not allowed; it must be {check['allowed']}.")
        values[fname] = value
    return cls(**values)


def _consistency(p: Params) -> None:
    n_fit = N_TRAIN_IMAGES - p.data.val_size
    if p.train.batch_size > n_fit:
        raise StudyError(
            f"params.yaml: 'train.batch_size' = {p.train.batch_size} is larger than the training split "
            f"({N_TRAIN_IMAGES} - data.val_size = {n_fit} images). Lower the batch size or data.val_size."
        )
    if len(p.cnn.channels) > 4:
        raise StudyError(
            f"params.yaml: 'cnn.channels' = {p.cnn.channels} has {len(p.cnn.channels)} blocks; each halves 28x28 "
            "images, so at most 4 are allowed."
        )
    for key, value in (
        ("data.train_eval_size", p.data.train_eval_size),
        ("robustness.train_samples", p.robustness.train_samples),
        ("robustness.bn_samples", p.robustness.bn_samples),
        ("slice.train_samples", p.slice.train_samples),
        ("slice.bn_samples", p.slice.bn_samples),
    ):
        if value > n_fit:
            raise StudyError(
                f"params.yaml: '{key}' = {value} is larger than the training split "
                f"({N_TRAIN_IMAGES} - data.val_size = {n_fit} images). Lower it."
            )
    for key, value in (
        ("robustness.val_samples", p.robustness.val_samples),
        ("slice.val_samples", p.slice.val_samples),
    ):
        if value > p.data.val_size:
            raise StudyError(
                f"params.yaml: '{key}' = {value} is larger than the validation split (data.val_size = "
                f"{p.data.val_size}). Lower it."
            )
    half = p.slice.points // 2
    if int(half * p.slice.fit_fraction + 1e-9) < 1:
        raise StudyError(
            f"params.yaml: 'slice.points' = {p.slice.points} with 'slice.fit_fraction' = {p.slice.fit_fraction} "
            "leaves fewer than 3 grid points for the quadratic fit; use points >= "
            f"{2 * math.ceil(1 / p.slice.fit_fraction) + 1} or a larger fit_fraction."
        )
    if min(p.robustness.sigmas) != 0:
        raise StudyError(
            f"params.yaml: 'robustness.sigmas' = {p.robustness.sigmas} must include 0, the unperturbed baseline "
            "that accuracy drops are measured from."
        )
    if sorted(p.robustness.sigmas) != p.robustness.sigmas or len(set(p.robustness.sigmas)) != len(p.robustness.sigmas):
        raise StudyError(f"params.yaml: 'robustness.sigmas' = {p.robustness.sigmas} must be strictly increasing.")


SECTIONS = {
    "data": DataParams,
    "train": TrainParams,
    "mlp": MLPParams,
    "cnn": CNNParams,
    "robustness": RobustnessParams,
    "slice": SliceParams,
}


def parse_params(raw: Any) -> Params:
    """Validate a parsed params mapping and return the typed view."""
    if not isinstance(raw, dict):
        raise StudyError("params.yaml must be a mapping with sections: " + ", ".join(SECTIONS) + ".")
    for key in raw:
        if key not in SECTIONS:
            raise StudyError(
                f"params.yaml: unknown section '{key}'.{_closest(str(key), list(SECTIONS))} "
                f"Allowed sections: {', '.join(SECTIONS)}."
            )
    for key in SECTIONS:
        if key not in raw:
            raise StudyError(f"params.yaml: missing section '{key}'.")
    params = Params(**{name: _section(cls, raw[name], name) for name, cls in SECTIONS.items()})
    _consistency(params)
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``; any problem is a ``StudyError`` naming the key."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise StudyError(f"cannot read {path}: {e.strerror}. Run the stage from the repository root.") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise StudyError(f"{path} is not valid YAML: {e}") from None
    return parse_params(raw)


def check_model_name(name: str) -> str:
    if name not in MODEL_NAMES:
        raise StudyError(
            f"unknown model '{name}'.{_closest(name, list(MODEL_NAMES))} Known models: {', '.join(MODEL_NAMES)}."
        )
    return name
