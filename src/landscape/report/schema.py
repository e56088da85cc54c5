"""The study-level schema: ``metrics/study.json`` (the full table) and ``metrics/headline.json`` (the metric).

``landscape.study.results`` owns the per-run summaries and the measure names; this module owns what the
aggregate stage makes of them, and the names it adds (claim keys, the ``plots/study`` curves). Both files are
written with ``serialize.to_json`` and read back with ``serialize.from_json``; nothing parses a key string.

``study.json`` holds every measure of every variant, the B - A paired differences, the factorial effects (with
the simple effects behind each interaction whose CI excludes 0) and the claims with their text, rule, p-values
and verdict: the plots stage reads the claims from it. ``headline.json`` is the
one declared metric, small enough for `dvc metrics diff` and `dvc exp show` to print readably; its top-level
keys are no params.yaml section (DVC would show both under one name).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from landscape.errors import StudyError
from landscape.report.stats import Interval
from landscape.study.params import RegimeRuleParams
from landscape.study.runs_io import read_json
from landscape.study.serialize import from_json
from landscape.study.stage import METRICS_DIR

STUDY_JSON = METRICS_DIR / "study.json"
HEADLINE_JSON = METRICS_DIR / "headline.json"
# Every run's summaries in one git-tracked file: the per-run files live in the DVC cache (for the run-cache),
# so this is what a clone without a DVC remote can recompute the study from.
ALL_RUNS_JSON = METRICS_DIR / "all_runs.json"


@dataclass(frozen=True)
class Estimate:
    """A quantity over training seeds: its interval and how many of the values behind it were censored.

    With censored values (thresholds never reached, lower bounds) ``interval.mean`` is a bound, not an estimate,
    and the interval has no CI (std, ci_low, ci_high nan): ``bound`` says which side it is on, +1 (the quantity is
    >= the mean), -1 (<=) or 0 (no bound: censored values enter a contrast with both signs).
    """

    interval: Interval
    censored: int
    bound: int = 1


@dataclass(frozen=True)
class Claim:
    """One of the reference's claims: a signed difference over seeds, its test within the family, and its verdict."""

    key: str
    text: str
    measure: str
    rule: str  # what the estimate is of, and which side agrees
    sign: int
    unit: str  # "fraction" (an accuracy or gap, shown in pp), "pp" (stored in pp) or "" (the measure's own)
    estimate: Estimate
    p: float  # two-sided t-test of the per-seed values; nan where there is no test
    p_adjusted: float  # Holm over the claims; nan where there is no test
    verdict: str


@dataclass(frozen=True)
class Effect:
    """A factorial term over the per-seed contrasts (exploratory): estimate, t-test p, Holm p over its measure's
    7 terms (both nan where censored values make the estimate a bound)."""

    estimate: Estimate
    p: float
    p_adjusted: float


@dataclass(frozen=True)
class SimpleEffect:
    """The effect of ``factor`` at fixed levels of the other factors of an interaction (``within``), averaged over
    the remaining factor, e.g. BN within MLPs: factor "bn", within {"conv": False}."""

    factor: str
    within: dict[str, bool]
    estimate: Estimate


@dataclass(frozen=True)
class RegimeCell:
    variant: str
    family: str
    default: str  # the factorial variant with the same network and the shared train section
    lr: float
    batch_size: int
    noise_scale: float  # (lr / batch) / (default lr / default batch)
    batch_ratio: float


@dataclass(frozen=True)
class RunDifficulty:
    variant: str
    seed: int
    reached: bool
    epochs_to_target: float
    final_train_loss: float  # nan for a diverged run
    diverged_epoch: int  # 0: did not diverge
    spiked: bool
    score: float  # the difficulty order (larger: harder); see the module docstring


@dataclass(frozen=True)
class TauEvidence:
    """Kendall's tau of one measure with another (the gap, or difficulty) over cell means and over runs."""

    name: str
    label: str
    scope: str  # "mlp", "cnn" or "all"
    tau: float  # over cell means
    p: float  # permutation p over the cell means (exact up to 8 cells)
    p_adjusted: float  # Holm over the family
    exact: bool
    cells: int
    runs: Interval  # tau over runs, CI from resampling whole cells (no CI under 4 cells)
    excluded: int  # runs without a finite value (diverged in epoch 1, say)


@dataclass(frozen=True)
class RegimeSummary:
    """Questions 1 and 4 from the training-regime arm (``landscape.report.regimes``)."""

    cells: dict[str, RegimeCell]  # every regime variant
    claims: list[Claim]  # Q1, one Holm family
    sharpness_tau: list[TauEvidence]  # Q1: sharpness measures against the gap within an architecture
    early_tau: list[TauEvidence]  # Q4: signals after epoch 1 against difficulty (one Holm family)
    final_tau: list[TauEvidence]  # Q4: the final-weight measures against difficulty (their own family)
    q4_verdicts: dict[str, str]  # each claimed signal group -> agrees / inconclusive
    difficulty: list[RunDifficulty]
    hard_cells: list[str]
    stability: dict[str, float]  # variant -> largest lambda_max x lr_t / (2 (1 + momentum)) over its runs and epochs
    stability_base: dict[str, float]  # the same with the run's base lr in place of the scheduled lr_t
    rules: RegimeRuleParams  # params.yaml's claim_rules.regimes, as the analysis used them


