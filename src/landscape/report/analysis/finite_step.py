"""The finite-step curvature of the 1-D slices, beside the local Hessian's d^T H d.

For a ReLU / max-pool network the autograd Hessian is the Hessian inside one activation pattern: it omits the
curvature that pattern switches add at any finite step. The slices already hold L(theta + alpha d) on a grid, so
the curvature at a finite step alpha comes for free:

    kappa(alpha) = (L(alpha) + L(-alpha) - 2 L(0)) / alpha^2,

read at the grid step and twice and four times it (0.125, 0.25 and 0.5 on the default 17-point grid on [-1, 1]),
on the training subset with BN frozen: the loss, subset and BN handling of d^T H d and of the fitted 2a.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from landscape.report.analysis.stats import finite_ci
from landscape.report.analysis.study_data import StudyData
from landscape.report.terms import Interval
from landscape.study.results import Spread

BN, SPLIT = "frozen", "train"  # the slice curve that d^T H d and the fitted 2a describe
SCALES = (1, 2, 4)  # alpha = the grid step times these
STEEPNESS_SCALE = 1  # "how steep is the slice": kappa at the grid step, the smallest step the grid resolves
STEEPNESS_INDEX = SCALES.index(STEEPNESS_SCALE)
_ON_GRID = 1e-9


def finite_step_alphas(alphas: Sequence[float]) -> list[float]:
    """The alphas of kappa: the grid step h times SCALES, those with both +-alpha on the grid."""
    grid = np.unique(np.asarray(alphas, float))
    positive = grid[grid > _ON_GRID]
    if positive.size == 0 or not np.any(np.abs(grid) <= _ON_GRID):
        raise ValueError("a slice grid needs alpha = 0 and at least one alpha > 0")
    step = float(positive.min())
    wanted = [k * step for k in SCALES]
    return [a for a in wanted if all(np.any(np.abs(grid - s * a) <= _ON_GRID * max(1.0, a)) for s in (1, -1))]


def finite_step_curvature(rows: pd.DataFrame, alpha: float) -> np.ndarray:
    """kappa(alpha) of each direction (ascending direction id) from one run's rows of one curve (columns
    direction, alpha, loss). A missing grid point -> ValueError."""
    losses = rows.pivot_table(index="direction", columns="alpha", values="loss", aggfunc="mean")
    columns = losses.columns.to_numpy(float)

    def at(a: float) -> np.ndarray:
        hit = np.flatnonzero(np.abs(columns - a) <= _ON_GRID * max(1.0, abs(a)))
        if hit.size != 1:
            raise ValueError(f"the slice grid has no alpha = {a:g}")
        return losses.iloc[:, hit[0]].to_numpy(float)

    return (at(alpha) + at(-alpha) - 2.0 * at(0.0)) / alpha**2


def own_curve(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of the slice curve that d^T H d describes: the training subset with BN frozen."""
    return rows[(rows["bn"] == BN) & (rows["split"] == SPLIT)]


def step_curvature(rows: pd.DataFrame) -> float:
    """One run's "how steep is the slice": the mean over its directions of kappa at the grid step, from its
    slice.csv rows (every curve; the training subset with BN frozen is used)."""
    own = own_curve(rows)
    return float(np.mean(finite_step_curvature(own, finite_step_alphas(own["alpha"])[STEEPNESS_INDEX])))


def run_rows(data: StudyData, variant: str, seed: int) -> pd.DataFrame:
    """One run's slice rows of the training subset with BN frozen."""
    f = data.slices[variant]
    return own_curve(f[f["seed"] == seed])


def study_alphas(data: StudyData) -> list[float]:
    """The alphas of kappa, from the first run's grid (every run shares the slice settings)."""
    return finite_step_alphas(run_rows(data, data.variants[0], data.seeds[0])["alpha"])


def steepness_alpha(data: StudyData) -> float:
    """The alpha at which the report gives "how steep is the slice"."""
    return study_alphas(data)[STEEPNESS_INDEX]


def run_kappa(data: StudyData, variant: str, seed: int, alpha: float) -> np.ndarray:
    """kappa(alpha) per direction of one run, in the order of ``curvature_exact_per_direction``."""
    kappa = finite_step_curvature(run_rows(data, variant, seed), alpha)
    local = data.runs[(variant, seed)].slice.curvature_exact_per_direction
    if kappa.size != len(local):
        raise ValueError(
            f"{variant} seed {seed}: {kappa.size} slice directions in slice.csv, {len(local)} d^T H d values"
        )
    return kappa


def run_spread(data: StudyData, variant: str, seed: int, alpha: float) -> Spread:
    """Mean, std and n of kappa(alpha) over one run's directions (within-run measurement noise)."""
    return Spread.of(run_kappa(data, variant, seed, alpha))


def variant_kappa(data: StudyData, variant: str, alpha: float) -> Interval:
    """kappa(alpha) per variant: the t-interval over seeds of each run's mean over directions."""
    return finite_ci(run_spread(data, variant, s, alpha).mean for s in data.seeds)


def local_to_finite(data: StudyData, variant: str, alpha: float) -> Interval:
    """d^T H d / kappa(alpha) per variant: each run's mean d^T H d over its mean kappa, t-interval over seeds."""
    ratios = []
    for s in data.seeds:
        kappa = run_spread(data, variant, s, alpha).mean
        ratios.append(data.runs[(variant, s)].slice.curvature_exact.mean / kappa if kappa != 0 else math.nan)
    return finite_ci(ratios)


def directions_below(data: StudyData, variant: str, alpha: float) -> tuple[int, int]:
    """(k, n): in k of the variant's n directions (all seeds) d^T H d is below kappa(alpha)."""
    below = total = 0
    for s in data.seeds:
        local = np.asarray(data.runs[(variant, s)].slice.curvature_exact_per_direction, float)
        below += int(np.sum(local < run_kappa(data, variant, s, alpha)))
        total += local.size
    return below, total
