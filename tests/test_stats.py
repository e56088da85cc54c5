"""Tests of landscape.report.analysis.stats against independent answers (tables, hand counts, analytic curves); the t
distribution and Kendall's tau behind them are scipy.stats'."""

from __future__ import annotations

import json
import math
import warnings
from itertools import product

import numpy as np
import pytest
from scipy import stats

from landscape.probes.summary import interpolate_crossing
from landscape.report.analysis.stats import (
    TERMS,
    _group_bootstrap_taus,
    decision,
    factorial_effects,
    holm,
    holm_family,
    kendall_tau,
    kendall_tau_group_bootstrap,
    mean_ci,
    paired_difference,
    seeds_for_power,
    simple_weights,
    t_cdf,
    t_quantile,
    t_quantile_975,
    t_test_p,
    t_two_sided_p,
    term_weights,
    verdict,
)
from landscape.report.terms import FACTORS, VERDICT_RULE, VERDICTS, Interval
from landscape.study.serialize import from_json, to_json
from landscape.study.train import first_reaching

# --- t quantiles -----------------------------------------------------------------------------------------

# Printed two-sided 95 % t table (3 decimals).
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
T_TABLE.update({15: 2.131, 20: 2.086, 25: 2.060, 29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 100: 1.984, 120: 1.980})


@pytest.mark.parametrize("df, expected", sorted(T_TABLE.items()))
def test_t_quantile_matches_printed_table(df, expected):
    assert round(t_quantile_975(df), 3) == pytest.approx(expected, abs=1e-9)


def test_t_quantile_for_n_3_4_5_seeds():
    assert [round(t_quantile_975(n - 1), 3) for n in (3, 4, 5)] == [4.303, 3.182, 2.776]


def test_t_quantile_large_df_tends_to_normal():
    assert t_quantile_975(10**6) == pytest.approx(1.959964, abs=1e-5)
    values = [t_quantile_975(df) for df in range(1, 500)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))  # strictly decreasing, no seam at 30/31


def _t_central_mass(t: float, df: int, points: int = 200_001) -> float:
    """P(0 < T < t) by Simpson's rule on the Student-t density (independent of the implementation)."""
    u = np.linspace(0.0, t, points)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    f = np.exp(log_c - (df + 1) / 2 * np.log1p(u * u / df))
    h = u[1] - u[0]
    return float(h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum()))


@pytest.mark.parametrize("df", [1, 2, 3, 7, 30, 31, 45, 200])
def test_t_quantile_has_cdf_0975(df):
    assert _t_central_mass(t_quantile_975(df), df) == pytest.approx(0.475, abs=2e-6)


@pytest.mark.parametrize("df", [0, -1, 2.5])
def test_t_quantile_rejects_bad_df(df):
    with pytest.raises(ValueError):
        t_quantile_975(df)


# Printed one-sided quantiles t_{q, df} (3 decimals): 0.8 (for power), 0.95 and 0.995.
T_QUANTILES = {
    0.8: {1: 1.376, 2: 1.061, 3: 0.978, 4: 0.941, 5: 0.920, 8: 0.889, 9: 0.883, 10: 0.879, 30: 0.854},
    0.95: {1: 6.314, 2: 2.920, 3: 2.353, 5: 2.015, 10: 1.812, 30: 1.697},
    0.995: {1: 63.657, 2: 9.925, 3: 5.841, 5: 4.032, 10: 3.169, 30: 2.750},
}


@pytest.mark.parametrize("q, df, expected", [(q, df, t) for q, row in T_QUANTILES.items() for df, t in row.items()])
def test_t_quantile_and_cdf_match_printed_tables(q, df, expected):
    assert round(t_quantile(q, df), 3) == pytest.approx(expected, abs=1e-9)
    assert t_cdf(t_quantile(q, df), df) == pytest.approx(q, abs=1e-10)
    assert t_quantile(1 - q, df) == pytest.approx(-t_quantile(q, df))