@dataclass(frozen=True)
class StudySummary:
    """metrics/study.json: per-variant Estimates, B - A Estimates, the judged claims, the factorial effects and,
    for each interaction whose CI excludes 0, the simple effects of its factors.

    ``b_minus_a`` and ``claims`` are empty unless the study runs both A and B; ``effects`` and ``simple_effects``
    are empty unless it runs all 8 cells of the factorial with >= 2 seeds.
    """

    seeds: list[int]
    variants: dict[str, dict[str, Estimate]]  # variant -> measure -> Estimate
    b_minus_a: dict[str, Estimate]  # measure -> B - A paired over seeds
    claims: list[Claim]
    effects: dict[str, dict[str, Effect]]  # measure -> term ("conv", "bn", "conv:bn", ...) -> effect
    simple_effects: dict[str, dict[str, list[SimpleEffect]]]  # measure -> interaction ("conv:bn") -> simple effects
    loss_area_epochs: int  # the epochs 1..k of the val_loss_area measure every run has (claim_rules.early_epochs)
    regimes: RegimeSummary | None = None  # questions 1 and 4; None without regime cells

    def get(self, variant: str, measure: str) -> Estimate | None:
        """The Estimate of ``measure`` for ``variant``, or None where the study has none."""
        return self.variants.get(variant, {}).get(measure)

    def effect(self, measure: str, term: str) -> Interval | None:
        """The interval of a factorial term (no CI where censored values make it a bound), or None."""
        found = self.effects.get(measure, {}).get(term)
        return None if found is None else found.estimate.interval

    def tested_effect(self, measure: str, term: str) -> Effect | None:
        return self.effects.get(measure, {}).get(term)


@dataclass(frozen=True)
class ClaimHeadline:
    """A claim's estimate with its 95 % CI (all null where a censored seed leaves no valid estimate), its
    Holm-adjusted p (null where there is no test; the raw p is in study.json) and its verdict."""

    estimate: float
    ci_low: float
    ci_high: float
    p_adjusted: float
    verdict: str


@dataclass(frozen=True)
class MeanCI:
    """A per-variant mean over training seeds with its 95 % t-CI (null where the mean is a bound). Separate keys,
    not a [low, high] list: DVC leaves lists out of `dvc metrics` and `dvc exp show`."""

    mean: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Headline:
    """metrics/headline.json: the study's answers in a few numbers. Every other measure, std, raw p and the
    factorial effects are in study.json and the report."""

    n_seeds: int
    claims: dict[str, ClaimHeadline]  # claim key -> estimate, CI, adjusted p, verdict
    by_variant: dict[str, dict[str, MeanCI]]  # variant -> headline measure -> mean, CI (a lower bound if censored)
    censored: dict[str, dict[str, int]]  # variant -> sigma* measure -> seeds that never reached it
    regime_claims: dict[str, str]  # question 1: claim key -> verdict (estimates and p in study.json)
    early_signals: dict[str, str]  # question 4: the reference's signal group -> verdict


STEP_CURVATURE = "finite_step_curvature"  # added by the aggregate: each run's kappa at the slice grid step


def val_loss_area(epochs: int) -> str:
    """The measure added by the aggregate from each run's history: the area under the validation loss over
    epochs 1..``epochs`` (trapezoid; nats x epochs)."""
    return f"val_loss_area_epochs_1_{epochs}"


def above_90(mode: str) -> str:
    """The key of the claim that B stays above 90 % under moderate ``mode`` noise."""
    return f"above_90_{mode}"


def drop_smaller(mode: str) -> str:
    """The key of the claim that B's accuracy drop under moderate ``mode`` noise is smaller than A's."""
    return f"drop_smaller_{mode}"


def noise_tolerant(mode: str) -> str:
    """The key of the claim that B's sigma* under ``mode`` noise is larger than A's."""
    return f"noise_tolerant_{mode}"


def drop_curve(mode: str, bn: str) -> str:
    """plots/study/<name>.csv of the accuracy drop under ``mode`` noise with BN ``bn``, per sigma."""
    return f"drop_{mode}_{bn}"


def slice_curve(bn: str) -> str:
    """plots/study/<name>.csv of the validation slices' loss rise with BN ``bn``, per alpha."""
    return f"slice_val_{bn}"


def path_curve(split: str) -> str:
    """plots/study/<name>.csv of the path loss on ``split``, per t."""
    return f"path_{split}"


def read_study(path: Path = STUDY_JSON) -> StudySummary:
    """metrics/study.json as a StudySummary; a missing, malformed or outdated file is a StudyError naming the fix."""
    try:
        return from_json(StudySummary, read_json(path))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise StudyError(
            f"{path} does not match what the aggregate stage writes ({type(e).__name__}: {e}); rerun it: dvc repro"
        ) from None
