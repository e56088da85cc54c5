"""Report section 8: which geometric measures go with the gap, with the variant (not the run) as the unit.

The runs of one variant are a cluster. The primary evidence is Kendall's tau over the variant means with an exact
permutation p, Holm-adjusted over the measures compared; beside it the within-variant (residual) tau and the tau
stratified by dropout, a known confounder of the eval-mode gap. The tau over every run with a group-bootstrap CI
stays as a secondary, labelled line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from landscape.report import finite_step as F
from landscape.report import measures as M
from landscape.report.format import PLAIN, SIGNED, interval, table
from landscape.report.geometry import LOCAL, MIN_GROUPS, group_tau
from landscape.report.ranking import PermutationTau, permutation_tau, stratified_tau, within_group_tau
from landscape.report.stats import Interval, holm_family
from landscape.report.study_data import StudyData
from landscape.study.params import Params
from landscape.study.results import Censored, run_measures

LEVEL = 0.05  # Holm-adjusted two-sided level of the variant-means test

Run = tuple[str, int]


@dataclass(frozen=True)
class RankEvidence:
    """How one measure ranks with the gap: over variant means (primary), within variants, by dropout, over runs."""

    name: str
    means: PermutationTau  # tau over the variant means, p over every ordering of the gap means
    within: PermutationTau  # tau of the within-variant residuals, gap permuted within variants
    stratified: PermutationTau  # mean of the per-stratum taus over variant means, permuted within strata
    per_stratum: dict[bool, float]  # dropout on? -> tau over that stratum's variant means
    runs: Interval  # tau over every run with the group-bootstrap CI (secondary)
    variants: int
    n_runs: int
    censored: int


def rank_evidence(data: StudyData, name: str, values: dict[Run, Censored]) -> RankEvidence | None:
    """The evidence for one measure, from the runs where it is finite; None with fewer than 2 such runs."""
    gap = {k: run_measures(r)[M.GAP].value for k, r in data.runs.items()}
    keys = [k for k in data.runs if k in values and math.isfinite(values[k].value) and math.isfinite(gap[k])]
    if len(keys) < 2:
        return None
    x = [values[k].value for k in keys]
    y = [gap[k] for k in keys]
    groups = [v for v, _ in keys]
    variants = list(dict.fromkeys(groups))
    mx = [float(np.mean([xi for xi, g in zip(x, groups, strict=True) if g == v])) for v in variants]
    my = [float(np.mean([yi for yi, g in zip(y, groups, strict=True) if g == v])) for v in variants]
    stratified, per_stratum = stratified_tau(mx, my, [data.factorial[v].dropout for v in variants])
    return RankEvidence(
        name=name,
        means=permutation_tau(mx, my),
        within=within_group_tau(x, y, groups),
        stratified=stratified,
        per_stratum=per_stratum,
        runs=group_tau(x, y, groups),
        variants=len(variants),
        n_runs=len(keys),
        censored=sum(values[k].censored for k in keys),
    )


def candidates(data: StudyData, params: Params) -> list[tuple[str, dict[Run, Censored]]]:
    """(name, per-run value) of every measure compared with the gap: the Holm family."""
    star, mode, drop = M.headline_sigma_star(data.runs[(data.variants[0], data.seeds[0])])
    tau = min(params.slice.taus)
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


def _p(test: PermutationTau) -> str:
    if math.isnan(test.p):
        return "n/a"
    return PLAIN(test.p) + ("" if test.exact else " (random)")


def _tau(t: float) -> str:
    return SIGNED(t) if math.isfinite(t) else "n/a"


def _row(e: RankEvidence, adjusted: float) -> list[str]:
    strata = " / ".join(_tau(e.per_stratum.get(on, math.nan)) for on in (False, True))
    secondary = interval(e.runs, SIGNED) if math.isfinite(e.runs.ci_low) else f"{_tau(e.runs.mean)} (no CI)"
    return [
        e.name,
        f"{_tau(e.means.tau)}, n = {e.variants}",
        _p(e.means),
        PLAIN(adjusted) if math.isfinite(adjusted) else "n/a",
        f"{_tau(e.within.tau)}, n = {e.n_runs}",
        _p(e.within),
        strata,
        _p(e.stratified),
        secondary,
        str(e.censored),
    ]


def _smallest_p(variants: int) -> str:
    return f"2/{math.factorial(variants):,}" if variants >= 2 else "n/a"


def correlations(data: StudyData, params: Params) -> str:
    evidence = [e for name, values in candidates(data, params) if (e := rank_evidence(data, name, values))]
    adjusted = holm_family({e.name: e.means.p for e in evidence})
    rows = [_row(e, adjusted[e.name]) for e in evidence]
    found = [e for e in evidence if adjusted[e.name] < LEVEL]
    finding = (
        "Holm-adjusted p < "
        f"{LEVEL:g} over the variant means: "
        + (", ".join(f"{e.name} (tau {_tau(e.means.tau)})" for e in found) if found else "none of the measures")
        + "."
    )
    n = len(data.variants)
    off = sum(not f.dropout for f in data.factorial.values())
    header = [
        "measure",
        "tau over variant means",
        "exact p",
        f"Holm p ({len(evidence)} measures)",
        "tau within variants (residuals)",
        "p (permuted within variants)",
        "tau, dropout off / on",
        "p stratified by dropout",
        "secondary: tau over all runs [group bootstrap]",
        "censored runs",
    ]
    return "\n\n".join(
        [
            "## 8. Which geometric properties go with generalization?",
            "Kendall's tau-b between each measure and the eval-mode gap (tau > 0: a larger value goes with a larger "
            "gap). The runs of one variant are a cluster, not independent draws, so the primary test ranks the "
            f"{n} variant means (mean over seeds of the measure and of the gap), with the two-sided p of permuting "
            f"the gap means over all {math.factorial(n):,} orderings, and Holm's correction over the "
            f"{len(evidence)} measures compared (the smallest possible p is {_smallest_p(n)}). Beside it: the "
            "within-variant tau, each run's deviation from its variant mean against the same for the gap, with "
            "the gap permuted within variants (a tau near 0 there says the association is between architectures, "
            "not between seeds of one architecture); and the tau stratified by dropout, which lowers the eval-mode "
            f"gap: the tau within the dropout-off and the dropout-on variants ({off} and {n - off}), their mean "
            "tested by permuting within each stratum. '(random)' marks a p from seeded random orderings where "
            "there are too many to enumerate. The local measures are the "
            f"{LOCAL}. Censored values enter as their lower bounds.",
            table(header, rows),
            finding,
            f"Secondary line: the tau over all {len(data.runs)} runs with a 95 % percentile CI from resampling whole "
            f"variants (given with >= {MIN_GROUPS} variants). With {n} clusters that bootstrap under-covers, and "
            "the runs of a variant are not independent, so it is not the evidence. With this few models "
            f"({n} variants x {len(data.seeds)} seeds) every line is a small-sample hint in the spirit of "
            "Jiang et al. (2020), not a benchmark.",
        ]
    )
