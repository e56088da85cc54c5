"""From runs to evidence: means and 95 % CIs over training seeds, paired differences, factorial effects, and the
verdicts on the reference's claims: each claim one t-test, the family Holm-adjusted (``stats.VERDICT_RULE``).

The unit of replication is the training seed. Spreads over noise draws or directions within a run are
measurement noise and stay in the per-run summaries; nothing here mixes them into a CI. A censored value (a
threshold never reached) is a lower bound: whatever contains one is a bound with no CI, and no test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np
import pandas as pd

from landscape.errors import StudyError
from landscape.report.analysis.finite_step import step_curvature
from landscape.report.analysis.stats import (
    TERMS,
    Cell,
    contrast,
    decision,
    factorial_effects,
    holm_family,
    mean_ci,
    paired_difference,
    seeds_for_power,
    simple_weights,
    t_test_p,
    term_weights,
    verdict,
)
from landscape.report.schema import (
    MODEL_A,
    MODEL_B,
    STEP_CURVATURE,
    Claim,
    ClaimHeadline,
    Effect,
    Estimate,
    Headline,
    MeanCI,
    SimpleEffect,
    StudySummary,
    above_90,
    drop_curve,
    drop_smaller,
    noise_tolerant,
    path_curve,
    slice_curve,
    val_loss_area,
)
from landscape.report.terms import Interval
from landscape.study.params import BN_MODES, ClaimRuleParams, VariantParams
from landscape.study.results import (
    GAP,
    GAP_RUNNING,
    VAL_ACC,
    Censored,
    RunResults,
    accuracy_at,
    curvature_fit,
    drop_at,
    run_measures,
    sigma_star,
)

NO_INTERVAL = Interval(math.nan, math.nan, math.nan, math.nan, 0)


def bounded(interval: Interval, censored_weights: Sequence[float]) -> Estimate:
    """``interval`` as an Estimate. Where censored values (lower bounds) entered it, with ``censored_weights`` in
    the per-seed sums behind it, its mean is a bound: >= where every weight is > 0, <= where every one is < 0, no
    bound where they differ in sign. A bound keeps its mean and loses its std and CI."""
    if not censored_weights:
        return Estimate(interval, 0)
    side = 1 if all(w > 0 for w in censored_weights) else -1 if all(w < 0 for w in censored_weights) else 0
    return Estimate(Interval(interval.mean, math.nan, math.nan, math.nan, interval.n), len(censored_weights), side)


def estimate(values: list[Censored]) -> Estimate:
    """mean_ci over seeds; with a censored value the mean is a lower bound, with no CI."""
    return bounded(mean_ci([v.value for v in values]), [1.0 for v in values if v.censored])


def per_variant(measures: Mapping[tuple[str, int], dict[str, Censored]], variants: list[str], seeds: list[int]):
    """variant -> measure -> Estimate over seeds, for the measures every seed of that variant has."""
    out: dict[str, dict[str, Estimate]] = {}
    for v in variants:
        names = set.intersection(*(set(measures[(v, s)]) for s in seeds))
        out[v] = {m: estimate([measures[(v, s)][m] for s in seeds]) for m in sorted(names)}
    return out


def paired(measures, a: str, b: str, seeds: list[int], measure: str) -> Estimate:
    """b - a per training seed, then the t-interval of the differences (a bound where a value is censored)."""
    xa = {s: measures[(a, s)][measure] for s in seeds}
    xb = {s: measures[(b, s)][measure] for s in seeds}
    interval = paired_difference({s: xb[s].value for s in seeds}, {s: xa[s].value for s in seeds})
    return bounded(interval, [1.0 for s in seeds if xb[s].censored] + [-1.0 for s in seeds if xa[s].censored])


def _cells(measures, factorial: Mapping[str, VariantParams], seeds: list[int], measure: str):
    return {(f.conv, f.bn, f.dropout): {s: measures[(v, s)][measure] for s in seeds} for v, f in factorial.items()}


def _contrast_bound(cells: Mapping[Cell, Mapping[int, Censored]], weights: Mapping[Cell, float]) -> list[float]:
    return [w for c, w in weights.items() if w for x in cells[c].values() if x.censored]


def effects(measures, factorial: Mapping[str, VariantParams], seeds: list[int], measure: str) -> dict[str, Effect]:
    """Main effects and interactions of conv, BN and dropout on ``measure`` (needs all 8 cells), each with its
    t-test p and Holm's adjustment over the 7 terms; a term with a censored value is a bound, with no test."""
    cells = _cells(measures, factorial, seeds, measure)
    intervals = factorial_effects({c: {s: x.value for s, x in by_seed.items()} for c, by_seed in cells.items()})
    found = {t: bounded(intervals[t], _contrast_bound(cells, term_weights(t))) for t in TERMS}
    p = {t: math.nan if e.censored else t_test_p(e.interval) for t, e in found.items()}
    adjusted = holm_family(p)
    return {t: Effect(e, p[t], adjusted[t], None if e.censored else power_seeds(e.interval)) for t, e in found.items()}


