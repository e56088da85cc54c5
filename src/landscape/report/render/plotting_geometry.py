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

from landscape.report.plotting_style import clamp_y, colour, label, message, point, seed_note, use_log_y
from landscape.report.render.plotting_curves import cells
from landscape.report.schema import MODEL_A, MODEL_B, StudySummary
from landscape.report.terms import FACTORS
from landscape.study import results as M

EFFECT_LABELS = {"conv": "+conv", "bn": "+BN", "dropout": "+dropout"}


def headline(study: StudySummary, effect: bool) -> list[tuple[str, str, float]]:
    """(measure, title with unit, scale) of the headline measures; accuracies in % (their effects in pp)."""
    s = study.setup
    star, mode, drop = s.sigma_star, s.sigma_star_mode, s.sigma_star_drop
    return [
        (M.VAL_ACC, f"val accuracy ({'pp' if effect else '%'})", 100.0),
        (M.GAP, "gap, eval mode (pp)", 100.0),
        (star, f"sigma* ({mode} noise, BN frozen,\n{100 * drop:g} pp drop)", 1.0),
        (M.CURVATURE_EXACT, "local slice curvature d^T H d\n(one activation pattern)", 1.0),
        (M.LAMBDA_MAX, "local lambda_max\n(top Hessian eigenvalue)", 1.0),
        (M.TRACE, "local trace(H) (Hutchinson)", 1.0),
        (M.FLATNESS, "local relative flatness\n(sum over weight tensors)", 1.0),
    ]


def interacting_factors(study: StudySummary, measure: str) -> dict[str, list]:
    """factor -> the simple effects of that factor, for each factor in an interaction of ``measure`` whose CI
    excludes 0 (the main effect then averages effects that differ)."""
    out: dict[str, list] = {}
    for simple in study.simple_effects.get(measure, {}).values():
        for s in simple:
            out.setdefault(s.factor, []).append(s)
    return out


def effects(study: StudySummary) -> Figure:
    """Main effects of conv, BN and dropout (2^3 factorial, seeds as replicates) with 95 % CIs, one panel each."""
    panels = headline(study, effect=True)
    fig = Figure(figsize=(14, 6.6), layout="constrained")
    axes = fig.subplots(2, 4).ravel()
    if not study.effects:
        for ax in axes:
            ax.set_axis_off()
        message(
            fig.add_subplot(),
            f"factorial effects need all 8 variants and >= 2 seeds\n(this study: "
            f"{len(study.factorial)} variants x {len(study.seeds)} seed(s))",
        )
        return fig
    masked = 0
    for ax, (measure, title, scale) in zip(axes, panels, strict=False):
        ax.axhline(0, color="tab:red", lw=1, ls="--")
        interacting = interacting_factors(study, measure)
        for x, term in enumerate(FACTORS):
            found = study.tested_effect(measure, term)
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
    if any(e.estimate.censored for terms in study.effects.values() for e in terms.values()):
        notes.append("^ / v: a bound (censored sigma*), no CI.")
    if masked:
        notes.append(
            "Grey: the factor is in an interaction whose\nCI excludes 0; purple squares: its simple effects\n"
            "(report section 5), not their average."
        )
    message(
        axes[-1],
        "Effect = mean with the factor on minus mean with it off,\naveraged over the other two factors."
        f"\nError bars: 95 % t-CI over the n = {len(study.seeds)}\nper-seed contrasts. Dashed: no effect.\n"
        + "\n".join(notes),
    )
    fig.suptitle("Factorial main effects of convolution, batch norm and dropout")
    return fig


def _variant_points(ax: Axes, study: StudySummary, measure: str, scale: float = 1.0) -> None:
    """One point with its seed CI per variant, x = the variant's position."""
    variants, found = study.factorial, cells(study)
    estimates = [study.get(v, measure) for v in variants]
    for x, (v, est) in enumerate(zip(variants, estimates, strict=True)):
        if est is not None:
            point(ax, x, est.interval, colour(found[v]), scale=scale, marker="^" if est.censored else "o")
    ax.set_xticks(range(len(variants)), [label(v) for v in variants], rotation=35, ha="right", fontsize=8)
    found = [e.interval for e in estimates if e is not None]
    use_log_y(ax, [i.mean for i in found], [b for i in found for b in (i.ci_low, i.ci_high)])
    ax.grid(alpha=0.3, axis="y", which="both")


def _slice_curvatures(ax: Axes, study: StudySummary) -> None:
    """Per variant: the local d^T H d beside the finite-step kappa(alpha) at each alpha, offset left to right."""
    g, found = study.geometry, cells(study)
    series = [("local d^T H d", "o", None)] + [
        (f"kappa({a:g})", m, k) for k, (a, m) in enumerate(zip(g.alphas, "s^D", strict=False))
    ]
    width = 0.6 / len(series)
    shown = []
    for j, (name, marker, k) in enumerate(series):
        offset = (j - (len(series) - 1) / 2) * width
        for x, row in enumerate(g.finite_step):
            if k is None:
                est = study.get(row.variant, M.CURVATURE_EXACT)
                if est is None:
                    continue
                interval = est.interval
            else:
                interval = row.kappa[k]
            point(ax, x + offset, interval, colour(found[row.variant]), marker=marker)
            shown.append(interval)
        ax.plot([], [], marker, color="0.3", label=name)
    names = [label(r.variant) for r in g.finite_step]
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    use_log_y(ax, [i.mean for i in shown], [b for i in shown for b in (i.ci_low, i.ci_high)])
    ax.grid(alpha=0.3, axis="y", which="both")
    ax.legend(fontsize=7)


