"""The metrics schema: typed summaries of every probe, and their JSON form.

This is the only module that knows metric keys. Probes return these objects, stages write
them with ``to_json``, and the aggregate, report and figures read them back with
``from_json``; nothing parses a key string. Keys that hold a number (a sigma, a drop, a tau)
are built once by ``number_key`` ("sigma_0p01", "drop_1pp") and the number itself is stored
beside them, so readers never take a key apart. No key contains "=" or "." (DVC flattens
nested keys with dots), and every key reads as a `dvc metrics show` column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from landscape.probes.settings import Score


def stability_threshold(lr: float, momentum: float) -> float:
    """2 (1 + momentum) / lr: heavy-ball SGD on a quadratic is stable along a direction of curvature below this
    (Cohen et al. 2021's edge of stability)."""
    return 2 * (1 + momentum) / lr


def stability_ratio(lambda_max: float, lr: float, momentum: float) -> float:
    """lambda_max over ``stability_threshold`` (0 at lr 0, the cosine schedule's end): below 1, heavy-ball SGD
    is stable along the top eigenvector."""
    return lambda_max * lr / (2 * (1 + momentum))


def number_key(prefix: str, value: float) -> str:
    """``number_key("sigma", 0.01) == "sigma_0p01"``: the same format for every number, no dots."""
    return f"{prefix}_{value:g}".replace(".", "p").replace("-", "m")


def drop_key(drop: float) -> str:
    """An accuracy drop (a fraction) as whole percentage points: 0.01 -> "drop_1pp"."""
    return f"drop_{100 * drop:g}pp".replace(".", "p")


@dataclass(frozen=True)
class Spread:
    """Mean and sample std over the draws of ONE run (noise trials, directions): measurement noise."""

    mean: float
    std: float
    n: int

    @property
    def se(self) -> float:
        return self.std / math.sqrt(self.n) if self.n > 1 else math.nan

    @classmethod
    def of(cls, values) -> Spread:
        v = np.asarray(list(values), float)
        return cls(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v))


@dataclass(frozen=True)
class Censored:
    """A threshold crossing: ``value`` is exact, or a lower bound when ``censored`` (never reached)."""

    value: float
    censored: bool


@dataclass(frozen=True)
class Divergence:
    """Where a run diverged: the epoch (1-based), the batch within it (0: the epoch's end-of-epoch evaluation
    was not finite) and the offending loss as text ("nan", "inf": never a number in metrics/)."""

    epoch: int
    batch: int
    loss: str


@dataclass(frozen=True)
class SharpnessPoint:
    """lambda_max of the training-loss Hessian (eval mode, the curvature probe's subset and Lanczos settings)
    at the end of ``epoch`` (0: the initial weights), and the lr the optimizer held then. What computing it took
    is in the stage's timings (``during_training_s``), not here: metrics are byte-identical across reruns."""

    epoch: int
    lambda_max: float
    lr: float


@dataclass(frozen=True)
class EarlySignals:
    """What one can see after epoch 1 (Q4), from the epoch-1 weights (saved as epoch1.pt)."""

    val_acc: float
    val_loss: float
    gap: float  # eval-mode train-subset accuracy - val accuracy
    loss_slope: float  # least-squares slope of the per-batch training loss over epoch 1, loss per epoch
    lambda_max: float
    lambda_max_scaled: float  # lambda_max * lr / (2 (1 + momentum)): 1 is heavy-ball SGD's stability threshold
    noise_sigma: float  # filter-normalized sigma of the noise probe below
    noise_drop: float  # mean accuracy drop (fraction) at noise_sigma over the trials, on early.val images


