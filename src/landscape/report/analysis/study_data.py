"""What the analysis pass reads, as one object: every run's typed summaries and per-run curves, with the factorial
cells the factorial sections cover. ``load_study`` reads it from the files the training and probe stages wrote.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from landscape.study.params import Params, VariantParams
from landscape.study.results import RunResults
from landscape.study.runs_io import load_run, long_rows
from landscape.study.stage import RunPaths


@dataclass(frozen=True)
class StudyData:
    """The analysis pass's input. Frames are long: one row per CSV row, with a ``seed`` column. ``runs``, ``slices``,
    ``paths`` and ``surfaces`` cover the factorial cells (``variants``), which alone have slice and path probes;
    ``all_runs``, ``history`` and ``sharpness`` every variant of the study."""

    variants: list[str]  # the factorial cells (study.factorial)
    seeds: list[int]
    factorial: dict[str, VariantParams]  # variant -> its conv / BN / dropout cell
    runs: dict[tuple[str, int], RunResults]  # (factorial variant, seed) -> typed summaries
    history: dict[str, pd.DataFrame]  # every variant -> history.csv rows of every seed
    slices: dict[str, pd.DataFrame]  # factorial variant -> slice.csv rows of every seed
    paths: dict[str, pd.DataFrame]  # factorial variant -> path.csv rows of every seed
    surfaces: dict[str, pd.DataFrame]  # factorial variant -> surface.csv rows of the first seed only
    all_runs: dict[tuple[str, int], RunResults]  # every run of the study (slice and path None outside the factorial)
    sharpness: dict[str, pd.DataFrame]  # every variant -> sharpness.csv rows (lambda_max per epoch) of every seed


def load_study(params: Params) -> StudyData:
    """Read every run of ``params.study``: the factorial cells with their slice and path files, every other variant
    without them (``RunPaths`` and ``runs_io`` know where each file lives)."""
    everything, seeds = list(params.study.variants), list(params.study.seeds)
    variants = params.factorial()
    paths = {v: [RunPaths(v, s) for s in seeds] for v in everything}
    all_runs = {(v, s): load_run(RunPaths(v, s), factorial=v in variants) for v in everything for s in seeds}
    return StudyData(
        variants=variants,
        seeds=seeds,
        factorial={v: params.variant(v) for v in variants},
        runs={(v, s): all_runs[(v, s)] for v in variants for s in seeds},
        history={v: long_rows(p, "history") for v, p in paths.items()},
        slices={v: long_rows(paths[v], "slice") for v in variants},
        paths={v: long_rows(paths[v], "path") for v in variants},
        surfaces={v: long_rows(paths[v][:1], "surface") for v in variants},
        all_runs=all_runs,
        sharpness={v: long_rows(p, "sharpness") for v, p in paths.items()},
    )
