"""Two more cuts through weight space: the filter-normalized 2-D loss surface around the solution
(Li et al. 2018) and the straight path from the initial weights to the trained ones."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from landscape.probes.data import Data, as_probe_data
from landscape.probes.directions import filter_normalized_direction, parameters_of
from landscape.probes.evaluation import LossFn, cross_entropy
from landscape.probes.perturb import has_batch_norm, restored
from landscape.probes.settings import PathSettings, SurfaceSettings
from landscape.probes.sweeps import Splits, alpha_grid, bn_modes_for, norm, score_point


@dataclass(frozen=True)
class SurfacePoint:
    a: float  # along d1
    b: float  # along d2
    split: str
    loss: float
    acc: float  # NaN unless the model outputs class logits for integer labels


def loss_surface(
    model: nn.Module,
    data: Splits,
    settings: SurfaceSettings | None = None,
    *,
    batch_size: int | None = None,
    loss_fn: LossFn = cross_entropy,
) -> list[SurfacePoint]:
    """L(theta + a d1 + b d2) on a points x points grid over [-span, span]^2 (b outer, a inner, then split),
    BN frozen.

    d1 and d2 are ``filter_normalized_direction`` with ``seeds[0]`` and ``seeds[1]``, so the row b = 0 is
    the 1-D slice along d1 with the same seed and grid.
    """
    settings = settings or SurfaceSettings()
    data = as_probe_data(data, None, batch_size)
    d1, d2 = (
        filter_normalized_direction(model, s, settings.normalization, settings.parameters) for s in settings.seeds
    )
    grid = alpha_grid(settings.points, settings.span)
    points = []
    with restored(model) as handle:
        for b in grid:
            for a in grid:
                delta = [a * x + b * y for x, y in zip(d1, d2, strict=True)]
                for name, s in score_point(model, handle, delta, 1.0, "frozen", data, loss_fn).items():
                    points.append(SurfacePoint(a, b, name, s.loss, s.acc))
    return points


def path_grid(points: int, margin: float) -> list[float]:
    """t = 0, 1/(points-1), ..., 1, continued with the same step up to 1 + margin."""
    step = 1.0 / (points - 1)
    extra = int(round(margin / step + 1e-9))
    return [i * step for i in range(points + extra)]


@dataclass(frozen=True)
class PathPoint:
    t: float
    split: str
    loss: float
    acc: float  # NaN unless the model outputs class logits for integer labels


@dataclass(frozen=True)
class PathResult:
    points: list[PathPoint]  # t ascending, then split
    distance_rel: float  # ||theta_T - theta_0|| / ||theta_0|| over every parameter
    bn: str  # "recalibrated" (at every t) or "frozen"

    @property
    def ts(self) -> list[float]:
        return list(dict.fromkeys(p.t for p in self.points))

    def losses(self, split: str) -> list[float]:
        """The loss on ``split`` at every t of ``ts``."""
        return [p.loss for p in self.points if p.split == split]


def interpolation_path(
    model: nn.Module,
    initial: Mapping[str, torch.Tensor] | nn.Module,
    data: Splits,
    settings: PathSettings | None = None,
    *,
    bn_data: Data | None = None,
    batch_size: int | None = None,
    loss_fn: LossFn = cross_entropy,
) -> PathResult:
    """Loss and accuracy along theta(t) = (1 - t) theta_0 + t theta_T for every parameter, where theta_T is
    ``model``'s and theta_0 that of ``initial`` (a model of the same architecture, or its state_dict).

    BN statistics are recalibrated on ``bn_data`` at every t where ``settings.bn`` says so ("auto": where the
    model has BN, since its running statistics describe no other network on the path).
    """
    settings = settings or PathSettings()
    data = as_probe_data(data, bn_data, batch_size)
    start_of = dict(initial.named_parameters()) if isinstance(initial, nn.Module) else initial
    names = [n for n, _ in model.named_parameters()]
    missing = [n for n in names if n not in start_of]
    if missing:
        raise ValueError(f"initial weights lack the parameters {missing}")
    trained = parameters_of(model)
    start = [start_of[n].detach().to(p.device) for n, p in zip(names, trained, strict=True)]
    delta = [p.detach() - p0 for p, p0 in zip(trained, start, strict=True)]  # theta(t) = theta_T + (t - 1) delta
    auto = "recalibrated" if has_batch_norm(model) else "frozen"
    (bn,) = bn_modes_for(model, (auto if settings.bn == "auto" else settings.bn,), data)
    points = []
    with restored(model) as handle:
        for t in path_grid(settings.points, settings.margin):
            for name, s in score_point(model, handle, delta, t - 1.0, bn, data, loss_fn).items():
                points.append(PathPoint(t, name, s.loss, s.acc))
    return PathResult(points, norm(delta) / norm(start), bn)
