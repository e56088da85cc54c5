"""Report sections 6-8: curvature (with the per-layer test of the fan-in explanation), the optimization path,
and which geometric measures go with the gap.

Numbers come from typed objects only; the sentences are generated from the CIs with the verdict vocabulary.
"""

from __future__ import annotations

import math

import numpy as np

from landscape import measures as M
from landscape.aggregate import MODEL_A, MODEL_B
from landscape.params import Params
from landscape.report_format import (
    PERCENT,
    PLAIN,
    SIGNED,
    count,
    estimate,
    interval,
    table,
)
from landscape.results import run_measures
from landscape.stats import Interval, kendall_tau, kendall_tau_group_bootstrap, verdict
from landscape.study_data import StudyData

MIN_GROUPS = 4  # resampling fewer whole variants gives a handful of distinct resamples, not an interval


def group_tau(x: list[float], y: list[float], groups: list[str]) -> Interval:
    """Kendall's tau with a CI from resampling whole variants; no CI (nan) with fewer than MIN_GROUPS variants."""
    tau = kendall_tau_group_bootstrap(x, y, groups)
    if len(set(groups)) < MIN_GROUPS:
        return Interval(tau.mean, math.nan, math.nan, math.nan, tau.n)
    return tau


def fit_vs_exact(data: StudyData, variant: str) -> Interval:
    """Over seeds: each run's mean over directions of |fitted 2a - d^T H d| / |d^T H d|."""
    per_run = []
    for s in data.seeds:
        sl = data.runs[(variant, s)].slice
        pairs = zip(sl.curvature_fit_per_direction, sl.curvature_exact_per_direction, strict=True)
        rel = [abs(f - e) / abs(e) for f, e in pairs if e != 0 and math.isfinite(f) and math.isfinite(e)]
        per_run.append(float(np.mean(rel)) if rel else math.nan)
    return M.finite_ci(per_run)


def fan_in_points(data: StudyData) -> tuple[list[float], list[float], list[str]]:
    """(fan-in, slice curvature mean over seeds, variant) for every weight tensor of every variant."""
    xs, ys, groups = [], [], []
    for v in data.variants:
        for layers in zip(*(data.runs[(v, s)].curvature.layers for s in data.seeds), strict=True):
            y = float(np.mean([lay.slice_curvature.mean for lay in layers]))
            if math.isfinite(y):
                xs.append(float(layers[0].fan_in))
                ys.append(y)
                groups.append(v)
    return xs, ys, groups


def steepest_layer(data: StudyData, variant: str) -> str:
    """The weight tensor of ``variant`` with the largest mean slice curvature d_l^T H d_l, with its seed CI."""
    per_layer = zip(*(data.runs[(variant, s)].curvature.layers for s in data.seeds), strict=True)
    rows = [(layers[0], M.finite_ci(lay.slice_curvature.mean for lay in layers)) for layers in per_layer]
    if not rows:
        return ""
    layer, curv = max(rows, key=lambda r: r[1].mean)
    return (
        f" In `{variant}` the steepest tensor is {layer.name} (fan-in {layer.fan_in}): d_l^T H d_l = "
        f"{interval(curv, PLAIN)}."
    )


def fan_in_test(data: StudyData) -> str:
    units = []
    for v in (x for x in (MODEL_A, MODEL_B) if x in data.variants):
        layers = data.runs[(v, data.seeds[0])].curvature.layers
        units.append(f"`{v}`: " + ", ".join(f"{lay.name} {lay.fan_in}" for lay in layers))
    xs, ys, groups = fan_in_points(data)
    if len(xs) < 2:
        return "The fan-in test needs at least two weight tensors with a slice curvature."
    tau = group_tau(xs, ys, groups)
    word = {"agrees": "confirmed", "differs": "refuted"}.get(verdict(tau, -1), "inconclusive")
    return (
        "The fan-in explanation: filter normalization scales each output filter or neuron as a whole, so the unit "
        "holds fan-in weights (" + "; ".join(units) + "), and a small unit might be perturbed more sharply. Kendall's "
        f"tau between fan-in and per-layer slice curvature d_l^T H d_l over all {len(xs)} (variant, layer) pairs: "
        f"{interval(tau, SIGNED)} (95 % CI from resampling whole variants, given with >= {MIN_GROUPS} variants). "
        "The explanation predicts tau < 0: "
        f"**{word}**." + "".join(steepest_layer(data, v) for v in (MODEL_A, MODEL_B) if v in data.variants)
    )