@dataclass(frozen=True)
class TrainSummary:
    variant: str
    seed: int
    family: str
    n_parameters: int
    epochs: int  # epochs trained: train.epochs, or fewer where the run reached stop_loss or diverged
    steps: int  # optimizer steps of those epochs
    stop_loss: float  # the train section's: > 0, the run trains until its windowed train-subset loss is <= this
    reached_loss: bool | None  # stop_loss > 0: whether the run reached it before the epoch cap; None otherwise
    device: str
    train: Score  # eval mode, whole training split
    val: Score
    test: Score
    gap: float  # train.acc - val.acc, both eval mode
    gap_running: float | None  # running train accuracy of the last epoch (dropout on, weights moving) - val.acc
    train_acc_modes: dict[
        str, float
    ]  # at the final weights, on the train-eval subset: dropout_<on|off>_bn_<batch|running>
    train_acc_running: float | None  # the last epoch's running average (None: diverged in epoch 1)
    target_acc: float
    epochs_to_target: Censored  # first epoch whose eval-mode validation accuracy reaches target_acc
    lr: float  # the run's training conditions (a regime variant overrides the train section)
    batch_size: int
    momentum: float
    diverged: Divergence | None  # None: every epoch finished with a finite loss
    sharpness: list[SharpnessPoint]  # lambda_max at the initial weights and after every finished epoch
    early: EarlySignals | None  # None: diverged in epoch 1


@dataclass(frozen=True)
class SigmaPoint:
    sigma: float
    acc: Spread  # over noise trials
    drop: Spread  # acc(0) - acc(sigma) per trial (fraction; paired on the same images)


@dataclass(frozen=True)
class NoiseCurve:
    mode: str
    bn: str
    points: dict[str, SigmaPoint]  # number_key("sigma", s)
    sigma_star: dict[str, Censored]  # drop_key(d): where the mean drop first exceeds d, interpolated in log sigma
    drops: dict[str, float]  # drop_key(d) -> d


@dataclass(frozen=True)
class RobustnessSummary:
    variant: str
    seed: int
    split: str
    parameters: str
    trials: int
    samples: int
    curves: dict[str, dict[str, NoiseCurve]]  # mode -> bn -> curve


@dataclass(frozen=True)
class Width:
    tau: float
    width: Spread  # W_tau over directions (censored ones enter as their lower bound)
    censored: int  # directions where tau was not reached within the span


@dataclass(frozen=True)
class SliceCurve:
    loss_at_0: float
    curvature_fit: Spread  # 2a of the quadratic fit on |alpha| <= fit window
    fit_r2: Spread
    fit_slope: Spread
    widths: dict[str, Width]  # number_key("tau", t)
    loss_at_minus_span: Spread
    loss_at_plus_span: Spread


@dataclass(frozen=True)
class SliceSummary:
    variant: str
    seed: int
    parameters: str
    directions: int
    fit_window: float
    theta_norm: float
    direction_norm_rel: Spread
    curvature_exact: Spread  # d^T H d per direction: Hessian of the training subset's loss, eval mode (BN frozen)
    curvature_exact_per_direction: list[float]
    curvature_fit_per_direction: list[float]  # the fitted 2a on the training subset, BN frozen, same directions
    curves: dict[str, dict[str, SliceCurve]]  # bn -> split -> curve
    surface_area: dict[str, float]  # number_key("tau", t): fraction of the 2-D grid with L - L(0) <= tau


@dataclass(frozen=True)
class PathSummary:
    variant: str
    seed: int
    bn: str
    distance_rel: float  # ||theta_T - theta_0|| / ||theta_0||, every parameter
    loss_at_0: dict[str, float]  # split -> L(theta_0)
    loss_at_1: dict[str, float]
    acc_at_1: dict[str, float]
    monotonic: dict[str, bool]  # L(t) never rises more than ``tolerance`` above an earlier minimum on [0, 1]
    tolerance: float  # nats (params path.monotonic_tolerance)
    max_rise: dict[str, float]  # largest rise of L over an earlier minimum on [0, 1]
    barrier: dict[str, float]  # max over t in [0, 1] of L(t) - ((1 - t) L(0) + t L(1))


