"""How noisy the curvature estimators are within one run, beside the spread between training seeds, and how far
each Lanczos Ritz pair has converged.

Each run's d^T H d is a mean over a few random directions and its trace a Hutchinson mean over a few Rademacher
vectors: both carry a within-run standard error. The t-interval over seeds is built from the per-run means, so
the seed-to-seed spread it uses already contains that within-run noise.
"""

from __future__ import annotations

from collections.abc import Sequence

from landscape.report.format import PLAIN, table
from landscape.report.schema import StudySummary

# The Hessian-vector products run in the models' float32: a relative residual ||Hq - theta q|| / |theta| at or
# below float32's machine epsilon (numpy's finfo(float32).eps) is at rounding level, whatever smaller number the
# Lanczos relation gives.
FLOAT32_EPS = 1.1920928955078125e-07


def _ses(values: Sequence[float]) -> str:
    return ", ".join(PLAIN(v) for v in values)


def _share_range(found: list[float]) -> str:
    if not found:
        return "n/a (one seed)"
    median, low, high = found
    return f"median {PLAIN(median)} (range {PLAIN(low)} to {PLAIN(high)})"


def residual_text(r: float) -> str:
    """A relative Ritz residual, or 'at float32 rounding level' where it is no larger than FLOAT32_EPS."""
    return f"<= {FLOAT32_EPS:.1e} (rounding level)" if r <= FLOAT32_EPS else f"{r:.1e}"


def lanczos_rows(study: StudySummary) -> list[list[str]]:
    """Per Ritz pair index: its value over runs, the largest relative residual over runs and how many runs are at
    float32 rounding level."""
    return [
        [str(r.pair), f"{PLAIN(r.low)} to {PLAIN(r.high)}", residual_text(r.largest_residual),
         f"{r.at_rounding} of {r.runs}"]
        for r in study.geometry.lanczos
    ]  # fmt: skip


def noise_rows(study: StudySummary) -> list[list[str]]:
    """Per variant: each run's within-run SE and the between-seed SD, for d^T H d, kappa and the trace."""
    rows = []
    for r in study.geometry.noise:
        row = [r.variant]
        for name in ("dHd", "kappa", "trace"):
            row += [_ses(r.se[name]), PLAIN(r.sd[name])]
        rows.append(row)
    return rows


def estimator_noise(study: StudySummary) -> str:
    """The within-run vs between-seed table and the Lanczos residual table, with what they mean."""
    alpha = study.geometry.steepness_alpha
    rows, shares = noise_rows(study), study.geometry.noise_share
    s = study.setup
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
            f"Each run's d^T H d and kappa are means over its {s.slice_directions} slice directions (within-run "
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
            f"Lanczos: each of the top {s.ritz_pairs} Ritz pairs, its relative residual "
            "||Hq - theta q|| / |theta| from the Lanczos relation, the largest over runs:",
            table(
                ["Ritz pair", "value over runs", "largest residual over runs", "runs at rounding level"],
                lanczos_rows(study),
            ),  # fmt: skip
            "The Hessian-vector products run in float32, whose machine epsilon is "
            f"{FLOAT32_EPS:.1e}: a relative residual near 1e-7 is at rounding level. The Lanczos relation can give "
            "far smaller numbers (down to 1e-19), but they only say the recurrence has converged; H q = theta q "
            "holds no better than float32 rounding, so such residuals are shown as '<= "
            f"{FLOAT32_EPS:.1e}'. The lower Ritz pairs converge more slowly, and their residuals are their tolerance.",
        ]
    )
