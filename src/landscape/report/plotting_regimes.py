"""Figures of questions 1 and 4: lambda_max during training, sharpness against the gap across regimes, and the
early signals against difficulty. Each draws an explanation instead where the study has no regime cell."""

from __future__ import annotations

import math

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from landscape.report import regimes as R
from landscape.report.measures import geometric_ci
from landscape.report.plotting_style import band, message, seed_note
from landscape.report.stats import mean_ci
from landscape.report.study_data import StudyData
from landscape.study.results import stability_threshold

FAMILY_TITLE = {"mlp": "A (mlp) and its regime cells", "cnn": "B (cnn) and its regime cells"}
NO_REGIMES = "No training-regime cell in this study\n(a variant with train: overrides in params.yaml)."


def _members(data: StudyData, family: str) -> list[str]:
    """The family's default cell first, then its regime cells in params order."""
    r = data.study.regimes
    cells = [c for c in r.cells.values() if c.family == family]
    return sorted({c.default for c in cells}) + [c.variant for c in cells]


def _colours(n: int) -> list:
    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _family_figure(data: StudyData) -> tuple[Figure, list[tuple]]:
    """A figure with one axes per architecture of the regime arm: (figure, [(axes, family, [(cell, colour)])]),
    cells with the default first; no panels, and an explanation instead, where the study has no regime cell."""
    fig = Figure(figsize=(13, 5.4), layout="constrained")
    if data.study.regimes is None:
        message(fig.add_subplot(1, 1, 1), NO_REGIMES)
        return fig, []
    families = sorted({c.family for c in data.study.regimes.cells.values()})
    panels = []
    for i, f in enumerate(families):
        members = _members(data, f)
        panels.append(
            (fig.add_subplot(1, len(families), i + 1), f, list(zip(members, _colours(len(members)), strict=True)))
        )
    return fig, panels


def _undrawn(n: int, total: int, why: str) -> str:
    """A legend suffix for runs a log axis cannot show: '' when every run is drawn."""
    return f" ({n} of {total} runs not drawn: {why})" if n else ""