def curvature(study: StudySummary) -> Figure:
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
        _variant_points(ax, study, measure)
        ax.set_title(title, fontsize=10)
    _slice_curvatures(axes[4], study)
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
        "Curvature of the training loss at the trained weights (eval mode, weights only; "
        f"{seed_note(len(study.seeds))})"
    )
    return fig


def pair(study: StudySummary) -> list[str]:
    """Model A and Model B where the study has them, else its first two variants."""
    chosen = [v for v in (MODEL_A, MODEL_B) if v in study.factorial]
    return chosen if len(chosen) == 2 else study.factorial[:2]


def _layer_panel(ax: Axes, study: StudySummary, variant: str, which: str, title: str) -> None:
    rows = study.figures.layers[variant]
    for x, row in enumerate(rows):
        point(ax, x, getattr(row, which), colour(cells(study)[variant]))
    names = [f"{r.name}\nfan-in {r.fan_in}" for r in rows]
    ax.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=7)
    found = [getattr(r, which) for r in rows]
    use_log_y(ax, [i.mean for i in found], [b for i in found for b in (i.ci_low, i.ci_high)])
    ax.set_title(f"{label(variant)}: {title}", fontsize=10)
    ax.grid(alpha=0.3, axis="y", which="both")


def layers(study: StudySummary) -> Figure:
    """Per-layer trace and slice curvature for A and B, and per-layer slice curvature against fan-in (log-log) for
    every variant: the direct test of the fan-in explanation."""
    fig = Figure(figsize=(15, 8), layout="constrained")
    grid = fig.add_gridspec(2, 3)
    for col, v in enumerate(pair(study)):
        _layer_panel(fig.add_subplot(grid[0, col]), study, v, "trace", "local trace(H_l) per weight tensor")
        _layer_panel(fig.add_subplot(grid[1, col]), study, v, "curvature", "local slice curvature d_l^T H d_l")
    ax = fig.add_subplot(grid[:, 2])
    dropped = 0
    found = cells(study)
    for v in study.factorial:
        rows = [(r.fan_in, r.curvature.mean) for r in study.figures.layers[v]]
        keep = [(f, c) for f, c in rows if f > 0 and c > 0]
        dropped += len(rows) - len(keep)
        if keep:
            fan_in, curv = zip(*sorted(keep), strict=True)
            marker = "s" if found[v].conv else "o"
            ax.plot(fan_in, curv, marker, color=colour(found[v]), lw=0.8, ms=6, alpha=0.85, label=label(v))
    ax.set_xscale("log")
    ax.set_yscale("log")
    note = f"; {dropped} non-positive value(s) not shown" if dropped else ""
    ax.set(xlabel="fan-in (weights per output filter / neuron)", ylabel="local slice curvature d_l^T H d_l")
    ax.set_title(f"Every variant: one point per weight tensor, mean over seeds{note}", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.suptitle(
        f"Per-layer local Hessian curvature, one activation pattern (filter-normalized directions perturbing one "
        f"tensor; {seed_note(len(study.seeds))})"
    )
    return fig


def surfaces(study: StudySummary) -> Figure:
    """Filled contours of the 2-D loss surface of A and B at the first seed, on shared log-spaced colour levels,
    with contour lines at L(0) + tau."""
    chosen = pair(study)
    grids = {v: study.figures.surfaces[v] for v in chosen}
    lo = min(float(np.nanmin(g.loss)) for g in grids.values())
    hi = max(float(np.nanmax(g.loss)) for g in grids.values())
    levels = np.geomspace(lo, hi * 1.0001, 17)
    fig = Figure(figsize=(6 * len(chosen) + 1, 5.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(chosen)))
    for ax, v in zip(axes, chosen, strict=True):
        g = grids[v]
        a, b, loss, split, seed, taus = np.array(g.a), np.array(g.b), np.array(g.loss), g.split, g.seed, g.taus
        filled = ax.contourf(a, b, loss, levels=levels, norm=LogNorm(lo, hi), cmap="viridis")
        centre = float(loss[np.argmin(np.abs(b)), np.argmin(np.abs(a))])
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


def summary(study: StudySummary) -> Figure:
    """A compact 2 x 2 of the headline numbers for A vs B (means with 95 % CIs over seeds), B - A in each title."""
    chosen, found = pair(study), cells(study)
    panels = headline(study, effect=False)[:4]
    fig = Figure(figsize=(8.5, 7), layout="constrained")
    for ax, (measure, title, scale) in zip(fig.subplots(2, 2).ravel(), panels, strict=True):
        for x, v in enumerate(chosen):
            est = study.get(v, measure)
            if est is not None:
                point(ax, x, est.interval, colour(found[v]), scale=scale, marker="^" if est.censored else "o")
        ax.set_xticks(range(len(chosen)), [label(v) for v in chosen])
        ax.set_xlim(-0.6, len(chosen) - 0.4)
        title = title.replace("\n", " ")
        diff = study.b_minus_a.get(measure)
        if diff is not None and not diff.censored and math.isfinite(diff.interval.ci_low):
            i = diff.interval
            title += f"\nB - A (paired) = {scale * i.mean:.3g} [{scale * i.ci_low:.3g}, {scale * i.ci_high:.3g}]"
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, axis="y")
        if scale == 100.0:
            clamp_y(ax, 0 if measure == M.VAL_ACC else -100, 100)
    fig.suptitle(f"Model A vs Model B, headline numbers ({seed_note(len(study.seeds))}; ^ = censored lower bound)")
    return fig
