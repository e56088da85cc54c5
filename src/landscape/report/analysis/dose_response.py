"""Question 1 as a dose-response: does SGD's noise scale eta / B set the sharpness and the gap, at matched fit?

Model A is trained at constant learning rate eta and batch B over several noise scales, each cell with the same
training seeds, and every run stops at one common training-loss target, so cells compare at equal fit. The
training seed is the unit of replication: seed k shares its initial weights and data order across cells, so
each seed gives one slope of a measure against log2(eta / B) (a paired design), and the slope's interval and
test are over those per-seed slopes (Student t, df = n - 1, from scipy.stats). A run whose measure is missing or
not finite is *dead* and is left out by name; a seed with fewer than 2 noise levels left gives no slope and is
*dropped* by name. Holm and the claim vocabulary ("agrees", "differs", "inconclusive") are ``landscape.report.stats``'s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from landscape.report.analysis.stats import decision, holm_family
from landscape.report.terms import ALPHA
from landscape.study.results import stability_ratio

NoiseCell = tuple[float, int]  # (learning rate eta, batch B)


@dataclass(frozen=True)
class Run:
    """One run: learning rate ``eta``, batch ``batch``, momentum ``momentum``, training ``seed`` and its measure
    values at the training-loss target (a measure missing or not finite: the run is dead for that measure)."""

    eta: float
    batch: int
    momentum: float
    seed: int
    values: Mapping[str, float]

    @property
    def cell(self) -> NoiseCell:
        return (self.eta, self.batch)


def cell_name(cell: NoiseCell) -> str:
    return f"eta={cell[0]:g}, B={cell[1]}"


def _live(runs: Iterable[Run], measure: str) -> tuple[dict[tuple[NoiseCell, int], float], tuple[str, ...]]:
    """The finite values by (cell, seed), and the names of the dead runs. A repeated (cell, seed) -> ValueError."""
    live: dict[tuple[NoiseCell, int], float] = {}
    dead, seen = [], set()
    for r in runs:
        if (r.cell, r.seed) in seen:
            raise ValueError(f"dose_response: two runs of {cell_name(r.cell)} with seed {r.seed}")
        seen.add((r.cell, r.seed))
        y = r.values.get(measure, math.nan)
        if math.isfinite(y):
            live[(r.cell, r.seed)] = float(y)
        else:
            dead.append(f"{cell_name(r.cell)}, seed {r.seed}")
    return live, tuple(dead)


@dataclass(frozen=True)
class OverSeeds:
    """The mean of per-seed values (slopes, paired differences), its sample std (ddof=1), its (1 - alpha)
    t-interval over seeds [ci_low, ci_high], n seeds, and the two-sided one-sample t-test p of mean 0. Every
    number but the mean is nan where there is no test (n < 2, or values that do not vary)."""

    per_seed: dict[int, float]
    mean: float
    std: float
    ci_low: float
    ci_high: float
    n: int
    p: float


def over_seeds(per_seed: Mapping[int, float], alpha: float = ALPHA) -> OverSeeds:
    x = np.array([per_seed[k] for k in sorted(per_seed)], dtype=float)
    n = int(x.size)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    if not std > 0:
        return OverSeeds(dict(per_seed), mean, std, math.nan, math.nan, n, math.nan)
    low, high = stats.t.interval(1 - alpha, n - 1, loc=mean, scale=std / math.sqrt(n))
    p = float(stats.ttest_1samp(x, 0.0).pvalue)
    return OverSeeds(dict(per_seed), mean, std, float(low), float(high), n, p)


@dataclass(frozen=True)
class Slope:
    """The slope of ``measure`` per doubling of eta / B (measure units per log2 step) over the cells of one
    batch: ``estimate`` over the per-seed OLS slopes; ``levels`` the noise scales eta / B that entered; seeds
    with under 2 levels ``dropped`` and runs ``dead`` by name."""

    measure: str
    batch: int
    estimate: OverSeeds
    levels: tuple[float, ...]
    dropped: tuple[int, ...]
    dead: tuple[str, ...]


def slope_over_seeds(runs: Iterable[Run], measure: str, batch: int = 128, alpha: float = ALPHA) -> Slope:
    """Per seed, the OLS slope of ``measure`` on log2(eta / B) over that seed's live runs at ``batch``; then
    their mean, t-interval and t-test against 0 over seeds (``OverSeeds``)."""
    mine = [r for r in runs if r.batch == batch]
    live, dead = _live(mine, measure)
    slopes, dropped = {}, []
    for seed in sorted({r.seed for r in mine}):
        points = sorted((math.log2(c[0] / c[1]), y) for (c, s), y in live.items() if s == seed)
        if len(points) < 2:
            dropped.append(seed)
            continue
        x, y = np.array(points).T
        slopes[seed] = float(stats.linregress(x, y).slope)
    levels = tuple(sorted({c[0] / c[1] for c, _ in live}))
    return Slope(measure, batch, over_seeds(slopes, alpha), levels, tuple(dropped), dead)


@dataclass(frozen=True)
class Equivalence:
    """A TOST of the per-seed values against the margin +-``margin`` (set before the run). ``p_equivalent``: the
    larger of the two one-sided p's (equivalence when below alpha, i.e. the 1 - 2 alpha interval inside the
    margin); ``p_differs``: the larger of the two-sided p of mean 0 and the one-sided p that the mean lies beyond
    the margin on the estimate's side (the 1 - 2 alpha interval outside it); ``p`` the one that decided
    ``outcome`` (the smaller of the two when inconclusive)."""

    estimate: OverSeeds
    margin: float
    p_equivalent: float
    p_differs: float
    p: float
    outcome: str


def equivalence_outcome(p_equivalent: float, p_differs: float, alpha: float = ALPHA) -> tuple[str, float]:
    """The TOST's outcome, "equivalent", "differs" or "inconclusive", and the p that decided it (the smaller when
    inconclusive); takes raw or Holm-adjusted p's."""
    if p_equivalent < alpha:
        return "equivalent", p_equivalent
    if p_differs < alpha:
        return "differs", p_differs
    return "inconclusive", float(np.fmin(p_equivalent, p_differs))


