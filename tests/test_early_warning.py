"""Question 4's non-circular design (report.analysis.early_warning) against answers computed here: the partial tau
from scipy.stats.kendalltau by the textbook formula, difficulty ranks by hand, the Freedman-Lane permutation p by
exact enumeration (scipy.stats.permutation_test; itertools within strata), leave-one-cell-out by np.polyfit, and
the verdicts on synthetic studies built so that the answer is known."""

from __future__ import annotations

import math
from itertools import permutations, product

import numpy as np
import pytest
from scipy import stats

from landscape.report.analysis import early_warning as E


def tau(a, b) -> float:
    return stats.kendalltau(a, b, variant="b").statistic


def first_order(x, y, z) -> float:
    return (tau(x, y) - tau(x, z) * tau(y, z)) / math.sqrt((1 - tau(x, z) ** 2) * (1 - tau(y, z) ** 2))


X = [3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.0, 6.0]
Y = [2.0, 7.0, 1.0, 8.0, 2.5, 8.5, 1.8, 2.8]
Z = [1.0, 2.0, 2.0, 3.0, 5.0, 8.0, 9.0, 7.0]  # a tie, as a learning-rate column has
W = [0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4]


def test_partial_tau_is_the_formula_on_scipys_taus():
    assert E.partial_tau(X, Y, [Z]) == pytest.approx(first_order(X, Y, Z), abs=1e-12)
    assert E.partial_tau(X, Y, [W]) == pytest.approx(first_order(X, Y, W), abs=1e-12)


def test_two_baseline_variables_are_sequential_partialling_in_either_order():
    def second_order(x, y, z, w):  # the first-order formula applied to the partials given z
        xy, xw, yw = first_order(x, y, z), first_order(x, w, z), first_order(y, w, z)
        return (xy - xw * yw) / math.sqrt((1 - xw**2) * (1 - yw**2))

    assert E.partial_tau(X, Y, [Z, W]) == pytest.approx(second_order(X, Y, Z, W), abs=1e-12)
    assert E.partial_tau(X, Y, [Z, W]) == pytest.approx(second_order(X, Y, W, Z), abs=1e-12)


def test_a_constant_baseline_variable_is_left_out_and_a_function_of_the_baseline_has_nothing_left():
    assert E.partial_tau(X, Y, [Z, [0.05] * 8]) == pytest.approx(first_order(X, Y, Z), abs=1e-12)
    assert E.partial_tau(np.log(Z), Y, [Z, W]) == 0.0


def run(cell, seed, loss, family="f", dead=False, diverged=False, **early):
    return E.Run(cell, family, seed, loss, dead, diverged, early)


def test_difficulty_ranks_dead_and_diverged_runs_hardest_and_tied():
    dead, gone = {"dead": True}, {"diverged": True}
    runs = [run("a", 0, 0.1), run("a", 1, 0.2), run("a", 2, 0.3),
            run("b", 0, 0.4), run("b", 1, 0.5), run("b", 2, 2.3, **dead),
            run("c", 0, 2.3, **dead), run("c", 1, math.nan, **gone), run("c", 2, 2.2, **dead),
            run("d", 0, math.nan, **gone), run("d", 1, math.nan, **gone), run("d", 2, 0.01, **dead)]  # fmt: skip
    # ranks 1..5 for the live runs; the 7 dead or diverged share ranks 6..12, mean 9
    assert E.difficulty(runs) == {"a": 2.0, "b": (4 + 5 + 9) / 3, "c": 9.0, "d": 9.0}
    with pytest.raises(ValueError, match="b/1"):
        E.difficulty([run("a", 0, 0.1), run("b", 1, math.nan)])


def test_cell_values_average_the_finite_seeds():
    runs = [run("a", 0, 0.1, lam=2.0), run("a", 1, 0.1, lam=math.nan), run("a", 2, 0.1, lam=4.0), run("b", 0, 0.1)]
    found = E.cell_values(runs, "lam")
    assert found["a"] == 3.0 and math.isnan(found["b"])