@pytest.mark.parametrize("t", [-30.0, -2.0, -0.3, 0.0, 0.7, 1.0, 4.303, 50.0])
def test_t_cdf_closed_forms_for_1_2_3_degrees_of_freedom(t):
    # df = 1 (Cauchy): 1/2 + atan(t)/pi; df = 2: 1/2 + t / (2 sqrt(2 + t^2));
    # df = 3: 1/2 + (t / (sqrt(3) (1 + t^2/3)) + atan(t / sqrt(3))) / pi.
    assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-13)
    assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-13)
    r3 = math.sqrt(3)
    assert t_cdf(t, 3) == pytest.approx(0.5 + (t / (r3 * (1 + t * t / 3)) + math.atan(t / r3)) / math.pi, abs=1e-13)


def test_two_sided_p_at_the_95_percent_critical_values_is_005():
    for df in (1, 2, 3, 5, 10, 30, 100):
        assert t_two_sided_p(t_quantile_975(df), df) == pytest.approx(0.05, abs=1e-10)
    assert t_two_sided_p(0.0, 4) == pytest.approx(1.0)
    assert t_two_sided_p(math.inf, 4) == 0.0
    with pytest.raises(ValueError):
        t_two_sided_p(1.0, 0)


# --- t-tests, decisions, power ---------------------------------------------------------------------------


def test_t_test_p_hand_example_with_two_degrees_of_freedom():
    # d = 7 - sqrt(3), 7, 7 + sqrt(3): mean 7, s = sqrt(3), t = 7 / (sqrt(3)/sqrt(3)) = 7, df 2:
    # p = 1 - t / sqrt(2 + t^2) = 1 - 7 / sqrt(51) = 0.0198039...
    p = t_test_p(mean_ci([7 - math.sqrt(3), 7.0, 7 + math.sqrt(3)]))
    assert p == pytest.approx(1 - 7 / math.sqrt(51), abs=1e-12)
    assert t_test_p(mean_ci([-3.0, -2.0, -1.0])) == pytest.approx(1 - 2 * math.sqrt(3) / math.sqrt(14), abs=1e-12)


def test_t_test_p_degenerate_cases():
    assert math.isnan(t_test_p(mean_ci([1.0])))  # one seed: no test
    assert t_test_p(mean_ci([2.0, 2.0, 2.0])) == 0.0  # no spread, mean off 0
    assert t_test_p(mean_ci([0.0, 0.0])) == 1.0
    assert math.isnan(t_test_p(Interval(1.0, math.nan, math.nan, math.nan, 3)))  # a bound has no spread


def test_raw_p_below_005_exactly_when_the_95_percent_ci_excludes_0():
    rng = np.random.default_rng(5)
    for _ in range(200):
        iv = mean_ci(rng.normal(0.8, 1.0, size=int(rng.integers(2, 7))))
        assert (t_test_p(iv) < 0.05) == (verdict(iv, 1) != "inconclusive")


@pytest.mark.parametrize(
    "p, estimate, sign, want",
    [
        (0.01, 0.3, 1, "agrees"),
        (0.01, -0.3, 1, "differs"),
        (0.01, -0.3, -1, "agrees"),
        (0.049, 0.3, -1, "differs"),
        (0.05, 0.3, 1, "inconclusive"),  # at the level is not below it
        (math.nan, 0.3, 1, "inconclusive"),
        (0.0, 0.0, 1, "inconclusive"),  # no sign to agree with
    ],
)
def test_decision_at_the_adjusted_p(p, estimate, sign, want):
    assert decision(p, estimate, sign) == want
    with pytest.raises(ValueError):
        decision(p, estimate, 0)


