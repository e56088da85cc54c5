"""The landscape probes: accuracy under parameter noise, and 1-D loss slices.

Both move the trained weights in place (``perturb.restored``), call the one
``evaluate`` function, and leave the model exactly as they found it. Every random
draw has its own seed (``directions.stream_seed``), passed in by the caller.
"""

from __future__ import annotations

import torch
from torch import nn

from landscape.curvature import directional_curvature
from landscape.data import ProbeData
from landscape.directions import filter_normalized_direction, gaussian_like, noise_delta, parameters_of, perturbed_mask
from landscape.evaluate import Score, evaluate
from landscape.params import RobustnessParams, SliceParams
from landscape.perturb import Perturbation, has_batch_norm, recalibrate_batch_norm, restored
from landscape.results import (
    Censored,
    NoiseCurve,
    RobustnessSummary,
    SigmaPoint,
    SliceCurve,
    SliceSummary,
    Spread,
    Width,
    drop_key,
    number_key,
)
from landscape.stats import interpolate_crossing
from landscape.summary import basin_width, fit_quadratic

ROBUSTNESS_COLUMNS = ["mode", "bn", "sigma", "trial", "split", "loss", "acc"]
SLICE_COLUMNS = ["bn", "direction", "alpha", "split", "loss", "acc"]


def score_point(
    model: nn.Module, handle: Perturbation, delta: list[torch.Tensor], scale: float, bn: str, data: ProbeData
) -> dict[str, Score]:
    """Scores of theta0 + scale * delta on every split, BN statistics frozen or recalibrated there."""
    handle.set(delta, scale)
    if bn == "recalibrated":
        recalibrate_batch_norm(model, data.bn_data, data.batch_size)
    return {name: evaluate(model, split, data.batch_size) for name, split in data.splits.items()}


def bn_modes_for(model: nn.Module, bn_modes: list[str]) -> list[str]:
    """Recalibration is meaningless without BN layers: such models get 'frozen' only."""
    return list(bn_modes) if has_batch_norm(model) else ["frozen"]


def noise_curve(mode: str, bn: str, sigmas: list[float], accs: list[list[float]], drops: list[float]) -> NoiseCurve:
    """Summary of accs[i][k] (sigma i, trial k): spread of accuracy and of the paired drop from sigma = 0."""
    base = accs[0]
    points = {
        number_key("sigma", s): SigmaPoint(s, Spread.of(a), Spread.of(b - x for b, x in zip(base, a, strict=True)))
        for s, a in zip(sigmas, accs, strict=True)
    }
    mean_drops = [p.drop.mean for p in points.values()]
    stars = {drop_key(d): Censored(*interpolate_crossing(sigmas, mean_drops, d, log_x=True)) for d in drops}
    return NoiseCurve(mode, bn, points, stars, {drop_key(d): d for d in drops})


def robustness_probe(
    model: nn.Module,
    data: ProbeData,
    settings: RobustnessParams,
    parameters: str,
    bn_modes: list[str],
    seeds: list[int],
    variant: str = "",
    train_seed: int = 0,
) -> tuple[list[dict], RobustnessSummary]:
    """Accuracy and loss under theta + sigma * delta_mode(xi_k), for every mode, BN handling, sigma and trial.

    Trial k draws xi_k once (seed ``seeds[k]``) and reuses it at every sigma and mode, so each curve is
    smooth in sigma. Only the ``parameters`` set moves. The summary is taken on the "val" split if
    present, else the first split.
    """
    params = parameters_of(model)
    mask = perturbed_mask(model, parameters)
    xis = [gaussian_like(params, s) for s in seeds]
    deltas_by_mode = {mode: [noise_delta(params, xi, mode, mask) for xi in xis] for mode in settings.modes}
    split = "val" if "val" in data.splits else next(iter(data.splits))
    rows: list[dict] = []
    curves: dict[str, dict[str, NoiseCurve]] = {}
    unperturbed: dict[str, dict[str, Score]] = {}  # sigma = 0 is the same point for every trial and mode
    with restored(model) as handle:
        for mode, deltas in deltas_by_mode.items():
            for bn in bn_modes_for(model, bn_modes):
                accs = []
                for sigma in settings.sigmas:
                    at_sigma = []
                    for k, delta in enumerate(deltas):
                        if sigma == 0 and bn not in unperturbed:
                            unperturbed[bn] = score_point(model, handle, delta, 0.0, bn, data)
                        scores = unperturbed[bn] if sigma == 0 else score_point(model, handle, delta, sigma, bn, data)
                        rows += [
                            {"mode": mode, "bn": bn, "sigma": sigma, "trial": k, "split": name, **vars(s)}
                            for name, s in scores.items()
                        ]
                        at_sigma.append(scores[split].acc)
                    accs.append(at_sigma)
                curves.setdefault(mode, {})[bn] = noise_curve(mode, bn, settings.sigmas, accs, settings.drops)
    summary = RobustnessSummary(variant, train_seed, split, parameters, len(seeds), len(data.splits[split]), curves)
    return rows, summary


