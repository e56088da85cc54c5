"""Statistics over training seeds: t-intervals and t-tests, paired and factorial contrasts, Holm, verdicts, ranks.

Pure functions of numbers; the t distribution and Kendall's tau come from scipy.stats. The unit of replication is
the training seed: a variant's measure is the mean of its per-seed values with a 95 % Student-t interval
(df = n - 1); a comparison of two variants is the interval of their per-seed differences (paired by seed); a
factorial effect is the interval of a per-seed contrast over the 8 cells of the conv x BN x dropout design. Its test
is the two-sided t-test of the same per-seed values (scipy.stats.t), a family of tests is Holm-adjusted, and a
claim's verdict follows VERDICT_RULE. A rank correlation is Kendall's tau-b (scipy.stats.kendalltau) with a
percentile interval from resampling whole groups (the variants).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from itertools import combinations, product

import numpy as np
from scipy import stats

from landscape.probes.summary import _finite_array
from landscape.report.terms import ALPHA, FACTORS, Interval


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's T with ``df`` degrees of freedom (2 scipy.stats.t.sf(|t|, df))."""
    if df <= 0:
        raise ValueError(f"t_two_sided_p: df must be > 0, got {df!r}")
    return float(2.0 * stats.t.sf(abs(t), df))


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's T with ``df`` degrees of freedom (scipy.stats.t.cdf)."""
    if df <= 0:
        raise ValueError(f"t_cdf: df must be > 0, got {df!r}")
    return float(stats.t.cdf(t, df))


@lru_cache(maxsize=4096)
def t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile of Student's T with ``df`` degrees of freedom (scipy.stats.t.ppf)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"t_quantile: q must be in (0, 1), got {q!r}")
    return float(stats.t.ppf(q, df))


def t_quantile_975(df: int) -> float:
    """Two-sided 95 % Student-t critical value t_{0.975, df}. df not an integer >= 1 -> ValueError."""
    if df < 1 or int(df) != df:
        raise ValueError(f"t_quantile_975: df must be an integer >= 1, got {df!r}")
    return t_quantile(0.975, int(df))


