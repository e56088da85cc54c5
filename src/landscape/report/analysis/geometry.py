"""The numbers of report sections 6, 7 and 9 over the factorial runs: curvature beside the finite-step curvature of
the slices, the estimators' noise, the Lanczos residuals, the per-layer fan-in test, the negative end of the
spectrum and the optimization path.

For ReLU and max-pool networks the autograd Hessian is the Hessian inside one activation pattern, so every Hessian
quantity here is "local"; ``landscape.report.render.geometry`` words them so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from landscape.report.analysis import finite_step as F
from landscape.report.analysis.ranking import permutation_tau
from landscape.report.analysis.stats import finite_ci
from landscape.report.analysis.study_data import StudyData
from landscape.report.schema import (
    MODEL_A,
    MODEL_B,
    FanIn,
    FiniteStepRow,
    Geometry,
    LanczosRow,
    LayerPoint,
    NoiseRow,
    PathRow,
    Paths,
    Rise,
    SpectrumRow,
    Steepest,
)
from landscape.report.terms import Interval

FAN_IN_LEVEL = 0.05  # one-sided level at which the per-layer ranking is called consistent with the fan-in explanation


def fit_vs_local(data: StudyData, variant: str) -> Interval:
    """Over seeds: each run's mean over directions of |fitted 2a - d^T H d| / |d^T H d|."""
    per_run = []
    for s in data.seeds:
        sl = data.runs[(variant, s)].slice
        pairs = zip(sl.curvature_fit_per_direction, sl.curvature_exact_per_direction, strict=True)
        rel = [abs(f - e) / abs(e) for f, e in pairs if e != 0 and math.isfinite(f) and math.isfinite(e)]
        per_run.append(float(np.mean(rel)) if rel else math.nan)
    return finite_ci(per_run)


def finite_step_rows(data: StudyData, alphas: list[float], alpha: float) -> list[FiniteStepRow]:
    rows = []
    for v in data.variants:
        below, total = F.directions_below(data, v, alpha)
        rows.append(
            FiniteStepRow(
                v,
                [F.variant_kappa(data, v, a) for a in alphas],
                F.local_to_finite(data, v, alpha),
                below,
                total,
                fit_vs_local(data, v),
            )
        )
    return rows


def spectrum_rows(data: StudyData) -> list[SpectrumRow]:
    """The bottom of each run's Lanczos spectrum: the smallest Ritz value (an upper bound on lambda_min), how many
    runs show negative curvature, and the stochastic Lanczos quadrature mass below 0."""
    rows = []
    for v in data.variants:
        spectra = [c for c in (data.runs[(v, s)].curvature for s in data.seeds) if c.ritz]
        if not spectra:
            continue
        lowest = [c.ritz[0] for c in spectra]
        below = [sum(w for th, w in zip(c.ritz, c.ritz_weights, strict=True) if th < 0) for c in spectra]
        ratio = [-c.ritz[0] / c.ritz[-1] for c in spectra if c.ritz[-1] > 0]
        rows.append(
            SpectrumRow(v, finite_ci(lowest), sum(x < 0 for x in lowest), len(spectra), finite_ci(ratio),
                        finite_ci(below))
        )  # fmt: skip
    return rows


def within_run_share(ses: Sequence[float], between_sd: float) -> float:
    """mean SE^2 / SD^2: the part of the seed-to-seed variance of the run means that within-run noise explains."""
    if not between_sd > 0:
        return math.nan
    return float(np.mean(np.square(ses))) / between_sd**2


