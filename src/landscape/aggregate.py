"""From runs to evidence: means and 95 % CIs over training seeds, paired differences, factorial effects,
and the verdicts on the reference's claims, each from a rule fixed before the numbers are seen.

The unit of replication is the training seed. Spreads over noise draws or directions within a run are
measurement noise and stay in the per-run summaries; nothing here mixes them into a CI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from landscape.params import BN_MODES, VariantParams
from landscape.results import (
    CURVATURE_EXACT,
    EPOCHS_TO_TARGET,
    GAP,
    GAP_RUNNING,
    VAL_ACC,
    Censored,
    RunResults,
    accuracy_at,
    curvature_fit,
    run_measures,
    sigma_star,
)
from landscape.stats import Interval, factorial_effects, mean_ci, paired_difference, verdict

MODEL_A, MODEL_B = "mlp", "cnn"


@dataclass(frozen=True)
class Estimate:
    """A measure over training seeds: its interval and how many seeds were censored (lower bounds)."""

    interval: Interval
    censored: int

    def to_json(self) -> dict:
        return {**self.interval.to_json(), "censored": self.censored}

    @classmethod
    def from_json(cls, d: Mapping) -> Estimate:
        return cls(Interval.from_json(d), int(d["censored"]))


def estimate(values: list[Censored]) -> Estimate:
    return Estimate(mean_ci([v.value for v in values]), sum(v.censored for v in values))


@dataclass(frozen=True)
class Claim:
    """One of the reference's claims, as a signed difference whose CI decides the verdict."""

    key: str
    text: str
    measure: str
    rule: str  # what the CI is of, and which side agrees
    sign: int
    estimate: Estimate
    verdict: str

    def to_json(self) -> dict:
        return {"measure": self.measure, "claimed_sign": self.sign, **self.estimate.to_json(), "verdict": self.verdict}


def judged(key: str, text: str, measure: str, rule: str, sign: int, est: Estimate) -> Claim:
    """The verdict of ``est`` under ``stats.verdict``; a censored seed makes a claim inconclusive."""
    v = "inconclusive" if est.censored else verdict(est.interval, sign)
    return Claim(key, text, measure, rule, sign, est, v)


def per_variant(measures: Mapping[tuple[str, int], dict[str, Censored]], variants: list[str], seeds: list[int]):
    """variant -> measure -> Estimate over seeds, for the measures every seed of that variant has."""
    out: dict[str, dict[str, Estimate]] = {}
    for v in variants:
        names = set.intersection(*(set(measures[(v, s)]) for s in seeds))
        out[v] = {m: estimate([measures[(v, s)][m] for s in seeds]) for m in sorted(names)}
    return out


def paired(measures, a: str, b: str, seeds: list[int], measure: str) -> Estimate:
    """b - a per training seed, then the t-interval of the differences."""
    xa = {s: measures[(a, s)][measure] for s in seeds}
    xb = {s: measures[(b, s)][measure] for s in seeds}
    interval = paired_difference({s: xb[s].value for s in seeds}, {s: xa[s].value for s in seeds})
    return Estimate(interval, sum(xa[s].censored + xb[s].censored for s in seeds))


def effects(measures, factorial: Mapping[str, VariantParams], seeds: list[int], measure: str) -> dict[str, Interval]:
    """Main effects and interactions of conv, BN and dropout on ``measure`` (needs all 8 cells)."""
    cells = {
        (f.conv, f.bn, f.dropout): {s: measures[(v, s)][measure].value for s in seeds} for v, f in factorial.items()
    }
    return factorial_effects(cells)


@dataclass(frozen=True)
class ClaimSpec:
    """A claim written down before the numbers: ``measure`` of B minus A (``level`` None), or of B minus
    ``level``, is claimed to have sign ``sign``."""

    key: str
    text: str
    measure: str
    rule: str
    sign: int
    level: float | None = None


