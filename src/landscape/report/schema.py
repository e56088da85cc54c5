"""The study-level schema: ``metrics/study.json`` (the full table) and ``metrics/headline.json`` (the metric).

``landscape.study.results`` owns the per-run summaries and the measure names; this module owns what the
aggregate stage makes of them, and the names it adds (claim keys, the ``plots/study`` curves). Both files are
written with ``serialize.to_json`` and read back with ``serialize.from_json``; nothing parses a key string.

``study.json`` holds every number the report and the figures show, computed by the aggregate stage (the analysis
pass): every measure of every variant, the B - A paired differences, the factorial effects (with the simple effects
behind each interaction whose CI excludes 0), the claims with their text, rule, p-values and verdict, what was run,
the settings the report states, sections 6 to 9 (``Geometry``, ``Correlations``), the figures' bands (``Figures``)
and questions 1 and 4 as ``analysis.questions`` writes them. The plots stage (the render pass) reads this file
alone. ``headline.json`` is the
one declared metric, small enough for `dvc metrics diff` and `dvc exp show` to print readably; its top-level
keys are no params.yaml section (DVC would show both under one name).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from landscape.errors import StudyError
from landscape.report.terms import Interval
from landscape.study.runs_io import read_json
from landscape.study.serialize import from_json
from landscape.study.stage import METRICS_DIR

MODEL_A, MODEL_B = "mlp", "cnn"
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
    seeds_for_power: int | None = None  # a paired t-test's seeds for 80 % power at this mean and spread (a guess)


@dataclass(frozen=True)
class SimpleEffect:
    """The effect of ``factor`` at fixed levels of the other factors of an interaction (``within``), averaged over
    the remaining factor, e.g. BN within MLPs: factor "bn", within {"conv": False}."""

    factor: str
    within: dict[str, bool]
    estimate: Estimate


@dataclass(frozen=True)
class VariantRow:
    """Report section 1: one variant as it was trained; ``overrides`` its changes to the shared train section (and
    its own hidden widths), empty for a factorial cell."""

    variant: str
    family: str
    factorial: bool
    conv: bool
    bn: bool
    dropout: bool
    n_parameters: int
    overrides: dict[str, Any]


@dataclass(frozen=True)
class Setup:
    """The settings the report states (from params and a run's summaries), so that rendering reads no params."""

    model_a: str
    model_b: str
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    schedule: str
    epochs: int
    batch_size: int
    target_acc: float
    val_size: int
    train_eval_size: int
    parameters: str  # what noise and slices perturb: weights | all
    bn_modes: list[str]  # BN handling after a perturbation
    bn_samples: int  # images behind a recalibration
    noise_modes: list[str]
    sigmas: list[float]
    noise_trials: int
    noise_samples: int
    noise_split: str
    slice_directions: int
    fit_window: float
    curvature_samples: int
    lanczos_steps: int  # Ritz values of a run's Lanczos spectrum
    ritz_pairs: int  # the top pairs with a residual
    sigma_star: str  # the headline sigma* measure, its mode and drop
    sigma_star_mode: str
    sigma_star_drop: float
    width_tau: float  # the smallest basin-width tau (section 8)


@dataclass(frozen=True)
class FiniteStepRow:
    """Section 6: a variant's finite-step curvature kappa at each alpha of ``FiniteStep.alphas`` (t-interval over
    seeds of each run's mean over directions), d^T H d / kappa at the steepness alpha, and in how many of its
    directions d^T H d is below that kappa."""

    variant: str
    kappa: list[Interval]
    ratio: Interval
    below: int
    directions: int
    fit_vs_local: Interval  # each run's mean |fitted 2a - d^T H d| / |d^T H d|, over seeds


@dataclass(frozen=True)
class SpectrumRow:
    """Section 6: the bottom of a variant's Lanczos spectra (``runs`` with a spectrum)."""

    variant: str
    theta_min: Interval
    negative: int
    runs: int
    ratio: Interval  # -theta_min / theta_max
    mass_below: Interval  # quadrature mass below 0 (fraction)


@dataclass(frozen=True)
class NoiseRow:
    """Section 6: each run's within-run SE (per seed) and the between-seed SD of the run means, for d^T H d, kappa at
    the steepness alpha and the Hutchinson trace; ``share``: mean SE^2 / SD^2 per estimator (nan with one seed)."""

    variant: str
    se: dict[str, list[float]]
    sd: dict[str, float]
    share: dict[str, float]


@dataclass(frozen=True)
class LanczosRow:
    """Section 6: one Ritz pair over runs: its range, its largest relative residual, the runs at rounding level."""

    pair: int
    low: float
    high: float
    largest_residual: float
    at_rounding: int
    runs: int


@dataclass(frozen=True)
class LayerPoint:
    """A distinct layer of the fan-in test: a tensor's position in its family, its fan-in, the mean of the local
    slice curvature d_l^T H d_l over its family's variants and seeds, and the directions behind that mean."""

    name: str
    fan_in: int
    curvature: float
    directions: int


@dataclass(frozen=True)
class Steepest:
    """A variant's weight tensor with the largest mean slice curvature, with its t-interval over seeds."""

    variant: str
    tensor: str
    fan_in: int
    curvature: Interval


@dataclass(frozen=True)
class FanIn:
    """Section 6: Kendall's tau between fan-in and per-layer curvature over the distinct layers, one-sided
    permutation test (tau < 0 predicted), at ``level``."""

    units: dict[str, list[LayerPoint]]  # Model A and B: their tensors and fan-ins (curvature unused)
    layers: list[LayerPoint]
    tau: float
    p: float
    permutations: int
    exact: bool
    level: float
    consistent: bool
    run_directions: list[int]  # the distinct directions-per-run counts
    steepest: list[Steepest]


@dataclass(frozen=True)
class Rise:
    """Section 7: a non-monotonic run's largest rise above an earlier minimum of its path loss on t in [0, 1]."""

    variant: str
    seed: int
    rise: float
    t_min: float
    t_peak: float


@dataclass(frozen=True)
class PathRow:
    """Section 7: per split, the variant's runs with a monotonic path loss, and its loss at t = 1 over seeds."""

    variant: str
    runs: int
    monotonic: dict[str, int]
    loss_at_1: dict[str, Interval]


@dataclass(frozen=True)
class Paths:
    splits: list[str]
    tolerance: float
    rows: list[PathRow]
    monotonic: dict[str, list[int]]  # split -> [monotonic runs, runs]
    rises: dict[str, list[Rise]]  # split -> non-monotonic runs
    worst_barrier: float  # the largest training-loss barrier (0: none), of ``worst_run``
    worst_run: str
    worst_seed: int


@dataclass(frozen=True)
class Geometry:
    """Report sections 6, 7 and 9 (over the factorial runs)."""

    alphas: list[float]  # the alphas of kappa: the slice grid step and its multiples
    steepness_alpha: float
    finite_step: list[FiniteStepRow]
    fit_vs_local_mean: float  # the mean over variants of the fit_vs_local means
    spectrum: list[SpectrumRow]
    noise: list[NoiseRow]
    noise_share: dict[str, list[float]]  # estimator -> [median, min, max] over variants of the within-run share
    lanczos: list[LanczosRow]
    fan_in: FanIn | None  # None with fewer than two layers with a curvature
    paths: Paths
    largest_top_residual: float  # section 9: the largest relative residual of a top Ritz pair over runs
    trace_rel_se: float  # section 9: the mean relative SE of the Hutchinson trace over runs


@dataclass(frozen=True)
class Rank:
    """Section 8: how one measure ranks with the eval-mode gap. p's are two-sided permutation p's; ``exact`` False
    marks one from seeded random orderings; ``runs`` the tau over every run with a whole-variant bootstrap CI (no CI
    under MIN_GROUPS variants)."""

    name: str
    tau_means: float
    p_means: float
    exact_means: bool
    p_adjusted: float  # Holm over the measures
    variants: int
    tau_within: float
    p_within: float
    exact_within: bool
    n_runs: int
    tau_strata: dict[str, float]  # "off" / "on": dropout stratum -> tau over its variant means
    p_stratified: float
    exact_stratified: bool
    runs: Interval
    censored: int


@dataclass(frozen=True)
class Correlations:
    rows: list[Rank]
    level: float
    variants: int
    dropout_off: int
    runs: int
    min_groups: int


@dataclass(frozen=True)
class Band:
    """A curve over seeds: at each x the mean of the runs' values and its 95 % t-interval (nan with one seed)."""

    x: list[float]
    mean: list[float]
    ci_low: list[float]
    ci_high: list[float]


@dataclass(frozen=True)
class Surface:
    """One run's 2-D loss surface (first seed): loss[i][j] at (a[j], b[i]) on ``split``."""

    seed: int
    split: str
    a: list[float]
    b: list[float]
    loss: list[list[float]]
    taus: list[float]


@dataclass(frozen=True)
class LayerBand:
    """A weight tensor's local trace and slice curvature over seeds."""

    name: str
    fan_in: int
    trace: Interval
    curvature: Interval


@dataclass(frozen=True)
class Figures:
    """What the figures draw beyond the per-variant Estimates: curves with their seed bands (accuracies in %, drops
    in pp), the slices' split and fitted parabolas, A's and B's surfaces, and per-layer curvature."""

    learning: dict[str, dict[str, Band]]  # variant -> "val_acc" | "gap" -> band over epochs
    noise: dict[str, dict[str, dict[str, Band]]]  # mode -> bn -> variant -> drop (pp) over sigma > 0
    drop_levels: list[float]  # the drops (pp) that define sigma*
    slice_split: str
    slices: dict[str, Band]  # variant -> loss rise over alpha (BN frozen)
    slice_fits: dict[str, float]  # variant -> mean over seeds of the fitted 2a (BN frozen, slice_split)
    paths: dict[str, dict[str, Band]]  # split -> variant -> loss over t
    surfaces: dict[str, Surface]  # Model A and B
    layers: dict[str, list[LayerBand]]


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
    factorial: list[str]  # the conv x BN x dropout cells the factorial sections cover
    what_was_run: list[VariantRow]  # every variant of the study
    setup: Setup | None  # None for a study without a factorial cell
    geometry: Geometry | None  # sections 6, 7 and 9; None without a factorial cell
    correlations: Correlations | None  # section 8
    figures: Figures | None
    questions: dict[str, Any]  # questions 1 and 4 (landscape.report.analysis.questions), plain JSON

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
    questions: dict[str, str]  # questions 1 and 4: "<question>_<claim or signal>" -> verdict (the rest in study.json)


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
