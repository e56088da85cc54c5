"""Figures of per-variant numbers: factorial effects, curvature, the per-layer view, 2-D surfaces, the summary.

Points are means over training seeds; error bars are 95 % t-CIs over seeds, drawn only where n >= 2. Numbers
come from the typed objects (``StudySummary`` Estimates and Intervals, ``RunResults``), never from key strings.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from landscape.report import finite_step as F
from landscape.report import measures as M
from landscape.report.aggregate import MODEL_A, MODEL_B
from landscape.report.plotting_style import clamp_y, colour, label, message, point, seed_note, use_log_y
from landscape.report.stats import FACTORS, Interval
from landscape.report.study_data import StudyData
from landscape.study.results import LayerCurvature

EFFECT_LABELS = {"conv": "+conv", "bn": "+BN", "dropout": "+dropout"}


def headline(data: StudyData, effect: bool) -> list[tuple[str, str, float]]:
    """(measure, title with unit, scale) of the headline measures; accuracies in % (their effects in pp)."""
    star, mode, drop = M.headline_sigma_star(data.runs[(data.variants[0], data.seeds[0])])
    return [
        (M.VAL_ACC, f"val accuracy ({'pp' if effect else '%'})", 100.0),
        (M.GAP, "gap, eval mode (pp)", 100.0),
        (star, f"sigma* ({mode} noise, BN frozen,\n{100 * drop:g} pp drop)", 1.0),
        (M.CURVATURE_EXACT, "local slice curvature d^T H d\n(one activation pattern)", 1.0),
        (M.LAMBDA_MAX, "local lambda_max\n(top Hessian eigenvalue)", 1.0),
        (M.TRACE, "local trace(H) (Hutchinson)", 1.0),
        (M.FLATNESS, "local relative flatness\n(sum over weight tensors)", 1.0),
    ]


def interacting_factors(data: StudyData, measure: str) -> dict[str, list]:
    """factor -> the simple effects of that factor, for each factor in an interaction of ``measure`` whose CI
    excludes 0 (the main effect then averages effects that differ)."""
    out: dict[str, list] = {}
    for simple in data.study.simple_effects.get(measure, {}).values():
        for s in simple:
            out.setdefault(s.factor, []).append(s)
    return out


def effects(data: StudyData) -> Figure:
    """Main effects of conv, BN and dropout (2^3 factorial, seeds as replicates) with 95 % CIs, one panel each."""
    panels = headline(data, effect=True)
    fig = Figure(figsize=(14, 6.6), layout="constrained")
    axes = fig.subplots(2, 4).ravel()
    if not data.study.effects:
        for ax in axes:
            ax.set_axis_off()
        message(
            fig.add_subplot(),
            f"factorial effects need all 8 variants and >= 2 seeds\n(this study: "
            f"{len(data.variants)} variants x {len(data.seeds)} seed(s))",
        )
        return fig
    masked = 0
    for ax, (measure, title, scale) in zip(axes, panels, strict=False):
        ax.axhline(0, color="tab:red", lw=1, ls="--")
        interacting = interacting_factors(data, measure)
        for x, term in enumerate(FACTORS):
            found = data.study.tested_effect(measure, term)
            if found is None:
                continue
            est = found.estimate
            marker = {1: "^", -1: "v"}.get(est.bound, "o") if est.censored else "o"
            hollow = term in interacting
            masked += hollow
            simple = [s for s in interacting.get(term, []) if not s.estimate.censored]
            point(ax, x - 0.35 if simple else x, est.interval, "0.65" if hollow else "0.15", scale=scale, marker=marker)
            step = 0.7 / len(simple) if simple else 0.0  # the simple effects share the rest of the factor's slot
            for k, s in enumerate(simple):
                point(ax, x - 0.2 + step * (k + 0.5), s.estimate.interval, "tab:purple", scale=scale, marker="s")
        ax.set_xticks(range(len(FACTORS)), [EFFECT_LABELS[f] for f in FACTORS])
        ax.set_xlim(-0.5, len(FACTORS) - 0.5)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    notes = []
    if any(e.estimate.censored for terms in data.study.effects.values() for e in terms.values()):
        notes.append("^ / v: a bound (censored sigma*), no CI.")
    if masked:
        notes.append(
            "Grey: the factor is in an interaction whose\nCI excludes 0; purple squares: its simple effects\n"
            "(report section 5), not their average."
        )
    message(
        axes[-1],
        "Effect = mean with the factor on minus mean with it off,\naveraged over the other two factors."
        f"\nError bars: 95 % t-CI over the n = {len(data.seeds)}\nper-seed contrasts. Dashed: no effect.\n"
        + "\n".join(notes),
    )
    fig.suptitle("Factorial main effects of convolution, batch norm and dropout")
    return fig


def _variant_points(ax: Axes, data: StudyData, measure: str, scale: float = 1.0) -> None:
    """One point with its seed CI per variant, x = the variant's position."""
    estimates = [data.study.get(v, measure) for v in data.variants]
    for x, (v, est) in enumerate(zip(data.variants, estimates, strict=True)):
        if est is not None:
            point(ax, x, est.interval, colour(data.factorial[v]), scale=scale, marker="^" if est.censored else "o")
    ax.set_xticks(range(len(data.variants)), [label(v) for v in data.variants], rotation=35, ha="right", fontsize=8)
    found = [e.interval for e in estimates if e is not None]
    use_log_y(ax, [i.mean for i in found], [b for i in found for b in (i.ci_low, i.ci_high)])
    ax.grid(alpha=0.3, axis="y", which="both")


