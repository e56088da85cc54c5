"""Statistics over training seeds: t-intervals, paired and factorial contrasts, verdicts, rank correlation.

Pure functions of numbers (numpy only). The unit of replication is the training seed; see the section
"Statistics over training seeds" in METHODS.md for the rules these functions implement.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations, product

import numpy as np

# Two-sided 95 % Student-t critical values t_{0.975, df} for df = 1..30 (6 decimals).
_T975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
    2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
    2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272,
)  # fmt: skip
_Z975 = 1.959963984540054  # standard normal 0.975 quantile

FACTORS = ("conv", "bn", "dropout")
VERDICTS = ("agrees", "differs", "inconclusive")
VERDICT_RULE = (
    "A claim 'agrees' when the 95 % t-interval of the claimed difference (paired over training seeds) lies "
    "entirely on the claimed side of 0, 'differs' when it lies entirely on the other side, and is "
    "'inconclusive' otherwise (including when fewer than 2 seeds give no interval)."
)


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _nan_if_none(x: float | None) -> float:
    return math.nan if x is None else float(x)


@dataclass(frozen=True)
class Interval:
    """Mean, sample std (ddof=1), 95 % interval [low, high] and number of values behind them."""

    mean: float
    std: float
    low: float
    high: float
    n: int

    def to_json(self) -> dict:
        """JSON-safe dict {"mean", "std", "ci_low", "ci_high", "n"}; nan becomes None."""
        return {
            "mean": _none_if_nan(self.mean),
            "std": _none_if_nan(self.std),
            "ci_low": _none_if_nan(self.low),
            "ci_high": _none_if_nan(self.high),
            "n": int(self.n),
        }

    @classmethod
    def from_json(cls, d: Mapping) -> Interval:
        """Inverse of `to_json` (None becomes nan)."""
        return cls(
            mean=_nan_if_none(d["mean"]),
            std=_nan_if_none(d["std"]),
            low=_nan_if_none(d["ci_low"]),
            high=_nan_if_none(d["ci_high"]),
            n=int(d["n"]),
        )


def t_quantile_975(df: int) -> float:
    """Two-sided 95 % Student-t critical value t_{0.975, df}.

    A table for df <= 30; a 4th-order Cornish-Fisher expansion above (error < 1e-7 there). df < 1 -> ValueError.
    """
    if df < 1 or int(df) != df:
        raise ValueError(f"t_quantile_975: df must be an integer >= 1, got {df!r}")
    df = int(df)
    if df <= len(_T975):
        return _T975[df - 1]
    z, v = _Z975, float(df)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / v + g2 / v**2 + g3 / v**3 + g4 / v**4


def _finite_array(values: Sequence[float], what: str) -> np.ndarray:
    arr = np.asarray(list(values), dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a flat sequence of numbers, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{what}: non-finite value {arr[bad[0]]} at position {bad[0]} ({bad.size} non-finite)")
    return arr


def mean_ci(values: Sequence[float]) -> Interval:
    """Mean ± t_{0.975, n-1} s / sqrt(n). std is 0.0 and the interval nan when n == 1.

    Empty input or a non-finite value -> ValueError.
    """
    arr = _finite_array(values, "mean_ci")
    n = arr.size
    if n == 0:
        raise ValueError("mean_ci: no values (n == 0)")
    mean = float(arr.mean())
    if n == 1:
        return Interval(mean, 0.0, math.nan, math.nan, 1)
    std = float(arr.std(ddof=1))
    half = t_quantile_975(n - 1) * std / math.sqrt(n)
    return Interval(mean, std, mean - half, mean + half, n)


def paired_difference(a: Mapping[int, float], b: Mapping[int, float]) -> Interval:
    """mean_ci of d_k = a[k] - b[k] over the seeds k present in both. No common seed -> ValueError."""
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError(f"paired_difference: no common seed (a has {sorted(a)}, b has {sorted(b)})")
    return mean_ci([a[k] - b[k] for k in common])


def _cell_name(cell: tuple[bool, bool, bool]) -> str:
    return ", ".join(f"{f}={'on' if on else 'off'}" for f, on in zip(FACTORS, cell, strict=True))


def factorial_effects(cells: Mapping[tuple[bool, bool, bool], Mapping[int, float]]) -> dict[str, Interval]:
    """Main effects and interactions of the 2^3 design over FACTORS, seeds as replicates.

    For each seed present in all 8 cells, the contrast of a term (a set of factors) is 1/4 of the sum over
    cells of the product of the factors' ±1 signs times the cell's value; a main effect is thus the mean
    with the factor on minus the mean with it off. Each term's Interval is mean_ci over the per-seed contrasts.
    Keys: "conv", "bn", "dropout", "conv:bn", "conv:dropout", "bn:dropout", "conv:bn:dropout".
    A missing cell or no seed common to all cells -> ValueError.
    """
    all_cells = list(product((False, True), repeat=len(FACTORS)))
    missing = [c for c in all_cells if c not in cells]
    if missing:
        raise ValueError(f"factorial_effects: missing cell(s): {'; '.join(_cell_name(c) for c in missing)}")
    seeds = sorted(set.intersection(*(set(cells[c]) for c in all_cells)))
    if not seeds:
        raise ValueError("factorial_effects: no seed is present in all 8 cells")
    y = np.array([[cells[c][k] for k in seeds] for c in all_cells], dtype=float)  # (cell, seed)
    signs = np.array([[1.0 if on else -1.0 for on in c] for c in all_cells])  # (cell, factor)
    effects: dict[str, Interval] = {}
    for order in range(1, len(FACTORS) + 1):
        for term in combinations(range(len(FACTORS)), order):
            weight = np.prod(signs[:, list(term)], axis=1)
            contrasts = weight @ y / 4.0
            effects[":".join(FACTORS[i] for i in term)] = mean_ci(contrasts)
    return effects


def verdict(interval: Interval, claimed_sign: int) -> str:
    """Apply VERDICT_RULE: "agrees", "differs" or "inconclusive". claimed_sign not in (1, -1) -> ValueError."""
    if claimed_sign not in (1, -1):
        raise ValueError(f"verdict: claimed_sign must be +1 or -1, got {claimed_sign!r}")
    low, high = interval.low, interval.high
    if math.isnan(low) or math.isnan(high):
        return "inconclusive"
    if low > 0:
        return "agrees" if claimed_sign == 1 else "differs"
    if high < 0:
        return "agrees" if claimed_sign == -1 else "differs"
    return "inconclusive"


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


def first_reaching(values: Sequence[float], threshold: float) -> tuple[int, bool]:
    """1-based index of the first value >= threshold and False; (len(values), True) if never reached."""
    if len(values) == 0:
        raise ValueError("first_reaching: no values")
    for i, v in enumerate(values, start=1):
        if v >= threshold:
            return i, False
    return len(values), True


def _tau_b(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 2:
        return math.nan
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(y[:, None] - y[None, :])
    denom = math.sqrt(float(np.sum(sx * sx)) * float(np.sum(sy * sy)))
    return float(np.sum(sx * sy)) / denom if denom > 0 else math.nan


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (tie-corrected). Fewer than 2 points, or all x (or all y) tied -> nan."""
    xa, ya = _finite_array(x, "kendall_tau x"), _finite_array(y, "kendall_tau y")
    if xa.size != ya.size:
        raise ValueError(f"kendall_tau: x has {xa.size} values, y has {ya.size}")
    return _tau_b(xa, ya)


