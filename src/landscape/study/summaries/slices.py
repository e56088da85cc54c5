"""The 1-D slices and the 2-D surface of one run: their settings from params.yaml, CSV rows and summary."""

from __future__ import annotations

import itertools

from torch import nn

from landscape.probes.data import ProbeData
from landscape.probes.summary import basin_width, fit_quadratic
from landscape.probes.surfaces import SurfacePoint, loss_surface
from landscape.probes.sweeps import SliceResult, loss_slices
from landscape.study.params import ProbeParams, SliceParams
from landscape.study.results import SliceCurve, SliceSummary, Spread, Width, number_key
from landscape.study.summaries import stream_seeds

SLICE_COLUMNS = ["bn", "direction", "alpha", "split", "loss", "acc"]
SURFACE_COLUMNS = ["a", "b", "split", "loss", "acc"]


def slice_rows(result: SliceResult) -> list[dict]:
    """One row per (BN handling, direction, alpha, split), in that order."""
    rows = []
    for bn, group in itertools.groupby(result.points, key=lambda q: q.bn):
        group = list(group)
        for k in range(len(group[0].loss)):
            rows += [
                {"bn": bn, "direction": k, "alpha": q.alpha, "split": q.split, "loss": q.loss[k], "acc": q.acc[k]}
                for q in group
            ]
    return rows


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


def slice_summary(result: SliceResult, p: SliceParams, parameters: str, variant: str, seed: int) -> SliceSummary:
    """Per BN handling and split: fitted curvature 2a (on |alpha| <= fit_fraction * span) and basin widths; the
    local d^T H d (one activation pattern) beside the fitted 2a on the "train" split with BN frozen.
    ``surface_area`` is left empty."""
    alphas, window = result.alphas, p.fit_fraction * p.span
    bns = dict.fromkeys(q.bn for q in result.points)
    splits = dict.fromkeys(q.split for q in result.points)
    curves = {bn: {name: slice_curve(alphas, result.curves(name, bn), window, p.taus) for name in splits} for bn in bns}
    return SliceSummary(
        variant=variant,
        seed=seed,
        parameters=parameters,
        directions=len(result.direction_norms),
        fit_window=window,
        theta_norm=result.theta_norm,
        direction_norm_rel=Spread.of(n / result.theta_norm for n in result.direction_norms),
        curvature_exact=Spread.of(result.curvature),
        curvature_exact_per_direction=list(result.curvature),
        curvature_fit_per_direction=[fit_quadratic(alphas, c, window).curvature for c in result.curves("train")],
        curves=curves,
        surface_area={},
    )


def slice_probe(
    model: nn.Module, data: ProbeData, p: SliceParams, probes: ProbeParams, variant: str, seed: int, *, draws: str
) -> tuple[list[dict], SliceSummary]:
    """The 1-D slices of run (variant, seed): their rows and summary (``surface_area`` from ``surface_probe``)."""
    result = loss_slices(model, data, p.slice_settings(probes, stream_seeds("slice", draws, seed, p.directions)))
    return slice_rows(result), slice_summary(result, p, probes.parameters, variant, seed)


def surface_rows(points: list[SurfacePoint]) -> list[dict]:
    return [{"a": q.a, "b": q.b, "split": q.split, "loss": q.loss, "acc": q.acc} for q in points]


def surface_area(points: list[SurfacePoint], split: str, taus: list[float]) -> dict[str, float]:
    """Fraction of the grid where L - L(0, 0) <= tau, for each tau: a 2-D basin size."""
    losses = {(q.a, q.b): q.loss for q in points if q.split == split}
    base = losses[(0.0, 0.0)]
    return {number_key("tau", t): sum(v - base <= t for v in losses.values()) / len(losses) for t in taus}


def surface_probe(
    model: nn.Module, data: ProbeData, p: SliceParams, probes: ProbeParams, variant: str, seed: int, *, draws: str
) -> tuple[list[dict], dict[str, float]]:
    """The 2-D surface of run (variant, seed): its rows, and its area within each tau on the "train" split."""
    points = loss_surface(model, data, p.surface_settings(probes, stream_seeds("surface", draws, seed, 2)))
    return surface_rows(points), surface_area(points, "train", p.taus)
