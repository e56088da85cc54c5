"""Stage aggregate: every run's summaries -> metrics/all_runs.json (all of them, in git),
metrics/study.json (means, CIs over seeds, paired differences, factorial effects, claims), metrics/headline.json
(the declared metric: a few numbers of it) and the per-variant curves of plots/study/ that `dvc plots` draws."""

import dataclasses
from pathlib import Path

import pandas as pd

from landscape.report.aggregate import headline, study_curves, study_summary
from landscape.report.regimes import regime_summary
from landscape.report.schema import ALL_RUNS_JSON, HEADLINE_JSON, STUDY_JSON
from landscape.study.atomic import replace_dir, write_json, write_text
from landscape.study.params import load_params
from landscape.study.runs_io import load_run, long_rows
from landscape.study.serialize import to_json
from landscape.study.stage import PLOTS_DIR, RunPaths, run_stage


def curves(variants: list[str], seeds: list[int], runs: dict, history: dict, slices: dict) -> dict[str, pd.DataFrame]:
    """plots/study/<name>.csv: per variant, one row per epoch, sigma, alpha or t (long format, a ``variant``
    column), the mean over that variant's runs. ``history``, ``slices``: each variant's history.csv and slice.csv
    rows, all seeds."""
    paths = {v: [RunPaths(v, s) for s in seeds] for v in variants}
    return study_curves(
        history=history,
        slices={v: f[f["split"] == "val"].reset_index(drop=True) for v, f in slices.items()},
        paths={v: long_rows(p, "path") for v, p in paths.items()},
        runs={v: [runs[(v, s)] for s in seeds] for v in variants},
    )


def main() -> None:
    params = load_params()
    variants, seeds = params.study.variants, params.study.seeds
    runs = {(v, s): load_run(RunPaths(v, s)) for v in variants for s in seeds}
    factorial = {v: params.variant(v) for v in params.factorial()}
    history = {v: long_rows([RunPaths(v, s) for s in seeds], "history") for v in variants}
    slices = {v: long_rows([RunPaths(v, s) for s in seeds], "slice") for v in variants}
    drop = min(params.robustness.drops)
    rules, modes = params.claim_rules, params.robustness.modes
    study = study_summary(runs, history, slices, variants, seeds, factorial, rules, drop, modes)
    per_run = {(v, s): history[v][history[v]["seed"] == s].to_dict("records") for v, s in runs}
    study = dataclasses.replace(study, regimes=regime_summary(params, runs, per_run))
    tables = curves(variants, seeds, runs, history, slices)

    def fill(tmp: Path) -> None:
        for name, table in tables.items():
            write_text(tmp / f"{name}.csv", table.to_csv(index=False))

    replace_dir(PLOTS_DIR / "study", fill)
    write_json(STUDY_JSON, to_json(study))
    write_json(ALL_RUNS_JSON, {v: {str(s): to_json(runs[(v, s)]) for s in seeds} for v in variants})
    write_json(HEADLINE_JSON, to_json(headline(study, runs[(variants[0], seeds[0])], list(factorial))))
    print(
        f"aggregated {len(runs)} runs ({len(variants)} variants x {len(seeds)} seeds) into {STUDY_JSON} "
        f"and {HEADLINE_JSON}"
    )


if __name__ == "__main__":
    run_stage(main)
