"""Report sections 6 and 7: curvature (the local Hessian beside the finite-step curvature of the slices, the
estimators' noise, and the per-layer test of the fan-in explanation) and the optimization path.

For ReLU and max-pool networks the autograd Hessian is the Hessian inside one activation pattern, so every
Hessian quantity here (d^T H d, lambda_max, trace, relative flatness) is called "local". Numbers come from typed
objects only; the sentences are generated from the numbers with the verdict vocabulary.
"""

from __future__ import annotations

import math

import numpy as np

from landscape.report import finite_step as F
from landscape.report import measures as M
from landscape.report.aggregate import MODEL_A, MODEL_B
from landscape.report.estimator_noise import estimator_noise
from landscape.report.format import (
    PERCENT,
    PLAIN,
    SIGNED,
    count,
    estimate,
    interval,
    table,
)
from landscape.report.ranking import permutation_tau
from landscape.report.stats import Interval, kendall_tau_group_bootstrap
from landscape.report.study_data import StudyData

MIN_GROUPS = 4  # resampling fewer whole variants gives a handful of distinct resamples, not an interval
LOCAL = "local Hessian (one activation pattern)"
FAN_IN_LEVEL = 0.05  # one-sided level at which the per-layer ranking is called consistent with the fan-in explanation


def group_tau(x: list[float], y: list[float], groups: list[str]) -> Interval:
    """Kendall's tau with a CI from resampling whole variants; no CI (nan) with fewer than MIN_GROUPS variants."""
    tau = kendall_tau_group_bootstrap(x, y, groups)
    if len(set(groups)) < MIN_GROUPS:
        return Interval(tau.mean, math.nan, math.nan, math.nan, tau.n)
    return tau


def fit_vs_local(data: StudyData, variant: str) -> Interval:
    """Over seeds: each run's mean over directions of |fitted 2a - d^T H d| / |d^T H d|."""
    per_run = []
    for s in data.seeds:
        sl = data.runs[(variant, s)].slice
        pairs = zip(sl.curvature_fit_per_direction, sl.curvature_exact_per_direction, strict=True)
        rel = [abs(f - e) / abs(e) for f, e in pairs if e != 0 and math.isfinite(f) and math.isfinite(e)]
        per_run.append(float(np.mean(rel)) if rel else math.nan)
    return M.finite_ci(per_run)


def distinct_layers(data: StudyData) -> list[tuple[str, int, float, int]]:
    """(label, fan-in, mean slice curvature d_l^T H d_l, directions behind it) per distinct layer: a weight tensor's
    position in its family (MLP or CNN), its value the mean of the run means over every variant of that family and
    every seed."""
    per_layer: dict[tuple[bool, int], list] = {}
    for v in data.variants:
        for s in data.seeds:
            for i, lay in enumerate(data.runs[(v, s)].curvature.layers):
                per_layer.setdefault((data.factorial[v].conv, i), []).append(lay)
    rows = []
    for (conv, i), layers in per_layer.items():
        finite = [lay.slice_curvature for lay in layers if math.isfinite(lay.slice_curvature.mean)]
        if finite:
            name = f"{'CNN' if conv else 'MLP'} tensor {i + 1}"
            rows.append((name, layers[0].fan_in, float(np.mean([c.mean for c in finite])), sum(c.n for c in finite)))
    return rows


def steepest_layer(data: StudyData, variant: str) -> str:
    """The weight tensor of ``variant`` with the largest mean slice curvature d_l^T H d_l, with its seed CI."""
    per_layer = zip(*(data.runs[(variant, s)].curvature.layers for s in data.seeds), strict=True)
    rows = [(layers[0], M.finite_ci(lay.slice_curvature.mean for lay in layers)) for layers in per_layer]
    if not rows:
        return ""
    layer, curv = max(rows, key=lambda r: r[1].mean)
    return (
        f" In `{variant}` the steepest tensor is {layer.name} (fan-in {layer.fan_in}): local d_l^T H d_l = "
        f"{interval(curv, PLAIN)}."
    )


def _counts(values: list[int]) -> str:
    distinct = sorted(set(values))
    return " or ".join(map(str, distinct)) if distinct else "no"