def power_seeds(interval: Interval) -> int | None:
    """The seeds a paired t-test would need for 80 % power at the 5 % level if the mean and spread were these; None
    where there is no CI or more than 1000 would be needed."""
    if interval.n < 2 or not (math.isfinite(interval.ci_low) and math.isfinite(interval.ci_high)):
        return None
    return seeds_for_power(interval)


def simple_effects(
    measures, factorial: Mapping[str, VariantParams], seeds: list[int], measure: str, found: Mapping[str, Effect]
) -> dict[str, list[SimpleEffect]]:
    """For each interaction of ``found`` whose CI excludes 0, the simple effects of each of its factors at every
    level of its other factors (averaged over the factor not in it), e.g. conv:bn -> BN within MLPs and within
    CNNs, conv without and with BN."""
    cells = _cells(measures, factorial, seeds, measure)
    values = {c: {s: x.value for s, x in by_seed.items()} for c, by_seed in cells.items()}
    out: dict[str, list[SimpleEffect]] = {}
    for term in TERMS:
        factors = term.split(":")
        if len(factors) < 2 or verdict(found[term].estimate.interval, 1) == "inconclusive":
            continue
        out[term] = []
        for factor in factors:
            others = [f for f in factors if f != factor]
            for levels in product((False, True), repeat=len(others)):
                within = dict(zip(others, levels, strict=True))
                weights = simple_weights(factor, within)
                simple = bounded(contrast(values, weights), _contrast_bound(cells, weights))
                out[term].append(SimpleEffect(factor, within, simple))
    return out


def loss_area(history: pd.DataFrame, epochs: int) -> float:
    """Area under one run's validation loss over epochs 1..``epochs`` (trapezoid, one point per epoch; nats x
    epochs). ``history`` is the run's history.csv; an epoch missing from it -> ValueError."""
    loss = history.set_index("epoch")["val_loss"]
    missing = [e for e in range(1, epochs + 1) if e not in loss.index]
    if missing:
        raise ValueError(f"loss_area: the history has no validation loss at epoch(s) {missing}")
    y = loss.loc[list(range(1, epochs + 1))].to_numpy(dtype=float)
    return float((y[:-1] + y[1:]).sum() / 2)


def moderate_sigma(runs: Sequence[RunResults], mode: str, drop: float) -> float | None:
    """The smallest grid sigma > 0 at which the mean over ``runs`` (one variant's seeds) of the accuracy drop under
    ``mode`` noise, BN frozen, reaches ``drop`` (a fraction); None where no sigma of the grid does."""
    curves = [{p.sigma: p.drop.mean for p in r.robustness.curves[mode]["frozen"].points.values()} for r in runs]
    for sigma in sorted(set.intersection(*(set(c) for c in curves))):
        if sigma > 0 and np.mean([c[sigma] for c in curves]) >= drop - 1e-12:
            return sigma
    return None