def _slice_curvatures(ax: Axes, data: StudyData) -> None:
    """Per variant: the local d^T H d beside the finite-step kappa(alpha) at each alpha, offset left to right."""
    alphas = F.study_alphas(data)
    series = [("local d^T H d", "o", None)] + [(f"kappa({a:g})", m, a) for a, m in zip(alphas, "s^D", strict=False)]
    width = 0.6 / len(series)
    shown = []
    for j, (name, marker, alpha) in enumerate(series):
        offset = (j - (len(series) - 1) / 2) * width
        for x, v in enumerate(data.variants):
            if alpha is None:
                est = data.study.get(v, M.CURVATURE_EXACT)
                if est is None:
                    continue
                found = est.interval
            else:
                found = F.variant_kappa(data, v, alpha)
            point(ax, x + offset, found, colour(data.factorial[v]), marker=marker)
            shown.append(found)
        ax.plot([], [], marker, color="0.3", label=name)
    ax.set_xticks(range(len(data.variants)), [label(v) for v in data.variants], rotation=35, ha="right", fontsize=8)
    use_log_y(ax, [i.mean for i in shown], [b for i in shown for b in (i.ci_low, i.ci_high)])
    ax.grid(alpha=0.3, axis="y", which="both")
    ax.legend(fontsize=7)


def curvature(data: StudyData) -> Figure:
    """Local Hessian (one activation pattern) lambda_max, trace and relative flatness per variant, and the local
    slice curvature d^T H d beside the finite-step kappa(alpha) of the slices, with 95 % CIs over seeds."""
    panels = [
        (M.LAMBDA_MAX, "local lambda_max (Lanczos)"),
        (M.TRACE, "local trace(H) (Hutchinson)"),
        (M.FLATNESS, "local relative flatness, sum over weight tensors"),
        (M.FLATNESS_FEATURE, "local relative flatness, classifier layer"),
    ]
    fig = Figure(figsize=(14, 8.4), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    for ax, (measure, title) in zip(axes, panels, strict=False):
        _variant_points(ax, data, measure)
        ax.set_title(title, fontsize=10)
    _slice_curvatures(axes[4], data)
    axes[4].set_title(
        "slice curvature: local d^T H d and finite-step\nkappa(alpha) = (L(a) + L(-a) - 2 L(0)) / a^2", fontsize=10
    )
    message(
        axes[-1],
        "Hessian of the training loss on a fixed subset.\nReLU and max-pool: the autograd Hessian is the\n"
        "local Hessian of one activation pattern; kappa\nat a finite step includes the pattern switches.\n"
        "lambda_max and trace change under rescalings that\n"
        "leave the function unchanged; relative flatness\n(Petzka et al. 2021) does not.\n"
        "^ marks a mean with censored seeds (lower bound).",
    )
    fig.suptitle(
        f"Curvature of the training loss at the trained weights (eval mode, weights only; {seed_note(len(data.seeds))})"
    )
    return fig


def pair(data: StudyData) -> list[str]:
    """Model A and Model B where the study has them, else its first two variants."""
    chosen = [v for v in (MODEL_A, MODEL_B) if v in data.variants]
    return chosen if len(chosen) == 2 else data.variants[:2]


def layer_intervals(data: StudyData, variant: str) -> list[tuple[LayerCurvature, Interval, Interval]]:
    """Per weight tensor of ``variant``: (first seed's layer, local trace over seeds, local slice curvature over
    seeds)."""
    per_seed = [data.runs[(variant, s)].curvature.layers for s in data.seeds]
    return [
        (layers[0], M.finite_ci(lay.trace for lay in layers), M.finite_ci(lay.slice_curvature.mean for lay in layers))
        for layers in zip(*per_seed, strict=True)
    ]


def _layer_panel(ax: Axes, data: StudyData, variant: str, which: int, title: str) -> None:
    rows = layer_intervals(data, variant)
    for x, row in enumerate(rows):
        point(ax, x, row[which], colour(data.factorial[variant]))
    names = [f"{lay.name}\nfan-in {lay.fan_in}" for lay, *_ in rows]
    ax.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=7)
    use_log_y(ax, [r[which].mean for r in rows], [b for r in rows for b in (r[which].ci_low, r[which].ci_high)])
    ax.set_title(f"{label(variant)}: {title}", fontsize=10)
    ax.grid(alpha=0.3, axis="y", which="both")


