"""The study's figures: which PNGs exist, how each is drawn, and how it is written.

Figures are drawn on ``matplotlib.figure.Figure`` objects (no pyplot, no global state, no display) from the
``StudySummary`` of metrics/study.json alone (questions 1 and 4's from its ``questions``, by ``plotting_regimes``);
``save_figure`` renders a PNG in memory with fixed metadata, so reruns on the same inputs give identical files, and
writes it atomically.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from matplotlib.figure import Figure

from landscape.report import plotting_regimes
from landscape.report.render import plotting_curves, plotting_geometry
from landscape.report.schema import StudySummary
from landscape.study.atomic import write_bytes

FIGURES: dict[str, Callable[[StudySummary], Figure]] = {  # the factorial's figures
    "learning_curves": plotting_curves.learning_curves,
    "robustness": plotting_curves.robustness,
    "slices": plotting_curves.slices,
    "path": plotting_curves.path,
    "effects": plotting_geometry.effects,
    "curvature": plotting_geometry.curvature,
    "layers": plotting_geometry.layers,
    "surfaces": plotting_geometry.surfaces,
    "summary": plotting_geometry.summary,
}


def save_figure(fig: Figure, path: Path) -> Path:
    """Render ``fig`` to PNG in memory (fixed metadata), then write it atomically to ``path``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return write_bytes(path, buf.getvalue())


def write_figures(study: StudySummary, directory: Path) -> list[Path]:
    """Draw and write every figure of ``FIGURES`` as ``directory/<name>.png``, one at a time (none without a factorial
    cell), then questions 1 and 4's."""
    factorial = [] if study.figures is None else list(FIGURES.items())
    written = [save_figure(make(study), Path(directory) / f"{name}.png") for name, make in factorial]
    if not study.questions:  # a study.json without questions 1 and 4 (a unit test's): no figure of theirs
        return written
    return written + plotting_regimes.write_question_figures(study.questions, directory)