def claim_specs(moderate_sigma: Mapping[str, float], drop: float, modes: list[str]) -> list[ClaimSpec]:
    """The reference's claims about Model B (cnn) against Model A (mlp). Noise claims use BN frozen (every
    variant has it); "moderate" noise is a sigma > 0 named in params."""
    fit = curvature_fit("frozen", "val")
    return [
        ClaimSpec("val_acc", "B's validation accuracy is higher than A's", VAL_ACC, "B - A > 0", 1),
        ClaimSpec("gap_smaller", "B's generalization gap is smaller than A's", GAP, "B - A < 0", -1),
        ClaimSpec("gap_negative", "B's gap is negative (reference: -0.0016)", GAP, "B < 0", -1, 0.0),
        ClaimSpec(
            "gap_running_negative",
            "B's gap is negative, train accuracy measured as the running average",
            GAP_RUNNING,
            "B < 0",
            -1,
            0.0,
        ),  # fmt: skip
        *[
            ClaimSpec(
                f"above_90_{mode}",
                f"B stays above 90 % under moderate {mode} noise (sigma = {sigma:g}, BN frozen)",
                accuracy_at(mode, "frozen", sigma),
                "B - 0.90 > 0 (the CI's lower bound above 90 %)",
                1,
                0.90,
            )  # fmt: skip
            for mode, sigma in moderate_sigma.items()
        ],
        *[
            ClaimSpec(
                f"noise_tolerant_{mode}",
                f"B is more noise-tolerant: larger sigma* for a {100 * drop:g} pp drop under {mode} noise",
                sigma_star(mode, "frozen", drop),
                "B - A > 0",
                1,
            )  # fmt: skip
            for mode in modes
        ],
        ClaimSpec(
            "a_steeper",
            "A's slice is steeper: larger exact curvature d^T H d along filter-normalized directions",
            CURVATURE_EXACT,
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
            "B trains faster: fewer epochs to reach the target validation accuracy",
            EPOCHS_TO_TARGET,
            "B - A < 0",
            -1,
        ),  # fmt: skip
    ]


def claims(
    measures, seeds: list[int], moderate_sigma: Mapping[str, float], drop: float, modes: list[str]
) -> list[Claim]:
    """Every claim of ``claim_specs`` judged on paired differences over ``seeds`` (or B's own values)."""
    out = []
    for c in claim_specs(moderate_sigma, drop, modes):
        if c.level is None:
            est = paired(measures, MODEL_A, MODEL_B, seeds, c.measure)
        else:
            values = [measures[(MODEL_B, s)][c.measure] for s in seeds]
            est = estimate([Censored(v.value - c.level, v.censored) for v in values])
        out.append(judged(c.key, c.text, c.measure, c.rule, c.sign, est))
    return out


def study_json(
    runs: Mapping[tuple[str, int], RunResults],
    variants: list[str],
    seeds: list[int],
    factorial: Mapping[str, VariantParams],
    moderate_sigma: Mapping[str, float],
    drop: float,
    modes: list[str],
) -> dict:
    """``metrics/study.json``: per-variant estimates, B - A paired differences, factorial effects, claims."""
    measures = {k: run_measures(r) for k, r in runs.items()}
    table = per_variant(measures, variants, seeds)
    out: dict = {
        "seeds": list(seeds),
        "variants": {v: {m: e.to_json() for m, e in t.items()} for v, t in table.items()},
    }
    if MODEL_A in variants and MODEL_B in variants:
        common = sorted(set(table[MODEL_A]) & set(table[MODEL_B]))
        out["b_minus_a"] = {m: paired(measures, MODEL_A, MODEL_B, seeds, m).to_json() for m in common}
        out["claims"] = {c.key: c.to_json() for c in claims(measures, seeds, moderate_sigma, drop, modes)}
    cells = {(f.conv, f.bn, f.dropout) for f in factorial.values()}
    if len(seeds) >= 2 and len(cells) == 8 and set(factorial) <= set(variants):
        shared = sorted(set.intersection(*(set(table[v]) for v in factorial)))
        out["effects"] = {
            m: {k: i.to_json() for k, i in effects(measures, factorial, seeds, m).items()} for m in shared
        }
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
            out[f"drop_{mode}_{bn}"] = curve_table(drops, "sigma", "drop")
    for bn in BN_MODES:
        rises = {
            v: f.assign(rise=rise_from_zero(f, "alpha", "direction", "loss"))
            for v, f in ((v, f[f["bn"] == bn]) for v, f in slices.items())
            if len(f)
        }
        if rises:
            out[f"slice_val_{bn}"] = curve_table(rises, "alpha", "rise")
    for split in ("train", "val"):
        out[f"path_{split}"] = curve_table({v: f[f["split"] == split] for v, f in paths.items()}, "t", "loss")
    return out