def sharpness_training(data: StudyData) -> Figure:
    """lambda_max per epoch (epoch 0: the initial weights) per cell: the geometric mean over seeds and the 95 % t-CI
    of log lambda_max as a band, log y; the heavy-ball stability threshold 2 (1 + beta) / lr of each cell's base lr
    as a dotted line of its colour. A run whose lambda_max is 0 (a dead network) or missing (diverged) after epoch 0
    has no place on a log axis: its cell's legend entry says how many runs are left out."""
    fig, panels = _family_figure(data)
    if not panels:
        return fig
    for ax, family, members in panels:
        for v, c in members:
            f = data.sharpness.get(v)
            if f is None or f.empty:
                continue
            epochs = sorted(f["epoch"].unique())
            per_seed = np.full((len(data.seeds), len(epochs)), np.nan)
            for k, s in enumerate(data.seeds):
                rows = f[f["seed"] == s].set_index("epoch")["lambda_max"]
                per_seed[k] = [rows.get(e, np.nan) for e in epochs]
            per_seed[~(per_seed > 0)] = np.nan  # a dead network's 0 has no place on a log axis
            gone = int(np.isnan(per_seed[:, 1:]).any(axis=1).sum())
            label = v + _undrawn(gone, len(data.seeds), "lambda_max 0 or diverged after epoch 0")
            band(ax, epochs, per_seed, c, geometric=True, marker="o", ms=2.5, lw=1.4, label=label)
            t = data.all_runs[(v, data.seeds[0])].train
            ax.axhline(stability_threshold(t.lr, t.momentum), color=c, ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("epoch (0: initial weights)")
        ax.set_ylabel("lambda_max of the training loss")
        ax.set_title(FAMILY_TITLE.get(family, family), fontsize=10)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle(
        "Sharpness during training: geometric mean over seeds, band on log lambda_max; dotted: 2 (1 + beta) / lr "
        f"per cell\n({seed_note(len(data.seeds))})"
    )
    return fig


def regimes(data: StudyData) -> Figure:
    """Per architecture, each run's final lambda_max against its gap (small markers); each cell's mean gap and
    geometric-mean lambda_max with 95 % t-CI bars (of the gap, and of log lambda_max) as large markers. Diverged
    runs and runs with lambda_max 0 are left out, and the legend (or a note for a cell with none left) says so."""
    fig, panels = _family_figure(data)
    if not panels:
        return fig
    for ax, family, members in panels:
        missing = []
        for v, c in members:
            runs = [data.all_runs[(v, s)] for s in data.seeds]
            pts = [
                (100 * x.train.gap, x.curvature.eigenvalues[0])
                for x in runs
                if x.train.diverged is None and x.curvature.eigenvalues and x.curvature.eigenvalues[0] > 0
            ]
            if not pts:
                missing.append(v)
                continue
            gx, lam = zip(*pts, strict=True)
            ax.plot(gx, lam, "o", color=c, ms=4, alpha=0.6)
            mx, my = mean_ci(list(gx)), geometric_ci(lam)
            gm = my.mean
            xerr = [[mx.mean - mx.ci_low], [mx.ci_high - mx.mean]] if math.isfinite(mx.ci_low) else None
            yerr = [[gm - my.ci_low], [my.ci_high - gm]] if math.isfinite(my.ci_low) else None
            cell = data.study.regimes.cells.get(v)
            name = f"{v} (noise x{cell.noise_scale:g}, batch {cell.batch_size})" if cell else f"{v} (default)"
            name += _undrawn(len(runs) - len(pts), len(runs), "diverged or lambda_max 0")
            ax.errorbar([mx.mean], [gm], xerr=xerr, yerr=yerr, fmt="s", color=c, ms=8, capsize=3, label=name)
        if missing:
            ax.text(
                0.01,
                0.01,
                "not drawn (every run diverged or has lambda_max 0): " + ", ".join(missing),
                transform=ax.transAxes,
                fontsize=7,
                va="bottom",
            )
        ax.set_yscale("log")
        ax.set_xlabel("gap (pp, eval mode)")
        ax.set_ylabel("lambda_max at the final weights")
        ax.set_title(FAMILY_TITLE.get(family, family), fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(
        "Sharpness against the gap across training regimes: mean gap, geometric-mean lambda_max, bar on log "
        f"lambda_max\n({seed_note(len(data.seeds))})"
    )
    return fig


def _spread_axis(ax, values: list[float]) -> None:
    """A symmetric-log x axis when a few values lie orders of magnitude beyond the rest (a spike's loss slope),
    so that the rest stay readable; linear otherwise."""
    mags = np.abs(np.asarray(values, float))
    mags = mags[mags > 0]
    if mags.size and mags.max() > 100 * float(np.median(mags)):
        ax.set_xscale("symlog", linthresh=10.0 ** math.ceil(math.log10(float(np.median(mags)))))  # a decade


def early_signals(data: StudyData) -> Figure:
    """Each early signal (x) against each run's difficulty rank (y, 1 = easiest), one panel per signal, with the
    cell-mean tau and its Holm-adjusted p in the title."""
    r = data.study.regimes
    fig = Figure(figsize=(16, 7.5), layout="constrained")
    if r is None:
        message(fig.add_subplot(1, 1, 1), NO_REGIMES)
        return fig
    order = sorted(r.difficulty, key=lambda d: d.score)
    rank = {(d.variant, d.seed): i + 1 for i, d in enumerate(order)}
    tau = {e.name: e for e in r.early_tau}
    hard = set(r.hard_cells)
    names = list(R.EARLY)
    for i, name in enumerate(names):
        ax = fig.add_subplot(2, 4, i + 1)
        xs, ys, cs = [], [], []
        for k, run in data.all_runs.items():
            value = R.early_values(run).get(name)
            if value is None or not math.isfinite(value):
                continue
            xs.append(value)
            ys.append(rank[k])
            cs.append("#d62728" if k[0] in hard else "#1f77b4")
        ax.scatter(xs, ys, c=cs, s=14)
        _spread_axis(ax, xs)
        e = tau.get(name)
        note = f"tau {e.tau:+.2f}, Holm p {e.p_adjusted:.2g}" if e is not None and math.isfinite(e.tau) else "no tau"
        ax.set_title(f"{R.EARLY[name][0]}\n{note}", fontsize=8)
        ax.set_ylabel("difficulty rank (1 = easiest)", fontsize=7)
    ax = fig.add_subplot(2, 4, 8)
    message(ax, "red: runs of hard cells\nblue: the others\n" + f"{len(order)} runs")
    fig.suptitle("Signals after epoch 1 against how hard each run was to train")
    return fig