def mean_ci(values: Sequence[float]) -> Interval:
    """Mean ± t_{0.975, n-1} s / sqrt(n), the quantile from scipy.stats.t.ppf. std is 0.0 and the interval nan
    when n == 1.

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
    half = t_quantile_975(n - 1) * std / math.sqrt(n)  # not stats.t.interval: that is nan at std == 0
    return Interval(mean, std, mean - half, mean + half, n)


def finite_ci(values: Iterable[float]) -> Interval:
    """``mean_ci`` of the finite values (a null in a JSON file reads as nan); all-nan -> a nan Interval, n = 0."""
    finite = [float(v) for v in values if math.isfinite(v)]
    return mean_ci(finite) if finite else Interval(math.nan, math.nan, math.nan, math.nan, 0)


def geometric_ci(values: Iterable[float]) -> Interval:
    """The geometric mean of the positive finite values and the 95 % t-CI of their log, both back on the values'
    scale (``std`` stays that of the log): an interval for a scale measure such as lambda_max that never reaches 0.
    A value <= 0 has no log and is left out, as ``finite_ci`` leaves out a non-finite one; callers that must not
    lose such a value check for it first."""
    i = finite_ci(math.log(v) for v in values if math.isfinite(v) and v > 0)
    return Interval(math.exp(i.mean), i.std, math.exp(i.ci_low), math.exp(i.ci_high), i.n)


def paired_difference(a: Mapping[int, float], b: Mapping[int, float]) -> Interval:
    """mean_ci of d_k = a[k] - b[k] over the seeds k present in both. No common seed -> ValueError."""
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError(f"paired_difference: no common seed (a has {sorted(a)}, b has {sorted(b)})")
    return mean_ci([a[k] - b[k] for k in common])


Cell = tuple[bool, bool, bool]  # (conv, bn, dropout) on or off
CELLS: list[Cell] = list(product((False, True), repeat=len(FACTORS)))
TERMS = [":".join(FACTORS[i] for i in t) for k in range(1, 4) for t in combinations(range(len(FACTORS)), k)]


def _cell_name(cell: Cell) -> str:
    return ", ".join(f"{f}={'on' if on else 'off'}" for f, on in zip(FACTORS, cell, strict=True))


def term_weights(term: str) -> dict[Cell, float]:
    """The contrast of a factorial term ("bn", "conv:bn", ...): 1/4 times the product of its factors' +-1 signs.

    A main effect is thus the mean of the 4 cells with the factor on minus the mean of the 4 with it off.
    """
    factors = [FACTORS.index(f) for f in term.split(":")]
    return {c: math.prod(1.0 if c[i] else -1.0 for i in factors) / 4.0 for c in CELLS}


def simple_weights(factor: str, within: Mapping[str, bool]) -> dict[Cell, float]:
    """The simple effect of ``factor`` at the levels ``within`` of other factors (e.g. BN within MLPs: factor "bn",
    within {"conv": False}): the mean of the cells at those levels with the factor on minus those with it off,
    averaged over the remaining factors. Cells at other levels get weight 0."""
    i = FACTORS.index(factor)
    chosen = [c for c in CELLS if all(c[FACTORS.index(f)] == on for f, on in within.items())]
    half = len(chosen) / 2
    return {c: ((1.0 if c[i] else -1.0) / half if c in chosen else 0.0) for c in CELLS}


def common_seeds(cells: Mapping[Cell, Mapping[int, float]]) -> list[int]:
    """The seeds present in all 8 cells. A missing cell, or no common seed -> ValueError."""
    missing = [c for c in CELLS if c not in cells]
    if missing:
        raise ValueError(f"factorial: missing cell(s): {'; '.join(_cell_name(c) for c in missing)}")
    seeds = sorted(set.intersection(*(set(cells[c]) for c in CELLS)))
    if not seeds:
        raise ValueError("factorial: no seed is present in all 8 cells")
    return seeds


def contrast(cells: Mapping[Cell, Mapping[int, float]], weights: Mapping[Cell, float]) -> Interval:
    """mean_ci over the seeds common to all 8 cells of the per-seed contrast sum_c weights[c] * cells[c][seed]."""
    seeds = common_seeds(cells)
    return mean_ci([sum(w * cells[c][k] for c, w in weights.items()) for k in seeds])


def factorial_effects(cells: Mapping[Cell, Mapping[int, float]]) -> dict[str, Interval]:
    """Main effects and interactions of the 2^3 design over FACTORS, seeds as replicates.

    Each term's Interval is mean_ci over the per-seed contrasts of ``term_weights``. Keys (TERMS): "conv", "bn",
    "dropout", "conv:bn", "conv:dropout", "bn:dropout", "conv:bn:dropout". A missing cell or no seed common to
    all cells -> ValueError.
    """
    return {term: contrast(cells, term_weights(term)) for term in TERMS}


def t_test_p(interval: Interval) -> float:
    """Two-sided p of the one-sample t-test of mean 0 behind ``interval`` (t = mean / (std / sqrt(n)), df = n - 1).

    nan where there is no test (n < 2, or a missing std); a zero spread gives 1 at mean 0 and 0 elsewhere.
    """
    mean, std, n = interval.mean, interval.std, interval.n
    if n < 2 or not (math.isfinite(mean) and math.isfinite(std)):
        return math.nan
    if std == 0:
        return 1.0 if mean == 0 else 0.0
    return t_two_sided_p(mean / (std / math.sqrt(n)), n - 1)


def decision(p_adjusted: float, estimate: float, claimed_sign: int) -> str:
    """The verdict of a tested claim: where p_adjusted < ALPHA, "agrees" if the estimate's sign is
    ``claimed_sign`` and "differs" if not; "inconclusive" otherwise (a nan p included). claimed_sign not in
    (1, -1) -> ValueError."""
    if claimed_sign not in (1, -1):
        raise ValueError(f"decision: claimed_sign must be +1 or -1, got {claimed_sign!r}")
    if not p_adjusted < ALPHA or estimate == 0:
        return "inconclusive"
    return "agrees" if math.copysign(1, estimate) == claimed_sign else "differs"


def seeds_for_power(interval: Interval, power: float = 0.8, max_seeds: int = 1000) -> int | None:
    """Seeds a paired t-test at two-sided level ALPHA needs for ``power`` if the true mean and spread were the
    estimates of ``interval``: the smallest n >= 2 with n >= ((t_{1-ALPHA/2, n-1} + t_{power, n-1}) s / |mean|)^2
    (the normal approximation with t quantiles). None where no n <= max_seeds does (or no spread)."""
    mean, std = interval.mean, interval.std
    if not (math.isfinite(mean) and math.isfinite(std)) or mean == 0 or std == 0:
        return None
    ratio = std / abs(mean)
    for n in range(2, max_seeds + 1):
        if n >= ((t_quantile(1 - ALPHA / 2, n - 1) + t_quantile(power, n - 1)) * ratio) ** 2:
            return n
    return None


def verdict(interval: Interval, claimed_sign: int) -> str:
    """Which side of 0 a 95 % interval lies on: "agrees" (the claimed side), "differs" or "inconclusive" (it
    includes 0, or there is none). claimed_sign not in (1, -1) -> ValueError."""
    if claimed_sign not in (1, -1):
        raise ValueError(f"verdict: claimed_sign must be +1 or -1, got {claimed_sign!r}")
    low, high = interval.ci_low, interval.ci_high
    if math.isnan(low) or math.isnan(high):
        return "inconclusive"
    if low > 0:
        return "agrees" if claimed_sign == 1 else "differs"
    if high < 0:
        return "agrees" if claimed_sign == -1 else "differs"
    return "inconclusive"


def _tau_b(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 2:
        return math.nan
    with warnings.catch_warnings():  # all x (or all y) tied: scipy warns and gives nan, which is the answer here
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.kendalltau(x, y, variant="b").statistic)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (tie-corrected; scipy.stats.kendalltau). Fewer than 2 points, or all x (or all y) tied -> nan."""
    xa, ya = _finite_array(x, "kendall_tau x"), _finite_array(y, "kendall_tau y")
    if xa.size != ya.size:
        raise ValueError(f"kendall_tau: x has {xa.size} values, y has {ya.size}")
    return _tau_b(xa, ya)