def test_seeds_for_power_hand_iterated_from_printed_tables():
    # s/d = 1: n = 9 needs (t.975,8 + t.8,8)^2 = (2.306 + 0.889)^2 = 10.2 > 9; n = 10: (2.262 + 0.883)^2 = 9.89 <= 10
    assert seeds_for_power(Interval(1.0, 1.0, math.nan, math.nan, 3)) == 10
    # s/d = 1/2: n = 4: (3.182 + 0.978)^2 / 4 = 4.33 > 4; n = 5: (2.776 + 0.941)^2 / 4 = 3.45 <= 5
    assert seeds_for_power(Interval(-2.0, 1.0, math.nan, math.nan, 3)) == 5
    assert seeds_for_power(Interval(0.0, 1.0, math.nan, math.nan, 3)) is None
    assert seeds_for_power(Interval(1e-3, 1.0, math.nan, math.nan, 3)) is None  # beyond 1000 seeds


def test_seeds_for_power_gives_about_80_percent_power_by_simulation():
    n = seeds_for_power(Interval(1.0, 1.0, math.nan, math.nan, 3))
    d = np.random.default_rng(11).normal(1.0, 1.0, size=(20_000, n))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(n))
    power = float(np.mean(np.abs(t) > t_quantile_975(n - 1)))
    assert power == pytest.approx(0.80, abs=0.02)


# --- mean_ci, Interval -----------------------------------------------------------------------------------


def test_mean_ci_hand_example():
    # values 2, 4, 9: mean 5, squared deviations 9 + 1 + 16 = 26, s^2 = 13, s/sqrt(3) = sqrt(13/3), t = 4.303
    iv = mean_ci([2.0, 4.0, 9.0])
    half = 4.302653 * math.sqrt(13 / 3)
    assert (iv.mean, iv.std, iv.n) == (pytest.approx(5.0), pytest.approx(math.sqrt(13)), 3)
    assert iv.ci_low == pytest.approx(5.0 - half, abs=1e-5)
    assert iv.ci_high == pytest.approx(5.0 + half, abs=1e-5)


def test_mean_ci_single_value_has_no_interval():
    iv = mean_ci([1.5])
    assert (iv.mean, iv.std, iv.n) == (1.5, 0.0, 1)
    assert math.isnan(iv.ci_low) and math.isnan(iv.ci_high)


@pytest.mark.parametrize("values, match", [([], "n == 0"), ([1.0, float("nan")], "non-finite"), ([math.inf], "inf")])
def test_mean_ci_rejects_bad_input(values, match):
    with pytest.raises(ValueError, match=match):
        mean_ci(values)


def test_interval_json_round_trip():
    for iv in (mean_ci([1.0, 2.0, 4.0]), mean_ci([3.0])):
        d = to_json(iv)
        assert set(d) == {"mean", "std", "ci_low", "ci_high", "n"}
        text = json.dumps(d, allow_nan=False)  # nan must have become None
        back = from_json(Interval, json.loads(text))
        assert back.n == iv.n and back.mean == iv.mean and back.std == iv.std
        for a, b in ((back.ci_low, iv.ci_low), (back.ci_high, iv.ci_high)):
            assert (math.isnan(a) and math.isnan(b)) or a == b
    assert to_json(mean_ci([3.0]))["ci_low"] is None


# --- paired differences ----------------------------------------------------------------------------------


def test_paired_difference_is_mean_ci_of_hand_taken_differences():
    a = {0: 0.91, 1: 0.88, 2: 0.93, 7: 0.5}
    b = {0: 0.89, 1: 0.87, 2: 0.90, 5: 0.1}
    iv = paired_difference(a, b)
    expected = mean_ci([0.02, 0.01, 0.03])  # seeds 0, 1, 2 only
    assert iv.n == 3
    for got, want in ((iv.mean, expected.mean), (iv.ci_low, expected.ci_low), (iv.ci_high, expected.ci_high)):
        assert got == pytest.approx(want, abs=1e-12)


