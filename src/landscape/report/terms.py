"""The words the analysis and render passes share: the interval type, the design's factors, the test level, the
verdicts and the rule that gives them. No statistics here (no numpy, no scipy): the render pass imports this module
and nothing of ``landscape.report.analysis``."""

from __future__ import annotations

from dataclasses import dataclass

ALPHA = 0.05  # the level of every test and of the Holm family
BORDERLINE = (0.01, 0.1)  # an adjusted p in this range is a verdict near the line ALPHA draws
FACTORS = ("conv", "bn", "dropout")
VERDICTS = ("agrees", "differs", "inconclusive")


def verdict_rule(difference: str = "B - A", level: bool = True) -> str:
    """How a claim of a Holm family is tested and judged, for a family of paired ``difference``s (per seed);
    ``level`` adds the claims of one side's values against a claimed level."""
    against = ", or of B's per-seed values minus the claimed level" if level else ""
    return (
        f"Each claim is one test: the two-sided t-test (df = n - 1) of the mean of its per-seed differences "
        f"{difference} (paired by training seed){against}. The claims form one family, and their p-values are "
        "Holm-adjusted over it. A claim 'agrees' when its adjusted p is below 0.05 and the estimate has the claimed "
        "sign, 'differs' when its adjusted p is below 0.05 and the estimate has the other sign, and is "
        "'inconclusive' otherwise. A claim with no test (a censored seed, fewer than 2 seeds, no noise level chosen "
        "by its rule) is inconclusive and counts in the family with p = 1."
    )


VERDICT_RULE = verdict_rule()


@dataclass(frozen=True)
class Interval:
    """Mean, sample std (ddof=1), 95 % interval [ci_low, ci_high] and number of values behind them.

    ``landscape.study.serialize.to_json`` writes it as {"mean", "std", "ci_low", "ci_high", "n"} (nan as null).
    """

    mean: float
    std: float
    ci_low: float
    ci_high: float
    n: int
