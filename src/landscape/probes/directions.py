"""Seeded random directions in parameter space and their normalizations.

A direction is a list of tensors shaped like ``model.parameters()``. Normal draws
are made on the CPU from a seeded generator, then moved, so the same seed gives
the same direction on every device.

Per-unit ("filter") scaling treats row j of a weight tensor (output filter or
neuron j, dim 0) as one unit; a tensor of dim <= 1 (bias, BN gamma/beta) is one
unit as a whole.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

EPS = 1e-10


def parameters_of(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters()]


def perturbed_mask(model: nn.Module, parameters: str) -> list[bool]:
    """Which of ``model.parameters()`` a probe moves: ``weights`` = tensors of dim > 1 (biases and BN
    gamma/beta stay fixed, Li et al.'s convention), ``all`` = every parameter."""
    return [parameters == "all" or p.dim() > 1 for p in model.parameters()]


def weight_names(model: nn.Module, parameters: str) -> list[str]:
    """Names of the perturbed tensors, in ``model.parameters()`` order."""
    mask = perturbed_mask(model, parameters)
    return [name for (name, _), keep in zip(model.named_parameters(), mask, strict=True) if keep]


def stream_seed(probe: str, variant: str, train_seed: int, draw: int) -> int:
    """The seed of one random draw, derived from (probe, variant, training seed, draw index).

    A hash, so that no two streams share a seed (noise trial k and slice direction k are independent).
    """
    digest = hashlib.sha256(f"{probe}/{variant}/{train_seed}/{draw}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def gaussian_like(params: list[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """xi ~ N(0, I) shaped like ``params``, reproducible from ``seed`` on any device."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device) for p in params]


def unit_rows(t: torch.Tensor) -> torch.Tensor:
    """View as (units, elements per unit): rows along dim 0, or one row for dim <= 1."""
    return t.reshape(t.shape[0], -1) if t.dim() > 1 else t.reshape(1, -1)


def unit_norms(t: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of each unit, shaped to broadcast against ``unit_rows(t)``."""
    return unit_rows(t).norm(dim=1, keepdim=True)


def rescale_units(d: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Scale each unit of ``d`` by ``target`` (per-unit factors shaped like ``unit_norms``)."""
    return (unit_rows(d) * target).reshape(d.shape)


def normalized_direction(
    params: list[torch.Tensor], d: list[torch.Tensor], normalization: str, mask: list[bool]
) -> list[torch.Tensor]:
    """Rescale ``d`` to the weights' scale.

    - ``filter`` (Li et al. 2018): d_j <- d_j * ||theta_j|| / (||d_j|| + 1e-10) for each unit j;
    - ``layer``: the same with each whole tensor as the unit;
    - ``none``: d unchanged.
    Tensors outside ``mask`` (see ``perturbed_mask``) get d = 0.
    """
    out = []
    for p, di, keep in zip(params, d, mask, strict=True):
        p = p.detach()
        if not keep:
            out.append(torch.zeros_like(di))
        elif normalization == "filter":
            out.append(rescale_units(di, unit_norms(p) / (unit_norms(di) + EPS)))
        elif normalization == "layer":
            out.append(di * (p.norm() / (di.norm() + EPS)))
        else:
            out.append(di.clone())
    return out


def filter_normalized_direction(
    model: nn.Module, seed: int, normalization: str = "filter", parameters: str = "weights"
) -> list[torch.Tensor]:
    """A seeded random direction for a loss slice through ``model``'s weights (zero outside ``parameters``)."""
    params = parameters_of(model)
    return normalized_direction(params, gaussian_like(params, seed), normalization, perturbed_mask(model, parameters))


def noise_delta(params: list[torch.Tensor], xi: list[torch.Tensor], mode: str, mask: list[bool]) -> list[torch.Tensor]:
    """The perturbation per unit sigma, so that theta' = theta + sigma * delta (zero outside ``mask``).

    - ``absolute``: delta = xi (N(0, sigma^2) on every parameter);
    - ``relative``: delta = theta * xi, i.e. theta * (1 + sigma * xi);
    - ``filter``: delta_j = xi_j * ||theta_j|| / sqrt(n_j), noise scaled to each unit's RMS weight.
    """
    out = []
    for p, x, keep in zip(params, xi, mask, strict=True):
        p = p.detach()
        if not keep:
            out.append(torch.zeros_like(x))
        elif mode == "absolute":
            out.append(x.clone())
        elif mode == "relative":
            out.append(p * x)
        elif mode == "filter":
            n = unit_rows(p).shape[1]
            out.append(rescale_units(x, unit_norms(p) / n**0.5))
        else:
            raise ValueError(f"unknown noise mode {mode!r}")
    return out