def layers(data: StudyData) -> Figure:
    """Per-layer trace and slice curvature for A and B, and per-layer slice curvature against fan-in (log-log) for
    every variant: the direct test of the fan-in explanation."""
    fig = Figure(figsize=(15, 8), layout="constrained")
    grid = fig.add_gridspec(2, 3)
    for col, v in enumerate(pair(data)):
        _layer_panel(fig.add_subplot(grid[0, col]), data, v, 1, "local trace(H_l) per weight tensor")
        _layer_panel(fig.add_subplot(grid[1, col]), data, v, 2, "local slice curvature d_l^T H d_l")
    ax = fig.add_subplot(grid[:, 2])
    dropped = 0
    for v in data.variants:
        rows = [(lay.fan_in, c.mean) for lay, _, c in layer_intervals(data, v)]
        keep = [(f, c) for f, c in rows if f > 0 and c > 0]
        dropped += len(rows) - len(keep)
        if keep:
            fan_in, curv = zip(*sorted(keep), strict=True)
            marker = "s" if data.factorial[v].conv else "o"
            ax.plot(fan_in, curv, marker, color=colour(data.factorial[v]), lw=0.8, ms=6, alpha=0.85, label=label(v))
    ax.set_xscale("log")
    ax.set_yscale("log")
    note = f"; {dropped} non-positive value(s) not shown" if dropped else ""
    ax.set(xlabel="fan-in (weights per output filter / neuron)", ylabel="local slice curvature d_l^T H d_l")
    ax.set_title(f"Every variant: one point per weight tensor, mean over seeds{note}", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.suptitle(
        f"Per-layer local Hessian curvature, one activation pattern (filter-normalized directions perturbing one "
        f"tensor; {seed_note(len(data.seeds))})"
    )
    return fig


def _surface_grid(data: StudyData, variant: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    f = data.surfaces[variant]
    split = "train" if (f["split"] == "train").any() else str(f["split"].iloc[0])
    table = f[f["split"] == split].pivot_table(index="b", columns="a", values="loss", aggfunc="mean")
    return table.columns.to_numpy(float), table.index.to_numpy(float), table.to_numpy(float), split


def surfaces(data: StudyData) -> Figure:
    """Filled contours of the 2-D loss surface of A and B at the first seed, on shared log-spaced colour levels,
    with contour lines at L(0) + tau."""
    chosen = pair(data)
    grids = {v: _surface_grid(data, v) for v in chosen}
    lo = min(float(np.nanmin(g[2])) for g in grids.values())
    hi = max(float(np.nanmax(g[2])) for g in grids.values())
    levels = np.geomspace(lo, hi * 1.0001, 17)
    fig = Figure(figsize=(6 * len(chosen) + 1, 5.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(chosen)))
    seed = data.seeds[0]
    for ax, v in zip(axes, chosen, strict=True):
        a, b, loss, split = grids[v]
        filled = ax.contourf(a, b, loss, levels=levels, norm=LogNorm(lo, hi), cmap="viridis")
        centre = float(loss[np.argmin(np.abs(b)), np.argmin(np.abs(a))])
        widths = data.runs[(v, seed)].slice.curves["frozen"]
        taus = sorted({w.tau for w in widths.get(split, next(iter(widths.values()))).widths.values()})
        lines = ax.contour(a, b, loss, levels=[centre + t for t in taus], colors="white", linewidths=1.2)
        ax.clabel(lines, fmt={centre + t: f"L(0)+{t:g}" for t in taus}, fontsize=8)
        ax.plot([0], [0], "w+", ms=10)
        ax.set(
            title=f"{label(v)}, seed {seed}, {split} subset: L(0) = {centre:.3g}",
            xlabel="step along d1",
            ylabel="step along d2",
            aspect="equal",
        )
    fig.colorbar(
        filled,
        ax=list(axes),
        format="%.3g",
        ticks=levels[::2],
        label="loss (nats, log colour scale; same levels in every panel)",
    )
    fig.suptitle("2-D loss surface along two filter-normalized random directions (BN frozen)")
    return fig


def summary(data: StudyData) -> Figure:
    """A compact 2 x 2 of the headline numbers for A vs B (means with 95 % CIs over seeds), B - A in each title."""
    chosen = pair(data)
    panels = headline(data, effect=False)[:4]
    fig = Figure(figsize=(8.5, 7), layout="constrained")
    for ax, (measure, title, scale) in zip(fig.subplots(2, 2).ravel(), panels, strict=True):
        for x, v in enumerate(chosen):
            est = data.study.get(v, measure)
            if est is not None:
                point(ax, x, est.interval, colour(data.factorial[v]), scale=scale, marker="^" if est.censored else "o")
        ax.set_xticks(range(len(chosen)), [label(v) for v in chosen])
        ax.set_xlim(-0.6, len(chosen) - 0.4)
        title = title.replace("\n", " ")
        diff = data.study.b_minus_a.get(measure)
        if diff is not None and not diff.censored and math.isfinite(diff.interval.ci_low):
            i = diff.interval
            title += f"\nB - A (paired) = {scale * i.mean:.3g} [{scale * i.ci_low:.3g}, {scale * i.ci_high:.3g}]"
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, axis="y")
        if scale == 100.0:
            clamp_y(ax, 0 if measure == M.VAL_ACC else -100, 100)
    fig.suptitle(f"Model A vs Model B, headline numbers ({seed_note(len(data.seeds))}; ^ = censored lower bound)")
    return fig
