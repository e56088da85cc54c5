"""The curvature probe of one run: its settings from params.yaml and its summary."""

from __future__ import annotations

import torch
from torch import nn

from landscape.probes.adaptive import adaptive_sharpness
from landscape.probes.data import Split
from landscape.probes.directions import parameters_of, perturbed_mask, stream_seed
from landscape.probes.layers import CurvatureResult, curvature
from landscape.study.params import CurvatureParams, ProbeParams
from landscape.study.results import CurvatureSummary, LayerCurvature, Spread
from landscape.study.summaries import stream_seeds

STREAMS = ("lanczos", "hutchinson", "flatness")  # one seed each, draw 0
ADAPTIVE_STREAM = "adaptive"  # the adaptive sharpness's Lanczos start, draw 0 (as "lanczos" is lambda_max's)


def curvature_summary(
    result: CurvatureResult, parameters: str, variant: str, seed: int, *, adaptive: float, theta_norm: float
) -> CurvatureSummary:
    """The summary schema of a curvature result, with the adaptive sharpness and ||theta|| of the same parameter
    set; the "feature" flatness is the classifier's (the last weight
    tensor, acting on the feature layer), the one Petzka et al. use."""
    feature = max(i for i, layer in enumerate(result.layers) if len(layer.shape) > 1)
    flat = result.flatness
    return CurvatureSummary(
        variant=variant,
        seed=seed,
        parameters=parameters,
        samples=result.samples,
        eigenvalues=result.eigen.values,
        eigen_residuals=result.eigen.residuals,
        ritz=result.eigen.ritz,
        ritz_weights=result.eigen.ritz_weights,
        trace=result.trace.total,
        trace_se=result.trace.total_se,
        flatness=flat.total,
        flatness_se=flat.total_se,
        flatness_feature=flat.per_tensor[feature],
        flatness_feature_se=flat.per_tensor_se[feature],
        adaptive_sharpness=adaptive,
        theta_norm=theta_norm,
        layers=[
            LayerCurvature(
                q.name, q.fan_in, q.trace, q.trace_se, q.flatness, q.flatness_se, Spread.of(q.slice_curvature)
            )
            for q in result.layers
        ],
    )


def curvature_seeds(draws: str, seed: int) -> dict[str, int]:
    """The seeds of the curvature probe's "lanczos", "hutchinson" and "flatness" streams for run ``seed``."""
    return {s: stream_seed(f"curvature/{s}", draws, seed, 0) for s in STREAMS}


def curvature_probe(
    model: nn.Module,
    split: Split,
    batch_size: int,
    p: CurvatureParams,
    probes: ProbeParams,
    variant: str,
    seed: int,
    *,
    draws: str,
) -> CurvatureSummary:
    """The curvature probe of run (variant, seed) on ``split``: its summary. ``draws`` keys the random streams
    (``Params.draw_family``: variants of one family share them, common random numbers)."""
    seeds = curvature_seeds(draws, seed)
    layer_seeds = stream_seeds("curvature/layer", draws, seed, p.layer_directions)
    result = curvature(model, split, p.curvature_settings(probes, seeds, layer_seeds), batch_size=batch_size)
    mask = perturbed_mask(model, probes.parameters)
    params = [t for t, keep in zip(parameters_of(model), mask, strict=True) if keep]
    adaptive = adaptive_sharpness(
        model,
        split,
        k=1,
        iterations=p.lanczos_iterations,
        seed=stream_seed(f"curvature/{ADAPTIVE_STREAM}", draws, seed, 0),
        params=params,
        batch_size=batch_size,
    )
    with torch.no_grad():
        theta_norm = float(torch.sqrt(sum(t.detach().double().pow(2).sum() for t in params)))
    return curvature_summary(
        result, probes.parameters, variant, seed, adaptive=adaptive.values[0], theta_norm=theta_norm
    )
