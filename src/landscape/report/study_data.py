"""Everything the report and the figures read, as one object: every run's typed summaries, metrics/study.json
as a ``StudySummary`` (the claims with their text, rule and verdict included), and the per-run curves.
``load_study`` reads it from the files the pipeline wrote.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from landscape.errors import StudyError
from landscape.report.schema import STUDY_JSON, StudySummary, read_study
from landscape.study.params import Params, VariantParams
from landscape.study.results import RunResults
from landscape.study.runs_io import load_run, long_rows
from landscape.study.stage import RunPaths


@dataclass(frozen=True)
class StudyData:
    """Everything the report and the figures read. Frames are long: one row per CSV row, with a ``seed`` column."""

    variants: list[str]  # the factorial cells (variants without train overrides)
    seeds: list[int]
    factorial: dict[str, VariantParams]  # variant -> its conv / BN / dropout cell
    train_eval_size: int  # images of the fixed training subset behind the per-epoch train accuracy
    runs: dict[tuple[str, int], RunResults]  # (variant, seed) -> typed summaries
    study: StudySummary  # metrics/study.json
    history: dict[str, pd.DataFrame]  # variant -> history.csv rows of every seed
    slices: dict[str, pd.DataFrame]  # variant -> slice.csv rows of every seed
    paths: dict[str, pd.DataFrame]  # variant -> path.csv rows of every seed
    surfaces: dict[str, pd.DataFrame]  # variant -> surface.csv rows of the first seed only
    all_runs: dict[tuple[str, int], RunResults]  # every run of the study, regime cells included (questions 1, 4)
    sharpness: dict[str, pd.DataFrame]  # every variant -> sharpness.csv rows (lambda_max per epoch) of every seed


def load_study(params: Params) -> StudyData:
    """Read every run of ``params.study`` and metrics/study.json; a study.json made for other runs is refused.
    The factorial sections read ``variants`` and ``runs`` (the factorial cells); questions 1 and 4 ``all_runs``."""
    everything, seeds = list(params.study.variants), list(params.study.seeds)
    variants = params.factorial()
    study = read_study(STUDY_JSON)
    if study.seeds != seeds or sorted(study.variants) != sorted(everything):
        raise StudyError(
            f"{STUDY_JSON} holds variants {sorted(study.variants)} x seeds {study.seeds}, but params.yaml "
            f"asks for {sorted(everything)} x {seeds}; rerun the aggregate stage: dvc repro"
        )
    paths = {v: [RunPaths(v, s) for s in seeds] for v in everything}
    all_runs = {(v, s): load_run(RunPaths(v, s)) for v in everything for s in seeds}
    return StudyData(
        variants=variants,
        seeds=seeds,
        factorial={v: params.variant(v) for v in variants},
        train_eval_size=params.data.train_eval_size,
        runs={(v, s): all_runs[(v, s)] for v in variants for s in seeds},
        study=study,
        history={v: long_rows(p, "history") for v, p in paths.items()},
        slices={v: long_rows(paths[v], "slice") for v in variants},
        paths={v: long_rows(paths[v], "path") for v in variants},
        surfaces={v: long_rows(paths[v][:1], "surface") for v in variants},
        all_runs=all_runs,
        sharpness={v: long_rows(p, "sharpness") for v, p in paths.items()},
    )
