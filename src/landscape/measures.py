"""What the report and the figures read from ``metrics/study.json``, typed.

The measure names are built by ``results`` (the one module that knows keys) and never taken apart here.
``StudyView`` turns the JSON of ``aggregate.study_json`` back into ``Estimate`` and ``Interval`` objects.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from landscape.aggregate import Estimate
from landscape.errors import StudyError
from landscape.results import (  # the measure names live in results; re-exported for the report and figures
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
from landscape.stats import Interval, mean_ci

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
    "StudyView",
    "finite_ci",
    "headline_sigma_star",
]


def finite_ci(values: Iterable[float]) -> Interval:
    """``stats.mean_ci`` of the finite values (a null in a JSON file reads as nan); all-nan -> a nan Interval, n = 0."""
    finite = [float(v) for v in values if math.isfinite(v)]
    return mean_ci(finite) if finite else Interval(math.nan, math.nan, math.nan, math.nan, 0)


@dataclass(frozen=True)
class StudyView:
    """metrics/study.json as objects: per-variant Estimates, B - A Estimates, claim verdicts, effect Intervals."""

    seeds: list[int]
    variants: dict[str, dict[str, Estimate]]
    b_minus_a: dict[str, Estimate]
    verdicts: dict[str, str]  # claim key -> verdict
    effects: dict[str, dict[str, Interval]]  # measure -> term ("conv", "bn", "conv:bn", ...) -> interval

    @classmethod
    def from_json(cls, d: Mapping) -> StudyView:
        """Parse ``aggregate.study_json``'s output; a malformed one is a StudyError naming the fix."""
        try:
            return cls(
                seeds=[int(s) for s in d["seeds"]],
                variants={v: {m: Estimate.from_json(e) for m, e in t.items()} for v, t in d["variants"].items()},
                b_minus_a={m: Estimate.from_json(e) for m, e in d.get("b_minus_a", {}).items()},
                verdicts={k: str(c["verdict"]) for k, c in d.get("claims", {}).items()},
                effects={
                    m: {term: Interval.from_json(i) for term, i in t.items()} for m, t in d.get("effects", {}).items()
                },
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise StudyError(
                f"metrics/study.json does not match what the aggregate stage writes ({type(e).__name__}: {e}); "
                "rerun it: dvc repro"
            ) from None

    def get(self, variant: str, measure: str) -> Estimate | None:
        """The Estimate of ``measure`` for ``variant``, or None where the study has none."""
        return self.variants.get(variant, {}).get(measure)

    def effect(self, measure: str, term: str) -> Interval | None:
        return self.effects.get(measure, {}).get(term)


def headline_sigma_star(run: RunResults) -> tuple[str, str, float]:
    """(measure, mode, drop) of the headline sigma*: filter noise (else the first mode), BN frozen, smallest drop.

    The same choice as the aggregate's noise-tolerance claim.
    """
    curves = run.robustness.curves
    mode = "filter" if "filter" in curves else next(iter(curves))
    drop = min(curves[mode]["frozen"].drops.values())
    return sigma_star(mode, "frozen", drop), mode, drop