def fan_in_test(data: StudyData) -> str:
    units = []
    for v in (x for x in (MODEL_A, MODEL_B) if x in data.variants):
        layers = data.runs[(v, data.seeds[0])].curvature.layers
        units.append(f"`{v}`: " + ", ".join(f"{lay.name} {lay.fan_in}" for lay in layers))
    rows = distinct_layers(data)
    if len(rows) < 2:
        return "The fan-in test needs at least two weight tensors with a slice curvature."
    test = permutation_tau([r[1] for r in rows], [r[2] for r in rows], alternative="less")
    consistent = test.tau < 0 and test.p < FAN_IN_LEVEL
    finding = (
        f"consistent with the fan-in explanation (tau < 0 with one-sided p < {FAN_IN_LEVEL:g})"
        if consistent
        else f"not evidence for the fan-in explanation at the one-sided {FAN_IN_LEVEL:g} level"
    )
    points = "; ".join(f"{name} (fan-in {fan_in}) {PLAIN(c)}" for name, fan_in, c, _ in rows)
    per_run = [lay.slice_curvature.n for r in data.runs.values() for lay in r.curvature.layers]
    how = "exact, all orderings" if test.exact else "seeded random orderings"
    return (
        "The fan-in explanation: filter normalization scales each output filter or neuron as a whole, so the unit "
        "holds fan-in weights (" + "; ".join(units) + "), and a small unit might be perturbed more sharply. The test "
        f"is over the {len(rows)} distinct layers (a tensor's position in the MLP or CNN family), each the mean of "
        f"the local d_l^T H d_l over its family's variants and seeds: {points}. Kendall's tau between fan-in and "
        f"that mean: {SIGNED(test.tau)}, one-sided permutation p = {PLAIN(test.p)} ({test.permutations:,} orderings, "
        f"{how}). The explanation predicts tau < 0; the ranking is **{finding}**. It is not a confirmation: fan-in "
        "goes with the layer's position and type (the CNN's smallest fan-in is its first, convolutional layer and "
        "its largest the first linear layer after the features; in the MLP fan-in falls with depth), so the same "
        f"ranking follows from a depth or layer-type effect. Each run's per-layer value rests on only "
        f"{_counts(per_run)} filter-normalized directions (params curvature.layer_directions), a distinct layer's "
        f"mean on {_counts([r[3] for r in rows])} directions in all."
        + "".join(steepest_layer(data, v) for v in (MODEL_A, MODEL_B) if v in data.variants)
    )


def finite_step_section(data: StudyData) -> str:
    """The local d^T H d beside the finite-step curvature at three steps and the fitted 2a, with their ratio."""
    alphas = F.study_alphas(data)
    alpha = F.steepness_alpha(data)
    window = data.runs[(data.variants[0], data.seeds[0])].slice.fit_window
    rows, ratios = [], {}
    for v in data.variants:
        ratio = F.local_to_finite(data, v, alpha)
        ratios[v] = ratio.mean
        below, total = F.directions_below(data, v, alpha)
        rows.append(
            [
                v,
                estimate(data.study.get(v, M.CURVATURE_EXACT), PLAIN),
                *(interval(F.variant_kappa(data, v, a), PLAIN) for a in alphas),
                estimate(data.study.get(v, M.curvature_fit(F.BN, F.SPLIT)), PLAIN),
                interval(ratio, PLAIN),
                count(below, total),
            ]
        )
    header = [
        "variant",
        "local d^T H d",
        *(f"kappa({a:g})" for a in alphas),
        f"fitted 2a (|alpha| <= {window:g})",
        f"d^T H d / kappa({alpha:g})",
        f"directions with d^T H d < kappa({alpha:g})",
    ]
    finite = {v: r for v, r in ratios.items() if math.isfinite(r)}
    low, high = (min(finite, key=finite.get), max(finite, key=finite.get)) if finite else ("", "")
    spread = (
        f"The ratio d^T H d / kappa({alpha:g}) runs from {PLAIN(finite[low])} (`{low}`) to {PLAIN(finite[high])} "
        f"(`{high}`)."
        if finite
        else ""
    )
    return "\n\n".join(
        [
            "### Local and finite-step curvature of the slices",
            "ReLU and max-pool make the loss piecewise smooth: autograd differentiates inside the current activation "
            "pattern, so d^T H d omits the curvature that pattern switches add at any finite step. The slices give "
            "the finite-step curvature kappa(alpha) = (L(alpha) + L(-alpha) - 2 L(0)) / alpha^2 along the same "
            f"directions, at alpha = {', '.join(f'{a:g}' for a in alphas)} (the grid step and its multiples), on the "
            "same training subset with BN frozen. Each run's value is its mean over directions; mean [95 % CI over "
            "seeds]. The ratio is each run's mean d^T H d over its mean kappa, with its CI over seeds.",
            table(header, rows),
            f"{spread} A ratio below 1 is the kink excess the local Hessian misses; kappa growing with alpha is "
            "the slice turning steeper than a parabola further out. **For how steep the slice is, read "
            f"kappa({alpha:g})**, the finite-step curvature at the grid step: it is what the loss does over a step the "
            "slices resolve, kinks included, and the local d^T H d is the limit alpha -> 0 inside one activation "
            f"pattern. The fitted 2a on |alpha| <= {window:g} mixes kappa over its window.",
        ]
    )


