"""The curvature probe: top eigenvalues, trace, relative flatness and per-tensor curvature of the Hessian
of the mean loss on data, model in eval mode, over the perturbed parameter set."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn

from landscape.probes.data import BATCH_SIZE, Data
from landscape.probes.directions import filter_normalized_direction, parameters_of, perturbed_mask, weight_names
from landscape.probes.evaluation import LossFn, cross_entropy
from landscape.probes.hessian import Eigen, MeanLoss, RelativeFlatness, TraceEstimate
from landscape.probes.settings import CurvatureSettings


def layer_directions(model: nn.Module, parameters: str, seeds: tuple[int, ...]) -> list[list[list]]:
    """For each perturbed tensor l: filter-normalized directions (one per seed) that are zero outside l."""
    mask = perturbed_mask(model, parameters)
    kept = [i for i, keep in enumerate(mask) if keep]
    out = []
    for i in kept:
        per_layer = []
        for s in seeds:
            d = filter_normalized_direction(model, s, "filter", parameters)
            per_layer.append([d[j] if j == i else d[j].zero_() for j in kept])
        out.append(per_layer)
    return out


@dataclass(frozen=True)
class TensorCurvature:
    name: str  # the parameter's name in the model
    shape: tuple[int, ...]
    fan_in: int  # weights per output unit (the unit of filter normalization); the size of a dim <= 1 tensor
    trace: float  # Tr(H_ll), the tensor's diagonal block
    trace_se: float
    flatness: float  # relative flatness kappa_l (Petzka et al. 2021); NaN for a dim <= 1 tensor
    flatness_se: float
    slice_curvature: list[float]  # d_l^T H d_l per layer seed, d_l filter-normalized and zero outside this tensor


@dataclass(frozen=True)
class CurvatureResult:
    eigen: Eigen  # top-k eigenvalues (Lanczos)
    trace: TraceEstimate  # Hutchinson
    flatness: RelativeFlatness
    layers: list[TensorCurvature]  # every perturbed tensor, in model.parameters() order
    samples: int  # N, the samples the mean loss is over

    @property
    def lambda_max(self) -> float:
        return self.eigen.values[0] if self.eigen.values else math.nan


def _mean_loss(model: nn.Module, data: Data, settings: CurvatureSettings, batch_size: int, loss_fn: LossFn) -> MeanLoss:
    mask = perturbed_mask(model, settings.parameters)
    params = [p for p, keep in zip(parameters_of(model), mask, strict=True) if keep]
    return MeanLoss.of(model, data, params, batch_size, loss_fn)


def top_eigenvalues(
    model: nn.Module,
    data: Data,
    settings: CurvatureSettings | None = None,
    *,
    batch_size: int = BATCH_SIZE,
    loss_fn: LossFn = cross_entropy,
    start: Tensor | None = None,
) -> Eigen:
    """The Lanczos part of ``curvature`` alone (same parameters, seed and iterations): cheap enough to
    repeat during training. ``curvature(...).eigen`` equals it for equal settings. ``start``: a flat start
    vector over the perturbed parameters (a warm start, e.g. the ``vector`` of the previous call) in place of
    the seeded one."""
    settings = settings or CurvatureSettings()
    return _mean_loss(model, data, settings, batch_size, loss_fn).lanczos(
        settings.top_k, settings.lanczos_iterations, settings.lanczos_seed, start
    )


def curvature(
    model: nn.Module,
    data: Data,
    settings: CurvatureSettings | None = None,
    *,
    batch_size: int = BATCH_SIZE,
    loss_fn: LossFn = cross_entropy,
) -> CurvatureResult:
    """Lanczos top-k, Hutchinson trace (with every tensor's diagonal block), relative flatness per weight tensor,
    and d_l^T H d_l for filter-normalized directions that move one tensor only, over ``settings.parameters``."""
    settings = settings or CurvatureSettings()
    f = _mean_loss(model, data, settings, batch_size, loss_fn)
    eig = f.lanczos(settings.top_k, settings.lanczos_iterations, settings.lanczos_seed)
    trace = f.hutchinson_trace(settings.hutchinson_samples, settings.hutchinson_seed)
    flat = f.relative_flatness(settings.flatness_samples, settings.flatness_seed)
    per_layer = [
        f.directional_curvature(dirs) for dirs in layer_directions(model, settings.parameters, settings.layer_seeds)
    ]
    names = weight_names(model, settings.parameters)
    layers = [
        TensorCurvature(
            names[i], tuple(p.shape), p[0].numel() if p.dim() > 1 else p.numel(),
            trace.per_tensor[i], trace.per_tensor_se[i], flat.per_tensor[i], flat.per_tensor_se[i], per_layer[i],
        )
        for i, p in enumerate(f.params)
    ]  # fmt: skip
    return CurvatureResult(eig, trace, flat, layers, f.n)
