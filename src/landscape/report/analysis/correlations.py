"""Report section 8's numbers: which geometric measures go with the gap, with the variant (not the run) as the unit.

The runs of one variant are a cluster. The primary evidence is Kendall's tau over the variant means with an exact
permutation p, Holm-adjusted over the measures compared; beside it the within-variant (residual) tau and the tau
stratified by dropout, a known confounder of the eval-mode gap. The tau over every run with a group-bootstrap CI
stays as a secondary, labelled line. A dead network (chance accuracy) is no landscape of a trained one: it leaves
every ranking, and the count of runs says so.
"""

from __future__ import annotations

import math

import numpy as np

from landscape.report.analysis import finite_step as F
from landscape.report.analysis.questions import is_dead
from landscape.report.analysis.ranking import permutation_tau, stratified_tau, within_group_tau
from landscape.report.analysis.stats import holm_family, kendall_tau_group_bootstrap
from landscape.report.analysis.study_data import StudyData
from landscape.report.schema import Correlations, Rank
from landscape.report.terms import Interval
from landscape.study import results as M
from landscape.study.results import Censored, RunResults, run_measures

LEVEL = 0.05  # Holm-adjusted two-sided level of the variant-means test
MIN_GROUPS = 4  # resampling fewer whole variants gives a handful of distinct resamples, not an interval

Run = tuple[str, int]


def dead(run: RunResults) -> bool:
    """A dead network (``questions.is_dead``: chance accuracy) or a diverged one: its weights say nothing about a
    trained network's landscape."""
    return run.train.diverged is not None or is_dead(run)


def group_tau(x: list[float], y: list[float], groups: list[str]) -> Interval:
    """Kendall's tau with a CI from resampling whole variants; no CI (nan) with fewer than MIN_GROUPS variants."""
    tau = kendall_tau_group_bootstrap(x, y, groups)
    if len(set(groups)) < MIN_GROUPS:
        return Interval(tau.mean, math.nan, math.nan, math.nan, tau.n)
    return tau


def rank(data: StudyData, name: str, values: dict[Run, Censored]) -> Rank | None:
    """The evidence for one measure, from the live runs where it is finite; None with fewer than 2 such runs."""
    gap = {k: run_measures(r)[M.GAP].value for k, r in data.runs.items() if not dead(r)}
    keys = [k for k in gap if k in values and math.isfinite(values[k].value) and math.isfinite(gap[k])]
    if len(keys) < 2:
        return None
    x = [values[k].value for k in keys]
    y = [gap[k] for k in keys]
    groups = [v for v, _ in keys]
    variants = list(dict.fromkeys(groups))
    mx = [float(np.mean([xi for xi, g in zip(x, groups, strict=True) if g == v])) for v in variants]
    my = [float(np.mean([yi for yi, g in zip(y, groups, strict=True) if g == v])) for v in variants]
    stratified, per_stratum = stratified_tau(mx, my, [data.factorial[v].dropout for v in variants])
    means, within = permutation_tau(mx, my), within_group_tau(x, y, groups)
    return Rank(
        name=name,
        tau_means=means.tau,
        p_means=means.p,
        exact_means=means.exact,
        p_adjusted=math.nan,
        variants=len(variants),
        tau_within=within.tau,
        p_within=within.p,
        exact_within=within.exact,
        n_runs=len(keys),
        tau_strata={"on" if on else "off": t for on, t in per_stratum.items()},
        p_stratified=stratified.p,
        exact_stratified=stratified.exact,
        runs=group_tau(x, y, groups),
        censored=sum(values[k].censored for k in keys),
    )


def candidates(data: StudyData, star: str, mode: str, drop: float, tau: float) -> list[tuple[str, dict]]:
    """(name, per-run value) of every measure compared with the gap: the Holm family."""
    alpha = F.steepness_alpha(data)
    measures = {k: run_measures(r) for k, r in data.runs.items()}

    def of(measure: str) -> dict[Run, Censored]:
        return {k: m[measure] for k, m in measures.items() if measure in m}

    kappa = {(v, s): Censored(F.run_spread(data, v, s, alpha).mean, False) for v, s in data.runs}
    return [
        (f"finite-step slice curvature kappa({alpha:g})", kappa),
        ("local d^T H d", of(M.CURVATURE_EXACT)),
        ("local lambda_max", of(M.LAMBDA_MAX)),
        ("local trace(H)", of(M.TRACE)),
        ("local relative flatness", of(M.FLATNESS)),
        (f"sigma* ({mode}, BN frozen, {100 * drop:g} pp)", of(star)),
        (f"W_tau (tau = {tau:g}, val, BN frozen)", of(M.width("frozen", "val", tau))),
        ("path distance", of(M.PATH_DISTANCE)),
    ]


def correlations(data: StudyData, star: str, mode: str, drop: float, tau: float) -> Correlations:
    """Section 8 over the factorial runs: every candidate's ranks, Holm over the variant-means p's."""
    found = [e for name, values in candidates(data, star, mode, drop, tau) if (e := rank(data, name, values))]
    adjusted = holm_family({e.name: e.p_means for e in found})
    rows = [Rank(**{**e.__dict__, "p_adjusted": adjusted[e.name]}) for e in found]
    live = [k for k, r in data.runs.items() if not dead(r)]
    return Correlations(
        rows=rows,
        level=LEVEL,
        variants=len(data.variants),
        dropout_off=sum(not f.dropout for f in data.factorial.values()),
        runs=len(live),
        min_groups=MIN_GROUPS,
    )
