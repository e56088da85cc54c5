"""Stage aggregate, the analysis pass: every run's summaries -> metrics/all_runs.json (all of them, in git),
metrics/study.json (every number the report and the figures show: means and CIs over seeds, paired differences,
factorial effects, claims, curvature, path, correlations, the figures' bands, questions 1 and 4),
metrics/headline.json (the declared metric: a few numbers of it) and the per-variant curves of plots/study/ that
`dvc plots` draws."""

from pathlib import Path

from landscape.report.analysis.aggregate import headline, study_curves
from landscape.report.analysis.questions import analyse_questions
from landscape.report.analysis.study import analyse_study
from landscape.report.analysis.study_data import load_study
from landscape.report.schema import ALL_RUNS_JSON, HEADLINE_JSON, STUDY_JSON
from landscape.study.atomic import replace_dir, write_json, write_text
from landscape.study.params import load_params
from landscape.study.serialize import to_json
from landscape.study.stage import PLOTS_DIR, run_stage


def main() -> None:
    params = load_params()
    data = load_study(params)
    variants, seeds = list(params.study.variants), data.seeds
    questions = analyse_questions(params, data.all_runs, data.history, data.sharpness)
    study = analyse_study(data, params, questions)
    tables = study_curves(
        history={v: data.history[v] for v in data.variants},
        slices={v: f[f["split"] == "val"].reset_index(drop=True) for v, f in data.slices.items()},
        paths=data.paths,
        runs={v: [data.runs[(v, s)] for s in seeds] for v in data.variants},
    )

    def fill(tmp: Path) -> None:
        for name, table in tables.items():
            write_text(tmp / f"{name}.csv", table.to_csv(index=False))

    replace_dir(PLOTS_DIR / "study", fill)
    write_json(STUDY_JSON, to_json(study))
    write_json(ALL_RUNS_JSON, {v: {str(s): to_json(data.all_runs[(v, s)]) for s in seeds} for v in variants})
    first = data.all_runs[(data.variants[0] if data.variants else variants[0], seeds[0])]
    write_json(HEADLINE_JSON, to_json(headline(study, first, data.variants)))
    print(
        f"aggregated {len(data.all_runs)} runs ({len(variants)} variants x {len(seeds)} seeds) into {STUDY_JSON} "
        f"and {HEADLINE_JSON}"
    )


if __name__ == "__main__":
    run_stage(main)
