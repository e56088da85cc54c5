"""Question 1's dose-response statistics (landscape.report.analysis.dose_response) against answers computed here
independently: numpy.polyfit slopes, scipy.stats intervals and tests, Monte-Carlo power, the closed-form
stability threshold; and each rule coming out each way on synthetic runs at 3 and 5 seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from landscape.report.analysis.dose_response import (
    Run,
    edge_of_stability,
    equivalence_margin_floor,
    equivalence_of_slope,
    holm_verdicts,
    mde_for_holm,
    minimum_detectable_effect,
    paired_contrast,
    slope_over_seeds,
)
from landscape.report.analysis.stats import holm
from landscape.report.terms import VERDICTS

ETAS = [0.05 * 2.0**k for k in range(-2, 3)]  # 5 noise levels at batch 128, 16x apart end to end
DEFAULT, FULL = (0.05, 128), (0.05 * 32, 4096)  # the near-full-batch cell at the default's noise scale


def synthetic(seeds: int, slope: float, noise: float, rng_seed: int = 0, offset: float = 0.0) -> list[Run]:
    """Runs of 5 cells at batch 128, 2 at batch 512 and the batch-4096 cell: y = seed intercept + slope x
    log2(eta / B) + noise (+ ``offset`` in the batch-4096 cell), momentum 0.9."""
    rng = np.random.default_rng(rng_seed)
    cells = [(eta, 128) for eta in ETAS] + [(4 * ETAS[1], 512), (4 * ETAS[3], 512), FULL]
    runs = []
    for seed in range(seeds):
        intercept = rng.normal()
        for eta, batch in cells:
            y = intercept + slope * math.log2(eta / batch) + noise * rng.normal() + offset * ((eta, batch) == FULL)
            runs.append(Run(eta, batch, 0.9, seed, {"gap": y, "lambda_max": 50.0}))
    return runs


def test_slope_is_polyfit_per_seed_with_scipy_interval_and_test() -> None:
    runs = synthetic(5, 0.3, 0.2)
    found = slope_over_seeds(runs, "gap", batch=128)
    expected = {}
    for seed in range(5):
        mine = [r for r in runs if r.seed == seed and r.batch == 128]
        x = [math.log2(r.eta / r.batch) for r in mine]
        expected[seed] = np.polyfit(x, [r.values["gap"] for r in mine], 1)[0]
    slopes = np.array([expected[s] for s in range(5)])
    assert found.estimate.per_seed == pytest.approx(expected, rel=1e-10)
    assert found.estimate.mean == pytest.approx(slopes.mean(), rel=1e-12)
    low, high = stats.t.interval(0.95, 4, loc=slopes.mean(), scale=stats.sem(slopes))
    assert (found.estimate.ci_low, found.estimate.ci_high) == pytest.approx((low, high), rel=1e-10)
    assert found.estimate.p == pytest.approx(stats.ttest_1samp(slopes, 0.0).pvalue, rel=1e-10)
    assert found.estimate.n == 5 and found.dropped == () and found.dead == ()
    assert found.levels == pytest.approx([eta / 128 for eta in ETAS])  # batch 512 and 4096 left out


@pytest.mark.parametrize("seeds", [3, 5])
def test_each_rule_comes_out_each_way(seeds: int) -> None:
    margin = 0.1  # gap per doubling of the noise scale
    strong = slope_over_seeds(synthetic(seeds, 1.0, 0.05), "gap")
    flat = slope_over_seeds(synthetic(seeds, 0.0, 0.005), "gap")
    noisy = slope_over_seeds(synthetic(seeds, 0.0, 1.0), "gap")
    assert strong.estimate.p < 0.05 and not noisy.estimate.p < 0.05
    assert [equivalence_of_slope(s, margin).outcome for s in (strong, flat, noisy)] == [
        "differs",
        "equivalent",
        "inconclusive",
    ]
    tests = {"strong": (strong.estimate, 1), "wrong_sign": (strong.estimate, -1), "noisy": (noisy.estimate, 1)}
    verdicts = holm_verdicts(tests, {"flat": equivalence_of_slope(flat, margin)})
    assert {k: v for k, (_, v) in verdicts.items()} == {
        "strong": "agrees",
        "wrong_sign": "differs",
        "noisy": "inconclusive",
        "flat": "agrees",
    }
    assert {v for _, v in verdicts.values()} <= set(VERDICTS)
    shifted = paired_contrast(synthetic(seeds, 0.5, 0.05, offset=1.0), DEFAULT, FULL, "gap")
    same = paired_contrast(synthetic(seeds, 0.5, 1.0), DEFAULT, FULL, "gap")
    assert shifted.estimate.p < 0.05 and shifted.estimate.ci_low > 0 and not same.estimate.p < 0.05


def test_tost_p_values_and_the_ninety_percent_interval() -> None:
    """p_equivalent is the larger one-sided t p against -margin and +margin; equivalence at 5 % is the 90 %
    interval inside the margin; p_differs needs the two-sided p and the one-sided p beyond the margin."""
    outcomes = set()
    for rng_seed in range(20):
        slope = slope_over_seeds(synthetic(4, 0.05 * (rng_seed % 5), 0.1, rng_seed), "gap")
        x = np.array(list(slope.estimate.per_seed.values()))
        mean, se, margin = x.mean(), stats.sem(x), 0.12
        p_low, p_high = stats.t.sf((mean + margin) / se, 3), stats.t.cdf((mean - margin) / se, 3)
        beyond = stats.t.sf((abs(mean) - margin) / se, 3)
        q = equivalence_of_slope(slope, margin)
        assert q.p_equivalent == pytest.approx(max(p_low, p_high), rel=1e-9)
        assert q.p_differs == pytest.approx(max(2 * stats.t.sf(abs(mean) / se, 3), beyond), rel=1e-9)
        low, high = stats.t.interval(0.90, 3, loc=mean, scale=se)
        assert (q.outcome == "equivalent") == (-margin < low and high < margin)
        if q.outcome == "differs":
            assert low > margin or high < -margin
        expected = {"equivalent": q.p_equivalent, "differs": q.p_differs}
        assert q.p == expected.get(q.outcome, min(q.p_equivalent, q.p_differs))
        outcomes.add(q.outcome)
    assert outcomes == {"equivalent", "differs", "inconclusive"}
    with pytest.raises(ValueError, match="margin"):
        equivalence_of_slope(slope, 0.0)


@pytest.mark.parametrize(("n", "tails"), [(3, 2), (5, 2), (5, 1)])
def test_mde_has_the_power_asked_for(n: int, tails: int) -> None:
    """20,000 simulated t-tests of n draws with true mean at the MDE reject in 80 +- 2 % of them."""
    sd = 2.0
    mde = minimum_detectable_effect(n, sd, 0.05, 0.8, tails)
    x = np.random.default_rng(7).normal(mde, sd, size=(20_000, n))
    p = stats.ttest_1samp(x, 0.0, axis=1, alternative="two-sided" if tails == 2 else "greater").pvalue
    assert np.mean(p < 0.05) == pytest.approx(0.8, abs=0.02)


def test_mde_falls_with_n_scales_with_sd_and_holm_asks_more() -> None:
    mdes = [minimum_detectable_effect(n, 1.0) for n in (3, 4, 5, 8, 16)]
    assert all(a > b for a, b in zip(mdes, mdes[1:], strict=False))
    assert minimum_detectable_effect(5, 3.0) == pytest.approx(3 * mdes[2], rel=1e-9)
    assert mde_for_holm(5, 1.0, 1) == pytest.approx(mdes[2], rel=1e-12)
    assert mde_for_holm(5, 1.0, 14) == pytest.approx(minimum_detectable_effect(5, 1.0, 0.05 / 14), rel=1e-12)
    assert mde_for_holm(3, 1.0, 14) > mdes[0]  # reachable, though far out: n = 3 at alpha / 14
    with pytest.raises(ValueError, match="n >= 2"):
        minimum_detectable_effect(1, 1.0)


def test_tost_at_the_margin_floor_shows_equivalence_with_the_power_asked_for() -> None:
    n, sd = 3, 1.5
    floor = equivalence_margin_floor(n, sd)
    x = np.random.default_rng(3).normal(0.0, sd, size=(20_000, n))
    low, high = stats.t.interval(0.90, n - 1, loc=x.mean(axis=1), scale=stats.sem(x, axis=1))
    power = np.mean((low > -floor) & (high < floor))
    assert 0.8 <= power <= 0.86  # a union bound: at least the power asked for, not far above it
    assert floor > stats.t.ppf(0.95, n - 1) * sd / math.sqrt(n)  # above the bare 90 % half-width


def test_edge_of_stability_is_one_at_the_heavy_ball_threshold() -> None:
    runs = []
    for seed, factor in enumerate((1.0, 0.5, 0.25)):
        for eta, beta in ((0.05, 0.9), (0.2, 0.0)):
            runs.append(Run(eta, 128, beta, seed, {"lambda_max": factor * 2 * (1 + beta) / eta}))
    runs.append(Run(0.4, 128, 0.9, 0, {"lambda_max": 0.4 * 2 * 1.9 / 0.4}))
    runs.append(Run(0.4, 128, 0.9, 1, {"lambda_max": math.inf}))
    found = edge_of_stability(runs, threshold=0.9)
    for cell in ((0.05, 128), (0.2, 128)):
        assert found[cell].estimate.per_seed == pytest.approx({0: 1.0, 1: 0.5, 2: 0.25}, rel=1e-12)
        assert found[cell].largest == pytest.approx(1.0, rel=1e-12) and found[cell].reaches
        r = np.array([1.0, 0.5, 0.25])
        ci = stats.t.interval(0.95, 2, loc=r.mean(), scale=stats.sem(r))
        assert (found[cell].estimate.ci_low, found[cell].estimate.ci_high) == pytest.approx(ci, rel=1e-9)
    below = found[(0.4, 128)]
    assert below.largest == pytest.approx(0.4) and not below.reaches
    assert below.estimate.n == 1 and math.isnan(below.estimate.ci_low)
    assert below.dead == ("eta=0.4, B=128, seed 1",)


def test_dropped_seeds_and_dead_runs_are_counted_and_named() -> None:
    runs = synthetic(5, 0.5, 0.1)
    dead = {(ETAS[0], 0), (ETAS[0], 3), (ETAS[1], 3), (ETAS[2], 3), (ETAS[3], 3)}  # seed 3 keeps 1 level
    edited = []
    for r in runs:
        if (r.eta, r.seed) in dead and r.batch == 128:
            values = {} if r.eta == ETAS[0] else {"gap": math.nan}  # a missing value is dead too
            r = Run(r.eta, r.batch, r.momentum, r.seed, values)
        edited.append(r)
    found = slope_over_seeds(edited, "gap")
    assert found.estimate.n == 4 and sorted(found.estimate.per_seed) == [0, 1, 2, 4]
    assert found.dropped == (3,)
    assert len(found.dead) == 5 and "eta=0.0125, B=128, seed 0" in found.dead
    all_dead = [r if r.seed != 1 else Run(r.eta, r.batch, r.momentum, 1, {}) for r in edited]
    assert slope_over_seeds(all_dead, "gap").dropped == (1, 3)  # a seed with no live level at all
    assert all(f"eta={e:g}, B=128, seed 3" in found.dead for e in ETAS[:4])
    mine = [r for r in edited if r.seed == 0 and r.batch == 128 and r.eta != ETAS[0]]
    x = [math.log2(r.eta / 128) for r in mine]
    assert found.estimate.per_seed[0] == pytest.approx(np.polyfit(x, [r.values["gap"] for r in mine], 1)[0])
    cut = [r for r in runs if not (r.seed == 2 and (r.eta, r.batch) == FULL)]
    contrast = paired_contrast(cut, DEFAULT, FULL, "gap")
    assert contrast.dropped == (2,) and contrast.estimate.n == 4 and contrast.dead == ()
    d = [
        next(r for r in runs if r.seed == s and (r.eta, r.batch) == FULL).values["gap"]
        - next(r for r in runs if r.seed == s and (r.eta, r.batch) == DEFAULT).values["gap"]
        for s in (0, 1, 3, 4)
    ]
    assert contrast.estimate.mean == pytest.approx(np.mean(d), rel=1e-12)
    full = [next(r for r in runs if r.seed == s and (r.eta, r.batch) == c).values["gap"] for s in (0, 1, 3, 4)
            for c in (FULL, DEFAULT)]  # fmt: skip
    assert contrast.estimate.p == pytest.approx(stats.ttest_rel(full[0::2], full[1::2]).pvalue, rel=1e-10)
    with pytest.raises(ValueError, match="two runs"):
        slope_over_seeds([*runs, runs[0]], "gap")


def test_no_test_is_inconclusive_and_counts_in_holm_as_one() -> None:
    lone = slope_over_seeds([r for r in synthetic(3, 1.0, 0.1) if r.seed == 0], "gap")
    assert lone.estimate.n == 1 and math.isnan(lone.estimate.p)
    q = equivalence_of_slope(lone, 0.1)
    assert q.outcome == "inconclusive" and math.isnan(q.p)
    strong = slope_over_seeds(synthetic(5, 1.0, 0.05), "gap").estimate
    verdicts = holm_verdicts({"strong": (strong, 1), "lone": (lone.estimate, 1)}, {"none": q})
    assert verdicts["strong"][0] == pytest.approx(holm({"strong": strong.p, "lone": 1.0, "none": 1.0})["strong"])
    assert verdicts["lone"][1] == verdicts["none"][1] == "inconclusive"
