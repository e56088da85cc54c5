"""How noisy the curvature estimators are within one run, beside the spread between training seeds, and how far
each Lanczos Ritz pair has converged.

Each run's d^T H d is a mean over a few random directions and its trace a Hutchinson mean over a few Rademacher
vectors: both carry a within-run standard error. The t-interval over seeds is built from the per-run means, so
the seed-to-seed spread it uses already contains that within-run noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from landscape.report import finite_step as F
from landscape.report.format import PLAIN, table
from landscape.report.measures import finite_ci
from landscape.report.study_data import StudyData

# The Hessian-vector products run in the models' float32: a relative residual ||Hq - theta q|| / |theta| at or
# below float32's machine epsilon is at rounding level, whatever smaller number the Lanczos relation gives.
FLOAT32_EPS = float(np.finfo(np.float32).eps)


def _ses(values: Sequence[float]) -> str:
    return ", ".join(PLAIN(v) for v in values)


def within_run_share(ses: Sequence[float], between_sd: float) -> float:
    """mean SE^2 / SD^2: the part of the seed-to-seed variance of the run means that within-run noise explains."""
    if not between_sd > 0:
        return math.nan
    return float(np.mean(np.square(ses))) / between_sd**2


def noise_rows(data: StudyData, alpha: float) -> tuple[list[list[str]], dict[str, list[float]]]:
    """Per variant: each run's within-run SE and the between-seed SD of the run means, for d^T H d, kappa(alpha) and
    the Hutchinson trace; and each estimator's within-run share per variant."""
    rows, shares = [], {"dHd": [], "kappa": [], "trace": []}
    for v in data.variants:
        runs = [data.runs[(v, s)] for s in data.seeds]
        kappas = [F.run_spread(data, v, s, alpha) for s in data.seeds]
        estimators = {
            "dHd": ([r.slice.curvature_exact.se for r in runs], [r.slice.curvature_exact.mean for r in runs]),
            "kappa": ([k.se for k in kappas], [k.mean for k in kappas]),
            "trace": ([r.curvature.trace_se for r in runs], [r.curvature.trace for r in runs]),
        }
        row = [v]
        for name, (ses, means) in estimators.items():
            sd = finite_ci(means).std
            row += [_ses(ses), PLAIN(sd)]
            shares[name].append(within_run_share(ses, sd))
        rows.append(row)
    return rows, shares


def _share_range(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "n/a (one seed)"
    return f"median {PLAIN(float(np.median(finite)))} (range {PLAIN(min(finite))} to {PLAIN(max(finite))})"


def residual_text(r: float) -> str:
    """A relative Ritz residual, or 'at float32 rounding level' where it is no larger than FLOAT32_EPS."""
    return f"<= {FLOAT32_EPS:.1e} (rounding level)" if r <= FLOAT32_EPS else f"{r:.1e}"


def lanczos_rows(data: StudyData) -> list[list[str]]:
    """Per Ritz pair index: its value over runs, the largest relative residual over runs and how many runs are at
    float32 rounding level."""
    runs = list(data.runs.values())
    pairs = max(len(r.curvature.eigenvalues) for r in runs)
    rows = []
    for i in range(pairs):
        values = [r.curvature.eigenvalues[i] for r in runs if i < len(r.curvature.eigenvalues)]
        residuals = [r.curvature.eigen_residuals[i] for r in runs if i < len(r.curvature.eigen_residuals)]
        rounding = sum(r <= FLOAT32_EPS for r in residuals)
        rows.append(
            [
                str(i + 1),
                f"{PLAIN(min(values))} to {PLAIN(max(values))}",
                residual_text(max(residuals)),
                f"{rounding} of {len(residuals)}",
            ]
        )
    return rows


def estimator_noise(data: StudyData) -> str:
    """The within-run vs between-seed table and the Lanczos residual table, with what they mean."""
    alpha = F.steepness_alpha(data)
    rows, shares = noise_rows(data, alpha)
    first = data.runs[(data.variants[0], data.seeds[0])]
    header = [
        "variant",
        "d^T H d: within-run SE (per seed)",
        "d^T H d: between-seed SD",
        f"kappa({alpha:g}): within-run SE (per seed)",
        f"kappa({alpha:g}): between-seed SD",
        "trace(H): Hutchinson SE (per seed)",
        "trace(H): between-seed SD",
    ]
    return "\n\n".join(
        [
            "### Estimator noise within a run, and the spread between seeds",
            f"Each run's d^T H d and kappa are means over its {first.slice.directions} slice directions (within-run "
            "SE = SD over directions / sqrt(directions)); its trace(H) is a Hutchinson mean with its own SE. The "
            "between-seed SD is the SD of the run means, the number behind every 95 % t-interval over seeds here.",
            table(header, rows),
            "The t-interval over seeds is computed from the per-run means, and each per-run mean carries its "
            "within-run error, so the CI over seeds already includes the within-run noise (the variance of the run "
            "means is the seed-to-seed variance plus SE^2). The within-run share of the between-seed variance, mean "
            f"SE^2 / SD^2 per variant: d^T H d {_share_range(shares['dHd'])}; kappa {_share_range(shares['kappa'])}; "
            f"trace(H) {_share_range(shares['trace'])}. Where it is near 1, more directions or Hutchinson samples per "
            "run would narrow the CI; where it is small, only more seeds would; well above 1, the few run means "
            "happen to agree more closely than their own errors suggest, and the CI is narrower by luck.",
            f"Lanczos: each of the top {len(first.curvature.eigenvalues)} Ritz pairs, its relative residual "
            "||Hq - theta q|| / |theta| from the Lanczos relation, the largest over runs:",
            table(
                ["Ritz pair", "value over runs", "largest residual over runs", "runs at rounding level"],
                lanczos_rows(data),
            ),  # fmt: skip
            "The Hessian-vector products run in float32, whose machine epsilon is "
            f"{FLOAT32_EPS:.1e}: a relative residual near 1e-7 is at rounding level. The Lanczos relation can give "
            "far smaller numbers (down to 1e-19), but they only say the recurrence has converged; H q = theta q "
            "holds no better than float32 rounding, so such residuals are shown as '<= "
            f"{FLOAT32_EPS:.1e}'. The lower Ritz pairs converge more slowly, and their residuals are their tolerance.",
        ]
    )
