"""The measure names the report and the figures look up in a ``StudySummary``, and small helpers on them.

The measure names are built by ``results`` (the one module that knows per-run keys) and never taken apart here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from landscape.report.stats import Interval, mean_ci
from landscape.study.results import (  # the measure names live in results; re-exported for the report and figures
    CURVATURE_EXACT,
    EPOCHS_TO_TARGET,
    FLATNESS,
    FLATNESS_FEATURE,
    GAP,
    GAP_RUNNING,
    LAMBDA_MAX,
    N_PARAMETERS,
    PATH_DISTANCE,
    TEST_ACC,
    TRACE,
    VAL_ACC,
    RunResults,
    accuracy_at,
    curvature_fit,
    drop_at,
    path_barrier,
    path_max_rise,
    path_monotonic,
    sigma_star,
    train_mode_gap,
    width,
)

__all__ = [
    "VAL_ACC",
    "TEST_ACC",
    "GAP",
    "GAP_RUNNING",
    "N_PARAMETERS",
    "EPOCHS_TO_TARGET",
    "CURVATURE_EXACT",
    "LAMBDA_MAX",
    "TRACE",
    "FLATNESS",
    "FLATNESS_FEATURE",
    "PATH_DISTANCE",
    "accuracy_at",
    "drop_at",
    "curvature_fit",
    "width",
    "train_mode_gap",
    "path_barrier",
    "path_max_rise",
    "path_monotonic",
    "sigma_star",
    "finite_ci",
    "geometric_ci",
    "headline_sigma_star",
]


def finite_ci(values: Iterable[float]) -> Interval:
    """``stats.mean_ci`` of the finite values (a null in a JSON file reads as nan); all-nan -> a nan Interval, n = 0."""
    finite = [float(v) for v in values if math.isfinite(v)]
    return mean_ci(finite) if finite else Interval(math.nan, math.nan, math.nan, math.nan, 0)


def geometric_ci(values: Iterable[float]) -> Interval:
    """The geometric mean of the positive finite values and the 95 % t-CI of their log, both back on the values'
    scale (``std`` stays that of the log): an interval for a scale measure such as lambda_max that never reaches 0.
    A value <= 0 has no log and is left out, as ``finite_ci`` leaves out a non-finite one; callers that must not
    lose such a value check for it first."""
    i = finite_ci(math.log(v) for v in values if math.isfinite(v) and v > 0)
    return Interval(math.exp(i.mean), i.std, math.exp(i.ci_low), math.exp(i.ci_high), i.n)


def headline_sigma_star(run: RunResults) -> tuple[str, str, float]:
    """(measure, mode, drop) of the headline sigma*: filter noise (else the first mode), BN frozen, smallest drop.

    The same choice as the aggregate's noise-tolerance claim.
    """
    curves = run.robustness.curves
    mode = "filter" if "filter" in curves else next(iter(curves))
    drop = min(curves[mode]["frozen"].drops.values())
    return sigma_star(mode, "frozen", drop), mode, drop