def _group_bootstrap_taus(xa: np.ndarray, ya: np.ndarray, groups: list[str], resamples: int, seed: int) -> np.ndarray:
    """The tau-b of each bootstrap resample of whole groups (nan where a resample is all tied in x or y), all at
    once. A resample is a count per point (how often its group was drawn), so its tau-b is
    c'(Sx*Sy)c / sqrt(c'(Sx*Sx)c * c'(Sy*Sy)c) with Sx, Sy the pairs' sign matrices: the same sum over pairs as
    scipy.stats.kendalltau on the resampled points (tests/test_stats.py checks it), without a call per resample."""
    names = sorted(set(groups))
    membership = np.array([[g == name for g in groups] for name in names], dtype=float)  # (groups, points)
    drawn = np.random.default_rng(seed).integers(0, len(names), size=(resamples, len(names)))
    counts = np.stack([np.bincount(row, minlength=len(names)) for row in drawn]).astype(float) @ membership
    sx, sy = np.sign(xa[:, None] - xa[None, :]), np.sign(ya[:, None] - ya[None, :])
    num, dx, dy = (np.einsum("ri,ij,rj->r", counts, m, counts) for m in (sx * sy, sx * sx, sy * sy))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(dx * dy > 0, num / np.sqrt(np.where(dx * dy > 0, dx * dy, 1.0)), np.nan)


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
    taus = _group_bootstrap_taus(xa, ya, g, resamples, seed)
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


def holm_family(p_values: Mapping[str, float]) -> dict[str, float]:
    """``holm`` over a family fixed in advance in which some members may have no test (p nan): those count in the
    family as p = 1, so they make the others' adjustment no milder, and their own adjusted p stays nan."""
    adjusted = holm({k: 1.0 if math.isnan(p) else p for k, p in p_values.items()})
    return {k: math.nan if math.isnan(p) else adjusted[k] for k, p in p_values.items()}