def freedman_lane(x, z):
    """The fit of the signal's scaled ranks on an intercept and the baseline's, and its residual."""
    scaled = lambda v: (stats.rankdata(v) - 1) / (len(v) - 1)  # noqa: E731
    design = np.column_stack([np.ones(len(x)), *(scaled(v) for v in z)])
    fitted = design @ np.linalg.lstsq(design, scaled(x), rcond=None)[0]
    return fitted, scaled(x) - fitted


def drawn(fitted, residual):
    """A draw's signal: rank arithmetic on a lattice makes exact ties, which float rounding must not split."""
    return np.round(fitted + residual, 9)


def test_one_stratum_p_is_scipys_exact_permutation_test_within_monte_carlo_error():
    rng = np.random.default_rng(3)
    x, y, z = rng.normal(size=6), rng.normal(size=6), rng.normal(size=6)
    y = y + 0.8 * x
    fitted, residual = freedman_lane(x, [z])
    t_yz = tau(y, z)  # first_order with the fixed pair's tau computed once: 720 orderings

    def partial(r):
        x_r = drawn(fitted, r)
        return (tau(x_r, y) - tau(x_r, z) * t_yz) / math.sqrt((1 - tau(x_r, z) ** 2) * (1 - t_yz**2))

    exact = stats.permutation_test(
        (residual,), partial, permutation_type="pairings",
        n_resamples=np.inf, alternative="greater",
    ).pvalue  # fmt: skip
    observed, p, _ = E.partial_tau_test(x, y, [z], 1, [0] * 6, resamples=20_000, seed=5)
    assert observed == pytest.approx(first_order(x, y, z), abs=1e-12)
    assert abs(p - exact) < 4 * math.sqrt(exact * (1 - exact) / 20_000) + 1 / 20_000


def test_stratified_p_is_the_exact_enumeration_within_monte_carlo_error_and_reproducible():
    rng = np.random.default_rng(6)
    x, z = rng.normal(size=6), rng.normal(size=6)
    y = -x + 0.7 * rng.normal(size=6)
    strata = ["lr", "lr", "lr", "depth", "depth", "depth"]
    fitted, residual = freedman_lane(x, [z])
    observed = -first_order(x, y, z)
    null = []
    for a, b in product(permutations([0, 1, 2]), permutations([3, 4, 5])):
        null.append(-first_order(drawn(fitted, residual[list(a + b)]), y, z))  # direction -1: smaller is harder
    exact = float(np.mean(np.array(null) >= observed - 1e-9))  # 36 orderings
    first = E.partial_tau_test(x, y, [z], -1, strata, resamples=20_000, seed=7)
    assert first == E.partial_tau_test(x, y, [z], -1, strata, resamples=20_000, seed=7)
    assert first[1] != E.partial_tau_test(x, y, [z], -1, strata, resamples=20_000, seed=8)[1]
    assert 0.02 < exact < 0.5  # a p where Monte-Carlo error shows
    assert abs(first[1] - exact) < 4 * math.sqrt(exact * (1 - exact) / 20_000) + 1 / 20_000


def test_leave_one_cell_out_is_least_squares_on_the_other_cells():
    y = np.array([3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.0])
    p = np.array([2.0, 1.0, 7.0, 3.0, 4.0, 6.0, 5.0])
    scaled = lambda v: (stats.rankdata(v) - 1) / (len(v) - 1)  # noqa: E731
    predicted = np.empty(7)
    for i in range(7):
        keep = np.arange(7) != i
        predicted[i] = np.polyval(np.polyfit(scaled(p)[keep], scaled(y[keep]), 1), scaled(p)[i])
    found = E.leave_one_cell_out(y, [p])
    assert found.tau == pytest.approx(tau(predicted, y), abs=1e-12)
    assert found.mae == pytest.approx(np.mean(np.abs(predicted - scaled(y))), abs=1e-12)


FAMILIES = {"lr": [0.005, 0.02, 0.05, 0.1, 0.3], "depth": [0.05] * 5, "init": [0.05] * 5, "momentum": [0.05] * 5}
SIGNALS = [
    E.Signal("copy", 1, "a noisy copy of the part of difficulty the baseline does not explain"),
    E.Signal("log_lr", 1, "a monotone function of the learning rate alone"),
    E.Signal("backwards", -1, "the noisy copy, declared the wrong way round"),
]


