"""Figures of curves over epochs, noise scales, slice steps and the path from initialization.

Every curve is the mean over training seeds of one value per run (a run's own mean over directions or noise
draws), with its 95 % t-CI over seeds as a band; the titles say so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from landscape.report.aggregate import rise_from_zero
from landscape.report.plotting_style import band, clamp_y, colour, emphasis, label, lighter, seed_note
from landscape.report.study_data import StudyData


def per_seed(frame: pd.DataFrame, x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """(sorted x values, a seeds x points array of ``y``), averaging every row (directions, ...) at one x."""
    table = frame.pivot_table(index="seed", columns=x, values=y, aggfunc="mean").sort_index(axis=1)
    return table.columns.to_numpy(float), table.to_numpy(float)


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


def learning_curves(data: StudyData) -> Figure:
    """Validation accuracy and the gap per epoch, mean over seeds with 95 % CI bands, one colour per variant."""
    fig = Figure(figsize=(12.5, 5.2), layout="constrained")
    acc_ax, gap_ax = fig.subplots(1, 2)
    for v in data.variants:
        h = data.history[v]
        epochs, acc = per_seed(h, "epoch", "val_acc")
        _, gap = per_seed(h, "epoch", "gap")
        style = {"marker": "o", "ms": 3, "label": label(v), **emphasis(v, len(data.variants))}
        band(acc_ax, epochs, 100 * acc, colour(data.factorial[v]), **style)
        band(gap_ax, epochs, 100 * gap, colour(data.factorial[v]), **style)
    acc_ax.set(title="Validation accuracy (eval mode)", xlabel="epoch", ylabel="validation accuracy (%)")
    gap_ax.axhline(0, color="0.4", lw=0.8)
    gap_ax.set(
        title=f"Gap: train acc (eval mode, fixed {data.train_eval_size}-image training subset) - val acc\n"
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
    fig.suptitle(f"Learning curves: mean over training seeds ({seed_note(len(data.seeds))})")
    legend_below(fig, [acc_ax])
    return fig


def _noise_panels(data: StudyData) -> tuple[list[str], list[str]]:
    """The noise modes and BN handlings present in any run, in a fixed order."""
    modes: dict[str, None] = {}
    bns: set[str] = set()
    for run in data.runs.values():
        modes.update(dict.fromkeys(run.robustness.curves))
        bns.update(b for by_bn in run.robustness.curves.values() for b in by_bn)
    return list(modes), sorted(bns, key=lambda b: (b != "frozen", b))


def _drop_curve(data: StudyData, variant: str, mode: str, bn: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(sigmas > 0, seeds x sigmas drops in pp) from each run's own sigma = 0, or None if the variant lacks it."""
    rows = []
    for s in data.seeds:
        curve = data.runs[(variant, s)].robustness.curves.get(mode, {}).get(bn)
        if curve is None:
            return None
        points = sorted((p for p in curve.points.values() if p.sigma > 0), key=lambda p: p.sigma)
        rows.append({p.sigma: 100 * p.drop.mean for p in points})
    table = pd.DataFrame(rows).sort_index(axis=1)
    return table.columns.to_numpy(float), table.to_numpy(float)


def _drop_thresholds(data: StudyData) -> list[float]:
    """The accuracy drops (pp) that define sigma*, as stored in the noise curves."""
    levels = {
        100 * d
        for run in data.runs.values()
        for by_bn in run.robustness.curves.values()
        for curve in by_bn.values()
        for d in curve.drops.values()
    }
    return sorted(levels)


