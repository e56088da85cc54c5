"""Stage plots: plots/figures/*.png and report.md from metrics/study.json, every run's metrics and CSVs.

Imports no torch: it reads only what the probe and aggregate stages wrote. The figure directory is replaced
as a whole, so it holds exactly the figures of this run.
"""

from pathlib import Path

from landscape.report.plotting import write_figures
from landscape.report.report import build_report
from landscape.report.study_data import load_study
from landscape.study.atomic import replace_dir, write_text
from landscape.study.params import load_params
from landscape.study.stage import PLOTS_DIR, run_stage

FIGURES_DIR = PLOTS_DIR / "figures"
REPORT = "report.md"


def main() -> None:
    params = load_params()
    data = load_study(params)
    report = build_report(data, params)
    written: list[Path] = []

    def fill(tmp: Path) -> None:
        written.extend(write_figures(data, tmp))

    replace_dir(FIGURES_DIR, fill)
    write_text(REPORT, report)
    print(
        f"wrote {len(written)} figures to {FIGURES_DIR}/ and {REPORT} "
        f"({len(data.all_runs)} runs: {len(data.all_runs) // len(data.seeds)} variants x {len(data.seeds)} seeds)"
    )


if __name__ == "__main__":
    run_stage(main)
