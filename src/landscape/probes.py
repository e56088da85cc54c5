"""The landscape probes: accuracy under parameter noise, and 1-D loss slices.

Both move the trained weights in place (``perturb.restored``), call the one
``evaluate`` function, and leave the model exactly as they found it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from landscape.data import Split
from landscape.directions import filter_normalized_direction, gaussian_like, noise_delta, parameters_of
from landscape.evaluate import Score, evaluate
from landscape.perturb import Perturbation, has_batch_norm, recalibrate_batch_norm, restored
from landscape.summary import basin_width, fit_quadratic, largest_sigma_within, mean_std

ROBUSTNESS_COLUMNS = ["mode", "bn", "sigma", "trial", "split", "loss", "acc"]
SLICE_COLUMNS = ["direction", "alpha", "split", "loss", "acc"]


def trial_seed(seed: int, trial: int) -> int:
    """Distinct seeds for every (seed, trial) pair, so that runs with different seeds never share draws."""
    return seed * 1_000_003 + trial


@dataclass(frozen=True)
class ProbeData:
    """What a probe evaluates on (named splits) and the training images that recalibrate BN."""

    splits: dict[str, Split]
    bn_data: Split
    batch_size: int


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
    return bn_modes if has_batch_norm(model) else ["frozen"]


def robustness_probe(
    model: nn.Module,
    data: ProbeData,
    sigmas: list[float],
    trials: int,
    seed: int,
    modes: list[str],
    bn_modes: list[str],
    drops: list[float],
    bisect_steps: int,
    summary_split: str = "val",
) -> tuple[list[dict], dict]:
    """Accuracy and loss under theta + sigma * delta_mode(xi_k), for every mode, BN handling, sigma and trial.

    Trial k draws xi_k once (seed ``trial_seed(seed, k)``) and reuses it at every sigma
    and mode, so each curve is smooth in sigma. Returns long-format rows and the summary:
    mean/std accuracy on ``summary_split`` per sigma, and sigma*_d for each drop d.
    """
    params = parameters_of(model)
    seeds = [trial_seed(seed, k) for k in range(trials)]
    xis = [gaussian_like(params, s) for s in seeds]
    # every delta is computed from the unperturbed weights, before any point is visited
    deltas_by_mode = {mode: [noise_delta(params, xi, mode) for xi in xis] for mode in modes}
    rows: list[dict] = []
    summary: dict = {"seeds": seeds, "summary_split": summary_split}
    unperturbed: dict[str, dict[str, Score]] = {}
    with restored(model) as handle:
        for mode, deltas in deltas_by_mode.items():
            for bn in bn_modes_for(model, bn_modes):
                accs: dict[float, list[float]] = {}
                for sigma in sigmas:
                    for k, delta in enumerate(deltas):
                        if sigma == 0:  # the unperturbed point is the same for every trial and mode
                            if bn not in unperturbed:
                                unperturbed[bn] = score_point(model, handle, delta, 0.0, bn, data)
                            scores = unperturbed[bn]
                        else:
                            scores = score_point(model, handle, delta, sigma, bn, data)
                        for split, score in scores.items():
                            rows.append(
                                {
                                    "mode": mode,
                                    "bn": bn,
                                    "sigma": sigma,
                                    "trial": k,
                                    "split": split,
                                    "loss": score.loss,
                                    "acc": score.acc,
                                }
                            )
                        accs.setdefault(sigma, []).append(scores[summary_split].acc)
                base = sum(accs[sigmas[0]]) / trials

                def mean_drop(sigma: float, deltas=deltas, bn=bn, base=base) -> float:
                    hits = [score_point(model, handle, d, sigma, bn, data)[summary_split].acc for d in deltas]
                    return base - sum(hits) / len(hits)

                grid_drops = [base - sum(accs[s]) / trials for s in sigmas]
                entry = {
                    "acc": {f"sigma={s:g}": mean_std(accs[s]) for s in sigmas},
                    "sigma_star": {},
                }
                for d in drops:
                    t = largest_sigma_within(mean_drop, sigmas, grid_drops, d, bisect_steps)
                    entry["sigma_star"][f"drop={d:g}"] = {
                        "low": t.low,
                        "high": t.high if not t.censored else None,
                        "censored": t.censored,
                    }
                summary.setdefault(mode, {})[bn] = entry
    return rows, summary


def alpha_grid(points: int, span: float) -> list[float]:
    """Symmetric grid of ``points`` (odd) values on [-span, span] containing exactly 0."""
    half = points // 2
    return [span * i / half for i in range(-half, half + 1)]


def slice_probe(
    model: nn.Module,
    data: ProbeData,
    directions: int,
    points: int,
    span: float,
    normalization: str,
    ignore: str,
    seed: int,
    bn: str,
    fit_fraction: float,
    taus: list[float],
) -> tuple[list[dict], dict]:
    """L(theta + alpha * d) and accuracy along seeded normalized directions, with summary scalars.

    Per split: mean +- std over directions of the curvature 2a of a quadratic fit on
    |alpha| <= fit_fraction * span (with R^2 and slope b), the basin width W_tau, the loss
    at alpha = +-span, and widths and span as distances ||alpha d|| / ||theta||.
    """
    alphas = alpha_grid(points, span)
    seeds = [trial_seed(seed, k) for k in range(directions)]
    params = parameters_of(model)
    theta_norm = torch.sqrt(sum((p.detach().double() ** 2).sum() for p in params)).item()
    directions_d = [filter_normalized_direction(model, s, normalization, ignore) for s in seeds]
    rel_scale = [torch.sqrt(sum((di.double() ** 2).sum() for di in d)).item() / theta_norm for d in directions_d]
    rows: list[dict] = []
    curves: dict[str, list[list[float]]] = {name: [] for name in data.splits}
    with restored(model) as handle:
        for k, d in enumerate(directions_d):
            losses: dict[str, list[float]] = {name: [] for name in data.splits}
            for alpha in alphas:
                for split, score in score_point(model, handle, d, alpha, bn, data).items():
                    rows.append({"direction": k, "alpha": alpha, "split": split, "loss": score.loss, "acc": score.acc})
                    losses[split].append(score.loss)
            for split in data.splits:
                curves[split].append(losses[split])

    summary: dict = {"seeds": seeds, "theta_norm": theta_norm, "direction_norm_rel": mean_std(rel_scale)}
    for split, per_direction in curves.items():
        fits = [fit_quadratic(alphas, c, fit_fraction * span) for c in per_direction]
        entry = {
            "loss_at_0": per_direction[0][points // 2],
            "curvature": mean_std([f.curvature for f in fits]),
            "fit_r2": mean_std([f.r2 for f in fits]),
            "fit_slope_b": mean_std([f.b for f in fits]),
            "loss_at_minus_span": mean_std([c[0] for c in per_direction]),
            "loss_at_plus_span": mean_std([c[-1] for c in per_direction]),
            "span_rel": mean_std([span * r for r in rel_scale]),
        }
        for tau in taus:
            widths = [basin_width(alphas, c, tau) for c in per_direction]
            entry[f"width_tau={tau:g}"] = {
                **mean_std([w.width for w in widths]),
                "censored": sum(w.censored for w in widths),
            }
            entry[f"width_rel_tau={tau:g}"] = mean_std([w.width * r for w, r in zip(widths, rel_scale, strict=True)])
        summary[split] = entry
    return rows, summary
