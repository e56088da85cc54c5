"""Figures of question 1 at matched fit, from ``analyse_questions``'s dict as stored in metrics/study.json: the
dose-response of sharpness and the gap on the noise scale, and lambda_max against heavy-ball SGD's stability line
during training. Each draws an explanation instead where the study has no fit cell."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from landscape.report.plotting_style import message, point, seed_note
from landscape.report.render.questions import DOSE_RESPONSE_PNG, STABILITY_PNG
from landscape.report.terms import Interval

NO_FIT = "No variant of this study trains to a training-loss target\n(train.stop_loss > 0 in params.yaml)."
PANELS = {  # measure -> (y label, scale of the stored value, log y)
    "adaptive_sharpness": ("adaptive sharpness (scale-invariant; log axis)", 1.0, True),
    "lambda_max": ("lambda_max (raw, changes with weight scale; log axis)", 1.0, True),
    "gap": ("gap at the target (pp)", 100.0, False),
}
MARKERS = ("o", "s", "^", "D", "v")


def _interval(d: Mapping) -> Interval:
    return Interval(*(math.nan if d.get(k) is None else d[k] for k in ("mean", "std", "ci_low", "ci_high")), d["n"])


def _batches(cells: list[Mapping]) -> dict[int, tuple[object, str]]:
    """Batch size -> (colour, marker), in increasing batch order."""
    batches = sorted({c["batch"] for c in cells})
    cmap = colormaps["tab10"]
    return {b: (cmap(i % 10), MARKERS[i % len(MARKERS)]) for i, b in enumerate(batches)}


def _noise_x(q1: Mapping, eta: float, batch: int) -> float:
    """log2 of eta / B relative to the default cell's."""
    r = q1["rules"]
    return math.log2((eta / batch) / (r["default_eta"] / r["batch"]))


def dose_response(questions: Mapping) -> Figure:
    """Per fit cell, the mean over seeds of log adaptive sharpness, log lambda_max (geometric means, log axes) and the
    gap at the training-loss target, with their 95 % t-CIs as error bars, against log2 of eta / B relative to the
    default; one colour and marker per batch size, the cells of one batch joined in noise order."""
    fig = Figure(figsize=(15, 4.8), layout="constrained")
    q1 = questions["question1"]
    if q1 is None:
        message(fig.add_subplot(1, 1, 1), NO_FIT)
        return fig
    style = _batches(q1["cells"])
    for i, (measure, (ylabel, scale, log)) in enumerate(PANELS.items()):
        ax = fig.add_subplot(1, len(PANELS), i + 1)
        for batch, (colour, marker) in style.items():
            mine = sorted((c for c in q1["cells"] if c["batch"] == batch), key=lambda c: c["noise"])
            offset = 0.06 * (list(style).index(batch) - (len(style) - 1) / 2)  # batches side by side at one level
            drawn = [(_noise_x(q1, c["eta"], batch) + offset, _interval(c["measures"][measure])) for c in mine]
            drawn = [(x, m) for x, m in drawn if m.n and math.isfinite(m.mean)]
            for x, m in drawn:
                point(ax, x, m, colour, scale, marker)
            if len(drawn) > 1:
                ax.plot([x for x, _ in drawn], [scale * m.mean for _, m in drawn], color=colour, lw=1, alpha=0.6)
        if log:
            ax.set_yscale("log")
        else:
            ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel(
            f"log2 of eta/B relative to the default's ({q1['rules']['default_eta']:g}/{q1['rules']['batch']})"
        )
        ax.set_ylabel(ylabel)
        ax.set_title(ylabel.split(" (")[0], fontsize=10)
    handles = [Line2D([], [], color=c, marker=m, ls="-", label=f"batch {b}") for b, (c, m) in style.items()]
    fig.legend(handles=handles, loc="outside right center", fontsize=8)
    fig.suptitle(
        f"Question 1 at matched fit (every run at training loss {q1['rules']['target_loss']:g}): cell means; error bar "
        f"= 95 % t-CI over seeds (of the log for the sharpness measures)\n({seed_note(len(q1['design']['seeds']))}; "
        "batches offset slightly in x)"
    )
    return fig


def stability(questions: Mapping) -> Figure:
    """lambda_max eta / (2 (1 + beta)) per epoch (0: the initial weights) of every fit run (thin lines), and per cell
    the mean over the seeds still training at that epoch (thick); log y, heavy-ball SGD's edge of stability at 1 and
    question 1's threshold dashed. A ratio <= 0 or missing has no place on the log axis and is not drawn."""
    fig = Figure(figsize=(11, 6), layout="constrained")
    q1 = questions["question1"]
    if q1 is None:
        message(fig.add_subplot(1, 1, 1), NO_FIT)
        return fig
    ax = fig.add_subplot(1, 1, 1)
    p, style = q1["per_epoch"], _batches(q1["per_epoch"]["cells"])
    cells = sorted(p["cells"], key=lambda c: (c["batch"], c["eta"]))
    cmap = colormaps["viridis"]
    for k, c in enumerate(cells):
        colour, ls = cmap(0.9 * k / max(1, len(cells) - 1)), ("-", "--", ":", "-.")[list(style).index(c["batch"]) % 4]
        for run in c["runs"]:
            y = np.array([math.nan if v is None else v for v in run["ratio"]], float)
            ax.plot(run["epoch"], np.where(y > 0, y, np.nan), color=colour, ls=ls, lw=0.6, alpha=0.35)
        x = [e["epoch"] for e in c["per_epoch"]]
        y = np.array([math.nan if e["ratio"]["mean"] is None else e["ratio"]["mean"] for e in c["per_epoch"]], float)
        ax.plot(x, np.where(y > 0, y, np.nan), color=colour, ls=ls, lw=2, label=f"{c['variant']} (eta {c['eta']:g}, "
                f"B {c['batch']})")  # fmt: skip
    ax.axhline(1.0, color="black", lw=1.2, label="1: edge of stability, 2 (1 + beta) / eta")
    ax.axhline(p["threshold"], color="black", lw=1, ls="--", label=f"{p['threshold']:g}: question 1's threshold")
    ax.set_yscale("log")
    ax.set_xlabel("epoch (0: initial weights)")
    ax.set_ylabel("lambda_max eta / (2 (1 + beta))")
    ax.legend(fontsize=7, ncol=2)
    fig.suptitle(
        "lambda_max (raw) as a fraction of heavy-ball SGD's stability threshold during training, at a constant rate\n"
        "thin: each run; thick: mean over the seeds still training (line style: batch size)"
    )
    return fig


FIGURES = {DOSE_RESPONSE_PNG: dose_response, STABILITY_PNG: stability}


def write_question_figures(questions: Mapping, directory: Path) -> list[Path]:
    """Draw question 1's figures from ``questions`` (metrics/study.json's "questions") and write them to
    ``directory`` under the names the report links to; the paths written."""
    from landscape.report.render.plotting import save_figure  # render.plotting lists these figures: import late

    return [save_figure(draw(questions), Path(directory) / name) for name, draw in FIGURES.items()]