def alpha_grid(points: int, span: float) -> list[float]:
    """Symmetric grid of ``points`` (odd) values on [-span, span] containing exactly 0."""
    half = points // 2
    return [span * i / half for i in range(-half, half + 1)]


def slice_curve(alphas: list[float], per_direction: list[list[float]], window: float, taus: list[float]) -> SliceCurve:
    """Summary scalars of the loss curves of one split: fitted curvature, basin widths, loss at the ends."""
    fits = [fit_quadratic(alphas, c, window) for c in per_direction]
    widths = {}
    for tau in taus:
        w = [basin_width(alphas, c, tau) for c in per_direction]
        widths[number_key("tau", tau)] = Width(tau, Spread.of(x.width for x in w), sum(x.censored for x in w))
    return SliceCurve(
        loss_at_0=per_direction[0][len(alphas) // 2],
        curvature_fit=Spread.of(f.curvature for f in fits),
        fit_r2=Spread.of(f.r2 for f in fits),
        fit_slope=Spread.of(f.b for f in fits),
        widths=widths,
        loss_at_minus_span=Spread.of(c[0] for c in per_direction),
        loss_at_plus_span=Spread.of(c[-1] for c in per_direction),
    )


def norm(tensors: list[torch.Tensor]) -> float:
    return torch.sqrt(sum((t.detach().double() ** 2).sum() for t in tensors)).item()


def slice_losses(
    model: nn.Module, data: ProbeData, directions: list[list[torch.Tensor]], alphas: list[float], bn_modes: list[str]
) -> tuple[list[dict], dict[str, dict[str, list[list[float]]]]]:
    """Rows of every (BN handling, direction, alpha, split) point, and the loss curves as bn -> split -> [direction]."""
    rows: list[dict] = []
    losses: dict[str, dict[str, list[list[float]]]] = {}
    with restored(model) as handle:
        for bn in bn_modes:
            per_split = losses.setdefault(bn, {name: [] for name in data.splits})
            for k, d in enumerate(directions):
                curve = {name: [] for name in data.splits}
                for alpha in alphas:
                    for name, s in score_point(model, handle, d, alpha, bn, data).items():
                        rows.append({"bn": bn, "direction": k, "alpha": alpha, "split": name, **vars(s)})
                        curve[name].append(s.loss)
                for name in data.splits:
                    per_split[name].append(curve[name])
    return rows, losses


def slice_probe(
    model: nn.Module,
    data: ProbeData,
    settings: SliceParams,
    parameters: str,
    bn_modes: list[str],
    seeds: list[int],
    variant: str = "",
    train_seed: int = 0,
) -> tuple[list[dict], SliceSummary]:
    """L(theta + alpha d) and accuracy along seeded filter-normalized directions (one per seed), per BN handling.

    Beside the fitted curvature 2a (quadratic fit on |alpha| <= fit_fraction * span) it gives the exact
    d^T H d by a Hessian-vector product, with H the Hessian of the mean loss on the "train" split in eval
    mode (BN frozen), over the perturbed parameter set.
    """
    alphas = alpha_grid(settings.points, settings.span)
    window = settings.fit_fraction * settings.span
    params = parameters_of(model)
    mask = perturbed_mask(model, parameters)
    theta_norm = norm([p for p, keep in zip(params, mask, strict=True) if keep])
    directions = [filter_normalized_direction(model, s, settings.normalization, parameters) for s in seeds]
    hessian_params = [p for p, keep in zip(params, mask, strict=True) if keep]
    exact = directional_curvature(
        model, hessian_params, data.splits["train"], data.batch_size,
        [[di for di, keep in zip(d, mask, strict=True) if keep] for d in directions],
    )  # fmt: skip
    rows, losses = slice_losses(model, data, directions, alphas, bn_modes_for(model, bn_modes))
    curves = {
        bn: {name: slice_curve(alphas, c, window, settings.taus) for name, c in per_split.items()}
        for bn, per_split in losses.items()
    }
    fitted = [fit_quadratic(alphas, c, window).curvature for c in losses["frozen"]["train"]]
    summary = SliceSummary(
        variant=variant,
        seed=train_seed,
        parameters=parameters,
        directions=len(seeds),
        fit_window=window,
        theta_norm=theta_norm,
        direction_norm_rel=Spread.of(norm(d) / theta_norm for d in directions),
        curvature_exact=Spread.of(exact),
        curvature_exact_per_direction=list(exact),
        curvature_fit_per_direction=fitted,
        curves=curves,
        surface_area={},
    )
    return rows, summary
