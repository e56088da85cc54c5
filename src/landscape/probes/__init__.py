"""Probe the loss landscape of your own model: torch only, no files, no params.yaml.

    from landscape import probes

    score = probes.evaluate(model, loader)                                     # Score(loss, acc)
    noise = probes.noise_robustness(model, loader, probes.NoiseSettings(sigmas=[0, 0.01, 0.1]))
    slices = probes.loss_slices(model, loader, probes.SliceSettings(points=21, span=1.0))
    hessian = probes.curvature(model, loader, probes.CurvatureSettings(top_k=3))  # .lambda_max, .trace.total

Data is any re-iterable of ``(x, y)`` batches (a DataLoader, a list of tuples), a pair of tensors or a
``Split``; batches go to the model's device. Every probe takes ``loss_fn(output, target) -> mean loss``
(default cross-entropy) and leaves the model's parameters, buffers and train/eval flags as it found them.

Names are imported on first use, so ``import landscape.probes.evaluation`` loads no other probe module.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "Split": "data",
    "ProbeData": "data",
    "evaluate": "evaluation",
    "Score": "settings",
    "cross_entropy": "evaluation",
    "NoiseSettings": "settings",
    "SliceSettings": "settings",
    "SurfaceSettings": "settings",
    "PathSettings": "settings",
    "CurvatureSettings": "settings",
    "noise_robustness": "sweeps",
    "NoisePoint": "sweeps",
    "loss_slices": "sweeps",
    "SliceResult": "sweeps",
    "SlicePoint": "sweeps",
    "loss_surface": "surfaces",
    "SurfacePoint": "surfaces",
    "interpolation_path": "surfaces",
    "PathResult": "surfaces",
    "PathPoint": "surfaces",
    "curvature": "layers",
    "top_eigenvalues": "layers",
    "CurvatureResult": "layers",
    "TensorCurvature": "layers",
    "loss_gradient": "hessian",
    "hvp": "hessian",
    "hvp_many": "hessian",
    "directional_curvature": "hessian",
    "lanczos": "hessian",
    "Eigen": "hessian",
    "hutchinson_trace": "hessian",
    "TraceEstimate": "hessian",
    "relative_flatness": "hessian",
    "RelativeFlatness": "hessian",
    "filter_normalized_direction": "directions",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
