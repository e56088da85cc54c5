"""What the three probe stage scripts share: one process per variant that probes the trained model of every seed in
``study.seeds``, timing each, and writes per-seed outputs into the directories the stage owns (``stage_dirs``)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from landscape.errors import StudyError
from landscape.study.data import Dataset
from landscape.study.inputs import study_inputs, trained_model
from landscape.study.params import Params
from landscape.study.stage import FACTORIAL_ONLY, PROBE_KINDS, RunPaths, Timer, stage_dirs


@dataclass(frozen=True)
class SeedRun:
    """What a probe gets for one seed: its paths, the validated params, the dataset and the trained model."""

    run: RunPaths
    params: Params
    device: torch.device
    data: Dataset
    model: nn.Module


Probe = Callable[[SeedRun], str]  # writes the seed's outputs (run.metrics / run.plot); returns its log line's text


def check_checkpoints(runs: list[RunPaths], needs: tuple[str, ...]) -> None:
    """Every checkpoint ``needs`` names (``model``, ``initial``) of every run exists, or a StudyError listing the
    missing ones."""
    missing = [str(getattr(run, name)) for run in runs for name in needs if not getattr(run, name).is_file()]
    if missing:
        raise StudyError(
            f"missing checkpoint(s) {', '.join(missing)}: every seed of study.seeds must be trained before its "
            "probes run; run its train stages first: dvc repro"
        )


def run_probe_stage(kind: str, variant: str, probe: Probe, needs: tuple[str, ...] = ("model",)) -> None:
    """Stage ``<kind>@<variant>``: ``probe`` once per seed of ``study.seeds``, each timed into
    ``run.timing(kind)``. The stage owns its directories: they are cleared first, so no stale seed stays."""
    if kind not in PROBE_KINDS:
        raise StudyError(f"unknown probe stage kind '{kind}'; one of {', '.join(PROBE_KINDS)}")
    params, device, data = study_inputs(variant)
    if set(PROBE_KINDS[kind]) & FACTORIAL_ONLY and variant not in params.study.factorial:
        raise StudyError(
            f"the {kind} stage runs over study.factorial only, and '{variant}' is not one of its cells "
            f"({', '.join(params.study.factorial)})."
        )
    runs = [RunPaths(variant, seed) for seed in params.study.seeds]
    check_checkpoints(runs, needs)
    for directory in stage_dirs(variant, kind):
        shutil.rmtree(directory, ignore_errors=True)
    for run in runs:
        model = trained_model(run, params, device)
        timer = Timer()
        text = probe(SeedRun(run, params, device, data, model))
        seconds = timer.write(run.timing(kind))["wall_s"]
        print(f"{kind} {variant} seed {run.seed}: {text} in {seconds} s", flush=True)
