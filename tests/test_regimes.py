"""Questions 1 and 4 (landscape.report.regimes): the TOST against the t-distribution's closed form at df = 2, the
noise contrast and the equivalence claims on synthetic per-seed values, spikes, difficulty and hard cells."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest

from landscape.report import measures as M
from landscape.report import regimes as R
from landscape.report.schema import RegimeCell
from landscape.report.stats import Interval
from landscape.study.params import RegimeRuleParams, load_params
from landscape.study.results import Censored, Divergence

RULES = RegimeRuleParams(
    noise_low=0.25,
    noise_high=4.0,
    gap_margin=0.005,
    lambda_margin=0.2,
    spike_factor=3.0,
    first_epoch_spike=2.0,
    hard_seeds=2,
)


def test_the_rules_are_params_yamls():
    assert load_params().claim_rules.regimes == RULES  # the tests below are written against these values


def t2_cdf(t: float) -> float:
    """Student's t CDF at df = 2, in closed form."""
    return 0.5 + t / (2 * math.sqrt(2 + t * t))


def test_tost_and_outside_p_match_the_closed_form_at_df_2():
    i = Interval(0.001, 0.002, math.nan, math.nan, 3)
    se = 0.002 / math.sqrt(3)
    margin = 0.005
    want = max(1 - t2_cdf((0.001 + margin) / se), t2_cdf((0.001 - margin) / se))
    assert R.tost_p(i, margin) == pytest.approx(want, rel=1e-9)
    assert R.outside_p(i, margin) == pytest.approx(1 - t2_cdf((0.001 - margin) / se), rel=1e-9)
    wide = Interval(0.02, 0.002, math.nan, math.nan, 3)
    assert R.outside_p(wide, margin) == pytest.approx(1 - t2_cdf((0.02 - margin) / se), rel=1e-9)
    assert R.tost_p(Interval(0.0, 0.0, 0, 0, 3), margin) == 0.0 and R.tost_p(Interval(0.01, 0.0, 0, 0, 3), margin) == 1
    assert math.isnan(R.tost_p(Interval(0.0, 0.0, math.nan, math.nan, 1), margin))
    low, high = R.tost_interval(i)
    half = 2.919985580355516 * se  # t_{0.95, 2}
    assert (low, high) == pytest.approx((0.001 - half, 0.001 + half), rel=1e-6)


def test_equivalence_verdicts():
    assert R.equivalence_verdict(0.01, 1.0) == "agrees"
    assert R.equivalence_verdict(0.5, 0.01) == "differs"
    assert R.equivalence_verdict(0.5, 0.5) == "inconclusive"
    assert R.equivalence_verdict(math.nan, math.nan) == "inconclusive"


def cells() -> dict[str, RegimeCell]:
    out = {}
    for family, default in (("mlp", "mlp"), ("cnn", "cnn")):
        for name, lr, batch in (("hi_noise", 0.2, 128), ("lo_noise", 0.0125, 128), ("b512", 0.2, 512)):
            v = f"{family}_{name}"
            out[v] = RegimeCell(v, family, default, lr, batch, (lr / batch) / (0.05 / 128), batch / 128)
    return out


STAR = "sigma_star_filter_frozen_drop_1pp"


