"""Report section 8: which geometric measures go with the gap, with the variant (not the run) as the unit, from
the ``Correlations`` of metrics/study.json (``landscape.report.analysis.correlations`` computes them)."""

from __future__ import annotations

import math

from landscape.report.format import PLAIN, SIGNED, interval, table
from landscape.report.render.geometry import LOCAL
from landscape.report.schema import Rank, StudySummary


def _p(p: float, exact: bool) -> str:
    if math.isnan(p):
        return "n/a"
    return PLAIN(p) + ("" if exact else " (random)")


def _tau(t: float) -> str:
    return SIGNED(t) if math.isfinite(t) else "n/a"


def _row(e: Rank) -> list[str]:
    strata = " / ".join(_tau(e.tau_strata.get(on, math.nan)) for on in ("off", "on"))
    secondary = interval(e.runs, SIGNED) if math.isfinite(e.runs.ci_low) else f"{_tau(e.runs.mean)} (no CI)"
    return [
        e.name,
        f"{_tau(e.tau_means)}, n = {e.variants}",
        _p(e.p_means, e.exact_means),
        PLAIN(e.p_adjusted) if math.isfinite(e.p_adjusted) else "n/a",
        f"{_tau(e.tau_within)}, n = {e.n_runs}",
        _p(e.p_within, e.exact_within),
        strata,
        _p(e.p_stratified, e.exact_stratified),
        secondary,
        str(e.censored),
    ]


def _smallest_p(variants: int) -> str:
    return f"2/{math.factorial(variants):,}" if variants >= 2 else "n/a"


def correlations(study: StudySummary) -> str:
    c = study.correlations
    found = [e for e in c.rows if e.p_adjusted < c.level]
    finding = (
        f"Holm-adjusted p < {c.level:g} over the variant means: "
        + (", ".join(f"{e.name} (tau {_tau(e.tau_means)})" for e in found) if found else "none of the measures")
        + "."
    )
    n, off = c.variants, c.dropout_off
    header = [
        "measure",
        "tau over variant means",
        "exact p",
        f"Holm p ({len(c.rows)} measures)",
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
            "gap), over the factorial cells. The runs of one variant are a cluster, not independent draws, so the "
            f"primary test ranks the {n} variant means (mean over seeds of the measure and of the gap), with the "
            f"two-sided p of permuting the gap means over all {math.factorial(n):,} orderings, and Holm's correction "
            f"over the {len(c.rows)} measures compared (the smallest possible p is {_smallest_p(n)}). Beside it: the "
            "within-variant tau, each run's deviation from its variant mean against the same for the gap, with "
            "the gap permuted within variants (a tau near 0 there says the association is between architectures, "
            "not between seeds of one architecture); and the tau stratified by dropout, which lowers the eval-mode "
            f"gap: the tau within the dropout-off and the dropout-on variants ({off} and {n - off}), their mean "
            "tested by permuting within each stratum. '(random)' marks a p from seeded random orderings where "
            f"there are too many to enumerate. The local measures are the {LOCAL}. Censored values enter as their "
            "lower bounds. A dead (chance-accuracy) or diverged run enters no ranking; the n of each row counts the "
            "runs that did.",
            table(header, [_row(e) for e in c.rows]),
            finding,
            f"Secondary line: the tau over all {c.runs} live runs with a 95 % percentile CI from resampling whole "
            f"variants (given with >= {c.min_groups} variants). With {n} clusters that bootstrap under-covers, and "
            "the runs of a variant are not independent, so it is not the evidence. With this few models "
            f"({n} variants x {len(study.seeds)} seeds) every line is a small-sample hint in the spirit of "
            "Jiang et al. (2020), not a benchmark.",
        ]
    )