def noise_rows(data: StudyData, alpha: float) -> list[NoiseRow]:
    """Per variant: each run's within-run SE and the between-seed SD of the run means, for d^T H d, kappa(alpha) and
    the Hutchinson trace, and each estimator's within-run share."""
    rows = []
    for v in data.variants:
        runs = [data.runs[(v, s)] for s in data.seeds]
        kappas = [F.run_spread(data, v, s, alpha) for s in data.seeds]
        estimators = {
            "dHd": ([r.slice.curvature_exact.se for r in runs], [r.slice.curvature_exact.mean for r in runs]),
            "kappa": ([k.se for k in kappas], [k.mean for k in kappas]),
            "trace": ([r.curvature.trace_se for r in runs], [r.curvature.trace for r in runs]),
        }
        sd = {name: finite_ci(means).std for name, (_, means) in estimators.items()}
        rows.append(
            NoiseRow(
                v,
                {name: list(ses) for name, (ses, _) in estimators.items()},
                sd,
                {name: within_run_share(ses, sd[name]) for name, (ses, _) in estimators.items()},
            )
        )
    return rows


def share_range(values: list[float]) -> list[float]:
    """[median, min, max] of the finite within-run shares; [] where none is finite (one seed)."""
    finite = [v for v in values if math.isfinite(v)]
    return [float(np.median(finite)), min(finite), max(finite)] if finite else []


# The Hessian-vector products run in the models' float32: a relative residual ||Hq - theta q|| / |theta| at or
# below float32's machine epsilon is at rounding level, whatever smaller number the Lanczos relation gives.
FLOAT32_EPS = float(np.finfo(np.float32).eps)


def lanczos_rows(data: StudyData) -> list[LanczosRow]:
    """Per Ritz pair index: its range over runs, the largest relative residual and the runs at rounding level."""
    runs = list(data.runs.values())
    rows = []
    for i in range(max(len(r.curvature.eigenvalues) for r in runs)):
        values = [r.curvature.eigenvalues[i] for r in runs if i < len(r.curvature.eigenvalues)]
        residuals = [r.curvature.eigen_residuals[i] for r in runs if i < len(r.curvature.eigen_residuals)]
        rows.append(
            LanczosRow(i + 1, min(values), max(values), max(residuals), sum(r <= FLOAT32_EPS for r in residuals),
                       len(residuals))
        )  # fmt: skip
    return rows


def distinct_layers(data: StudyData) -> list[LayerPoint]:
    """Per distinct layer (a weight tensor's position in its family, MLP or CNN): its fan-in, the mean of the run
    means of its slice curvature over every variant of that family and every seed, and the directions behind it."""
    per_layer: dict[tuple[bool, int], list] = {}
    for v in data.variants:
        for s in data.seeds:
            for i, lay in enumerate(data.runs[(v, s)].curvature.layers):
                per_layer.setdefault((data.factorial[v].conv, i), []).append(lay)
    rows = []
    for (conv, i), layers in per_layer.items():
        finite = [lay.slice_curvature for lay in layers if math.isfinite(lay.slice_curvature.mean)]
        if finite:
            name = f"{'CNN' if conv else 'MLP'} tensor {i + 1}"
            rows.append(LayerPoint(name, layers[0].fan_in, float(np.mean([c.mean for c in finite])),
                                   sum(c.n for c in finite)))  # fmt: skip
    return rows


def steepest_layer(data: StudyData, variant: str) -> Steepest | None:
    """The weight tensor of ``variant`` with the largest mean slice curvature d_l^T H d_l, with its seed CI."""
    per_layer = zip(*(data.runs[(variant, s)].curvature.layers for s in data.seeds), strict=True)
    rows = [(layers[0], finite_ci(lay.slice_curvature.mean for lay in layers)) for layers in per_layer]
    if not rows:
        return None
    layer, curvature = max(rows, key=lambda r: r[1].mean)
    return Steepest(variant, layer.name, layer.fan_in, curvature)


def fan_in(data: StudyData) -> FanIn | None:
    """The fan-in test over the distinct layers (tau < 0 predicted); None with fewer than two layers."""
    rows = distinct_layers(data)
    if len(rows) < 2:
        return None
    pair = [v for v in (MODEL_A, MODEL_B) if v in data.variants]
    units = {
        v: [LayerPoint(lay.name, lay.fan_in, math.nan, 0) for lay in data.runs[(v, data.seeds[0])].curvature.layers]
        for v in pair
    }
    test = permutation_tau([r.fan_in for r in rows], [r.curvature for r in rows], alternative="less")
    per_run = sorted({lay.slice_curvature.n for r in data.runs.values() for lay in r.curvature.layers})
    return FanIn(
        units=units,
        layers=rows,
        tau=test.tau,
        p=test.p,
        permutations=test.permutations,
        exact=test.exact,
        level=FAN_IN_LEVEL,
        consistent=bool(test.tau < 0 and test.p < FAN_IN_LEVEL),
        run_directions=per_run,
        steepest=[s for v in pair if (s := steepest_layer(data, v)) is not None],
    )