def values(sharper_low: bool, batch_changes_gap: bool) -> dict[tuple[str, int], dict[str, float]]:
    """Per-seed values: the low-noise cell sharper (or not) than the high-noise one; the large-batch cell's gap
    equal to the default's within 0.1 pp, or 2 pp larger."""
    out = {}
    for s, wiggle in enumerate((-1.0, 0.0, 1.0)):
        for family in ("mlp", "cnn"):
            base = {R.LOG_LAMBDA: 2.0, R.LOG_TRACE: 4.0, R.LOG_FLATNESS: 1.0, STAR: 0.3, M.GAP: 0.04}
            lift = 1.0 if sharper_low else 0.0
            out[(family, s)] = {k: v + 0.01 * wiggle for k, v in base.items()}
            out[(f"{family}_hi_noise", s)] = {k: v - 0.5 * lift + 0.01 * wiggle for k, v in base.items()}
            low = {k: v + 0.5 * lift + 0.013 * wiggle for k, v in base.items()}
            low[STAR], low[M.GAP] = 0.3 - 0.1 * lift + 0.001 * wiggle, 0.04 + 0.02 * lift + 0.001 * wiggle
            out[(f"{family}_hi_noise", s)][STAR] = 0.3 + 0.1 * lift + 0.001 * wiggle
            out[(f"{family}_hi_noise", s)][M.GAP] = 0.04 - 0.02 * lift + 0.0011 * wiggle
            out[(f"{family}_lo_noise", s)] = low
            large = dict(out[(family, s)])
            large[M.GAP] += (0.02 if batch_changes_gap else 0.0) + 0.0005 * wiggle
            large[R.LOG_LAMBDA] += 0.001 * wiggle
            out[(f"{family}_b512", s)] = large
    return out


def test_q1_claims_follow_the_noise_contrast_and_the_tost():
    found = {c.key: c for c in R.q1_claims(cells(), values(True, False), [0, 1, 2], STAR, RULES)}
    assert len(found) == 14
    for family in ("mlp", "cnn"):
        for m in ("log_lambda_max", "log_trace", "log_flatness", "sigma_star", "gap"):
            assert found[f"{family}_low_noise_{m}"].verdict == "agrees", (family, m)
        assert found[f"{family}_batch_gap_equal"].verdict == "agrees"
        assert found[f"{family}_batch_lambda_equal"].verdict == "agrees"
    flat = {c.key: c for c in R.q1_claims(cells(), values(False, True), [0, 1, 2], STAR, RULES)}
    wide = {c.key: c for c in R.q1_claims(cells(), values(False, True), [0, 1, 2], STAR,
                                          dataclasses.replace(RULES, gap_margin=0.05))}  # fmt: skip
    assert wide["cnn_batch_gap_equal"].verdict == "agrees"  # 2 pp is inside a 5 pp margin
    assert "within +-5 pp" in wide["cnn_batch_gap_equal"].text and "< 0.05 (TOST)" in wide["cnn_batch_gap_equal"].rule
    assert flat["mlp_low_noise_log_lambda_max"].verdict == "inconclusive"
    assert flat["cnn_batch_gap_equal"].verdict == "differs"  # 2 pp, well beyond the 0.5 pp margin
    p = [c.p for c in found.values()]
    adjusted = [c.p_adjusted for c in found.values()]
    assert all(a >= q for a, q in zip(adjusted, p, strict=True))  # Holm never lowers a p


def test_a_missing_cell_leaves_its_claims_untested():
    few = {k: v for k, v in cells().items() if k != "cnn_lo_noise"}
    found = {c.key: c for c in R.q1_claims(few, values(True, False), [0, 1, 2], STAR, RULES)}
    assert math.isnan(found["cnn_low_noise_log_lambda_max"].p) and found["cnn_low_noise_gap"].verdict == "inconclusive"


def row(loss_max: float, running: float) -> dict[str, float]:
    return {"batch_loss_max": loss_max, "train_loss_running": running}


def test_spikes():
    assert not R.spiked([row(2.4, 0.8), row(1.2, 0.5), row(1.4, 0.4)], RULES)
    assert R.spiked([row(14.2, 2.1)], RULES)  # epoch 1 above 2 ln 10
    assert not R.spiked([row(4.6, 2.1)], RULES)  # 4.6 < 2 ln 10 = 4.605
    assert R.spiked([row(4.61, 2.1)], RULES)
    assert R.spiked([row(2.4, 0.8), row(1.2, 0.5), row(1.6, 0.4)], RULES)  # 1.6 > 3 x 0.5
    assert not R.spiked([row(2.4, 0.8), row(1.2, 0.5), row(1.6, 0.4)], dataclasses.replace(RULES, spike_factor=3.5))
    assert not R.spiked([], RULES)