def kendall_tau_group_bootstrap(
    x: Sequence[float], y: Sequence[float], groups: Sequence[str], resamples: int = 2000, seed: int = 0
) -> Interval:
    """Kendall's tau over all points with a 95 % percentile CI from resampling whole groups with replacement.

    mean = tau on the data, std = std of the bootstrap taus, low/high = 2.5/97.5 percentiles of the finite
    bootstrap taus (nan if none), n = number of points. Deterministic for a given `seed`.
    """
    xa, ya = _finite_array(x, "kendall_tau_group_bootstrap x"), _finite_array(y, "kendall_tau_group_bootstrap y")
    g = list(groups)
    if not (xa.size == ya.size == len(g)):
        raise ValueError(f"kendall_tau_group_bootstrap: lengths differ (x {xa.size}, y {ya.size}, groups {len(g)})")
    if resamples < 1:
        raise ValueError(f"kendall_tau_group_bootstrap: resamples must be >= 1, got {resamples}")
    names = sorted(set(g))
    members = [np.array([i for i, gi in enumerate(g) if gi == name]) for name in names]
    rng = np.random.default_rng(seed)
    taus = np.empty(resamples)
    for r in range(resamples):
        idx = np.concatenate([members[j] for j in rng.integers(0, len(names), size=len(names))])
        taus[r] = _tau_b(xa[idx], ya[idx])
    finite = taus[np.isfinite(taus)]
    std = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
    low, high = (float(q) for q in np.percentile(finite, [2.5, 97.5])) if finite.size else (math.nan, math.nan)
    return Interval(_tau_b(xa, ya), std, low, high, int(xa.size))


def holm(p_values: Mapping[str, float]) -> dict[str, float]:
    """Holm step-down adjusted p-values: monotone in the raw p-values, capped at 1. p outside [0, 1] -> ValueError."""
    for name, p in p_values.items():
        if not (0.0 <= p <= 1.0):
            raise ValueError(f"holm: p-value for {name!r} is {p}, not in [0, 1]")
    m = len(p_values)
    adjusted: dict[str, float] = {}
    running = 0.0
    for rank, (name, p) in enumerate(sorted(p_values.items(), key=lambda kv: kv[1])):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[name] = running
    return {name: adjusted[name] for name in p_values}
