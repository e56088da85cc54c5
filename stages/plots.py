"""Stage plots: figures and report.md from the metrics and CSVs of both models."""

import json
from pathlib import Path

import pandas as pd

from landscape import plotting
from landscape.atomic import write_text
from landscape.cli import METRICS_DIR, PLOTS_DIR, run_stage
from landscape.errors import StudyError
from landscape.report import build_report

MODELS = ("mlp", "cnn")
FIGURES = PLOTS_DIR / "figures"


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise StudyError(f"cannot read {path} ({e}); rerun the stage that writes it: dvc repro") from None


def read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise StudyError(f"cannot read {path} ({e}); rerun the stage that writes it: dvc repro") from None


def main() -> None:
    train = {m: read_json(METRICS_DIR / f"{m}.json") for m in MODELS}
    robustness = {m: read_json(METRICS_DIR / "robustness" / f"{m}.json") for m in MODELS}
    slices = {m: read_json(METRICS_DIR / "slice" / f"{m}.json") for m in MODELS}
    history = {m: read_csv(PLOTS_DIR / "history" / f"{m}.csv") for m in MODELS}
    figures = {
        "learning_curves": plotting.learning_curves(history),
        "generalization_gap": plotting.generalization_gap(history),
        "robustness": plotting.robustness_curves({m: read_csv(PLOTS_DIR / "robustness" / f"{m}.csv") for m in MODELS}),
        "slices": plotting.slice_curves({m: read_csv(PLOTS_DIR / "slice" / f"{m}.csv") for m in MODELS}),
        "summary": plotting.summary_figure(plotting.summary_rows(train, robustness, slices)),
    }
    for name, fig in figures.items():
        plotting.save_figure(fig, FIGURES / f"{name}.png")
    write_text(
        "report.md",
        build_report(train, robustness, slices, {m: h.to_dict("records") for m, h in history.items()}),
    )
    print(f"wrote {len(figures)} figures to {FIGURES} and report.md")


if __name__ == "__main__":
    run_stage(main)