@dataclass(frozen=True)
class LayerCurvature:
    name: str
    fan_in: int  # weights per output unit (the unit of filter normalization)
    trace: float
    trace_se: float
    flatness: float  # relative flatness kappa_l (Petzka et al. 2021)
    flatness_se: float
    slice_curvature: Spread  # d_l^T H d_l over filter-normalized directions perturbing only this tensor


@dataclass(frozen=True)
class CurvatureSummary:
    variant: str
    seed: int
    parameters: str
    samples: int
    eigenvalues: list[float]  # top-k of H, descending
    eigen_residuals: list[float]  # ||Hq - theta q|| / |theta| per Ritz pair
    ritz: list[float]  # every Lanczos Ritz value, ascending: ritz[0] is an upper bound on lambda_min
    ritz_weights: list[float]  # their stochastic Lanczos quadrature weights (one start vector; sum 1)
    trace: float
    trace_se: float
    flatness: float  # sum over weight tensors of kappa_l
    flatness_se: float
    flatness_feature: float  # kappa of the classifier layer, the one the paper uses
    flatness_feature_se: float
    adaptive_sharpness: float  # top eigenvalue of diag|theta| H diag|theta| (same parameters, subset, Lanczos steps)
    theta_norm: float  # ||theta||, L2 over the probed parameters (``parameters``)
    layers: list[LayerCurvature] = field(default_factory=list)


@dataclass(frozen=True)
class RunResults:
    """Every summary of one (variant, training seed) run; ``slice`` and ``path`` are None for a variant outside
    study.factorial (a regime cell: no slice, surface or path stage runs for it)."""

    train: TrainSummary
    robustness: RobustnessSummary
    slice: SliceSummary | None
    path: PathSummary | None
    curvature: CurvatureSummary


PROBES = {
    "train": TrainSummary,
    "robustness": RobustnessSummary,
    "slice": SliceSummary,
    "path": PathSummary,
    "curvature": CurvatureSummary,
}
TRAIN_MODES = ("dropout_on_bn_batch", "dropout_on_bn_running", "dropout_off_bn_batch", "dropout_off_bn_running")


VAL_ACC, TEST_ACC, GAP, GAP_RUNNING = "val_acc", "test_acc", "gap", "gap_running"
N_PARAMETERS, EPOCHS_TO_TARGET = "n_parameters", "epochs_to_target"
CURVATURE_EXACT, LAMBDA_MAX, TRACE = "curvature_exact", "lambda_max", "trace"
FLATNESS, FLATNESS_FEATURE, PATH_DISTANCE = "relative_flatness", "relative_flatness_feature", "path_distance"
ADAPTIVE_SHARPNESS = "adaptive_sharpness"  # lambda_max of diag|theta| H diag|theta|: unchanged by weight rescaling
THETA_NORM = "theta_norm"  # ||theta|| over the probed parameters, beside the raw (scale-dependent) measures


def sigma_star(mode: str, bn: str, drop: float) -> str:
    """sigma*_d of noise ``mode`` with BN ``bn``; ``drop`` is a fraction (0.01 = 1 pp)."""
    return f"sigma_star_{mode}_{bn}_{drop_key(drop)}"


def accuracy_at(mode: str, bn: str, sigma: float) -> str:
    """Mean validation accuracy under noise ``mode`` at ``sigma`` (> 0; sigma = 0 is no measure)."""
    return f"acc_{mode}_{bn}_{number_key('sigma', sigma)}"


def drop_at(mode: str, bn: str, sigma: float) -> str:
    """Mean validation accuracy drop (pp) under noise ``mode`` at ``sigma`` (> 0)."""
    return f"drop_{mode}_{bn}_{number_key('sigma', sigma)}"


def curvature_fit(bn: str, split: str) -> str:
    """The slices' fitted 2a on ``split`` with BN ``bn`` (each run's mean over directions)."""
    return f"curvature_fit_{bn}_{split}"


def width(bn: str, split: str, tau: float) -> str:
    """Basin width W_tau of the slices on ``split`` with BN ``bn`` (censored when tau was not reached)."""
    return f"width_{bn}_{split}_{number_key('tau', tau)}"


