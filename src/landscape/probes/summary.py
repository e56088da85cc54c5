"""Summary scalars of probe curves: pure functions of numbers, tested on closed forms."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class QuadraticFit:
    a: float  # L ~ c + b*alpha + a*alpha^2
    b: float
    c: float
    r2: float

    @property
    def curvature(self) -> float:
        """kappa = 2a, the second derivative of the fitted parabola."""
        return 2.0 * self.a


def fit_quadratic(alphas: Sequence[float], losses: Sequence[float], half_width: float) -> QuadraticFit:
    """Least-squares parabola through the points with |alpha| <= half_width (at least 3 needed)."""
    x, y = np.asarray(alphas, float), np.asarray(losses, float)
    keep = np.abs(x) <= half_width + 1e-12
    if keep.sum() < 3:
        raise ValueError(f"only {int(keep.sum())} grid points within |alpha| <= {half_width}; need 3")
    x, y = x[keep], y[keep]
    design = np.stack([np.ones_like(x), x, x * x], axis=1)
    (c, b, a), *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ np.array([c, b, a])
    total = ((y - y.mean()) ** 2).sum()
    r2 = 1.0 - (residual**2).sum() / total if total > 0 else 1.0
    return QuadraticFit(a=float(a), b=float(b), c=float(c), r2=float(r2))


@dataclass(frozen=True)
class BasinWidth:
    left: float  # alpha_- <= 0
    right: float  # alpha_+ >= 0
    censored: bool  # tau not reached on at least one side: the width is a lower bound

    @property
    def width(self) -> float:
        return self.right - self.left


def _crossing(alphas: np.ndarray, rise: np.ndarray, tau: float) -> tuple[float, bool]:
    """First alpha along ``alphas`` (walking away from 0) where ``rise`` reaches tau.

    Interpolates linearly in sqrt(rise), which is exact for a parabola around its
    minimum at 0 and monotone elsewhere.
    """
    root = np.sqrt(np.maximum(rise, 0.0))
    target = math.sqrt(tau)
    for i in range(1, len(alphas)):
        if rise[i] >= tau:
            r0, r1 = root[i - 1], root[i]
            t = (target - r0) / (r1 - r0) if r1 > r0 else 1.0
            return float(alphas[i - 1] + t * (alphas[i] - alphas[i - 1])), False
    return float(alphas[-1]), True


def basin_width(alphas: Sequence[float], losses: Sequence[float], tau: float) -> BasinWidth:
    """W_tau = alpha_+ - alpha_-, where L - L(0) first reaches tau on each side of alpha = 0."""
    x, y = np.asarray(alphas, float), np.asarray(losses, float)
    zero = int(np.argmin(np.abs(x)))
    if x[zero] != 0.0:
        raise ValueError("the alpha grid must contain 0")
    rise = y - y[zero]
    right, cens_r = _crossing(x[zero:], rise[zero:], tau)
    left, cens_l = _crossing(x[zero::-1], rise[zero::-1], tau)
    return BasinWidth(left=left, right=right, censored=cens_r or cens_l)


def _finite_array(values: Sequence[float], what: str) -> np.ndarray:
    arr = np.asarray(list(values), dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a flat sequence of numbers, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{what}: non-finite value {arr[bad[0]]} at position {bad[0]} ({bad.size} non-finite)")
    return arr


def interpolate_crossing(
    xs: Sequence[float], ys: Sequence[float], level: float, log_x: bool = True
) -> tuple[float, bool]:
    """Where the curve ys(xs) first rises above `level`, and whether that value is censored.

    Interpolates linearly between the two grid points around the crossing, in log x when `log_x` and both
    points are > 0, in x otherwise (e.g. a lower point at x = 0). Never above -> (xs[-1], True);
    ys[0] above -> (xs[0], False). xs must be strictly ascending and finite (and >= 0 when log_x).
    """
    x = _finite_array(xs, "interpolate_crossing xs")
    y = _finite_array(ys, "interpolate_crossing ys")
    if x.size == 0 or x.size != y.size:
        raise ValueError(f"interpolate_crossing: need equal, non-zero lengths, got {x.size} xs and {y.size} ys")
    if np.any(np.diff(x) <= 0):
        raise ValueError("interpolate_crossing: xs must be strictly ascending")
    if log_x and x[0] < 0:
        raise ValueError("interpolate_crossing: log_x needs xs >= 0")
    above = np.flatnonzero(y > level)
    if above.size == 0:
        return float(x[-1]), True
    i = int(above[0])
    if i == 0:
        return float(x[0]), False
    x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
    frac = (level - y0) / (y1 - y0)
    if log_x and x0 > 0:
        return float(math.exp(math.log(x0) + frac * (math.log(x1) - math.log(x0)))), False
    return float(x0 + frac * (x1 - x0)), False
