"""Tests of landscape.stats against independent answers (tables, hand counts, analytic curves)."""

from __future__ import annotations

import json
import math
from itertools import product

import numpy as np
import pytest

from landscape.stats import (
    FACTORS,
    VERDICT_RULE,
    VERDICTS,
    Interval,
    factorial_effects,
    first_reaching,
    holm,
    interpolate_crossing,
    kendall_tau,
    kendall_tau_group_bootstrap,
    mean_ci,
    paired_difference,
    t_quantile_975,
    verdict,
)

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


# --- mean_ci, Interval -----------------------------------------------------------------------------------


def test_mean_ci_hand_example():
    # values 2, 4, 9: mean 5, squared deviations 9 + 1 + 16 = 26, s^2 = 13, s/sqrt(3) = sqrt(13/3), t = 4.303
    iv = mean_ci([2.0, 4.0, 9.0])
    half = 4.302653 * math.sqrt(13 / 3)
    assert (iv.mean, iv.std, iv.n) == (pytest.approx(5.0), pytest.approx(math.sqrt(13)), 3)
    assert iv.low == pytest.approx(5.0 - half, abs=1e-5)
    assert iv.high == pytest.approx(5.0 + half, abs=1e-5)


def test_mean_ci_single_value_has_no_interval():
    iv = mean_ci([1.5])
    assert (iv.mean, iv.std, iv.n) == (1.5, 0.0, 1)
    assert math.isnan(iv.low) and math.isnan(iv.high)


@pytest.mark.parametrize("values, match", [([], "n == 0"), ([1.0, float("nan")], "non-finite"), ([math.inf], "inf")])
def test_mean_ci_rejects_bad_input(values, match):
    with pytest.raises(ValueError, match=match):
        mean_ci(values)


def test_interval_json_round_trip():
    for iv in (mean_ci([1.0, 2.0, 4.0]), mean_ci([3.0])):
        d = iv.to_json()
        assert set(d) == {"mean", "std", "ci_low", "ci_high", "n"}
        text = json.dumps(d, allow_nan=False)  # nan must have become None
        back = Interval.from_json(json.loads(text))
        assert back.n == iv.n and back.mean == iv.mean and back.std == iv.std
        for a, b in ((back.low, iv.low), (back.high, iv.high)):
            assert (math.isnan(a) and math.isnan(b)) or a == b
    assert mean_ci([3.0]).to_json()["ci_low"] is None


# --- paired differences ----------------------------------------------------------------------------------


def test_paired_difference_is_mean_ci_of_hand_taken_differences():
    a = {0: 0.91, 1: 0.88, 2: 0.93, 7: 0.5}
    b = {0: 0.89, 1: 0.87, 2: 0.90, 5: 0.1}
    iv = paired_difference(a, b)
    expected = mean_ci([0.02, 0.01, 0.03])  # seeds 0, 1, 2 only
    assert iv.n == 3
    for got, want in ((iv.mean, expected.mean), (iv.low, expected.low), (iv.high, expected.high)):
        assert got == pytest.approx(want, abs=1e-12)


def test_paired_difference_narrower_than_unpaired_with_seed_offsets():
    offsets = {0: -0.05, 1: 0.0, 2: 0.04, 3: 0.08}  # shared by both variants trained with the same seed
    a = {k: 0.80 + off + 0.001 * k for k, off in offsets.items()}
    b = {k: 0.78 + off - 0.001 * k for k, off in offsets.items()}
    paired = paired_difference(a, b)
    ia, ib = mean_ci(list(a.values())), mean_ci(list(b.values()))
    unpaired_half = math.hypot(ia.high - ia.mean, ib.high - ib.mean)
    assert paired.mean == pytest.approx(0.023)  # d_k = 0.02 + 0.002 k, k = 0..3
    assert paired.high - paired.mean < unpaired_half / 10
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
        assert eff[f].mean == pytest.approx(want.mean) and eff[f].low == pytest.approx(want.low)
        assert eff[f].n == 5


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
    assert a.low <= a.mean <= a.high and a.low > 0.3
    c = kendall_tau_group_bootstrap(x, y, groups, resamples=500, seed=8)
    assert c.mean == a.mean and (c.low, c.high) != (a.low, a.high)


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


def test_holm_caps_at_one_and_handles_edge_cases():
    assert holm({"a": 0.4, "b": 0.6}) == {"a": pytest.approx(0.8), "b": pytest.approx(0.8)}
    assert holm({"a": 0.3, "b": 0.7, "c": 0.9}) == {"a": pytest.approx(0.9), "b": 1.0, "c": 1.0}
    assert holm({}) == {}
    with pytest.raises(ValueError):
        holm({"a": 1.5})