def test_paired_difference_narrower_than_unpaired_with_seed_offsets():
    offsets = {0: -0.05, 1: 0.0, 2: 0.04, 3: 0.08}  # shared by both variants trained with the same seed
    a = {k: 0.80 + off + 0.001 * k for k, off in offsets.items()}
    b = {k: 0.78 + off - 0.001 * k for k, off in offsets.items()}
    paired = paired_difference(a, b)
    ia, ib = mean_ci(list(a.values())), mean_ci(list(b.values()))
    unpaired_half = math.hypot(ia.ci_high - ia.mean, ib.ci_high - ib.mean)
    assert paired.mean == pytest.approx(0.023)  # d_k = 0.02 + 0.002 k, k = 0..3
    assert paired.ci_high - paired.mean < unpaired_half / 10
    assert verdict(paired, +1) == "agrees"


def test_paired_difference_needs_a_common_seed():
    with pytest.raises(ValueError, match="no common seed"):
        paired_difference({0: 1.0}, {1: 1.0})


# --- factorial effects -----------------------------------------------------------------------------------


def _cells(model, seeds=(0, 1, 2, 3)):
    return {cell: {k: model(*cell, k) for k in seeds} for cell in product((False, True), repeat=3)}


def test_factorial_effects_recovers_synthetic_model():
    # y = 2*conv - 1*bn + 0.5*conv*bn + seed offset (conv, bn in {0, 1}). With +-1 coding and 1/4 * sum:
    #   conv    = mean(conv on) - mean(conv off) = 2 + 0.5 * P(bn on) = 2.25
    #   bn      = -1 + 0.5 * P(conv on) = -0.75
    #   conv:bn = 1/4 * sum(s_c s_b * 0.5 * (1 + s_c)(1 + s_b)/4) = 1/4 * 0.5 * 8/4 = 0.25
    #   dropout and every other interaction = 0; the seed offset cancels in every contrast.
    seed_offset = {0: 0.3, 1: -1.2, 2: 0.7, 3: 5.0}
    cells = _cells(lambda c, b, d, k: 2 * c - b + 0.5 * c * b + seed_offset[k])
    eff = factorial_effects(cells)
    expected = {"conv": 2.25, "bn": -0.75, "dropout": 0.0, "conv:bn": 0.25}
    expected.update({"conv:dropout": 0.0, "bn:dropout": 0.0, "conv:bn:dropout": 0.0})
    assert list(eff) == list(expected)
    for key, want in expected.items():
        assert eff[key].mean == pytest.approx(want, abs=1e-12), key
        assert eff[key].std == pytest.approx(0.0, abs=1e-12), key
        assert eff[key].n == 4


def test_factorial_main_effect_is_on_minus_off_per_seed_with_noise():
    rng = np.random.default_rng(3)
    noise = {(cell, k): rng.normal() for cell in product((False, True), repeat=3) for k in range(5)}
    cells = _cells(lambda c, b, d, k: 0.3 * d + noise[((c, b, d), k)], seeds=range(5))
    cells[(True, True, True)][99] = 1.0  # a seed missing from the other cells is ignored
    eff = factorial_effects(cells)
    for i, f in enumerate(FACTORS):
        per_seed = [
            np.mean([cells[c][k] for c in cells if c[i]]) - np.mean([cells[c][k] for c in cells if not c[i]])
            for k in range(5)
        ]
        want = mean_ci(per_seed)
        assert eff[f].mean == pytest.approx(want.mean) and eff[f].ci_low == pytest.approx(want.ci_low)
        assert eff[f].n == 5


def test_term_and_simple_weights_by_hand():
    bn = term_weights("bn")
    assert bn[(False, True, False)] == 0.25 and bn[(True, False, True)] == -0.25
    inter = term_weights("conv:bn")  # + where conv and BN agree
    assert inter[(True, True, False)] == inter[(False, False, True)] == 0.25
    assert inter[(True, False, False)] == inter[(False, True, True)] == -0.25
    mlp = simple_weights("bn", {"conv": False})  # BN within MLPs, averaged over dropout
    assert mlp == {
        (False, False, False): -0.5, (False, False, True): -0.5, (False, True, False): 0.5, (False, True, True): 0.5,
        (True, False, False): 0.0, (True, False, True): 0.0, (True, True, False): 0.0, (True, True, True): 0.0,
    }  # fmt: skip
    one = simple_weights("conv", {"bn": True, "dropout": False})
    assert one[(True, True, False)] == 1.0 and one[(False, True, False)] == -1.0 and sum(map(abs, one.values())) == 2
    assert TERMS == ["conv", "bn", "dropout", "conv:bn", "conv:dropout", "bn:dropout", "conv:bn:dropout"]


