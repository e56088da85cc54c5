"""landscape.report's statistics on scipy.stats (issue 28): the vectorized tau-b of the permutation nulls against
scipy's kendalltau, permutation_tau against a plain scipy.stats.permutation_test, and every t-test and TOST p-value
of the committed metrics/study.json (written by the hand-written statistics that scipy replaced) recomputed by the
current code: the check that the replacement changes no p-value beyond 1e-10."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from conftest import REPO
from landscape.report.analysis.ranking import _tau_b_rows, permutation_tau
from landscape.report.analysis.stats import t_cdf, t_quantile_975, t_test_p
from landscape.report.terms import Interval


def test_batch_tau_b_of_the_permutation_nulls_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    for n in (2, 4, 7, 15, 40):
        x, ys = rng.integers(0, 4, n).astype(float), rng.normal(size=(5, n)).round(1)
        want = [stats.kendalltau(x, y, variant="b").statistic for y in ys]
        np.testing.assert_allclose(_tau_b_rows(x, ys), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_exact_permutation_p_matches_a_plain_scipy_permutation_test(alternative):
    """All 7! orderings, scipy's kendalltau as the statistic; two-sided here counts |tau| >= |observed|, which for
    tau-b without ties (a symmetric permutation distribution) is scipy's 2 * min(one-sided p)."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=7), rng.normal(size=7)
    ours = permutation_tau(x, y, alternative=alternative)
    ref = stats.permutation_test(
        (y,),
        lambda yy: stats.kendalltau(x, yy, variant="b").statistic,
        permutation_type="pairings",
        n_resamples=np.inf,
        alternative=alternative,
    )
    assert ours.exact and ours.permutations == math.factorial(7)
    assert ours.tau == pytest.approx(ref.statistic, abs=1e-12)
    assert ours.p == pytest.approx(ref.pvalue, abs=1e-10)


def _tested_nodes(node, out):
    """Every dict of study.json with an estimate (mean, std, n) and its p."""
    if isinstance(node, dict):
        if "p" in node and isinstance(node.get("estimate"), dict) and "interval" in node["estimate"]:
            out.append(node)
        for value in node.values():
            _tested_nodes(value, out)
    elif isinstance(node, list):
        for value in node:
            _tested_nodes(value, out)
    return out


def _tost_p(iv: Interval, margin: float) -> float:
    """The larger one-sided p at +-margin (as report.regimes.tost_p)."""
    se = iv.std / math.sqrt(iv.n)
    return max(1 - t_cdf((iv.mean + margin) / se, iv.n - 1), t_cdf((iv.mean - margin) / se, iv.n - 1))


def test_committed_study_p_values_and_cis_agree_with_the_current_code():
    """One-sample t-tests, TOSTs and 95 % t-CIs of the committed study, recomputed from its (mean, std, n)."""
    study = json.loads((REPO / "metrics/study.json").read_text())
    rules = study["regimes"]["rules"] if study.get("regimes") else {}
    checked, worst = 0, 0.0
    for node in _tested_nodes(study, []):
        d, p = node["estimate"]["interval"], node["p"]
        if p is None or d["n"] < 2 or d["std"] is None or d["std"] == 0:
            continue
        iv = Interval(d["mean"], d["std"], math.nan, math.nan, d["n"])
        if "(TOST)" in node.get("rule", ""):
            margin = math.log(1 + rules["lambda_margin"]) if "log" in node["rule"] else rules["gap_margin"]
            now = _tost_p(iv, margin)
        else:
            now = t_test_p(iv)
        worst = max(worst, abs(p - now))
        assert abs(p - now) < 1e-10, (node.get("key") or node.get("rule"), p, now)
        if node["estimate"].get("censored", 0) == 0 and d["ci_low"] is not None:
            half = t_quantile_975(d["n"] - 1) * d["std"] / math.sqrt(d["n"])
            assert abs(d["ci_low"] - (d["mean"] - half)) < 1e-10 and abs(d["ci_high"] - (d["mean"] + half)) < 1e-10
        checked += 1
    assert checked > 100  # the study's claims, factorial effects and regime contrasts
    print(f"{checked} p-values, max |committed - current| = {worst:.3g}")
