"""Questions 1 and 4, from the training-regime arm: does SGD's noise scale set the sharpness and the gap, and do
observations after epoch 1 signal how hard a run will be to train?

Everything here is fixed before the data are seen (the rules are params.yaml's ``claim_rules.regimes``, stored in
study.json and printed by the report):

- A regime cell is a variant with ``train`` overrides; its *default* is the factorial variant with the same
  network, its *noise scale* (lr / batch) relative to the default's, its *batch ratio* batch / default batch.
- Q1 claims (one Holm family, paired by training seed: cells of one family share each seed's initial weights
  and probe directions):
  - at the default batch, the noise_low cell against the noise_high cell: sharper (larger log lambda_max, log
    trace and log relative flatness, smaller sigma*) and a larger gap (Keskar et al. 2017; Jastrzebski et al.
    2018);
  - at equal noise scale, the larger batch changes neither the gap (margin +-gap_margin) nor lambda_max (log
    ratio within +-log(1 + lambda_margin)): a two-one-sided test (TOST) of equivalence.
- Q1 ranking: within one architecture, Kendall's tau of each sharpness measure with the gap over cell means
  (the runs of one cell are a cluster), exact permutation p, Holm over the measures and architectures.
- Q4 difficulty of a run: epochs to the target accuracy when reached; otherwise above every run that reached
  it, ordered by the final training loss; a diverged run above all of those. A cell is *hard* when at least
  hard_seeds of its seeds miss the target, spike (``spiked``) or diverge.
- Q4 signals, each after epoch 1: Kendall's tau with difficulty over cell means (permutation p, Holm over the
  signals) and over runs (whole-cell bootstrap CI); the final-weight measures beside them for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from landscape.report import measures as M
from landscape.report.geometry import group_tau
from landscape.report.ranking import permutation_tau
from landscape.report.schema import Claim, Estimate, RegimeCell, RegimeSummary, RunDifficulty, TauEvidence
from landscape.report.stats import (
    ALPHA,
    Interval,
    decision,
    holm_family,
    paired_difference,
    t_cdf,
    t_quantile,
    t_test_p,
)
from landscape.study.params import Params, RegimeRuleParams
from landscape.study.results import Censored, RunResults, run_measures, stability_ratio

UNIFORM_LOSS = math.log(10)  # the cross-entropy of a uniform guess over Fashion-MNIST's 10 classes

LOG_LAMBDA, LOG_TRACE, LOG_FLATNESS = "log_lambda_max", "log_trace", "log_flatness"
DIFFICULTY = "difficulty"
EARLY = {  # signal -> (what it is, its group in the reference's claim)
    "early_val_acc": ("validation accuracy after epoch 1", "learning curve"),
    "early_val_loss": ("validation loss after epoch 1", "learning curve"),
    "early_loss_slope": ("slope of the training loss over epoch 1", "learning curve"),
    "early_gap": ("gap after epoch 1", "generalization gap"),
    "early_lambda_max": ("lambda_max after epoch 1", "sharpness"),
    "early_stability": ("lambda_max x lr / (2 (1 + momentum)) after epoch 1", "sharpness"),
    "early_noise_drop": ("accuracy drop under noise after epoch 1", "noise sensitivity"),
}
FINAL = {
    M.VAL_ACC: "final validation accuracy",
    M.GAP: "final gap",
    M.LAMBDA_MAX: "final lambda_max",
}
CLAIMED_GROUPS = ("learning curve", "generalization gap", "noise sensitivity")  # the reference's three signals


def regime_cells(params: Params) -> dict[str, RegimeCell]:
    cells = {}
    for v in params.regimes():
        spec = params.variant(v)
        default = next(
            f
            for f in params.factorial()
            if (params.variant(f).conv, params.variant(f).bn, params.variant(f).dropout)
            == (spec.conv, spec.bn, spec.dropout)
        )
        mine, base = params.train_for(v), params.train_for(default)
        cells[v] = RegimeCell(
            v,
            spec.family,
            default,
            mine.lr,
            mine.batch_size,
            (mine.lr / mine.batch_size) / (base.lr / base.batch_size),
            mine.batch_size / base.batch_size,
        )
    return cells


def _log(x: float) -> float:
    return math.log(x) if x > 0 else math.nan


def regime_measures(m: Mapping[str, Censored], star: str) -> dict[str, float]:
    """The Q1 measures of one run from its ``run_measures``: logs of the positive Hessian measures, sigma* (the
    headline's ``star``; nan where censored), the gap."""
    return {
        LOG_LAMBDA: _log(m[M.LAMBDA_MAX].value),
        LOG_TRACE: _log(m[M.TRACE].value),
        LOG_FLATNESS: _log(m[M.FLATNESS].value),
        star: m[star].value if not m[star].censored else math.nan,
        M.GAP: m[M.GAP].value,
    }


def _paired(a: Mapping[int, float], b: Mapping[int, float]) -> Interval | None:
    """b - a paired by seed (``stats.paired_difference``); None where a seed lacks a finite value (no test)."""
    if not (a and b) or not all(math.isfinite(x) for x in (*a.values(), *b.values())):
        return None
    return paired_difference(b, a)


@dataclass(frozen=True)
class Q1Spec:
    """One Q1 claim: ``measure`` of cell ``b`` minus cell ``a`` (paired by seed), claimed to have ``sign``, or, with
    a ``margin``, to lie within +-margin (TOST). ``a`` or ``b`` "" where the study lacks that cell."""

    key: str
    text: str
    a: str
    b: str
    measure: str
    rule: str
    sign: int = 1
    margin: float | None = None


def tost_p(interval: Interval, margin: float) -> float:
    """The p of the two one-sided t-tests that the mean lies inside (-margin, margin): the larger of the two
    one-sided p's. nan where there is no test (n < 2); with zero spread, 0 inside the margin and 1 outside."""
    mean, std, n = interval.mean, interval.std, interval.n
    if n < 2 or not (math.isfinite(mean) and math.isfinite(std)):
        return math.nan
    if std == 0:
        return 0.0 if abs(mean) < margin else 1.0
    se = std / math.sqrt(n)
    return max(1 - t_cdf((mean + margin) / se, n - 1), t_cdf((mean - margin) / se, n - 1))


def outside_p(interval: Interval, margin: float) -> float:
    """The one-sided p that the mean lies beyond the margin on the side of the estimate (|mean| > margin)."""
    mean, std, n = interval.mean, interval.std, interval.n
    if n < 2 or not (math.isfinite(mean) and math.isfinite(std)):
        return math.nan
    if std == 0:
        return 0.0 if abs(mean) > margin else 1.0
    return 1 - t_cdf((abs(mean) - margin) / (std / math.sqrt(n)), n - 1)


def equivalence_verdict(p_in_adjusted: float, p_out_adjusted: float) -> str:
    """TOST: "agrees" (no difference) when equivalence is shown at the adjusted level, "differs" when a
    difference beyond the margin is, else "inconclusive"."""
    if p_in_adjusted < ALPHA:
        return "agrees"
    if p_out_adjusted < ALPHA:
        return "differs"
    return "inconclusive"


def tost_interval(interval: Interval) -> tuple[float, float]:
    """The 90 % t-interval behind a TOST at 5 %: equivalence at 5 % is this interval inside the margin."""
    if interval.n < 2 or not math.isfinite(interval.std):
        return math.nan, math.nan
    half = t_quantile(1 - ALPHA, interval.n - 1) * interval.std / math.sqrt(interval.n)
    return interval.mean - half, interval.mean + half


def q1_claims(
    cells: Mapping[str, RegimeCell],
    values: Mapping[tuple[str, int], dict[str, float]],
    seeds: Sequence[int],
    star: str,
    rules: RegimeRuleParams,
) -> list[Claim]:
    """The Q1 family: per architecture, the noise contrast on five measures and the batch-size equivalence on
    two. A claim whose cells are not in the study, or whose runs lack a value, has no test (p nan)."""
    specs: list[Q1Spec] = []
    for family in sorted({c.family for c in cells.values()}):
        mine = [c for c in cells.values() if c.family == family]
        at_default_batch = {round(c.noise_scale, 6): c.variant for c in mine if c.batch_ratio == 1}
        low, high = at_default_batch.get(rules.noise_low, ""), at_default_batch.get(rules.noise_high, "")
        same_noise = [c for c in mine if c.batch_ratio > 1 and math.isclose(c.noise_scale, 1.0)]
        for measure, what, sign in (
            (LOG_LAMBDA, "larger lambda_max (log)", 1),
            (LOG_TRACE, "larger trace (log)", 1),
            (LOG_FLATNESS, "larger relative flatness (log)", 1),
            (star, "smaller sigma*", -1),
            (M.GAP, "a larger gap", 1),
        ):
            key = f"{family}_low_noise_{measure if measure != star else 'sigma_star'}"
            text = f"{family}: noise scale {rules.noise_low:g} against {rules.noise_high:g} (batch as default): {what}"
            specs.append(Q1Spec(key, text, high, low, measure, f"low - high {'>' if sign > 0 else '<'} 0", sign))
        gap_m, lam_m = rules.gap_margin, rules.lambda_margin
        for c in same_noise[:1]:
            same = f"{family}: batch x{c.batch_ratio:g} at the same noise scale leaves"
            specs.append(
                Q1Spec(f"{family}_batch_gap_equal", f"{same} the gap unchanged (within +-{100 * gap_m:g} pp)",
                       c.default, c.variant, M.GAP, f"|large - default| < {gap_m:g} (TOST)", margin=gap_m)
            )  # fmt: skip
            specs.append(
                Q1Spec(f"{family}_batch_lambda_equal",
                       f"{same} lambda_max unchanged (within +-{100 * lam_m:g} %)", c.default, c.variant,
                       LOG_LAMBDA, f"|log large - log default| < log {1 + lam_m:g} (TOST)",
                       margin=math.log(1 + lam_m))
            )  # fmt: skip
    estimates, p_in, p_out = {}, {}, {}
    for q in specs:
        d = None
        if q.a and q.b:
            d = _paired(
                {s: values[(q.a, s)][q.measure] for s in seeds}, {s: values[(q.b, s)][q.measure] for s in seeds}
            )
        estimates[q.key] = d or Interval(math.nan, math.nan, math.nan, math.nan, 0)
        if q.margin is None:
            p_in[q.key] = t_test_p(d) if d else math.nan
        else:
            p_in[q.key] = tost_p(d, q.margin) if d else math.nan
            p_out[q.key] = outside_p(d, q.margin) if d else math.nan
    adjusted = holm_family(p_in)
    adjusted_out = holm_family({k: p_out.get(k, math.nan) for k in p_in})
    claims = []
    for q in specs:
        i = estimates[q.key]
        if q.margin is None:
            verdict = decision(adjusted[q.key], i.mean, q.sign)
        else:
            verdict = equivalence_verdict(adjusted[q.key], adjusted_out[q.key])
        unit = "fraction" if q.measure == M.GAP else ""
        claims.append(
            Claim(q.key, q.text, q.measure, q.rule, q.sign, unit, Estimate(i, 0), p_in[q.key], adjusted[q.key], verdict)
        )
    return claims


def _tau(
    name: str, label: str, scope: str, x: Mapping[tuple[str, int], float], y: Mapping[tuple[str, int], float]
) -> TauEvidence | None:
    keys = [k for k in x if k in y and math.isfinite(x[k]) and math.isfinite(y[k])]
    if len(keys) < 2:
        return None
    cells = list(dict.fromkeys(v for v, _ in keys))
    mx = [float(np.mean([x[k] for k in keys if k[0] == c])) for c in cells]
    my = [float(np.mean([y[k] for k in keys if k[0] == c])) for c in cells]
    test = permutation_tau(mx, my)
    runs = group_tau([x[k] for k in keys], [y[k] for k in keys], [v for v, _ in keys])
    return TauEvidence(name, label, scope, test.tau, test.p, math.nan, test.exact, len(cells), runs, len(x) - len(keys))


def _adjust(found: list[TauEvidence]) -> list[TauEvidence]:
    adjusted = holm_family({f"{e.scope}/{e.name}": e.p for e in found})
    return [
        TauEvidence(
            e.name, e.label, e.scope, e.tau, e.p, adjusted[f"{e.scope}/{e.name}"], e.exact, e.cells, e.runs, e.excluded
        )  # fmt: skip
        for e in found
    ]


def sharpness_ranking(
    cells: Mapping[str, RegimeCell], values: Mapping[tuple[str, int], dict[str, float]], star: str
) -> list[TauEvidence]:
    """Q1: within each architecture, over its default and regime cells, tau of each sharpness measure with the
    gap; diverged runs left out (their weights are not where training ended)."""
    found = []
    for family in sorted({c.family for c in cells.values()}):
        members = {c.default for c in cells.values() if c.family == family} | {
            c.variant for c in cells.values() if c.family == family
        }
        mine = {k: v for k, v in values.items() if k[0] in members}
        gap = {k: v[M.GAP] for k, v in mine.items()}
        for measure, label in ((LOG_LAMBDA, "lambda_max"), (LOG_TRACE, "trace"), (LOG_FLATNESS, "relative flatness"),
                               (star, "sigma*")):  # fmt: skip
            e = _tau(measure, label, family, {k: v[measure] for k, v in mine.items()}, gap)
            if e is not None:
                found.append(e)
    return _adjust(found)


def spiked(history_rows: Sequence[Mapping[str, float]], rules: RegimeRuleParams) -> bool:
    """A batch loss above first_epoch_spike x a uniform guess's loss in epoch 1, or above spike_factor x the previous
    epoch's running mean training loss in a later epoch."""
    previous = None
    for row in history_rows:
        if previous is None and row["batch_loss_max"] > rules.first_epoch_spike * UNIFORM_LOSS:
            return True
        if previous is not None and row["batch_loss_max"] > rules.spike_factor * previous:
            return True
        previous = row["train_loss_running"]
    return False


def difficulties(
    runs: Mapping[tuple[str, int], RunResults],
    histories: Mapping[tuple[str, int], list[dict]],
    rules: RegimeRuleParams,
):
    """Each run's difficulty (see the module docstring); the score orders them: epochs to target when reached,
    else 1000 + the final training loss, a diverged run 10^6 - its epoch of divergence."""
    out = []
    for (v, s), r in runs.items():
        t = r.train
        reached = not t.epochs_to_target.censored
        div = t.diverged.epoch if t.diverged is not None else 0
        loss = math.nan if div else t.train.loss
        score = t.epochs_to_target.value if reached else (1e6 - div if div else 1000 + loss)
        out.append(RunDifficulty(v, s, reached, t.epochs_to_target.value, loss, div,
                                 bool(div) or spiked(histories[(v, s)], rules), score))  # fmt: skip
    return out


def hard_cells(found: Sequence[RunDifficulty], hard_seeds: int) -> list[str]:
    """The cells with at least ``hard_seeds`` runs that missed the target, spiked or diverged."""
    bad: dict[str, int] = {}
    for d in found:
        bad[d.variant] = bad.get(d.variant, 0) + (not d.reached or d.spiked or d.diverged_epoch > 0)
    return [v for v, n in bad.items() if n >= hard_seeds]


def early_values(run: RunResults) -> dict[str, float]:
    e = run.train.early
    if e is None:
        return {}
    return {
        "early_val_acc": e.val_acc,
        "early_val_loss": e.val_loss,
        "early_loss_slope": e.loss_slope,
        "early_gap": e.gap,
        "early_lambda_max": e.lambda_max,
        "early_stability": e.lambda_max_scaled,
        "early_noise_drop": e.noise_drop,
    }


def signal_ranking(
    runs: Mapping[tuple[str, int], RunResults],
    finals: Mapping[tuple[str, int], Mapping[str, Censored]],
    found: Sequence[RunDifficulty],
):
    """Q4: tau of each early signal, and of each final-weight measure (``finals``: the ``run_measures`` of the runs
    that did not diverge), with difficulty over all runs (cells as the unit); two Holm families. Returns (early,
    final, verdict per claimed signal group)."""
    score = {(d.variant, d.seed): d.score for d in found}
    early = {k: early_values(r) for k, r in runs.items()}
    found_early = [
        e
        for name, (label, _) in EARLY.items()
        if (e := _tau(name, label, "all", {k: v.get(name, math.nan) for k, v in early.items()}, score)) is not None
    ]
    found_final = [
        e
        for name, label in FINAL.items()
        if (e := _tau(name, label, "all", {k: m[name].value for k, m in finals.items()}, score)) is not None
    ]
    early_adj = _adjust(found_early)
    verdicts = {}
    for group in CLAIMED_GROUPS:
        mine = [e for e in early_adj if EARLY[e.name][1] == group]
        verdicts[group] = "agrees" if any(e.p_adjusted < ALPHA for e in mine) else "inconclusive"
    return early_adj, _adjust(found_final), verdicts


def stability(runs: Mapping[tuple[str, int], RunResults]) -> tuple[dict[str, float], dict[str, float]]:
    """Per variant, the largest lambda_max x lr / (2 (1 + momentum)) over its runs and recorded epochs, with the
    scheduled lr of that epoch and with the base lr."""
    now: dict[str, float] = {}
    base: dict[str, float] = {}
    for (v, _), r in runs.items():
        t = r.train
        for q in t.sharpness:
            if math.isfinite(q.lambda_max):
                now[v] = max(now.get(v, -math.inf), stability_ratio(q.lambda_max, q.lr, t.momentum))
                base[v] = max(base.get(v, -math.inf), stability_ratio(q.lambda_max, t.lr, t.momentum))
    return now, base


def regime_summary(
    params: Params, runs: Mapping[tuple[str, int], RunResults], histories: Mapping[tuple[str, int], list[dict]]
) -> RegimeSummary | None:
    """The Q1 and Q4 analysis of the study's runs; None when the study has no regime cell."""
    cells = regime_cells(params)
    if not cells:
        return None
    seeds = list(params.study.seeds)
    first = next(iter(runs.values()))
    star = M.headline_sigma_star(first)[0]
    finals = {k: run_measures(r) for k, r in runs.items() if r.train.diverged is None}
    values = {k: regime_measures(m, star) for k, m in finals.items()}
    nan_row = dict.fromkeys((LOG_LAMBDA, LOG_TRACE, LOG_FLATNESS, star, M.GAP), math.nan)
    padded = {k: values.get(k, nan_row) for k in runs}
    rules = params.claim_rules.regimes
    found = difficulties(runs, histories, rules)
    early, final, verdicts = signal_ranking(runs, finals, found)
    now, base = stability(runs)
    return RegimeSummary(
        cells=cells,
        claims=q1_claims(cells, padded, seeds, star, rules),
        sharpness_tau=sharpness_ranking(cells, values, star),
        early_tau=early,
        final_tau=final,
        q4_verdicts=verdicts,
        difficulty=found,
        hard_cells=hard_cells(found, rules.hard_seeds),
        stability=now,
        stability_base=base,
        rules=rules,
    )
