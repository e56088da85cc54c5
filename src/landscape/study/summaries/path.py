"""The path from the initial to the trained weights of one run: its settings, CSV rows and summary."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from landscape.probes.data import ProbeData
from landscape.probes.surfaces import PathResult, interpolation_path
from landscape.study.params import PathParams
from landscape.study.results import PathSummary

PATH_COLUMNS = ["t", "split", "loss", "acc"]


def path_rows(result: PathResult) -> list[dict]:
    return [{"t": q.t, "split": q.split, "loss": q.loss, "acc": q.acc} for q in result.points]


def path_summary(
    variant: str, seed: int, ts: list[float], curves: dict[str, list[float]], accs: dict[str, float], rel: float,
    bn: str, tolerance: float,
) -> PathSummary:  # fmt: skip
    """Monotonicity (no rise above an earlier minimum by more than ``tolerance`` nats), largest rise and barrier
    over t in [0, 1] of each split's loss curve."""
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
        tolerance=tolerance,
        max_rise=rise,
        barrier=barrier,
    )


def path_probe(
    model: nn.Module, initial: Mapping[str, torch.Tensor], data: ProbeData, p: PathParams, variant: str, seed: int
) -> tuple[list[dict], PathSummary]:
    """The path from ``initial`` to the trained weights of run (variant, seed): its rows and summary."""
    result = interpolation_path(model, initial, data, p.path_settings())
    curves = {name: result.losses(name) for name in data.splits}
    accs = {q.split: q.acc for q in result.points if abs(q.t - 1.0) < 1e-12}
    summary = path_summary(
        variant, seed, result.ts, curves, accs, result.distance_rel, result.bn, p.monotonic_tolerance
    )
    return path_rows(result), summary