def test_interaction_is_half_the_difference_of_simple_effects():
    # y = bn * (+1 in CNNs, -1 in MLPs): BN within MLPs -1, within CNNs +1, main effect of BN 0. With the 1/4 weights,
    # sum_cells s_c s_b y = 2 (BN within CNNs) - 2 (BN within MLPs), so conv:bn = (+1 - (-1)) / 2 = 1.
    cells = _cells(lambda c, b, d, k: b * (1 if c else -1) + 0.1 * k)
    eff = factorial_effects(cells)
    assert eff["bn"].mean == pytest.approx(0.0, abs=1e-12)
    assert eff["conv:bn"].mean == pytest.approx(1.0)  # 1/4 * (4 cells with BN on, each s_c * s_c = 1)
    within = {
        on: np.mean([cells[c][0] for c in cells if c[0] == on and c[1]])
        - np.mean([cells[c][0] for c in cells if c[0] == on and not c[1]])
        for on in (False, True)
    }
    assert within == {False: pytest.approx(-1.0), True: pytest.approx(1.0)}
    assert eff["conv:bn"].mean == pytest.approx((within[True] - within[False]) / 2)


def test_factorial_effects_missing_cell_is_named():
    cells = _cells(lambda c, b, d, k: 1.0)
    del cells[(True, False, True)]
    with pytest.raises(ValueError, match="conv=on, bn=off, dropout=on"):
        factorial_effects(cells)


# --- verdicts --------------------------------------------------------------------------------------------


def _iv(low, high, n=3):
    return Interval((low + high) / 2, 1.0, low, high, n)


@pytest.mark.parametrize(
    "low, high, sign, want",
    [
        (0.1, 0.5, +1, "agrees"),
        (-0.5, -0.1, +1, "differs"),
        (-0.1, 0.5, +1, "inconclusive"),
        (-0.5, -0.1, -1, "agrees"),
        (0.1, 0.5, -1, "differs"),
        (-0.5, 0.1, -1, "inconclusive"),
        (0.0, 0.5, +1, "inconclusive"),  # touching 0 is not "entirely on one side"
    ],
)
def test_verdict_outcomes(low, high, sign, want):
    assert verdict(_iv(low, high), sign) == want
    assert want in VERDICTS


def test_verdict_single_seed_is_inconclusive_and_rule_is_stated():
    assert verdict(mean_ci([5.0]), +1) == "inconclusive"
    assert verdict(mean_ci([-5.0]), -1) == "inconclusive"
    assert "agrees" in VERDICT_RULE and "differs" in VERDICT_RULE and "inconclusive" in VERDICT_RULE


def test_verdict_rejects_bad_sign():
    with pytest.raises(ValueError):
        verdict(_iv(0.1, 0.2), 0)


# --- crossings and first reaching ------------------------------------------------------------------------


def test_interpolate_crossing_exact_on_log_linear_curve():
    xs = [0.001, 0.003, 0.03, 0.1]
    ys = [math.log10(x) + 3 for x in xs]  # drop = 1 exactly at sigma = 0.01, between grid points 0.003 and 0.03
    x, censored = interpolate_crossing(xs, ys, 1.0)
    assert x == pytest.approx(0.01, rel=1e-12) and censored is False