@dataclass(frozen=True)
class ClaimSpec:
    """A claim written down as a rule: ``measure`` of B minus A (``level`` None), or of B minus ``level``, is
    claimed to have sign ``sign``. ``measure`` "" where the rule found nowhere to judge it (no test)."""

    key: str
    text: str
    measure: str
    rule: str
    sign: int
    unit: str = ""  # see Claim.unit
    level: float | None = None


def noise_specs(mode: str, sigma: float | None, rules: ClaimRuleParams) -> list[ClaimSpec]:
    """The two claims judged at "moderate" ``mode`` noise: B above 90 %, and B's drop smaller than A's."""
    where = (
        f"sigma = {sigma:g}, the smallest grid sigma at which `{rules.reference}`'s mean drop reaches "
        f"{100 * rules.moderate_drop:g} pp"
        if sigma is not None
        else f"no grid sigma: `{rules.reference}`'s mean drop never reaches {100 * rules.moderate_drop:g} pp"
    )
    at = (lambda name: name(mode, "frozen", sigma)) if sigma is not None else (lambda name: "")
    return [
        ClaimSpec(
            above_90(mode),
            f"B stays above 90 % under moderate {mode} noise ({where}; BN frozen)",
            at(accuracy_at),
            "B - 0.90 > 0",
            1,
            "fraction",
            0.90,
        ),
        ClaimSpec(
            drop_smaller(mode),
            f"B's accuracy drops less than A's under moderate {mode} noise ({where}; BN frozen)",
            at(drop_at),
            "B - A < 0 (drop, pp)",
            -1,
            "pp",
        ),
    ]


def claim_specs(
    moderate: Mapping[str, float | None], drop: float, modes: list[str], rules: ClaimRuleParams
) -> list[ClaimSpec]:
    """The reference's claims about Model B (cnn) against Model A (mlp). Noise claims use BN frozen (every
    variant has it); ``moderate`` gives each mode's sigma chosen by ``moderate_sigma`` (None: none on the grid)."""
    fit = curvature_fit("frozen", "val")
    k = rules.early_epochs
    return [
        ClaimSpec("val_acc", "B's validation accuracy is higher than A's", VAL_ACC, "B - A > 0", 1, "fraction"),
        ClaimSpec("gap_smaller", "B's generalization gap is smaller than A's", GAP, "B - A < 0", -1, "fraction"),
        ClaimSpec("gap_negative", "B's gap is negative (reference: -0.0016)", GAP, "B < 0", -1, "fraction", 0.0),
        ClaimSpec(
            "gap_running_negative",
            "B's gap is negative, train accuracy measured as the running average",
            GAP_RUNNING,
            "B < 0",
            -1,
            "fraction",
            0.0,
        ),  # fmt: skip
        *[spec for mode, sigma in moderate.items() for spec in noise_specs(mode, sigma, rules)],
        *[
            ClaimSpec(
                noise_tolerant(mode),
                f"B is more noise-tolerant: larger sigma* for a {100 * drop:g} pp drop under {mode} noise",
                sigma_star(mode, "frozen", drop),
                "B - A > 0",
                1,
            )  # fmt: skip
            for mode in modes
        ],
        ClaimSpec(
            "a_steeper",
            "A's slice is steeper: larger finite-step curvature kappa(h) = (L(h) + L(-h) - 2 L(0)) / h^2 at the "
            "slice grid step h along filter-normalized directions (training subset, BN frozen)",
            STEP_CURVATURE,
            "B - A < 0",
            -1,
        ),  # fmt: skip
        ClaimSpec(
            "a_steeper_fit",
            "A's slice is steeper: larger fitted curvature on validation (BN frozen)",
            fit,
            "B - A < 0",
            -1,
        ),  # fmt: skip
        ClaimSpec(
            "b_faster",
            f"B trains faster: a smaller area under the validation loss over epochs 1-{k} (trapezoid, nats x epochs)",
            val_loss_area(k),
            "B - A < 0",
            -1,
        ),  # fmt: skip
    ]