def run(epochs: float, censored: bool, loss: float, diverged: int = 0) -> SimpleNamespace:
    d = Divergence(diverged, 5, "nan") if diverged else None
    return SimpleNamespace(
        train=SimpleNamespace(epochs_to_target=Censored(epochs, censored), diverged=d, train=SimpleNamespace(loss=loss))
    )


def test_difficulty_orders_reached_then_unreached_by_loss_then_diverged():
    runs = {
        ("fast", 0): run(2, False, 0.2),
        ("slow", 0): run(9, False, 0.3),
        ("stuck", 0): run(10, True, 0.35),
        ("dead", 0): run(10, True, 2.3),
        ("nan", 0): run(10, True, 2.3, diverged=3),
        ("nan_early", 0): run(10, True, 2.3, diverged=1),
    }
    histories = dict.fromkeys(runs, [row(2.0, 0.5)])
    found = {d.variant: d for d in R.difficulties(runs, histories, RULES)}
    order = sorted(found, key=lambda v: found[v].score)
    assert order == ["fast", "slow", "stuck", "dead", "nan", "nan_early"]
    assert math.isnan(found["nan"].final_train_loss) and found["nan"].spiked
    assert R.hard_cells(list(found.values()), RULES.hard_seeds) == []  # one seed each: below hard_seeds
    runs = {("stuck", 0): run(10, True, 0.4), ("stuck", 1): run(10, True, 0.4), ("ok", 0): run(3, False, 0.2)}
    two = R.difficulties(runs, dict.fromkeys(runs, [row(2.0, 0.5)]), RULES)
    assert R.hard_cells(two, 2) == ["stuck"] and R.hard_cells(two, 3) == []


def test_the_warm_start_check_reports_the_largest_relative_difference():
    from landscape.report.regime_report import warm_start_check
    from landscape.study.results import SharpnessPoint

    def one(last: float, probe: float, diverged=None) -> SimpleNamespace:
        train = SimpleNamespace(
            sharpness=[SharpnessPoint(0, 1.0, 0.05), SharpnessPoint(1, last, 0.0)], diverged=diverged
        )
        return SimpleNamespace(train=train, curvature=SimpleNamespace(eigenvalues=[probe]))

    data = SimpleNamespace(
        all_runs={("a", 0): one(9.9, 10.0), ("a", 1): one(10.0, 10.0), ("b", 0): one(1.0, 10.0, diverged=object())}
    )
    text = warm_start_check(data)
    assert "differ by at most 1 % over 2 runs (median 0.5 %)" in text  # the diverged run is left out
    assert warm_start_check(SimpleNamespace(all_runs={})) == "No run has both values to compare."


def test_a_geometric_band_is_the_mean_and_t_ci_of_the_log_drawn_back():
    import numpy as np
    from matplotlib.figure import Figure

    from landscape.report.plotting_style import band

    ax = Figure().add_subplot()
    per_seed = np.array([[1.0, 10.0], [10.0, 100.0], [100.0, 1000.0]])
    band(ax, [0, 1], per_seed, "k", geometric=True)
    assert ax.lines[0].get_ydata() == pytest.approx([10.0, 100.0])  # 10^mean(0, 1, 2), 10^mean(1, 2, 3)
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t_{0.975, 2} x sd 1 (in log10) / sqrt 3
    low, high = ax.collections[0].get_paths()[0].vertices[:, 1].min(), 10.0 ** (2 + half)
    assert low == pytest.approx(10.0 ** (1 - half), rel=1e-9) and low > 0
    assert ax.collections[0].get_paths()[0].vertices[:, 1].max() == pytest.approx(high, rel=1e-9)