def equivalence_of_slope(slope: Slope | OverSeeds, margin: float, alpha: float = ALPHA) -> Equivalence:
    """TOST on the per-seed slopes (or any ``OverSeeds``) with the margin +-``margin``, in the slope's units.

    The margin is the smallest slope of interest, fixed in params before the run: e.g. a fraction of the slope
    the theory predicts (about -1 for log lambda_max per unit log(eta / B), Jastrzebski et al. 2018), or the
    gap change per doubling of the noise scale that would matter. It is not a function of the seeds' spread,
    but it must exceed ``equivalence_margin_floor`` at the planned n and a pilot's sd, or the test cannot
    come out "equivalent". margin <= 0 -> ValueError.
    """
    if not margin > 0:
        raise ValueError(f"equivalence_of_slope: margin must be > 0, got {margin!r}")
    est = slope.estimate if isinstance(slope, Slope) else slope
    p_eq = p_diff = math.nan
    if math.isfinite(est.p):
        x = np.array(list(est.per_seed.values()))
        above = stats.ttest_1samp(x, -margin, alternative="greater").pvalue
        below = stats.ttest_1samp(x, margin, alternative="less").pvalue
        beyond = stats.ttest_1samp(
            x, math.copysign(margin, est.mean), alternative="greater" if est.mean >= 0 else "less"
        )
        p_eq, p_diff = float(max(above, below)), float(max(est.p, beyond.pvalue))
    outcome, p = equivalence_outcome(p_eq, p_diff, alpha)
    return Equivalence(est, margin, p_eq, p_diff, p, outcome)


@dataclass(frozen=True)
class Contrast:
    """``measure`` of cell ``b`` minus cell ``a``, paired by seed (``estimate``); seeds with only one live run of
    the two ``dropped`` and runs ``dead`` by name."""

    measure: str
    a: NoiseCell
    b: NoiseCell
    estimate: OverSeeds
    dropped: tuple[int, ...]
    dead: tuple[str, ...]


def paired_contrast(
    runs: Iterable[Run], cell_a: NoiseCell, cell_b: NoiseCell, measure: str, alpha: float = ALPHA
) -> Contrast:
    """Per-seed differences y_b - y_a (e.g. b the near-full-batch cell, a the default; equal training loss by the
    stopping rule), their mean, t-interval and paired t-test p (``OverSeeds``)."""
    mine = [r for r in runs if r.cell in (cell_a, cell_b)]
    live, dead = _live(mine, measure)
    seeds = sorted({r.seed for r in mine})
    d = {s: live[(cell_b, s)] - live[(cell_a, s)] for s in seeds if (cell_a, s) in live and (cell_b, s) in live}
    dropped = tuple(s for s in seeds if s not in d)
    return Contrast(measure, cell_a, cell_b, over_seeds(d, alpha), dropped, dead)


@dataclass(frozen=True)
class Stability:
    """One cell's lambda_max x eta / (2 (1 + momentum)), where 1 is heavy-ball SGD's edge of stability: per seed,
    mean and t-interval in ``estimate`` (its p, of mean 0, means nothing here), the ``largest`` run's, whether it
    ``reaches`` the threshold, and the dead runs by name."""

    cell: NoiseCell
    estimate: OverSeeds
    largest: float
    reaches: bool
    dead: tuple[str, ...]