def negative_curvature(data: StudyData) -> str:
    """The bottom of each run's Lanczos spectrum: the smallest Ritz value (an upper bound on lambda_min), how many
    runs show negative curvature, and the stochastic Lanczos quadrature mass below 0."""
    rows = []
    for v in data.variants:
        runs = [data.runs[(v, s)].curvature for s in data.seeds]
        spectra = [c for c in runs if c.ritz]
        if not spectra:
            continue
        lowest = [c.ritz[0] for c in spectra]
        below = [sum(w for th, w in zip(c.ritz, c.ritz_weights, strict=True) if th < 0) for c in spectra]
        ratio = [-c.ritz[0] / c.ritz[-1] for c in spectra if c.ritz[-1] > 0]
        rows.append(
            [
                v,
                interval(M.finite_ci(lowest), PLAIN),
                count(sum(x < 0 for x in lowest), len(spectra)),
                interval(M.finite_ci(ratio), PLAIN),
                interval(M.finite_ci(below), PERCENT),
            ]
        )
    if not rows:
        return ""
    steps = max(len(c.curvature.ritz) for c in data.runs.values())
    return "\n\n".join(
        [
            "### Negative curvature and the spectral density",
            f"Each run's Lanczos run ({steps} steps from one seeded Gaussian start vector) also gives all its Ritz "
            "values theta_i with weights w_i (the start vector's squared components on the Ritz vectors): "
            "sum_i w_i delta(lambda - theta_i) is the stochastic Lanczos quadrature estimate of the spectral density "
            "(Ubaru et al. 2017; PyHessian's density plot), from a single probe vector. Ritz values lie inside the "
            "spectrum, so the smallest, theta_min, is an upper bound on the local lambda_min: a negative theta_min "
            "shows negative curvature (a direction along which the local loss bends down), a positive one shows "
            "nothing. -theta_min / theta_max compares the two ends; the mass below 0 is the quadrature's share of "
            "the spectrum with negative curvature (one probe vector: a rough estimate). Mean [95 % CI over seeds].",
            table(
                [
                    "variant",
                    "theta_min (>= local lambda_min)",
                    "runs with theta_min < 0",
                    "-theta_min / theta_max",
                    "quadrature mass below 0",
                ],
                rows,
            ),
        ]
    )


def curvature(data: StudyData) -> str:
    columns = [
        M.LAMBDA_MAX,
        M.TRACE,
        M.FLATNESS,
        M.FLATNESS_FEATURE,
        M.CURVATURE_EXACT,
        M.curvature_fit(F.BN, F.SPLIT),
    ]
    rows = [
        [v, *(estimate(data.study.get(v, m), PLAIN) for m in columns), interval(fit_vs_local(data, v), PLAIN)]
        for v in data.variants
    ]
    overall = [fit_vs_local(data, v).mean for v in data.variants]
    window = data.runs[(data.variants[0], data.seeds[0])].slice.fit_window
    return "\n\n".join(
        [
            "## 6. Curvature",
            "Hessian of the mean training loss on a fixed training subset, at the trained weights, eval mode, with "
            "respect to the same parameter set as the slices. The networks are ReLU (and max-pool) networks, so the "
            f"autograd Hessian is the {LOCAL}: lambda_max, trace(H), relative flatness and d^T H d below are "
            "local quantities, blind to the activation-pattern switches of any finite step. Mean [95 % CI over "
            "seeds].",
            table(
                [
                    "variant",
                    "local lambda_max",
                    "local trace(H)",
                    "local relative flatness (sum)",
                    "local relative flatness (classifier)",
                    "local d^T H d",
                    "fitted 2a (train)",
                    "mean |fit - local| / |local|",
                ],
                rows,
            ),
            "Raw lambda_max and trace change under rescalings that leave the function unchanged (Dinh et al. 2017), "
            "so the report also gives relative flatness (Petzka et al., NeurIPS 2021): for each weight tensor, "
            "kappa_l = sum over output units s, s' of <w_s, w_s'> Tr(H_ss'), invariant to the layer-wise rescaling. "
            "The report uses the sum over weight tensors, and shows the classifier layer's kappa beside it.",
            f"Local vs fitted curvature: the quadratic fit on |alpha| <= {window:g} gives 2a, a finite-window "
            "curvature along the same directions; its mean relative difference from the local d^T H d over variants "
            f"is {PERCENT(float(np.nanmean(overall)))}. The local value does not depend on the fit window.",
            finite_step_section(data),
            negative_curvature(data),
            estimator_noise(data),
            "### Per-layer curvature and fan-in",
            fan_in_test(data),
            "![curvature](plots/figures/curvature.png)\n\n![layers](plots/figures/layers.png)\n\n"
            "![slices](plots/figures/slices.png)\n\n![surfaces](plots/figures/surfaces.png)",
        ]
    )