def synthetic_study(families=FAMILIES, seeds=3, seed=0) -> list[E.Run]:
    """Per cell a hardness u independent of the baseline; final loss u + lr + seed noise; epoch-1 loss random."""
    rng = np.random.default_rng(seed)
    runs = []
    for family, lrs in families.items():
        for i, lr in enumerate(lrs):
            u = rng.normal()
            for s in range(seeds):
                early = {"train_loss_epoch1": rng.normal(1.0, 0.2), "lr": lr, "log_lr": math.log(lr)}
                early["copy"] = early["backwards"] = u + 0.2 * rng.normal()
                runs.append(run(f"{family}{i}", s, u + 3 * lr + 0.05 * rng.normal(), family, **early))
    return runs


@pytest.fixture(scope="module")
def verdicts() -> dict[str, E.SignalResult]:
    return E.evaluate(synthetic_study(), SIGNALS, resamples=4999)


def test_a_signal_that_tracks_what_the_baseline_leaves_adds(verdicts):
    found = verdicts["copy"]
    assert found.cells == 20 and found.reach.can_decide
    assert found.partial_tau > 0.5 and found.p_adjusted < 0.05
    assert found.with_signal.tau > found.baseline_only.tau and found.with_signal.mae < found.baseline_only.mae
    assert found.verdict == "adds"


def test_a_function_of_the_learning_rate_alone_does_not_add(verdicts):
    found = verdicts["log_lr"]
    assert found.partial_tau == 0.0 and found.p == 1.0
    assert found.verdict != "adds"


def test_a_signal_against_its_declared_direction_does_not_add(verdicts):
    found = verdicts["backwards"]
    assert found.partial_tau == pytest.approx(verdicts["copy"].partial_tau) and found.p > 0.5
    assert found.verdict == "does not add"  # shown below the margin in the declared direction


def test_too_few_cells_cannot_decide():
    few = E.smallest_reachable_p(4, 5)  # the observed ordering alone as extreme: hits 9999 / 24 + itself
    assert few.orderings == 24 and few.smallest_p == pytest.approx((9999 / 24 + 1) / 10_000)
    assert few.threshold == pytest.approx(0.01) and not few.can_decide
    assert not E.smallest_reachable_p(6, 5, [2, 2, 2]).can_decide  # 8 orderings
    assert E.smallest_reachable_p(9, 5, [3, 3, 3]).can_decide  # 216 orderings
    assert E.minimum_detectable_tau([2, 2], 5) is None
    small = E.evaluate(synthetic_study({"lr": FAMILIES["lr"][:4]}), SIGNALS, resamples=999)
    assert all(not r.reach.can_decide and r.verdict != "adds" for r in small.values())
    runs = [r if r.cell in ("lr0", "lr1") else E.Run(**{**r.__dict__, "early": {}}) for r in synthetic_study()]
    rare = E.evaluate(runs, SIGNALS[:1], resamples=999)["copy"]  # observed in 2 cells only: no test
    assert rare.cells == 2 and math.isnan(rare.p) and rare.verdict == "inconclusive" and not rare.reach.can_decide


def test_minimum_detectable_tau_is_one_the_model_can_show_or_none():
    found = E.minimum_detectable_tau([8, 8, 8, 8], 5, sims=20, resamples=199)
    assert found is not None and 0.1 < found < 0.567  # 0.567: the model's partial tau at rho = 1
    assert E.minimum_detectable_tau([2, 2], 5) is None  # 4 orderings: no test


def test_the_verdict_needs_both_halves():
    assert E.outcome(0.01, 1.0, True) == "adds"
    assert E.outcome(0.01, 1.0, False) == "inconclusive"
    assert E.outcome(0.2, 0.01, False) == "does not add"
    assert E.outcome(math.nan, math.nan, True) == "inconclusive"
    with pytest.raises(ValueError, match="direction"):
        E.Signal("x", 0, "no direction")
