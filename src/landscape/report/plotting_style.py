"""What every figure shares: one colour per variant, the seed-CI band and error-bar helpers, and the notes
that say what a band or bar is.

A variant's colour is a function of its cell of the factorial, so it is the same in every figure and every
subset of the study: the MLP family in blues and greens, the CNN family in reds and oranges, with Model A
(mlp) a strong blue and Model B (cnn) a strong red.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.colors as mcolors
import numpy as np
from matplotlib.axes import Axes

from landscape.report.schema import MODEL_A, MODEL_B, Band
from landscape.report.terms import Interval

# (conv, bn, dropout) -> colour.
CELL_COLOURS = {
    (False, False, False): "#08519c",  # mlp (A): strong blue
    (False, True, False): "#6baed6",  # + BN: light blue
    (False, False, True): "#41ab5d",  # + dropout: green
    (False, True, True): "#00441b",  # + BN + dropout: dark green
    (True, True, True): "#e31a1c",  # cnn (B): strong red
    (True, False, False): "#fd8d3c",  # conv alone: orange
    (True, False, True): "#b15928",  # conv + dropout: brown-orange
    (True, True, False): "#67000d",  # conv + BN: maroon
}
ROLE = {MODEL_A: "A", MODEL_B: "B"}


def colour(cell) -> str:
    """The colour of a factorial cell: anything with ``conv``, ``bn`` and ``dropout`` (a ``VariantParams``, a
    ``VariantRow`` of study.json)."""
    return CELL_COLOURS[(cell.conv, cell.bn, cell.dropout)]


def lighter(c: str, amount: float = 0.5) -> tuple[float, float, float]:
    """``c`` blended towards white by ``amount`` (0: unchanged, 1: white)."""
    r, g, b = mcolors.to_rgb(c)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


def label(variant: str) -> str:
    """'mlp (A)', 'cnn (B)', other variants by name."""
    return f"{variant} ({ROLE[variant]})" if variant in ROLE else variant


def seed_note(n: int) -> str:
    """What a band or error bar over ``n`` training seeds is, or why there is none."""
    if n < 2:
        return "n = 1 training seed: no CI"
    return f"bands/bars: 95 % t-CI over n = {n} training seeds"


def band(ax: Axes, b: Band, colour_: object, alpha: float = 0.18, **line) -> None:
    """A ``Band`` of study.json: its mean over seeds as a line, and its 95 % t-CI as a shaded band (opacity
    ``alpha``) where there is one (n >= 2)."""
    ax.plot(b.x, b.mean, color=colour_, **line)
    low, high = np.array(b.ci_low, float), np.array(b.ci_high, float)
    if np.isfinite(low).any():
        ax.fill_between(b.x, low, high, color=colour_, alpha=alpha, lw=0)


def point(ax: Axes, x: float, interval: Interval, colour_: object, scale: float = 1.0, marker: str = "o") -> None:
    """A mean with its CI as an error bar; no bar where the CI is missing (n < 2) or has zero width."""
    mean = interval.mean * scale
    low, high = interval.ci_low, interval.ci_high
    if interval.n >= 2 and math.isfinite(low) and math.isfinite(high) and high > low:
        err = [[mean - low * scale], [high * scale - mean]]
        ax.errorbar([x], [mean], yerr=err, fmt=marker, color=colour_, capsize=4, ms=6)
    else:
        ax.plot([x], [mean], marker, color=colour_, ms=6)


def use_log_y(ax: Axes, values: Sequence[float], lows: Sequence[float] = ()) -> bool:
    """Log y when every value (and finite CI bound) is > 0 and they span more than 1.5 decades."""
    v = np.array([x for x in list(values) + list(lows) if math.isfinite(x)], float)
    if v.size and (v > 0).all() and v.max() / v.min() > 10**1.5:
        ax.set_yscale("log")
        return True
    return False


def message(ax: Axes, text: str) -> None:
    """Replace a panel's content by a centred explanation."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=11, transform=ax.transAxes)


def clamp_y(ax: Axes, low: float, high: float) -> None:
    """Keep the y range inside [low, high] (an accuracy cannot leave [0, 100] %, whatever a t-interval says)."""
    bottom, top = ax.get_ylim()
    ax.set_ylim(max(bottom, low), min(top, high))


def emphasis(variant: str, n_variants: int) -> dict:
    """``band`` keywords: Model A and Model B thicker and on top; fainter bands when many variants overlap."""
    style = {"lw": 2.2, "zorder": 4} if variant in ROLE else {"lw": 1.2, "zorder": 3}
    return {**style, "alpha": 0.18 if n_variants <= 3 else 0.08}