def monotonic_count(data: StudyData, split: str) -> str:
    """'k of n': the runs whose path loss is monotonic on ``split`` (each path summary's own verdict, within its
    ``tolerance``: params path.monotonic_tolerance)."""
    runs = [r.path for r in data.runs.values() if split in r.path.max_rise]
    return count(sum(p.monotonic[split] for p in runs), len(runs))


def largest_rise(t: np.ndarray, loss: np.ndarray) -> tuple[float, float, float]:
    """(rise, t of the earlier minimum, t of the peak) of the largest rise of ``loss`` above an earlier minimum on
    t in [0, 1]; t ascending."""
    inside = t <= 1.0 + 1e-12
    t, loss = t[inside], loss[inside]
    rises = loss - np.minimum.accumulate(loss)
    peak = int(np.argmax(rises))
    low = int(np.argmin(loss[: peak + 1]))
    return float(rises[peak]), float(t[low]), float(t[peak])


def rise_where(data: StudyData, split: str) -> dict[str, list[tuple[int, float, float, float]]]:
    """Per variant, its non-monotonic runs on ``split``: (seed, rise, t of the minimum, t of the peak), read from
    each run's path curve."""
    out: dict[str, list[tuple[int, float, float, float]]] = {}
    for v in data.variants:
        f = data.paths[v]
        for s in data.seeds:
            if data.runs[(v, s)].path.monotonic.get(split, True):
                continue
            rows = f[(f["seed"] == s) & (f["split"] == split)].sort_values("t")
            out.setdefault(v, []).append((s, *largest_rise(rows["t"].to_numpy(float), rows["loss"].to_numpy(float))))
    return out


def _span(values: list[float], fmt) -> str:
    low, high = min(values), max(values)
    return fmt(low) if fmt(low) == fmt(high) else f"{fmt(low)}-{fmt(high)}"


def non_monotonic_sentence(data: StudyData, split: str, what: str) -> str:
    where = rise_where(data, split)
    head = f"The {what} loss on the path is monotonic in {monotonic_count(data, split)} runs"
    if not where:
        return head + "."
    t = lambda x: f"{x:.2f}"  # noqa: E731
    parts = [
        f"`{v}` ({len(runs)} of {len(data.seeds)}: from its minimum at t = {_span([r[2] for r in runs], t)} it rises "
        f"by {_span([r[1] for r in runs], PLAIN)} nats to t = {_span([r[3] for r in runs], t)})"
        for v, runs in where.items()
    ]
    return f"{head}; the others are " + "; ".join(parts) + "."


def path(data: StudyData) -> str:
    runs = [r.path for r in data.runs.values()]
    splits = [s for s in ("train", "val") if all(s in p.barrier for p in runs)]
    rows = []
    for v in data.variants:
        mine = [data.runs[(v, s)].path for s in data.seeds]
        rows.append(
            [v, estimate(data.study.get(v, M.PATH_DISTANCE), PLAIN)]
            + [count(sum(p.monotonic[s] for p in mine), len(mine)) for s in splits]
            + [estimate(data.study.get(v, m(s)), PLAIN) for m in (M.path_barrier, M.path_max_rise) for s in splits]
            + [interval(M.finite_ci(p.loss_at_1[s] for p in mine), PLAIN) for s in splits]
        )
    header = [
        "variant",
        "||theta_T - theta_0|| / ||theta_0||",
        *(f"monotonic ({s})" for s in splits),
        *(f"{w} ({s})" for w in ("largest barrier", "max rise") for s in splits),
        *(f"loss at t = 1 ({s})" for s in splits),
    ]
    words = {"train": "training-subset", "val": "validation-subset"}
    return "\n\n".join(
        [
            "## 7. Optimization path",
            "Loss along theta(t) = (1 - t) theta_0 + t theta_T, from the initial to the trained weights, BN statistics "
            "recalibrated at every t where the variant has BN. Monotonic: the loss never rises more than "
            f"{runs[0].tolerance:g} nats (params path.monotonic_tolerance) above an earlier minimum on [0, 1]; "
            "max rise: the largest such rise; "
            "barrier: the largest excess over the straight line between L(0) and L(1).",
            table(header, rows),
            " ".join(non_monotonic_sentence(data, s, words[s]) for s in splits) + f" {_worst_barrier(data)}",
            "![path](plots/figures/path.png)",
        ]
    )


def _worst_barrier(data: StudyData) -> str:
    barriers = {k: r.path.barrier["train"] for k, r in data.runs.items() if "train" in r.path.barrier}
    if not barriers or max(barriers.values()) <= 0:
        return "No run has a barrier on the training subset."
    (v, seed), worst = max(barriers.items(), key=lambda kv: kv[1])
    return f"The largest training-loss barrier is {PLAIN(worst)} nats (`{v}`, seed {seed})."
