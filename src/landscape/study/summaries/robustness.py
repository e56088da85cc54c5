"""The noise probe of one run: its settings from params.yaml, its CSV rows and its summary."""

from __future__ import annotations

import itertools

from torch import nn

from landscape.probes.data import ProbeData
from landscape.probes.summary import interpolate_crossing
from landscape.probes.sweeps import NoisePoint, noise_robustness
from landscape.study.params import ProbeParams, RobustnessParams
from landscape.study.results import Censored, NoiseCurve, RobustnessSummary, SigmaPoint, Spread, drop_key, number_key
from landscape.study.summaries import stream_seeds

ROBUSTNESS_COLUMNS = ["mode", "bn", "sigma", "trial", "split", "loss", "acc"]


def noise_rows(points: list[NoisePoint]) -> list[dict]:
    """One row per (mode, BN handling, sigma, trial, split), in that order."""
    rows = []
    for _, group in itertools.groupby(points, key=lambda q: (q.mode, q.bn, q.sigma)):
        group = list(group)
        for k in range(len(group[0].loss)):
            rows += [
                {"mode": q.mode, "bn": q.bn, "sigma": q.sigma, "trial": k, "split": q.split, "loss": q.loss[k],
                 "acc": q.acc[k]}
                for q in group
            ]  # fmt: skip
    return rows


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


def robustness_summary(
    points: list[NoisePoint], data: ProbeData, drops: list[float], parameters: str, variant: str, seed: int
) -> RobustnessSummary:
    """Every (mode, BN handling) curve on the "val" split if present, else the first split."""
    split = "val" if "val" in data.splits else next(iter(data.splits))
    on_split = [q for q in points if q.split == split]
    curves: dict[str, dict[str, NoiseCurve]] = {}
    for (mode, bn), group in itertools.groupby(on_split, key=lambda q: (q.mode, q.bn)):
        group = list(group)
        curve = noise_curve(mode, bn, [q.sigma for q in group], [list(q.acc) for q in group], drops)
        curves.setdefault(mode, {})[bn] = curve
    trials = len(on_split[0].acc)
    return RobustnessSummary(variant, seed, split, parameters, trials, len(data.splits[split]), curves)


def robustness_probe(
    model: nn.Module, data: ProbeData, p: RobustnessParams, probes: ProbeParams, variant: str, seed: int, *, draws: str
) -> tuple[list[dict], RobustnessSummary]:
    """The noise probe of run (variant, seed): its rows and summary."""
    settings = p.noise_settings(probes, stream_seeds("robustness", draws, seed, p.trials))
    points = noise_robustness(model, data, settings)
    return noise_rows(points), robustness_summary(points, data, p.drops, probes.parameters, variant, seed)