def train_mode_gap(dropout_on: bool, bn_batch: bool) -> str:
    """Train accuracy at the final weights in one cell of the dropout x BN-statistics 2 x 2, minus val accuracy."""
    mode = f"dropout_{'on' if dropout_on else 'off'}_bn_{'batch' if bn_batch else 'running'}"
    if mode not in TRAIN_MODES:
        raise ValueError(f"train_mode_gap: {mode} is not one of {TRAIN_MODES}")
    return f"gap_{mode}"


def path_barrier(split: str) -> str:
    return f"path_barrier_{split}"


def path_max_rise(split: str) -> str:
    return f"path_max_rise_{split}"


def path_monotonic(split: str) -> str:
    """1.0 for a run whose path loss is monotonic on [0, 1], else 0.0; its mean is the monotonic fraction."""
    return f"path_monotonic_{split}"


def run_measures(run: RunResults) -> dict[str, Censored]:
    """One run's scalar measures by name: what the study aggregates over training seeds.

    Accuracies and gaps are fractions except ``drop_*`` (percentage points); ``censored`` marks a
    lower bound (a threshold never reached). ``acc_<mode>_<bn>_sigma_*`` is the whole validation split's
    accuracy minus the mean noise drop, which is measured paired on the probe's fixed subset: the subset's
    own sampling error (shared by every seed, so invisible in a CI over seeds) does not enter it.
    """
    t = run.train
    out: dict[str, float | Censored] = {
        N_PARAMETERS: t.n_parameters,
        VAL_ACC: t.val.acc,
        TEST_ACC: t.test.acc,
        "train_acc": t.train.acc,
        GAP: t.gap,
        EPOCHS_TO_TARGET: t.epochs_to_target,
    }
    if t.gap_running is not None:  # None: the run diverged in epoch 1, so no epoch has a running average
        out[GAP_RUNNING] = t.gap_running
    for mode in TRAIN_MODES:
        out[f"gap_{mode}"] = t.train_acc_modes[mode] - t.val.acc  # = train_mode_gap(...) of that cell
    for mode, by_bn in run.robustness.curves.items():
        for bn, curve in by_bn.items():
            for point in curve.points.values():
                if point.sigma > 0:  # accuracy on the whole validation split minus the drop, paired on the subset
                    out[accuracy_at(mode, bn, point.sigma)] = t.val.acc - point.drop.mean
                    out[drop_at(mode, bn, point.sigma)] = 100 * point.drop.mean
            for key, star in curve.sigma_star.items():
                out[sigma_star(mode, bn, curve.drops[key])] = star
    if (s := run.slice) is not None:  # None: a cell outside the factorial, which has no slice probe
        out[CURVATURE_EXACT] = s.curvature_exact.mean
        for bn, by_split in s.curves.items():
            for split, c in by_split.items():
                out[curvature_fit(bn, split)] = c.curvature_fit.mean
                for w in c.widths.values():
                    out[width(bn, split, w.tau)] = Censored(w.width.mean, w.censored > 0)
        for key, area in s.surface_area.items():
            out[f"surface_area_{key}"] = area
    if (p := run.path) is not None:
        out[PATH_DISTANCE] = p.distance_rel
        for split in p.barrier:
            out[path_barrier(split)] = p.barrier[split]
            out[path_max_rise(split)] = p.max_rise[split]
            out[path_monotonic(split)] = float(p.monotonic[split])
    c = run.curvature
    out[LAMBDA_MAX] = c.eigenvalues[0] if c.eigenvalues else math.nan
    out[TRACE] = c.trace
    out[FLATNESS] = c.flatness
    out[FLATNESS_FEATURE] = c.flatness_feature
    out[ADAPTIVE_SHARPNESS] = c.adaptive_sharpness
    out[THETA_NORM] = c.theta_norm
    return {k: v if isinstance(v, Censored) else Censored(float(v), False) for k, v in out.items()}
