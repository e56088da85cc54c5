"""Stage plots, the render pass: report.md and plots/figures/*.png from metrics/study.json alone.

It reads no params.yaml and runs no statistics: every number it shows was computed by the aggregate stage. It
imports no torch. The figure directory is replaced as a whole, so it holds exactly the figures of this run.
"""

from pathlib import Path

from landscape.report.render.plotting import write_figures
from landscape.report.render.report import build_report
from landscape.report.schema import read_study
from landscape.study.atomic import replace_dir, write_text
from landscape.study.stage import PLOTS_DIR, run_stage

FIGURES_DIR = PLOTS_DIR / "figures"
REPORT = "report.md"


def main() -> None:
    study = read_study()
    report = build_report(study)
    written: list[Path] = []

    def fill(tmp: Path) -> None:
        written.extend(write_figures(study, tmp))

    replace_dir(FIGURES_DIR, fill)
    write_text(REPORT, report)
    print(f"wrote {len(written)} figures to {FIGURES_DIR}/ and {REPORT} ({len(study.what_was_run)} variants)")


if __name__ == "__main__":
    run_stage(main)
