"""The curvature probe of one run: top eigenvalues, trace, relative flatness and per-layer curvature of
the Hessian of the mean training loss on a fixed subset, model in eval mode, over the perturbed set."""

from __future__ import annotations

from torch import nn

from landscape.curvature import directional_curvature, hutchinson_trace, lanczos, relative_flatness
from landscape.data import Split
from landscape.directions import filter_normalized_direction, parameters_of, perturbed_mask, weight_names
from landscape.params import CurvatureParams
from landscape.results import CurvatureSummary, LayerCurvature, Spread


def layer_directions(model: nn.Module, parameters: str, seeds: list[int]) -> list[list[list]]:
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


def curvature_probe(
    model: nn.Module,
    split: Split,
    batch_size: int,
    settings: CurvatureParams,
    parameters: str,
    seeds: dict[str, int],
    layer_seeds: list[int],
    variant: str = "",
    train_seed: int = 0,
) -> CurvatureSummary:
    """Lanczos top-k, Hutchinson trace (with every tensor's diagonal block), relative flatness per weight tensor,
    and d_l^T H d_l for filter-normalized directions that move one tensor only. ``seeds`` holds the seeds of
    the "lanczos", "hutchinson" and "flatness" streams."""
    mask = perturbed_mask(model, parameters)
    params = [p for p, keep in zip(parameters_of(model), mask, strict=True) if keep]
    names = weight_names(model, parameters)
    eig = lanczos(model, params, split, batch_size, settings.top_k, settings.lanczos_iterations, seeds["lanczos"])
    trace = hutchinson_trace(model, params, split, batch_size, settings.hutchinson_samples, seeds["hutchinson"])
    flat = relative_flatness(model, params, split, batch_size, settings.flatness_samples, seeds["flatness"])
    per_layer = [
        Spread.of(directional_curvature(model, params, split, batch_size, dirs))
        for dirs in layer_directions(model, parameters, layer_seeds)
    ]
    layers = [
        LayerCurvature(
            names[i], p[0].numel() if p.dim() > 1 else p.numel(), trace.per_tensor[i], trace.per_tensor_se[i],
            flat.per_tensor[i], flat.per_tensor_se[i], per_layer[i],
        )
        for i, p in enumerate(params)
    ]  # fmt: skip
    feature = max(i for i, p in enumerate(params) if p.dim() > 1)  # the classifier, acting on the feature layer
    return CurvatureSummary(
        variant=variant,
        seed=train_seed,
        parameters=parameters,
        samples=len(split),
        eigenvalues=eig.values,
        eigen_residuals=eig.residuals,
        trace=trace.total,
        trace_se=trace.total_se,
        flatness=flat.total,
        flatness_se=flat.total_se,
        flatness_feature=flat.per_tensor[feature],
        flatness_feature_se=flat.per_tensor_se[feature],
        layers=layers,
    )