def judge(specs: Sequence[ClaimSpec], estimates: Sequence[Estimate]) -> list[Claim]:
    """The family's verdicts (``stats.VERDICT_RULE``): each claim's t-test p, Holm over all of them, and the
    decision at the adjusted p. A claim with no test (censored, n < 2, no measure) has p nan and counts as p = 1."""
    p = {
        s.key: math.nan if e.censored or not s.measure else t_test_p(e.interval)
        for s, e in zip(specs, estimates, strict=True)
    }
    adjusted = holm_family(p)
    return [
        Claim(
            s.key,
            s.text,
            s.measure,
            s.rule,
            s.sign,
            s.unit,
            e,
            p[s.key],
            adjusted[s.key],
            decision(adjusted[s.key], e.interval.mean, s.sign),
        )  # fmt: skip
        for s, e in zip(specs, estimates, strict=True)
    ]


def claims(
    measures,
    seeds: list[int],
    moderate: Mapping[str, float | None],
    drop: float,
    modes: list[str],
    rules: ClaimRuleParams,
) -> list[Claim]:
    """Every claim of ``claim_specs`` judged on paired differences over ``seeds`` (or B's own values).

    A claim on a measure that some run lacks is refused (ValueError): sigma = 0, for one, is no measure, since
    an accuracy without noise cannot fail a noise claim."""
    specs = claim_specs(moderate, drop, modes, rules)
    estimates = []
    for c in specs:
        if not c.measure:
            estimates.append(Estimate(NO_INTERVAL, 0))
            continue
        lacking = [k for k in ((v, s) for v in (MODEL_A, MODEL_B) for s in seeds) if c.measure not in measures[k]]
        if lacking:
            raise ValueError(
                f"claim {c.key!r} is judged on {c.measure}, which run(s) {lacking} do not have "
                "(no measure is taken at sigma = 0)"
            )
        if c.level is None:
            estimates.append(paired(measures, MODEL_A, MODEL_B, seeds, c.measure))
        else:
            b = [measures[(MODEL_B, s)][c.measure] for s in seeds]
            estimates.append(estimate([Censored(x.value - c.level, x.censored) for x in b]))
    return judge(specs, estimates)


def finite(measures: Mapping[str, Censored]) -> dict[str, Censored]:
    """The measures a run has a finite number for. ``run_measures`` already leaves out what a run lacks (the
    running-average gap of a run that diverged in epoch 1); this is the guard that keeps any other NaN or inf, such
    as a probe's on weights that overflow, out of metrics/: the measure is then missing for that run, and a claim
    that needs it says so."""
    return {k: c for k, c in measures.items() if math.isfinite(c.value)}


