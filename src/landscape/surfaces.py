"""Two more cuts through weight space: the filter-normalized 2-D loss surface around the solution
(Li et al. 2018) and the straight path from the initial weights to the trained ones."""

from __future__ import annotations

import torch
from torch import nn

from landscape.data import ProbeData
from landscape.directions import filter_normalized_direction, parameters_of
from landscape.perturb import has_batch_norm, restored
from landscape.probes import alpha_grid, norm, score_point
from landscape.results import PathSummary, number_key

SURFACE_COLUMNS = ["a", "b", "split", "loss", "acc"]
PATH_COLUMNS = ["t", "split", "loss", "acc"]


def surface_probe(
    model: nn.Module, data: ProbeData, points: int, span: float, normalization: str, parameters: str, seeds: list[int]
) -> list[dict]:
    """L(theta + a d1 + b d2) on a points x points grid over [-span, span]^2, BN frozen.

    d1 and d2 are ``filter_normalized_direction`` with ``seeds[0]`` and ``seeds[1]``, so the row b = 0 is
    the 1-D slice along d1 with the same seed and grid.
    """
    d1, d2 = (filter_normalized_direction(model, s, normalization, parameters) for s in seeds[:2])
    grid = alpha_grid(points, span)
    rows = []
    with restored(model) as handle:
        for b in grid:
            for a in grid:
                delta = [a * x + b * y for x, y in zip(d1, d2, strict=True)]
                for name, s in score_point(model, handle, delta, 1.0, "frozen", data).items():
                    rows.append({"a": a, "b": b, "split": name, "loss": s.loss, "acc": s.acc})
    return rows


def surface_area(rows: list[dict], split: str, taus: list[float]) -> dict[str, float]:
    """Fraction of the grid where L - L(0, 0) <= tau, for each tau: a 2-D basin size."""
    losses = {(r["a"], r["b"]): r["loss"] for r in rows if r["split"] == split}
    base = losses[(0.0, 0.0)]
    return {number_key("tau", t): sum(v - base <= t for v in losses.values()) / len(losses) for t in taus}


def path_grid(points: int, margin: float) -> list[float]:
    """t = 0, 1/(points-1), ..., 1, continued with the same step up to 1 + margin."""
    step = 1.0 / (points - 1)
    extra = int(round(margin / step + 1e-9))
    return [i * step for i in range(points + extra)]


def path_probe(
    model: nn.Module, initial: dict[str, torch.Tensor], data: ProbeData, points: int, margin: float
) -> tuple[list[dict], dict[str, list[float]], float, str]:
    """Loss and accuracy along theta(t) = (1 - t) theta_0 + t theta_T for every parameter.

    BN statistics are recalibrated at every t where the model has BN (the initial running statistics
    describe no network on the path), else the model has none to handle. Returns rows, the loss curve per
    split on ``path_grid``, ||theta_T - theta_0|| / ||theta_0|| and the BN handling used.
    """
    names = [n for n, _ in model.named_parameters()]
    trained = parameters_of(model)
    start = [initial[n].to(p.device) for n, p in zip(names, trained, strict=True)]
    delta = [p.detach() - p0 for p, p0 in zip(trained, start, strict=True)]  # theta(t) = theta_T + (t - 1) delta
    bn = "recalibrated" if has_batch_norm(model) else "frozen"
    rows, curves = [], {name: [] for name in data.splits}
    with restored(model) as handle:
        for t in path_grid(points, margin):
            for name, s in score_point(model, handle, delta, t - 1.0, bn, data).items():
                rows.append({"t": t, "split": name, "loss": s.loss, "acc": s.acc})
                curves[name].append(s.loss)
    return rows, curves, norm(delta) / norm(start), bn


def path_summary(
    variant: str, seed: int, ts: list[float], curves: dict[str, list[float]], accs: dict[str, float], rel: float,
    bn: str, tolerance: float = 1e-3,
) -> PathSummary:  # fmt: skip
    """Monotonicity, largest rise and barrier over t in [0, 1] of each split's loss curve."""
    inside = [i for i, t in enumerate(ts) if t <= 1.0 + 1e-12]
    one = inside[-1]
    rise, barrier = {}, {}
    for name, c in curves.items():
        running_min, worst = c[0], 0.0
        for i in inside:
            worst = max(worst, c[i] - running_min)
            running_min = min(running_min, c[i])
        rise[name] = worst
        barrier[name] = max(c[i] - ((1 - ts[i]) * c[0] + ts[i] * c[one]) for i in inside)
    return PathSummary(
        variant=variant,
        seed=seed,
        bn=bn,
        distance_rel=rel,
        loss_at_0={n: c[0] for n, c in curves.items()},
        loss_at_1={n: c[one] for n, c in curves.items()},
        acc_at_1=accs,
        monotonic={n: r <= tolerance for n, r in rise.items()},
        max_rise=rise,
        barrier=barrier,
    )