def test_interpolate_crossing_linear_from_zero_and_linear_mode():
    assert interpolate_crossing([0.0, 1.0, 2.0], [0.0, 2.0, 4.0], 0.5) == (pytest.approx(0.25), False)
    assert interpolate_crossing([1.0, 3.0], [0.0, 2.0], 1.0, log_x=False) == (pytest.approx(2.0), False)
    assert interpolate_crossing([1.0, 4.0], [0.0, 2.0], 1.0) == (pytest.approx(2.0), False)  # geometric mean


def test_interpolate_crossing_censored_and_immediate():
    assert interpolate_crossing([0.01, 0.1, 1.0], [0.0, 0.1, 0.2], 0.5) == (1.0, True)
    assert interpolate_crossing([0.01, 0.1, 1.0], [0.0, 0.1, 0.5], 0.5) == (1.0, True)  # must rise *above*
    assert interpolate_crossing([0.01, 0.1, 1.0], [0.6, 0.7, 0.8], 0.5) == (0.01, False)


def test_interpolate_crossing_uses_first_crossing_and_validates():
    assert interpolate_crossing([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 0.0, 1.0], 0.5, log_x=False) == (0.5, False)
    with pytest.raises(ValueError):
        interpolate_crossing([0.1, 0.05], [0.0, 1.0], 0.5)
    with pytest.raises(ValueError):
        interpolate_crossing([0.1, 0.2], [0.0], 0.5)


def test_first_reaching():
    acc = [0.5, 0.7, 0.85, 0.84, 0.9]
    assert first_reaching(acc, 0.85) == (3, False)
    assert first_reaching(acc, 0.1) == (1, False)
    assert first_reaching(acc, 0.95) == (5, True)


# --- Kendall's tau ---------------------------------------------------------------------------------------


def test_kendall_tau_b_hand_counted_with_ties():
    # pairs of x = [1, 2, 2, 3], y = [1, 3, 2, 2]: (1,2) C, (1,3) C, (1,4) C, (2,3) tie in x, (2,4) D, (3,4) tie in y
    # n0 = 6, n1 = 1, n2 = 1: tau_b = (3 - 1) / sqrt((6 - 1) * (6 - 1)) = 0.4
    assert kendall_tau([1, 2, 2, 3], [1, 3, 2, 2]) == pytest.approx(0.4)
    # no ties: x = [1, 2, 3, 4], y = [1, 3, 2, 4] -> 5 concordant, 1 discordant: (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)


