"""The analysis pass: ``analyse_study`` turns every run of the study into metrics/study.json, every number the report
and the figures show (``landscape.report.render`` only formats and draws them)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from landscape.report.analysis.aggregate import MODEL_A, MODEL_B, headline_sigma_star, study_summary
from landscape.report.analysis.correlations import correlations
from landscape.report.analysis.figures import figures
from landscape.report.analysis.geometry import geometry
from landscape.report.analysis.study_data import StudyData
from landscape.report.schema import Setup, StudySummary, VariantRow
from landscape.study.params import Params
from landscape.study.results import RunResults


def what_was_run(params: Params, runs: Mapping[tuple[str, int], RunResults]) -> list[VariantRow]:
    """Report section 1: every variant of the study, its cell, parameter count and what it changes."""
    first = params.study.seeds[0]
    rows = []
    for v in params.study.variants:
        spec = params.variant(v)
        overrides: dict[str, object] = dict(spec.train)
        if spec.hidden is not None:
            overrides["hidden"] = list(spec.hidden)
        rows.append(
            VariantRow(v, spec.family, not spec.regime, spec.conv, spec.bn, spec.dropout,
                       runs[(v, first)].train.n_parameters, overrides)
        )  # fmt: skip
    return rows


def setup(params: Params, first: RunResults) -> Setup:
    """The settings the report states, from params and from a factorial run's summaries where they say it."""
    t, rob = params.train, first.robustness
    star, mode, drop = headline_sigma_star(first)
    return Setup(
        model_a=MODEL_A,
        model_b=MODEL_B,
        optimizer=t.optimizer,
        lr=t.lr,
        momentum=t.momentum,
        weight_decay=t.weight_decay,
        schedule=t.schedule,
        epochs=t.epochs,
        batch_size=t.batch_size,
        target_acc=t.target_acc,
        val_size=params.data.val_size,
        train_eval_size=params.data.train_eval_size,
        parameters=first.slice.parameters,
        bn_modes=list(params.probes.bn),
        bn_samples=params.robustness.samples.bn,
        noise_modes=list(params.robustness.modes),
        sigmas=list(params.robustness.sigmas),
        noise_trials=rob.trials,
        noise_samples=rob.samples,
        noise_split=rob.split,
        slice_directions=first.slice.directions,
        fit_window=first.slice.fit_window,
        curvature_samples=first.curvature.samples,
        lanczos_steps=len(first.curvature.ritz),
        ritz_pairs=len(first.curvature.eigenvalues),
        sigma_star=star,
        sigma_star_mode=mode,
        sigma_star_drop=drop,
        width_tau=min(params.slice.taus),
    )


def analyse_study(data: StudyData, params: Params, questions: Mapping) -> StudySummary:
    """metrics/study.json: every number the report and the figures show. The per-variant table covers every
    variant; the claims, the factorial and sections 6 to 9 the factorial cells (``data.variants``), the only ones
    with slice and path probes; ``questions`` (questions 1 and 4) is stored as it comes."""
    seeds, everything = data.seeds, list(params.study.variants)
    drop, modes = min(params.robustness.drops), params.robustness.modes
    summary = study_summary(
        data.all_runs, data.history, data.slices, everything, seeds, data.factorial, params.claim_rules, drop, modes
    )
    rows = what_was_run(params, data.all_runs)
    if not data.variants:
        return dataclasses.replace(summary, what_was_run=rows, questions=dict(questions))
    first = data.runs[(data.variants[0], seeds[0])]
    found = setup(params, first)
    return dataclasses.replace(
        summary,
        what_was_run=rows,
        setup=found,
        geometry=geometry(data),
        correlations=correlations(data, found.sigma_star, found.sigma_star_mode, found.sigma_star_drop,
                                  found.width_tau),
        figures=figures(data),
        questions=dict(questions),
    )  # fmt: skip