def study_summary(
    runs: Mapping[tuple[str, int], RunResults],
    history: Mapping[str, pd.DataFrame],
    slices: Mapping[str, pd.DataFrame],
    variants: list[str],
    seeds: list[int],
    factorial: Mapping[str, VariantParams],
    rules: ClaimRuleParams,
    drop: float,
    modes: list[str],
) -> StudySummary:
    """``metrics/study.json``: per-variant estimates, B - A paired differences, the claims, factorial effects.

    ``history`` maps every variant and ``slices`` each factorial cell to its runs' history.csv and slice.csv rows (a
    ``seed`` column): the validation-loss area of the speed claim and the finite-step curvature of the steepness
    claim come from them, and join every run's measures. The sections beyond these (``analyse_study``) are left
    empty here."""
    area, k = val_loss_area(rules.early_epochs), rules.early_epochs

    def added(v: str, s: int) -> dict[str, Censored]:
        rows = history[v][history[v]["seed"] == s]
        out = {}
        if v in slices:  # a factorial cell: the only ones with slices
            out[STEP_CURVATURE] = Censored(step_curvature(slices[v][slices[v]["seed"] == s]), False)
        if len(rows) >= k:  # a run that diverged before epoch k has no such area
            out[area] = Censored(loss_area(rows, k), False)
        return out

    measures = {(v, s): finite(run_measures(r) | added(v, s)) for (v, s), r in runs.items()}
    table = per_variant(measures, variants, seeds)
    b_minus_a: dict[str, Estimate] = {}
    judged_claims: list[Claim] = []
    if MODEL_A in variants and MODEL_B in variants:
        if rules.reference not in variants:
            raise StudyError(
                f"params.yaml: 'claim_rules.reference' = '{rules.reference}' is not in study.variants {variants}, "
                "so no run of it sets the moderate noise level; add it, or name one of them"
            )
        common = sorted(set(table[MODEL_A]) & set(table[MODEL_B]))
        b_minus_a = {m: paired(measures, MODEL_A, MODEL_B, seeds, m) for m in common}
        reference = [runs[(rules.reference, s)] for s in seeds]
        moderate = {mode: moderate_sigma(reference, mode, rules.moderate_drop) for mode in modes}
        judged_claims = claims(measures, seeds, moderate, drop, modes, rules)
    cells = {(f.conv, f.bn, f.dropout) for f in factorial.values()}
    found: dict[str, dict[str, Effect]] = {}
    simple: dict[str, dict[str, list[SimpleEffect]]] = {}
    if len(seeds) >= 2 and len(cells) == 8 and set(factorial) <= set(variants):
        shared = sorted(set.intersection(*(set(table[v]) for v in factorial)))
        found = {m: effects(measures, factorial, seeds, m) for m in shared}
        simple = {m: s for m in shared if (s := simple_effects(measures, factorial, seeds, m, found[m]))}
    return StudySummary(
        list(seeds), table, b_minus_a, judged_claims, found, simple, k, list(factorial), [], None, None, None, None, {}
    )


def claim_headline(c: Claim) -> ClaimHeadline:
    """A claim's estimate, CI, p-values and verdict; with a censored seed the difference is a bound, no estimate,
    so the numbers are null."""
    i = c.estimate.interval
    if c.estimate.censored:
        return ClaimHeadline(math.nan, math.nan, math.nan, math.nan, c.verdict)
    return ClaimHeadline(i.mean, i.ci_low, i.ci_high, c.p_adjusted, c.verdict)


def headline(summary: StudySummary, first: RunResults, variants: Sequence[str]) -> Headline:
    """``metrics/headline.json`` from the full table: each claim's estimate, CI, Holm-adjusted p and verdict; per
    variant the mean and CI over seeds of validation accuracy, gap and sigma* (chosen from ``first``, a run of
    the study, as the report does) and how many seeds left its sigma* censored, for ``variants`` (the factorial
    cells); the verdicts of questions 1 and 4 (``question_verdicts``)."""
    star = headline_sigma_star(first)[0]
    chosen = [VAL_ACC, GAP, star]

    def mean_ci(e: Estimate) -> MeanCI:
        return MeanCI(e.interval.mean, e.interval.ci_low, e.interval.ci_high)

    return Headline(
        n_seeds=len(summary.seeds),
        claims={c.key: claim_headline(c) for c in summary.claims},
        by_variant={
            v: {m: mean_ci(t[m]) for m in chosen if m in t} for v, t in summary.variants.items() if v in variants
        },
        censored={v: {star: t[star].censored} for v, t in summary.variants.items() if star in t and v in variants},
        questions=question_verdicts(summary.questions),
    )