def test_a_spike_far_beyond_the_other_values_gets_a_symlog_axis():
    from matplotlib.figure import Figure

    from landscape.report.plotting_regimes import _spread_axis, _undrawn

    spiked, plain = Figure().add_subplot(), Figure().add_subplot()
    _spread_axis(spiked, [-9000.0, -0.2, -0.1, -0.3, 0.05])
    _spread_axis(plain, [-0.2, -0.1, -0.3, 0.05])
    assert spiked.get_xscale() == "symlog" and plain.get_xscale() == "linear"
    assert _undrawn(0, 3, "x") == "" and _undrawn(2, 3, "diverged") == " (2 of 3 runs not drawn: diverged)"


def test_geometric_ci_is_the_t_ci_of_the_log_back_on_the_values_scale():
    """lambda_max 1, 10, 100: geometric mean 10, CI 10^(1 -+ t_{0.975,2} / sqrt 3) (sd of log10 is 1), above 0
    where the arithmetic CI of the same values reaches below it; a value <= 0 has no log and is left out."""
    half = 4.302652729911275 / math.sqrt(3)
    i = M.geometric_ci([1.0, 10.0, 100.0])
    assert (i.mean, i.n) == (pytest.approx(10.0), 3)
    assert i.ci_low == pytest.approx(10.0 ** (1 - half)) and i.ci_high == pytest.approx(10.0 ** (1 + half))
    assert M.finite_ci([1.0, 10.0, 100.0]).ci_low < 0 < i.ci_low
    assert M.geometric_ci([0.0, 4.0, math.nan, 16.0]).mean == pytest.approx(8.0)  # 0 and nan left out: n = 2
    assert math.isnan(M.geometric_ci([0.0]).mean) and M.geometric_ci([0.0]).n == 0


def test_the_cells_table_gives_lambda_max_as_a_geometric_mean_unless_a_run_is_at_zero():
    from landscape.report.regime_report import lambda_of

    half = 4.302652729911275 / math.sqrt(3)
    assert lambda_of([1.0, 10.0, 100.0]).startswith(f"10 [{10 ** (1 - half):.4g}, {10 ** (1 + half):.4g}], n = 3")
    assert lambda_of([0.0, 0.0]) == "0 [0, 0], n = 2 (arithmetic: a run at <= 0)"
    assert lambda_of([]) == "-"


def test_the_experiment_text_names_this_studys_cells():
    from landscape.report.regime_report import design

    def cell(v, family, lr, batch, noise):
        return RegimeCell(v, family, family, lr, batch, noise, batch / 128)

    cells = {
        c.variant: c
        for c in (
            cell("mlp_hi", "mlp", 0.2, 128, 4.0),
            cell("mlp_lo", "mlp", 0.0125, 128, 0.25),
            cell("cnn_hi", "cnn", 0.2, 128, 4.0),
            cell("mlp_b256", "mlp", 0.1, 256, 1.0),
            cell("mlp_b256_lo", "mlp", 0.025, 256, 0.25),
            cell("mlp_slow", "mlp", 0.003, 128, 0.06),
        )
    }
    rules = SimpleNamespace(noise_low=0.25, noise_high=4.0)
    text = design(SimpleNamespace(cells=cells, rules=rules))
    assert text == (
        "the noise scale lr/batch at 0.25x and 4x the default's (lr 0.0125 and 0.2 at batch 128), "
        "and batch 256 at 0.25x and 1x"
    )
    assert "(no such cell in this study)" in design(SimpleNamespace(cells={}, rules=rules))


def test_the_regime_rule_text_names_its_own_difference():
    from landscape.report.stats import VERDICT_RULE, verdict_rule

    regime = verdict_rule("low - high", level=False)
    assert "differences low - high (paired by training seed)." in regime and "B - A" not in regime
    assert "differences B - A (paired by training seed), or of B's per-seed values minus the claimed level" in (
        VERDICT_RULE
    )


def test_a_study_with_fewer_seeds_than_a_hard_cell_needs_says_none_can_be_hard():
    from landscape.report.regime_report import few_seeds

    assert few_seeds(2, 3) == "" and few_seeds(2, 2) == ""
    assert "With 1 seed per cell, fewer than the 2 the rule needs, no cell can be hard" in few_seeds(2, 1)
