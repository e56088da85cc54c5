"""The hand-written statistics of landscape.report (Student's t via the incomplete beta, Kendall's tau-b, exact
permutation p-values, TOST) against scipy.stats, on random inputs and on every p-value and CI of the committed
metrics/study.json: the check that replacing them with scipy (issue 28) changes no verdict."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from conftest import REPO
from landscape.report.ranking import permutation_tau
from landscape.report.stats import kendall_tau, t_quantile, t_two_sided_p


@pytest.mark.parametrize("df", [1, 2, 3, 5, 14, 52])
def test_t_distribution_matches_scipy(df):
    for t in (0.0, 0.1, 0.7, 1.5, 3.0, 9.0, 40.0):
        assert t_two_sided_p(t, df) == pytest.approx(2 * stats.t.sf(t, df), rel=1e-10, abs=1e-15)
    for q in (0.6, 0.8, 0.95, 0.975, 0.995):
        assert t_quantile(q, df) == pytest.approx(stats.t.ppf(q, df), rel=1e-10)


def test_kendall_tau_b_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    for n in (4, 7, 15, 40):
        x, y = rng.integers(0, 4, n).astype(float), rng.normal(size=n).round(1)
        assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y, variant="b").statistic, abs=1e-12)


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_exact_permutation_p_matches_scipy(alternative):
    """All 7! orderings; two-sided here counts |tau| >= |observed|, which for tau-b without ties (a symmetric
    permutation distribution) is scipy's 2 * min(one-sided p)."""
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


def test_committed_study_p_values_and_cis_agree_with_scipy():
    """One-sample t-tests (p = 2 sf(|t|, n-1)), TOSTs (p = the larger one-sided p at +-margin) and 95 % t-CIs."""
    study = json.loads((REPO / "metrics/study.json").read_text())
    rules = study["regimes"]["rules"] if study.get("regimes") else {}
    checked = 0
    for node in _tested_nodes(study, []):
        iv, p = node["estimate"]["interval"], node["p"]
        n, mean, std = iv["n"], iv["mean"], iv["std"]
        if p is None or n < 2 or std is None or std == 0 or (isinstance(p, float) and math.isnan(p)):
            continue
        se = std / math.sqrt(n)
        if "(TOST)" in node.get("rule", ""):
            margin = math.log(1 + rules["lambda_margin"]) if "log" in node["rule"] else rules["gap_margin"]
            want = max(stats.t.sf((mean + margin) / se, n - 1), stats.t.cdf((mean - margin) / se, n - 1))
        else:
            want = 2 * stats.t.sf(abs(mean) / se, n - 1)
        assert abs(p - want) < 1e-10, (node.get("key") or node.get("rule"), p, want)
        if node["estimate"].get("censored", 0) == 0 and iv["ci_low"] is not None:
            half = stats.t.ppf(0.975, n - 1) * se
            assert abs(iv["ci_low"] - (mean - half)) < 1e-10 and abs(iv["ci_high"] - (mean + half)) < 1e-10
        checked += 1
    assert checked > 100  # the study's claims, factorial effects and regime contrasts
