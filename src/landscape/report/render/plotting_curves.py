"""Figures of curves over epochs, noise scales, slice steps and the path from initialization.

Every curve is the mean over training seeds of one value per run (a run's own mean over directions or noise
draws), with its 95 % t-CI over seeds as a band; the titles say so.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from landscape.report.plotting_style import band, clamp_y, colour, emphasis, label, lighter, seed_note
from landscape.report.schema import Band, StudySummary


def legend_below(fig: Figure, axes: list[Axes], ncol: int = 4) -> None:
    """One legend for the whole figure (every distinct label of ``axes``), below the panels, never over a curve."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(text, handle)
    if entries:
        fig.legend(
            list(entries.values()), list(entries), loc="outside lower center", ncol=ncol, fontsize=9, frameon=False
        )


def cells(study: StudySummary) -> dict:
    """variant -> its row of study.json's what_was_run (its factorial cell, for its colour)."""
    return {r.variant: r for r in study.what_was_run}


def learning_curves(study: StudySummary) -> Figure:
    """Validation accuracy and the gap per epoch, mean over seeds with 95 % CI bands, one colour per variant."""
    fig = Figure(figsize=(12.5, 5.2), layout="constrained")
    acc_ax, gap_ax = fig.subplots(1, 2)
    found, n = cells(study), len(study.factorial)
    for v in study.factorial:
        style = {"marker": "o", "ms": 3, "label": label(v), **emphasis(v, n)}
        band(acc_ax, study.figures.learning[v]["val_acc"], colour(found[v]), **style)
        band(gap_ax, study.figures.learning[v]["gap"], colour(found[v]), **style)
    acc_ax.set(title="Validation accuracy (eval mode)", xlabel="epoch", ylabel="validation accuracy (%)")
    gap_ax.axhline(0, color="0.4", lw=0.8)
    gap_ax.set(
        title=f"Gap: train acc (eval mode, fixed {study.setup.train_eval_size}-image training subset) - val acc\n"
        "(the final gap in the report's tables uses the whole training split)",
        xlabel="epoch",
        ylabel="gap (percentage points)",
    )
    clamp_y(acc_ax, 0, 100)
    clamp_y(gap_ax, -100, 100)
    for ax in (acc_ax, gap_ax):
        ax.grid(alpha=0.3)
        ax.title.set_fontsize(10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"Learning curves: mean over training seeds ({seed_note(len(study.seeds))})")
    legend_below(fig, [acc_ax])
    return fig


def _drop_panel(ax: Axes, study: StudySummary, mode: str, bn: str) -> None:
    """Each variant's drop curve with its seed band; recalibrated curves lighter and dashed, with the same
    variant's frozen mean as a thin solid line to compare against."""
    found, n = cells(study), len(study.factorial)
    curves = study.figures.noise[mode]
    for v, b in curves[bn].items():
        c = colour(found[v])
        if bn == "frozen":
            band(ax, b, c, marker="o", ms=3, label=f"{label(v)}, BN frozen", **emphasis(v, n))
            continue
        band(ax, b, lighter(c, 0.35), ls="--", marker="o", ms=3, label=f"{label(v)}, BN {bn}", **emphasis(v, n))
        frozen = curves.get("frozen", {}).get(v)
        if frozen is not None:
            ax.plot(frozen.x, frozen.mean, color=c, lw=0.8)


def robustness(study: StudySummary) -> Figure:
    """Validation accuracy drop (pp) from each run's sigma = 0 against sigma > 0: a column per noise mode, a row per
    BN handling (recalibrated in a lighter, dashed shade); symlog y, linear on the 0-5 pp region of the claims."""
    modes = list(study.figures.noise)
    bns = list(next(iter(study.figures.noise.values()), {}))
    fig = Figure(figsize=(5.2 * len(modes), 3.9 * len(bns) + 0.9), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(bns), len(modes), squeeze=False, sharex="col", sharey=True))
    for row, bn in enumerate(bns):
        for col, mode in enumerate(modes):
            ax = axes[row, col]
            _drop_panel(ax, study, mode, bn)
            for level in study.figures.drop_levels:
                ax.axhline(level, color="0.5", lw=0.8, ls=":")
                ax.annotate(
                    f"{level:g} pp",
                    (0.01, level),
                    xycoords=("axes fraction", "data"),
                    fontsize=8,
                    color="0.35",
                    va="bottom",
                )
            ax.set_xscale("log")
            ax.set_yscale("symlog", linthresh=5, linscale=2)
            ax.set_yticks([0, 1, 2, 3, 4, 5, 10, 20, 50, 100])
            ax.set_yticklabels(["0", "1", "2", "3", "4", "5", "10", "20", "50", "100"])
            ax.set_ylim(max(min(-0.5, ax.get_ylim()[0]), -2.0), 100)
            ax.grid(alpha=0.3)
            who = "every variant" if bn == "frozen" else "variants with BN; thin solid: the same frozen"
            ax.set_title(f"{mode} noise, BN statistics {bn}\n({who})", fontsize=10)
            ax.set_xlabel("noise scale sigma (log)")
        axes[row, 0].set_ylabel("val accuracy drop (pp)\nsymlog: linear 0-5 pp")
    legend_below(fig, list(axes[:, 0]))
    fig.suptitle(
        f"Accuracy drop under parameter noise, mean over seeds of each run's mean over draws "
        f"({seed_note(len(study.seeds))})"
    )
    return fig