def question_verdicts(questions: Mapping) -> dict[str, str]:
    """ "<question>_<key>" -> verdict for every claim or signal of the questions' dict that has one: each list entry
    of a question with a ``verdict`` and a ``key`` or ``name``."""
    out = {}
    for q, found in questions.items():
        if not isinstance(found, Mapping):
            continue
        for rows in found.values():
            for row in rows if isinstance(rows, list) else []:
                if isinstance(row, Mapping) and isinstance(row.get("verdict"), str):
                    name = row.get("key", row.get("name"))
                    if name is not None:
                        out[f"{q}_{name}".replace(".", "_")] = row["verdict"]
    return out


def curve_table(frames: Mapping[str, pd.DataFrame], x: str, y: str) -> pd.DataFrame:
    """Long format for `dvc plots`: one row per (variant, x) with the mean of ``y`` over every row of that variant
    at that x (its seeds, directions or trials). ``frames`` maps variant -> long-format rows of all its runs.
    The `by_variant` plot template colours the lines by the ``variant`` column."""
    parts = [f.groupby(x, as_index=False)[y].mean().assign(variant=v) for v, f in frames.items()]
    return pd.concat(parts, ignore_index=True)[[x, "variant", y]]


def rise_from_zero(rows: pd.DataFrame, x: str, key: str, y: str) -> np.ndarray:
    """``y`` of each row minus ``y`` at ``x`` == 0 on the same curve (the same seed and ``key``)."""
    zero = rows[rows[x] == 0].set_index(["seed", key])[y]
    return rows[y].to_numpy() - zero.reindex(pd.MultiIndex.from_frame(rows[["seed", key]])).to_numpy()


def drop_rows(runs: list[RunResults], mode: str, bn: str) -> pd.DataFrame | None:
    """Each run's mean accuracy drop (pp) at every sigma of its noise curve, or None where a run lacks the curve
    (no BN to recalibrate)."""
    curves = [r.robustness.curves.get(mode, {}).get(bn) for r in runs]
    if any(c is None for c in curves):
        return None
    return pd.DataFrame([{"sigma": p.sigma, "drop": 100 * p.drop.mean} for c in curves for p in c.points.values()])


def study_curves(
    history: Mapping[str, pd.DataFrame],
    slices: Mapping[str, pd.DataFrame],
    paths: Mapping[str, pd.DataFrame],
    runs: Mapping[str, list[RunResults]],
) -> dict[str, pd.DataFrame]:
    """plots/study/<name>.csv from each variant's rows (all seeds; ``slices`` on the validation split) and typed
    runs: learning curves, noise drops, slice rises from alpha = 0, and the path, each the mean over runs."""
    out = {"val_acc": curve_table(history, "epoch", "val_acc"), "gap": curve_table(history, "epoch", "gap")}
    modes = sorted({mode for rs in runs.values() for r in rs for mode in r.robustness.curves})
    for mode, bn in ((m, b) for m in modes for b in BN_MODES):
        drops = {v: f for v, f in ((v, drop_rows(rs, mode, bn)) for v, rs in runs.items()) if f is not None}
        if drops:
            out[drop_curve(mode, bn)] = curve_table(drops, "sigma", "drop")
    for bn in BN_MODES:
        rises = {
            v: f.assign(rise=rise_from_zero(f, "alpha", "direction", "loss"))
            for v, f in ((v, f[f["bn"] == bn]) for v, f in slices.items())
            if len(f)
        }
        if rises:
            out[slice_curve(bn)] = curve_table(rises, "alpha", "rise")
    for split in ("train", "val"):
        out[path_curve(split)] = curve_table({v: f[f["split"] == split] for v, f in paths.items()}, "t", "loss")
    return out


def headline_sigma_star(run: RunResults) -> tuple[str, str, float]:
    """(measure, mode, drop) of the headline sigma*: filter noise (else the first mode), BN frozen, smallest drop.
    The same choice as the aggregate's noise-tolerance claim."""
    curves = run.robustness.curves
    mode = "filter" if "filter" in curves else next(iter(curves))
    drop = min(curves[mode]["frozen"].drops.values())
    return sigma_star(mode, "frozen", drop), mode, drop