def edge_of_stability(
    runs: Iterable[Run], threshold: float = 0.9, measure: str = "lambda_max", alpha: float = ALPHA
) -> dict[NoiseCell, Stability]:
    """Per cell, each run's ``measure`` (lambda_max at the target) as a fraction of the stability threshold
    2 (1 + momentum) / eta; ``reaches`` where some run is at or above ``threshold`` (0.9: "about 1")."""
    runs, found = list(runs), {}
    for cell in sorted({r.cell for r in runs}):
        mine = [r for r in runs if r.cell == cell]
        live, dead = _live(mine, measure)
        ratio = {
            r.seed: stability_ratio(live[(cell, r.seed)], r.eta, r.momentum) for r in mine if (cell, r.seed) in live
        }
        largest = max(ratio.values(), default=math.nan)
        found[cell] = Stability(cell, over_seeds(ratio, alpha), largest, largest >= threshold, dead)
    return found


def _power(nc: float, df: int, alpha: float, tails: int) -> float:
    if tails == 1:
        return float(stats.nct.sf(stats.t.ppf(1 - alpha, df), df, nc))
    crit = stats.t.ppf(1 - alpha / 2, df)  # the lower tail as the upper one at -nc: nct.cdf is nan far out in it
    return float(stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc))


def minimum_detectable_effect(n: int, sd: float, alpha: float = ALPHA, power: float = 0.8, tails: int = 2) -> float:
    """The smallest true mean (in the measure's units) that a one-sample t-test of n seeds with spread ``sd``
    detects at level ``alpha`` with probability ``power``: the noncentral t's noncentrality, solved for, times
    sd / sqrt(n). Applies to per-seed slopes and paired differences alike."""
    if n < 2 or not sd > 0 or tails not in (1, 2) or not 0 < alpha < power < 1:
        raise ValueError(f"minimum_detectable_effect: needs n >= 2, sd > 0, tails 1 or 2, alpha < power < 1; "
                         f"got n={n}, sd={sd}, tails={tails}, alpha={alpha}, power={power}")  # fmt: skip
    high = 1.0
    while _power(high, n - 1, alpha, tails) < power:
        high *= 2
    nc = optimize.brentq(lambda c: _power(c, n - 1, alpha, tails) - power, 0.0, high, xtol=1e-12)
    return nc * sd / math.sqrt(n)


def mde_for_holm(
    n: int, sd: float, family_size: int, alpha: float = ALPHA, power: float = 0.8, tails: int = 2
) -> float:
    """``minimum_detectable_effect`` at alpha / family_size: Holm's first step, the level the smallest p of the
    family must clear. Later steps are milder, so this is the MDE of a claim that may be the family's only real
    effect (as with Bonferroni), an upper bound for the others."""
    if family_size < 1:
        raise ValueError(f"mde_for_holm: family_size must be >= 1, got {family_size!r}")
    return minimum_detectable_effect(n, sd, alpha / family_size, power, tails)


def equivalence_margin_floor(n: int, sd: float, alpha: float = ALPHA, power: float = 0.8) -> float:
    """The smallest margin at which the TOST of n seeds with spread ``sd`` shows equivalence with at least
    ``power`` when the true mean is 0: each one-sided test must fail with probability at most (1 - power) / 2
    (a union bound, so conservative), i.e. the one-sided MDE at power (1 + power) / 2."""
    return minimum_detectable_effect(n, sd, alpha, (1 + power) / 2, tails=1)


def holm_verdicts(
    signed: Mapping[str, tuple[OverSeeds, int]], equivalences: Mapping[str, Equivalence]
) -> dict[str, tuple[float, str]]:
    """One Holm family (``landscape.report.stats.holm_family``: no test counts as p = 1) of sign claims
    (estimate, claimed sign: ``stats.decision``) and claims of no effect (TOST: "agrees" when equivalence holds at
    the adjusted level, "differs" when the difference does, p_differs Holm-adjusted over the same family).
    Key -> (adjusted p, verdict); for a claim of no effect the adjusted p is p_equivalent's."""
    if set(signed) & set(equivalences):
        raise ValueError(f"holm_verdicts: keys in both families: {sorted(set(signed) & set(equivalences))}")
    first = holm_family({**{k: e.p for k, (e, _) in signed.items()},
                         **{k: q.p_equivalent for k, q in equivalences.items()}})  # fmt: skip
    other = holm_family({**dict.fromkeys(signed, math.nan), **{k: q.p_differs for k, q in equivalences.items()}})
    out = {k: (first[k], decision(first[k], e.mean, sign)) for k, (e, sign) in signed.items()}
    for k in equivalences:
        outcome, _ = equivalence_outcome(first[k], other[k])
        out[k] = (first[k], "agrees" if outcome == "equivalent" else outcome)
    return out