def _inside(b: Band, window: float) -> Band:
    keep = [i for i, a in enumerate(b.x) if abs(a) <= window + 1e-12]
    return Band(*([getattr(b, f)[i] for i in keep] for f in ("x", "mean", "ci_low", "ci_high")))


def slices(study: StudySummary) -> Figure:
    """Mean loss rise along filter-normalized directions (BN frozen): full view (symlog y) and a linear zoom on
    the fit window with the fitted parabola 0.5 * 2a * alpha^2 (2a: mean over seeds of each run's mean fit)."""
    f = study.figures
    split, window = f.slice_split, study.setup.fit_window
    fig = Figure(figsize=(12.5, 5.2), layout="constrained")
    full, zoom = fig.subplots(1, 2)
    found, n = cells(study), len(study.factorial)
    for v, b in f.slices.items():
        c = colour(found[v])
        band(full, b, c, label=label(v), **emphasis(v, n))
        band(zoom, _inside(b, window), c, marker="o", ms=3, **emphasis(v, n))
        grid = np.linspace(-window, window, 101)
        zoom.plot(grid, 0.5 * f.slice_fits[v] * grid**2, color=c, ls="--", lw=1.2)
    full.set_yscale("symlog", linthresh=0.01)
    full.set_ylim(bottom=-0.01)
    full.set(
        title=f"Full span ({split} subset; symlog y, linear below 0.01)",
        xlabel="step alpha along d",
        ylabel="loss rise L(alpha) - L(0) (nats)",
    )
    zoom.set(
        title=f"Zoom |alpha| <= fit window {window:g}: solid = measured, dashed = fitted 0.5 * 2a * alpha^2",
        xlabel="step alpha along d",
        ylabel="loss rise (nats, linear)",
    )
    for ax in (full, zoom):
        ax.axhline(0, color="0.4", lw=0.8)
        ax.grid(alpha=0.3)
        ax.title.set_fontsize(10)
    fig.suptitle(
        "1-D slices along filter-normalized random directions, BN frozen: each run's mean over directions, "
        f"mean over seeds ({seed_note(len(study.seeds))})"
    )
    legend_below(fig, [full])
    return fig


def path(study: StudySummary) -> Figure:
    """Loss along (1 - t) theta_0 + t theta_T on the training and validation subsets, mean over seeds with bands."""
    splits = list(study.figures.paths)
    found, n = cells(study), len(study.factorial)
    fig = Figure(figsize=(6.2 * len(splits), 5.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(splits)))
    for ax, split in zip(axes, splits, strict=True):
        for v, b in study.figures.paths[split].items():
            band(ax, b, colour(found[v]), marker="o", ms=3, label=label(v), **emphasis(v, n))
        ax.axvline(1.0, color="0.3", lw=1, ls="--")
        ax.annotate(
            "t = 1: trained weights",
            (1.0, 0.98),
            xycoords=("data", "axes fraction"),
            ha="right",
            va="top",
            fontsize=8,
            rotation=90,
            color="0.3",
        )
        ax.set(title=f"{split} subset", xlabel="t  (t = 0: initial weights)", ylabel="loss (nats)")
        clamp_y(ax, 0.0, float("inf"))  # a cross-entropy is never negative, whatever its t-interval says
        ax.grid(alpha=0.3)
    fig.suptitle(
        "Linear path from initialization to the trained weights (BN statistics recalibrated at every t for variants "
        f"with BN; {seed_note(len(study.seeds))})"
    )
    legend_below(fig, list(axes))
    return fig
