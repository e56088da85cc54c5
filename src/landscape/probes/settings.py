"""What each probe is asked to do: small frozen dataclasses with defaults, checked on construction.

Torch-free, so that ``landscape.study.params`` (which builds these from params.yaml) stays importable
without torch. A bad value raises ``ValueError`` naming the field, the value and what is allowed.

Random draws are given as explicit seeds, one per draw (a noise trial, a slice direction): the same
seeds give the same draws on every device.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NOISE_MODES = ("absolute", "relative", "filter")
BN_MODES = ("frozen", "recalibrated")
PARAMETER_SETS = ("weights", "all")
NORMALIZATIONS = ("filter", "layer", "none")


def _check(obj: Any, name: str, ok: Callable[[Any], bool], allowed: str) -> None:
    value = getattr(obj, name)
    if not ok(value):
        raise ValueError(f"{type(obj).__name__}.{name} = {value!r}: expected {allowed}")


def _as_tuples(obj: Any) -> None:
    """Lists given for tuple fields become tuples, so that settings stay immutable and hashable."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, list | range):
            object.__setattr__(obj, f.name, tuple(value))


def _common(obj: Any) -> None:
    """The checks every probe's settings share: seeds, the perturbed parameter set."""
    _as_tuples(obj)
    _check(obj, "seeds", lambda v: len(v) > 0 and all(isinstance(s, int) and s >= 0 for s in v), "integers >= 0")
    _check(obj, "parameters", lambda v: v in PARAMETER_SETS, f"one of {PARAMETER_SETS}")


def _bn_modes(obj: Any) -> None:
    _check(obj, "bn", lambda v: len(v) > 0 and set(v) <= set(BN_MODES), f"a subset of {BN_MODES}")


def _odd_grid(obj: Any) -> None:
    _check(obj, "points", lambda v: isinstance(v, int) and v >= 3 and v % 2 == 1, "an odd integer >= 3 (alpha = 0)")
    _check(obj, "span", lambda v: v > 0, "a number > 0")
    _check(obj, "normalization", lambda v: v in NORMALIZATIONS, f"one of {NORMALIZATIONS}")


@dataclass(frozen=True)
class Score:
    """One evaluation: the probes' result at every point, and the study's per-split training scores."""

    loss: float  # mean loss_fn over the samples (default: cross-entropy, nats)
    acc: float  # fraction of argmax hits in [0, 1]; NaN unless the outputs are class logits and y integer labels


@dataclass(frozen=True)
class NoiseSettings:
    """Accuracy under parameter noise theta + sigma * delta_mode(xi_k), one Gaussian xi_k per seed.

    ``modes``: ``absolute`` (delta = xi), ``relative`` (theta * xi), ``filter`` (xi scaled to each output
    unit's RMS weight). ``bn``: BN statistics ``frozen`` (the model's own) and/or ``recalibrated`` on
    ``bn_data`` after each perturbation (skipped for a model without BN). ``parameters``: ``weights``
    (tensors of dim > 1) or ``all``.
    """

    sigmas: tuple[float, ...] = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    modes: tuple[str, ...] = ("filter",)
    parameters: str = "weights"
    bn: tuple[str, ...] = ("frozen",)

    def __post_init__(self) -> None:
        _common(self)
        _check(self, "sigmas", lambda v: len(v) > 0 and min(v) >= 0, "a non-empty list of numbers >= 0")
        _check(self, "modes", lambda v: len(v) > 0 and set(v) <= set(NOISE_MODES), f"a subset of {NOISE_MODES}")
        _bn_modes(self)


@dataclass(frozen=True)
class SliceSettings:
    """L(theta + alpha d_k) on ``points`` alphas evenly over [-span, span], one random direction d_k per seed,
    rescaled to the weights by ``normalization`` (``filter``: per output unit, Li et al. 2018).

    Beside the losses, the local d_k^T H d_k (Hessian of the mean loss, eval mode, inside one activation
    pattern) on the split named ``hessian_split`` (None: the first split).
    """

    points: int = 21
    span: float = 1.0
    seeds: tuple[int, ...] = (0, 1, 2)
    normalization: str = "filter"
    parameters: str = "weights"
    bn: tuple[str, ...] = ("frozen",)
    hessian_split: str | None = None

    def __post_init__(self) -> None:
        _common(self)
        _odd_grid(self)
        _bn_modes(self)


@dataclass(frozen=True)
class SurfaceSettings:
    """L(theta + a d1 + b d2) on a points x points grid over [-span, span]^2, BN frozen; d1 and d2 are
    the slice directions of ``seeds[0]`` and ``seeds[1]``."""

    points: int = 11
    span: float = 1.0
    seeds: tuple[int, ...] = (0, 1)
    normalization: str = "filter"
    parameters: str = "weights"

    def __post_init__(self) -> None:
        _common(self)
        _odd_grid(self)
        _check(self, "seeds", lambda v: len(v) == 2, "exactly two seeds (d1, d2)")


@dataclass(frozen=True)
class PathSettings:
    """L((1 - t) theta_0 + t theta_T) at t = 0, 1/(points - 1), ..., 1, continued by the same step to
    1 + margin. ``bn``: ``auto`` recalibrates BN statistics at every t where the model has BN (the trained
    statistics describe no other point of the path), else freezes them."""

    points: int = 21
    margin: float = 0.0
    bn: str = "auto"

    def __post_init__(self) -> None:
        _check(self, "points", lambda v: isinstance(v, int) and v >= 2, "an integer >= 2")
        _check(self, "margin", lambda v: v >= 0, "a number >= 0")
        _check(self, "bn", lambda v: v in ("auto", *BN_MODES), f"one of {('auto', *BN_MODES)}")


@dataclass(frozen=True)
class CurvatureSettings:
    """The Hessian of the mean loss over the ``parameters`` set, eval mode: the ``top_k`` eigenvalues
    (Lanczos), the trace (Hutchinson) with every tensor's block trace, relative flatness per weight tensor,
    and per tensor d^T H d along filter-normalized directions that move that tensor only (one per
    ``layer_seeds`` entry; none when empty)."""

    top_k: int = 1
    lanczos_iterations: int = 20
    hutchinson_samples: int = 10
    flatness_samples: int = 10
    layer_seeds: tuple[int, ...] = ()
    parameters: str = "weights"
    lanczos_seed: int = 0
    hutchinson_seed: int = 1
    flatness_seed: int = 2

    def __post_init__(self) -> None:
        _as_tuples(self)
        for name in ("top_k", "lanczos_iterations", "hutchinson_samples", "flatness_samples"):
            _check(self, name, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1")
        for name in ("lanczos_seed", "hutchinson_seed", "flatness_seed"):
            _check(self, name, lambda v: isinstance(v, int) and v >= 0, "an integer >= 0")
        _check(self, "layer_seeds", lambda v: all(isinstance(s, int) and s >= 0 for s in v), "integers >= 0")
        _check(self, "parameters", lambda v: v in PARAMETER_SETS, f"one of {PARAMETER_SETS}")
