"""Stage aggregate: every run's summaries -> metrics/study.json (means, CIs over seeds, paired differences,
factorial effects, claims) and the per-variant curves of plots/study/ that `dvc plots` draws."""

from pathlib import Path

import pandas as pd

from landscape.aggregate import study_curves, study_json
from landscape.atomic import replace_dir, write_json, write_text
from landscape.params import load_params
from landscape.runs_io import load_run, long_rows
from landscape.stage import METRICS_DIR, PLOTS_DIR, RunPaths, run_stage


def curves(variants: list[str], seeds: list[int], runs: dict) -> dict[str, pd.DataFrame]:
    """plots/study/<name>.csv: per variant, one row per epoch, sigma, alpha or t (long format, a ``variant``
    column), the mean over that variant's runs."""
    paths = {v: [RunPaths(v, s) for s in seeds] for v in variants}
    return study_curves(
        history={v: long_rows(p, "history") for v, p in paths.items()},
        slices={v: long_rows(p, "slice", split="val") for v, p in paths.items()},
        paths={v: long_rows(p, "path") for v, p in paths.items()},
        runs={v: [runs[(v, s)] for s in seeds] for v in variants},
    )


def main() -> None:
    params = load_params()
    variants, seeds = params.study.variants, params.study.seeds
    runs = {(v, s): load_run(RunPaths(v, s)) for v in variants for s in seeds}
    factorial = {v: params.variant(v) for v in variants}
    drop = min(params.robustness.drops)
    study = study_json(
        runs, variants, seeds, factorial, params.robustness.moderate_sigma, drop, params.robustness.modes
    )
    tables = curves(variants, seeds, runs)

    def fill(tmp: Path) -> None:
        for name, table in tables.items():
            write_text(tmp / f"{name}.csv", table.to_csv(index=False))

    replace_dir(PLOTS_DIR / "study", fill)
    write_json(METRICS_DIR / "study.json", study)
    print(f"aggregated {len(runs)} runs ({len(variants)} variants x {len(seeds)} seeds) into {METRICS_DIR}/study.json")


if __name__ == "__main__":
    run_stage(main)