def largest_rise(t: np.ndarray, loss: np.ndarray) -> tuple[float, float, float]:
    """(rise, t of the earlier minimum, t of the peak) of the largest rise of ``loss`` above an earlier minimum on
    t in [0, 1]; t ascending."""
    inside = t <= 1.0 + 1e-12
    t, loss = t[inside], loss[inside]
    rises = loss - np.minimum.accumulate(loss)
    peak = int(np.argmax(rises))
    low = int(np.argmin(loss[: peak + 1]))
    return float(rises[peak]), float(t[low]), float(t[peak])


def paths(data: StudyData) -> Paths:
    """Section 7: per variant its monotonic runs and loss at t = 1; where a run's path loss rises, and the largest
    training-loss barrier."""
    runs = [r.path for r in data.runs.values()]
    splits = [s for s in ("train", "val") if all(s in p.barrier for p in runs)]
    rows = []
    for v in data.variants:
        mine = [data.runs[(v, s)].path for s in data.seeds]
        rows.append(
            PathRow(v, len(mine), {s: sum(p.monotonic[s] for p in mine) for s in splits},
                    {s: finite_ci(p.loss_at_1[s] for p in mine) for s in splits})
        )  # fmt: skip
    rises: dict[str, list[Rise]] = {}
    for split in splits:
        rises[split] = []
        for v in data.variants:
            f = data.paths[v]
            for s in data.seeds:
                if data.runs[(v, s)].path.monotonic.get(split, True):
                    continue
                rows_ = f[(f["seed"] == s) & (f["split"] == split)].sort_values("t")
                found = largest_rise(rows_["t"].to_numpy(float), rows_["loss"].to_numpy(float))
                rises[split].append(Rise(v, s, *found))
    barriers = {k: r.path.barrier["train"] for k, r in data.runs.items() if "train" in r.path.barrier}
    (worst_v, worst_s), worst = max(barriers.items(), key=lambda kv: kv[1]) if barriers else (("", 0), 0.0)
    with_split = {s: [p for p in runs if s in p.max_rise] for s in splits}
    return Paths(
        splits=splits,
        tolerance=runs[0].tolerance,
        rows=rows,
        monotonic={s: [sum(p.monotonic[s] for p in ps), len(ps)] for s, ps in with_split.items()},
        rises=rises,
        worst_barrier=max(worst, 0.0),
        worst_run=worst_v,
        worst_seed=worst_s,
    )


def geometry(data: StudyData) -> Geometry:
    """Sections 6, 7 and 9 over the factorial runs."""
    alphas, alpha = F.study_alphas(data), F.steepness_alpha(data)
    steps = finite_step_rows(data, alphas, alpha)
    noise = noise_rows(data, alpha)
    runs = list(data.runs.values())
    rel_se = [r.curvature.trace_se / r.curvature.trace for r in runs if r.curvature.trace]
    return Geometry(
        alphas=alphas,
        steepness_alpha=alpha,
        finite_step=steps,
        fit_vs_local_mean=float(np.nanmean([r.fit_vs_local.mean for r in steps])),
        spectrum=spectrum_rows(data),
        noise=noise,
        noise_share={name: share_range([r.share[name] for r in noise]) for name in ("dHd", "kappa", "trace")},
        lanczos=lanczos_rows(data),
        fan_in=fan_in(data),
        paths=paths(data),
        largest_top_residual=max((x for r in runs for x in r.curvature.eigen_residuals[:1]), default=math.nan),
        trace_rel_se=float(np.mean(rel_se)) if rel_se else math.nan,
    )