def test_kendall_tau_perfect_orderings_and_degenerate_cases():
    x = [0.1, 0.5, 0.7, 2.0, 3.0]
    assert kendall_tau(x, [1, 2, 3, 4, 5]) == pytest.approx(1.0)
    assert kendall_tau(x, [5, 4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(kendall_tau([1.0], [2.0]))
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    assert math.isnan(kendall_tau([1, 2, 3], [4, 4, 4]))


def _grouped_example():
    rng = np.random.default_rng(0)
    groups = [f"v{g}" for g in range(8) for _ in range(3)]
    x = np.array([g + 0.1 * rng.normal() for g in range(8) for _ in range(3)])
    y = 2 * x + 0.3 * rng.normal(size=x.size)
    return x, y, groups


def test_group_bootstrap_reproducible_and_covers_point_estimate():
    x, y, groups = _grouped_example()
    a = kendall_tau_group_bootstrap(x, y, groups, resamples=500, seed=7)
    b = kendall_tau_group_bootstrap(x, y, groups, resamples=500, seed=7)
    assert a == b
    assert a.mean == pytest.approx(kendall_tau(x, y)) and a.mean > 0.7
    assert a.n == 24 and a.std > 0
    assert a.ci_low <= a.mean <= a.ci_high and a.ci_low > 0.3
    c = kendall_tau_group_bootstrap(x, y, groups, resamples=500, seed=8)
    assert c.mean == a.mean and (c.ci_low, c.ci_high) != (a.ci_low, a.ci_high)


def test_group_bootstrap_taus_are_scipys_tau_b_of_each_resample():
    """The batched taus equal scipy.stats.kendalltau on each resample drawn the plain way (the same generator, one
    draw of the groups per resample), ties, unequal groups and all-tied resamples (nan) included."""
    rng = np.random.default_rng(5)
    sizes = [3, 1, 2, 3, 3]
    groups = [f"v{g}" for g, k in enumerate(sizes) for _ in range(k)]
    x = rng.normal(size=len(groups)).round(1)
    x[groups.index("v1")] = x[0]  # a tie across groups
    y = (x + rng.normal(size=x.size)).round(0)
    batched = _group_bootstrap_taus(x, y, groups, 400, seed=11)
    names, draws = sorted(set(groups)), np.random.default_rng(11)
    plain = []
    for _ in range(400):
        idx = np.concatenate([[i for i, g in enumerate(groups) if g == names[j]] for j in draws.integers(0, 5, 5)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            plain.append(stats.kendalltau(x[idx], y[idx], variant="b").statistic)
    np.testing.assert_allclose(batched, plain, rtol=0, atol=1e-12, equal_nan=True)
    assert np.isfinite(batched).sum() > 300
    one = _group_bootstrap_taus(np.array([1.0, 2.0]), np.array([3.0, 1.0]), ["a", "b"], 50, seed=0)
    assert set(np.round(one[np.isfinite(one)], 12)) == {-1.0}  # a resample of one point twice is all tied: nan


def test_group_bootstrap_validates_lengths():
    with pytest.raises(ValueError):
        kendall_tau_group_bootstrap([1, 2], [1, 2], ["a"])


# --- Holm ------------------------------------------------------------------------------------------------


def test_holm_textbook_example():
    # sorted p: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> monotone 0.06)
    adj = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005})
    assert list(adj) == ["a", "b", "c", "d"]
    assert adj == {
        "a": pytest.approx(0.03),
        "b": pytest.approx(0.06),
        "c": pytest.approx(0.06),
        "d": pytest.approx(0.02),
    }


def test_holm_family_counts_untested_members_as_p_1():
    # m = 3 with one untested member: 0.01 * 3 = 0.03, 0.02 * 2 = 0.04; the untested one stays nan
    adj = holm_family({"a": 0.02, "b": math.nan, "c": 0.01})
    assert adj["a"] == pytest.approx(0.04) and adj["c"] == pytest.approx(0.03) and math.isnan(adj["b"])
    assert holm_family({"a": 0.02, "c": 0.01}) == {"a": pytest.approx(0.02), "c": pytest.approx(0.02)}


def test_holm_caps_at_one_and_handles_edge_cases():
    assert holm({"a": 0.4, "b": 0.6}) == {"a": pytest.approx(0.8), "b": pytest.approx(0.8)}
    assert holm({"a": 0.3, "b": 0.7, "c": 0.9}) == {"a": pytest.approx(0.9), "b": 1.0, "c": 1.0}
    assert holm({}) == {}
    with pytest.raises(ValueError):
        holm({"a": 1.5})


# --- Kendall's tau with cluster-aware permutation p-values (report.analysis.ranking) ---


def _inversions(order: tuple[int, ...]) -> int:
    return sum(order[i] > order[j] for i in range(len(order)) for j in range(i + 1, len(order)))


def test_permutation_tau_exact_p_matches_hand_enumeration_of_4_points():
    from itertools import permutations

    from landscape.report.analysis.ranking import permutation_tau

    # n = 4 has 24 orderings; tau = 1 - 2 * inversions / 3, and the orderings by inversion count are the
    # Mahonian numbers 1, 3, 5, 6, 5, 3, 1 (checked here by counting).
    counts = [0] * 7
    for order in permutations(range(4)):
        counts[_inversions(order)] += 1
    assert counts == [1, 3, 5, 6, 5, 3, 1]
    # y = (1, 2, 4, 3): one inversion, tau = 2/3. |tau| >= 2/3 for 0, 1, 5 or 6 inversions: 1 + 3 + 3 + 1 = 8.
    two_sided = permutation_tau([1, 2, 3, 4], [1, 2, 4, 3])
    assert two_sided.tau == pytest.approx(2 / 3)
    assert two_sided.exact and two_sided.permutations == 24
    assert two_sided.p == pytest.approx(8 / 24)
    assert permutation_tau([1, 2, 3, 4], [1, 2, 4, 3], alternative="greater").p == pytest.approx(4 / 24)
    assert permutation_tau([1, 2, 3, 4], [1, 2, 4, 3], alternative="less").p == pytest.approx(23 / 24)
    # tied y = (1, 1, 2, 3): S = 5 of 6 pairs, tau-b = 5 / sqrt(6 * 5); only the 2 + 2 orderings that sort the
    # multiset ascending or descending reach |S| = 5
    tied = permutation_tau([1, 2, 3, 4], [1, 1, 2, 3])
    assert tied.tau == pytest.approx(5 / math.sqrt(30))
    assert tied.p == pytest.approx(4 / 24)
    with pytest.raises(ValueError, match="alternative"):
        permutation_tau([1, 2, 3], [1, 2, 3], alternative="bigger")


def test_permutation_tau_draws_seeded_orderings_beyond_the_exact_limit():
    from landscape.report.analysis.ranking import MAX_EXACT, RESAMPLES, permutation_tau

    assert math.factorial(9) > MAX_EXACT >= math.factorial(8)
    x = list(range(9))
    first, again = permutation_tau(x, x, seed=3), permutation_tau(x, x, seed=3)
    assert first == again and not first.exact and first.permutations == RESAMPLES
    # a perfect ordering: only 2 of 9! orderings are as extreme, so hardly any draw is; p = (hits + 1) / (R + 1)
    assert first.tau == 1.0 and 1 / (RESAMPLES + 1) <= first.p <= 3 / (RESAMPLES + 1)
    assert math.isnan(permutation_tau([1, 1, 1], [1, 2, 3]).p)  # all x tied: no tau, no p


def test_within_group_tau_removes_the_differences_between_groups():
    from landscape.report.analysis.ranking import residuals, within_group_tau

    # three groups whose means rise together in x and y, each anti-ordered inside
    groups = ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    x = [0, 1, 2, 10, 11, 12, 20, 21, 22]
    y = [2, 1, 0, 12, 11, 10, 22, 21, 20]
    assert residuals(x, groups).tolist() == [-1, 0, 1] * 3
    within = within_group_tau(x, y, groups)
    assert within.tau == pytest.approx(-1.0)
    # 3!^3 = 216 within-group orderings; |tau| = 1 only when every group is ordered the same way (2 of them)
    assert within.exact and within.permutations == 216
    assert within.p == pytest.approx(2 / 216)
    assert kendall_tau(x, y) == pytest.approx((27 - 9) / 36)  # over all points: 27 concordant pairs between groups


def test_stratified_tau_is_the_mean_of_the_strata_permuted_within_them():
    from landscape.report.analysis.ranking import stratified_tau

    x = [1, 2, 3, 4, 1, 2, 3, 4]
    strata = [False] * 4 + [True] * 4
    both, own = stratified_tau(x, [1, 2, 3, 4, 4, 3, 2, 1], strata)
    assert own == {False: pytest.approx(1.0), True: pytest.approx(-1.0)}
    assert both.tau == pytest.approx(0.0) and both.p == pytest.approx(1.0)
    agree, _ = stratified_tau(x, x, strata)
    # 4! * 4! = 576 orderings; the mean is +-1 only when both strata are perfectly ordered the same way
    assert agree.tau == pytest.approx(1.0) and agree.exact and agree.permutations == 576
    assert agree.p == pytest.approx(2 / 576)
    one, own = stratified_tau([1, 2, 3], [1, 2, 3], ["a", "a", "b"])
    assert math.isnan(own["b"]) and math.isnan(one.tau)
