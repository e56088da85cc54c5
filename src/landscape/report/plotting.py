"""The study's figures: which PNGs exist, how each is drawn, and how it is written.

Figures are drawn on ``matplotlib.figure.Figure`` objects (no pyplot, no global state, no display) from a
``StudyData``; ``save_figure`` renders a PNG in memory with fixed metadata, so reruns on the same inputs give
identical files, and writes it atomically.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from matplotlib.figure import Figure

from landscape.report import plotting_curves, plotting_geometry, plotting_regimes
from landscape.report.study_data import StudyData
from landscape.study.atomic import write_bytes

FIGURES: dict[str, Callable[[StudyData], Figure]] = {
    "learning_curves": plotting_curves.learning_curves,
    "robustness": plotting_curves.robustness,
    "slices": plotting_curves.slices,
    "path": plotting_curves.path,
    "effects": plotting_geometry.effects,
    "curvature": plotting_geometry.curvature,
    "layers": plotting_geometry.layers,
    "surfaces": plotting_geometry.surfaces,
    "summary": plotting_geometry.summary,
    "sharpness_training": plotting_regimes.sharpness_training,
    "regimes": plotting_regimes.regimes,
    "early_signals": plotting_regimes.early_signals,
}


def save_figure(fig: Figure, path: Path) -> Path:
    """Render ``fig`` to PNG in memory (fixed metadata), then write it atomically to ``path``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return write_bytes(path, buf.getvalue())


def write_figures(data: StudyData, directory: Path) -> list[Path]:
    """Draw and write every figure of ``FIGURES`` as ``directory/<name>.png``, one at a time."""
    return [save_figure(make(data), Path(directory) / f"{name}.png") for name, make in FIGURES.items()]
