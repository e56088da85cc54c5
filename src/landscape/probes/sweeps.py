"""The landscape sweeps: loss and accuracy under parameter noise, and along 1-D loss slices.

Both move the weights in place (``perturb.restored``), call the one ``evaluate`` function, and leave the
model exactly as they found it. Every random draw has its own seed, given in the settings.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch
from torch import nn

from landscape.probes.data import Data, ProbeData, as_probe_data
from landscape.probes.directions import (
    filter_normalized_direction,
    gaussian_like,
    noise_delta,
    parameters_of,
    perturbed_mask,
)
from landscape.probes.evaluation import LossFn, Score, cross_entropy, evaluate
from landscape.probes.hessian import directional_curvature
from landscape.probes.perturb import Perturbation, has_batch_norm, recalibrate_batch_norm, restored
from landscape.probes.settings import NoiseSettings, SliceSettings

Splits = Data | dict[str, Data] | ProbeData


def score_point(
    model: nn.Module,
    handle: Perturbation,
    delta: list[torch.Tensor],
    scale: float,
    bn: str,
    data: ProbeData,
    loss_fn: LossFn = cross_entropy,
) -> dict[str, Score]:
    """Scores of theta0 + scale * delta on every split, BN statistics frozen or recalibrated there."""
    handle.set(delta, scale)
    if bn == "recalibrated":
        recalibrate_batch_norm(model, data.bn_data, data.batch_size)
    return {name: evaluate(model, split, data.batch_size, loss_fn=loss_fn) for name, split in data.splits.items()}


def bn_modes_for(model: nn.Module, bn_modes: tuple[str, ...], data: ProbeData) -> list[str]:
    """Recalibration is meaningless without BN layers: such models get 'frozen' only. With BN, recalibrating
    needs ``bn_data``."""
    if not has_batch_norm(model):
        return ["frozen"]
    if "recalibrated" in bn_modes and data.bn_data is None:
        raise ValueError("BN handling 'recalibrated' needs bn_data: the (training) inputs that recompute BN statistics")
    return list(bn_modes)


def norm(tensors: list[torch.Tensor]) -> float:
    return torch.sqrt(sum((t.detach().double() ** 2).sum() for t in tensors)).item()


@dataclass(frozen=True)
class NoisePoint:
    """One noise level of one (mode, BN handling) curve on one split: a value per trial k, where trial k
    perturbs with the same draw xi_k at every sigma and mode."""

    mode: str
    bn: str
    sigma: float
    split: str
    loss: tuple[float, ...]
    acc: tuple[float, ...]  # NaN unless the model outputs class logits for integer labels
    drop: tuple[float, ...]  # accuracy at sigma = 0 minus ``acc``, paired per trial (a fraction)

    @property
    def loss_mean(self) -> float:
        return statistics.fmean(self.loss)

    @property
    def acc_mean(self) -> float:
        return statistics.fmean(self.acc)

    @property
    def drop_mean(self) -> float:
        return statistics.fmean(self.drop)


def noise_robustness(
    model: nn.Module,
    data: Splits,
    settings: NoiseSettings | None = None,
    *,
    bn_data: Data | None = None,
    batch_size: int | None = None,
    loss_fn: LossFn = cross_entropy,
) -> list[NoisePoint]:
    """Loss and accuracy under theta + sigma * delta_mode(xi_k) for every mode, BN handling, sigma, split
    and trial k (seed ``settings.seeds[k]``), in that order. Only ``settings.parameters`` move.

    ``data`` is one dataset or a mapping from split name to dataset (see ``landscape.probes.data``);
    ``bn_data`` recomputes BN statistics for ``bn = "recalibrated"``.
    """
    settings = settings or NoiseSettings()
    data = as_probe_data(data, bn_data, batch_size)
    params = parameters_of(model)
    mask = perturbed_mask(model, settings.parameters)
    xis = [gaussian_like(params, s) for s in settings.seeds]
    deltas_by_mode = {mode: [noise_delta(params, xi, mode, mask) for xi in xis] for mode in settings.modes}
    bn_modes = bn_modes_for(model, settings.bn, data)
    points: list[NoisePoint] = []
    unperturbed: dict[str, dict[str, Score]] = {}  # sigma = 0 is the same point for every trial and mode
    with restored(model) as handle:
        for mode, deltas in deltas_by_mode.items():
            for bn in bn_modes:
                if bn not in unperturbed:
                    unperturbed[bn] = score_point(model, handle, deltas[0], 0.0, bn, data, loss_fn)
                base = unperturbed[bn]
                for sigma in settings.sigmas:
                    trials = [
                        base if sigma == 0 else score_point(model, handle, delta, sigma, bn, data, loss_fn)
                        for delta in deltas
                    ]
                    points += [
                        NoisePoint(
                            mode,
                            bn,
                            sigma,
                            name,
                            loss=tuple(t[name].loss for t in trials),
                            acc=tuple(t[name].acc for t in trials),
                            drop=tuple(base[name].acc - t[name].acc for t in trials),
                        )
                        for name in data.splits
                    ]
    return points


def alpha_grid(points: int, span: float) -> list[float]:
    """Symmetric grid of ``points`` (odd) values on [-span, span] containing exactly 0."""
    half = points // 2
    return [span * i / half for i in range(-half, half + 1)]


@dataclass(frozen=True)
class SlicePoint:
    """L(theta + alpha d_k) at one alpha on one split, BN handled as ``bn``: a value per direction k."""

    bn: str
    alpha: float
    split: str
    loss: tuple[float, ...]
    acc: tuple[float, ...]  # NaN unless the model outputs class logits for integer labels


@dataclass(frozen=True)
class SliceResult:
    points: list[SlicePoint]  # BN handling, then alpha ascending, then split
    curvature: list[
        float
    ]  # local d_k^T H d_k per direction: Hessian of the mean loss (eval mode, BN frozen) inside one activation pattern
    theta_norm: float  # ||theta|| over the perturbed parameter set
    direction_norms: list[float]  # ||d_k||

    @property
    def alphas(self) -> list[float]:
        return list(dict.fromkeys(p.alpha for p in self.points))

    def curves(self, split: str, bn: str = "frozen") -> list[list[float]]:
        """The loss along each direction on ``split``: one list over ``alphas`` per direction."""
        picked = [p.loss for p in self.points if (p.split, p.bn) == (split, bn)]
        if not picked:
            raise ValueError(f"no slice points for split {split!r} with BN {bn!r}")
        return [list(curve) for curve in zip(*picked, strict=True)]


def loss_slices(
    model: nn.Module,
    data: Splits,
    settings: SliceSettings | None = None,
    *,
    bn_data: Data | None = None,
    batch_size: int | None = None,
    loss_fn: LossFn = cross_entropy,
) -> SliceResult:
    """L(theta + alpha d_k) and accuracy along seeded normalized directions d_k (one per seed), per BN handling,
    and the local curvature d_k^T H d_k (inside one activation pattern) by Hessian-vector products over the
    perturbed parameter set, on the split ``settings.hessian_split`` (default: the first), model in eval mode.
    """
    settings = settings or SliceSettings()
    data = as_probe_data(data, bn_data, batch_size)
    alphas = alpha_grid(settings.points, settings.span)
    params = parameters_of(model)
    mask = perturbed_mask(model, settings.parameters)
    kept = [p for p, keep in zip(params, mask, strict=True) if keep]
    directions = [
        filter_normalized_direction(model, s, settings.normalization, settings.parameters) for s in settings.seeds
    ]
    hessian_split = settings.hessian_split or next(iter(data.splits))
    if hessian_split not in data.splits:
        raise ValueError(
            f"SliceSettings.hessian_split = {hessian_split!r} is not one of the splits {list(data.splits)}"
        )
    exact = directional_curvature(
        model, data.splits[hessian_split], [[di for di, keep in zip(d, mask, strict=True) if keep] for d in directions],
        params=kept, batch_size=data.batch_size, loss_fn=loss_fn,
    )  # fmt: skip
    bn_modes = bn_modes_for(model, settings.bn, data)
    scores: dict[tuple[str, int, int], dict[str, Score]] = {}
    with restored(model) as handle:
        for bn in bn_modes:
            for k, d in enumerate(directions):
                for i, alpha in enumerate(alphas):
                    scores[(bn, k, i)] = score_point(model, handle, d, alpha, bn, data, loss_fn)
    ks = range(len(directions))
    points = [
        SlicePoint(
            bn,
            alpha,
            name,
            tuple(scores[(bn, k, i)][name].loss for k in ks),
            tuple(scores[(bn, k, i)][name].acc for k in ks),
        )
        for bn in bn_modes
        for i, alpha in enumerate(alphas)
        for name in data.splits
    ]
    return SliceResult(points, exact, norm(kept), [norm(d) for d in directions])