def _drop_panel(ax: Axes, data: StudyData, mode: str, bn: str) -> None:
    """Each variant's drop curve with its seed band; recalibrated curves lighter and dashed, with the same
    variant's frozen mean as a thin solid line to compare against."""
    for v in data.variants:
        curve = _drop_curve(data, v, mode, bn)
        if curve is None:
            continue
        c = colour(data.factorial[v])
        if bn == "frozen":
            band(
                ax,
                curve[0],
                curve[1],
                c,
                marker="o",
                ms=3,
                label=f"{label(v)}, BN frozen",
                **emphasis(v, len(data.variants)),
            )
            continue
        band(
            ax,
            curve[0],
            curve[1],
            lighter(c, 0.35),
            ls="--",
            marker="o",
            ms=3,
            label=f"{label(v)}, BN {bn}",
            **emphasis(v, len(data.variants)),
        )
        frozen = _drop_curve(data, v, mode, "frozen")
        if frozen is not None:
            ax.plot(frozen[0], np.nanmean(frozen[1], axis=0), color=c, lw=0.8)


def robustness(data: StudyData) -> Figure:
    """Validation accuracy drop (pp) from each run's sigma = 0 against sigma > 0: a column per noise mode, a row per
    BN handling (recalibrated in a lighter, dashed shade); symlog y, linear on the 0-5 pp region of the claims."""
    modes, bns = _noise_panels(data)
    fig = Figure(figsize=(5.2 * len(modes), 3.9 * len(bns) + 0.9), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(bns), len(modes), squeeze=False, sharex="col", sharey=True))
    for row, bn in enumerate(bns):
        for col, mode in enumerate(modes):
            ax = axes[row, col]
            _drop_panel(ax, data, mode, bn)
            for level in _drop_thresholds(data):
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
        f"({seed_note(len(data.seeds))})"
    )
    return fig


def _slice_rise(frame: pd.DataFrame, split: str) -> pd.DataFrame:
    """BN-frozen slice rows of ``split`` with ``rise`` = L(alpha) - L(0) of the same seed and direction."""
    f = frame[(frame["bn"] == "frozen") & (frame["split"] == split)]
    return f.assign(rise=rise_from_zero(f, "alpha", "direction", "loss"))


def slices(data: StudyData) -> Figure:
    """Mean loss rise along filter-normalized directions (BN frozen): full view (symlog y) and a linear zoom on
    the fit window with the fitted parabola 0.5 * 2a * alpha^2 (2a: mean over seeds of each run's mean fit)."""
    split = "val" if all((f["split"] == "val").any() for f in data.slices.values()) else "train"
    window = max(run.slice.fit_window for run in data.runs.values())
    fig = Figure(figsize=(12.5, 5.2), layout="constrained")
    full, zoom = fig.subplots(1, 2)
    for v in data.variants:
        c = colour(data.factorial[v])
        alphas, rise = per_seed(_slice_rise(data.slices[v], split), "alpha", "rise")
        band(full, alphas, rise, c, label=label(v), **emphasis(v, len(data.variants)))
        inside = np.abs(alphas) <= window + 1e-12
        band(zoom, alphas[inside], rise[:, inside], c, marker="o", ms=3, **emphasis(v, len(data.variants)))
        fits = [data.runs[(v, s)].slice.curves["frozen"][split].curvature_fit.mean for s in data.seeds]
        grid = np.linspace(-window, window, 101)
        zoom.plot(grid, 0.5 * float(np.mean(fits)) * grid**2, color=c, ls="--", lw=1.2)
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
        f"mean over seeds ({seed_note(len(data.seeds))})"
    )
    legend_below(fig, [full])
    return fig


def path(data: StudyData) -> Figure:
    """Loss along (1 - t) theta_0 + t theta_T on the training and validation subsets, mean over seeds with bands."""
    splits = [s for s in ("train", "val") if any((f["split"] == s).any() for f in data.paths.values())]
    fig = Figure(figsize=(6.2 * len(splits), 5.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(splits)))
    for ax, split in zip(axes, splits, strict=True):
        for v in data.variants:
            f = data.paths[v]
            t, loss = per_seed(f[f["split"] == split], "t", "loss")
            band(
                ax,
                t,
                loss,
                colour(data.factorial[v]),
                marker="o",
                ms=3,
                label=label(v),
                **emphasis(v, len(data.variants)),
            )
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
        f"with BN; {seed_note(len(data.seeds))})"
    )
    legend_below(fig, list(axes))
    return fig