def curvature(data: StudyData) -> str:
    columns = [
        M.LAMBDA_MAX,
        M.TRACE,
        M.FLATNESS,
        M.FLATNESS_FEATURE,
        M.CURVATURE_EXACT,
        M.curvature_fit("frozen", "train"),
    ]
    rows = [
        [v, *(estimate(data.study.get(v, m), PLAIN) for m in columns), interval(fit_vs_exact(data, v), PLAIN)]
        for v in data.variants
    ]
    overall = [fit_vs_exact(data, v).mean for v in data.variants]
    window = data.runs[(data.variants[0], data.seeds[0])].slice.fit_window
    return "\n\n".join(
        [
            "## 6. Curvature",
            "Hessian of the mean training loss on a fixed training subset, at the trained weights, eval mode, with "
            "respect to the same parameter set as the slices. Mean [95 % CI over seeds].",
            table(
                [
                    "variant",
                    "lambda_max",
                    "trace(H)",
                    "relative flatness (sum)",
                    "relative flatness (classifier)",
                    "exact d^T H d",
                    "fitted 2a (train)",
                    "mean |fit - exact| / |exact|",
                ],
                rows,
            ),
            "Raw lambda_max and trace change under rescalings that leave the function unchanged (Dinh et al. 2017), "
            "so the report also gives relative flatness (Petzka et al., NeurIPS 2021): for each weight tensor, "
            "kappa_l = sum over output units s, s' of <w_s, w_s'> Tr(H_ss'), invariant to the layer-wise rescaling. "
            "The report uses the sum over weight tensors, and shows the classifier layer's kappa beside it.",
            f"Exact vs fitted curvature: the quadratic fit on |alpha| <= {window:g} gives 2a, which estimates d^T H d "
            "along the same directions; their mean relative difference over variants is "
            f"{PERCENT(float(np.nanmean(overall)))}. The exact value does not depend on the fit window.",
            fan_in_test(data),
            "![curvature](plots/figures/curvature.png)\n\n![layers](plots/figures/layers.png)\n\n"
            "![slices](plots/figures/slices.png)\n\n![surfaces](plots/figures/surfaces.png)",
        ]
    )


def monotonic_count(data: StudyData, split: str) -> str:
    """'k of n': the runs whose path loss is monotonic on ``split``."""
    runs = [r.path for r in data.runs.values() if split in r.path.monotonic]
    return count(sum(p.monotonic[split] for p in runs), len(runs))


def _worst_barrier(data: StudyData) -> str:
    barriers = {k: r.path.barrier["train"] for k, r in data.runs.items() if "train" in r.path.barrier}
    if not barriers or max(barriers.values()) <= 0:
        return "No run has a barrier on the training subset."
    (v, seed), worst = max(barriers.items(), key=lambda kv: kv[1])
    return f"The largest training-loss barrier is {PLAIN(worst)} nats (`{v}`, seed {seed})."


def path(data: StudyData) -> str:
    runs = [r.path for r in data.runs.values()]
    splits = [s for s in ("train", "val") if all(s in p.barrier for p in runs)]
    rows = []
    for v in data.variants:
        mine = [data.runs[(v, s)].path for s in data.seeds]
        rows.append(
            [v, estimate(data.study.get(v, M.PATH_DISTANCE), PLAIN)]
            + [count(sum(p.monotonic[s] for p in mine), len(mine)) for s in splits]
            + [estimate(data.study.get(v, m(s)), PLAIN) for m in (M.path_barrier, M.path_max_rise) for s in splits[:1]]
            + [interval(M.finite_ci(p.loss_at_1[s] for p in mine), PLAIN) for s in splits]
        )
    header = [
        "variant",
        "||theta_T - theta_0|| / ||theta_0||",
        *(f"monotonic ({s})" for s in splits),
        *(f"{w} ({s})" for w in ("largest barrier", "max rise") for s in splits[:1]),
        *(f"loss at t = 1 ({s})" for s in splits),
    ]
    return "\n\n".join(
        [
            "## 7. Optimization path",
            "Loss along theta(t) = (1 - t) theta_0 + t theta_T, from the initial to the trained weights, BN statistics "
            "recalibrated at every t where the variant has BN. Monotonic: the loss never rises by more than the "
            "tolerance on [0, 1]; barrier: the largest excess over the straight line between L(0) and L(1).",
            table(header, rows),
            f"The path is monotonic on the training subset in {monotonic_count(data, 'train')} runs. "
            f"{_worst_barrier(data)}",
            "![path](plots/figures/path.png)",
        ]
    )


def _rank_row(data: StudyData, measure: str, name: str) -> list[str] | None:
    values = {k: run_measures(r) for k, r in data.runs.items()}
    keys = [k for k in data.runs if measure in values[k] and math.isfinite(values[k][measure].value)]
    if len(keys) < 2:
        return None
    x = [values[k][measure].value for k in keys]
    gap = [values[k][M.GAP].value for k in keys]
    tau = group_tau(x, gap, [k[0] for k in keys])
    by_variant = {}
    for (v, _), xi, gi in zip(keys, x, gap, strict=True):
        by_variant.setdefault(v, []).append((xi, gi))
    means = np.array([np.mean(p, axis=0) for p in by_variant.values()])
    censored = sum(values[k][measure].censored for k in keys)
    return [
        name,
        f"{interval(tau, SIGNED)}, n = {len(keys)} runs",
        f"{SIGNED(kendall_tau(means[:, 0], means[:, 1]))}, n = {len(means)} variants",
        str(censored),
    ]


def correlations(data: StudyData, params: Params) -> str:
    star, mode, drop = M.headline_sigma_star(data.runs[(data.variants[0], data.seeds[0])])
    tau = min(params.slice.taus)
    candidates = [
        (M.CURVATURE_EXACT, "exact slice curvature"),
        (M.LAMBDA_MAX, "lambda_max"),
        (M.TRACE, "trace(H)"),
        (M.FLATNESS, "relative flatness"),
        (star, f"sigma* ({mode}, BN frozen, {100 * drop:g} pp)"),
        (M.width("frozen", "val", tau), f"W_tau (tau = {tau:g}, val, BN frozen)"),
        (M.PATH_DISTANCE, "path distance"),
    ]
    rows = [row for m, name in candidates if (row := _rank_row(data, m, name)) is not None]
    return "\n\n".join(
        [
            "## 8. Which geometric properties go with generalization?",
            "Kendall's tau between each measure and the eval-mode gap: over every variant x seed run, with a 95 % CI "
            f"from resampling whole variants (the runs of one variant are not independent; given with >= {MIN_GROUPS} "
            "variants), and over the variant means. "
            "tau > 0: a larger value goes with a larger gap. Censored values enter as their lower bounds.",
            table(["measure", "tau over runs [95 % CI]", "tau over variant means", "censored runs"], rows),
            f"This is a small-sample hint ({len(data.variants)} variants x {len(data.seeds)} seeds), a small version "
            "of the Jiang et al. (2020) protocol, not a test: with this few models a tau of 0.3 is well within "
            "chance.",
        ]
    )
