"""How the report writes numbers: estimates with their CIs and n, bounds, p-values, effects in words, tables.

Every function here formats an object it is given (an ``Estimate``, an ``Interval``); none reads a file or a key.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from landscape.report.schema import Claim, Effect, Estimate
from landscape.report.terms import ALPHA, Interval


@dataclass(frozen=True)
class Unit:
    """How a measure is printed: ``scale`` times the stored value, with ``suffix``; ``signed`` shows a + sign."""

    scale: float = 1.0
    suffix: str = ""
    signed: bool = False
    decimals: int | None = None  # None: 4 significant digits

    def __call__(self, x: float) -> str:
        if not math.isfinite(x):
            return "n/a"
        v = self.scale * x
        sign = "+" if self.signed else ""
        body = f"{v:{sign}.{self.decimals}f}" if self.decimals is not None else f"{v:{sign}.4g}"
        return body + self.suffix


PLAIN = Unit()
PERCENT = Unit(100.0, " %", decimals=2)  # an accuracy
PP = Unit(100.0, " pp", signed=True, decimals=2)  # a difference of accuracies, or a gap
DROP_PP = Unit(1.0, " pp", signed=True, decimals=2)  # a measure already stored in percentage points
SIGNED = Unit(signed=True)
NO_VALUE = "-"


def has_ci(i: Interval) -> bool:
    return i.n >= 2 and math.isfinite(i.ci_low) and math.isfinite(i.ci_high)


def interval(i: Interval, unit: Unit = PLAIN, with_n: bool = False) -> str:
    """'mean [low, high]' (', n = k' if asked), or 'mean (n = 1, no CI)' where there is no interval."""
    if not has_ci(i):
        return f"{unit(i.mean)} ({'no CI' if i.n >= 2 else f'n = {i.n}, no CI'})"
    bounds = Unit(unit.scale, "", unit.signed, unit.decimals)
    text = f"{unit(i.mean)} [{bounds(i.ci_low)}, {bounds(i.ci_high)}]"
    return f"{text}, n = {i.n}" if with_n else text


def bound(e: Estimate, unit: Unit = PLAIN, per_seed: bool = True) -> str:
    """A censored Estimate: '>= mean' or '<= mean' (the side its censored values put it on), or 'no bound'.
    ``per_seed``: one value per seed (a variant's measure: 'k of n censored'), else a contrast of many values."""
    what = f"{e.censored} of {e.interval.n} censored" if per_seed else f"{e.censored} censored values"
    if e.bound == 0:
        return f"no bound ({what}, entering with both signs)"
    return f"{'>=' if e.bound > 0 else '<='} {unit(e.interval.mean)} ({what})"


def estimate(e: Estimate | None, unit: Unit = PLAIN, with_n: bool = False) -> str:
    """An Estimate; censored values make it a bound ('>= mean (k of n censored)'), never an estimate with a CI."""
    if e is None:
        return NO_VALUE
    if e.censored:
        return bound(e, unit)
    return interval(e.interval, unit, with_n)


def p_value(p: float) -> str:
    """'0.012', '< 0.001', or 'n/a' where there is no test."""
    if not math.isfinite(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def tested(p: float, p_adjusted: float) -> str:
    """'p = 0.004, Holm-adjusted 0.021' ('p < 0.001' below that)."""
    raw = p_value(p)
    return f"p {raw if raw.startswith('<') else f'= {raw}'}, Holm-adjusted {p_value(p_adjusted)}"


def seeds_to_resolve(effect: Effect) -> str:
    """The seeds a paired t-test would need for 80 % power at the 5 % level if the mean and spread were these (the
    aggregate's ``seeds_for_power``): a planning guess (the mean and spread themselves move with more seeds)."""
    i = effect.estimate.interval
    if not has_ci(i):
        return "more seeds"
    n = effect.seeds_for_power
    if n is None:
        return "more than 1000 seeds at this spread (no visible effect)" if i.std > 0 else "more seeds"
    return f"about {n} seeds for 80 % power at this mean and spread"


def direction(effect: Effect, up: str = "an increase", down: str = "a decrease") -> str:
    """An exploratory effect in words: its side of 0 where the Holm-adjusted p is below 0.05, else inconclusive;
    a bound (censored values) is inconclusive."""
    e = effect.estimate
    if e.censored:
        return "inconclusive (a bound: censored values enter it)"
    if not has_ci(e.interval):
        return f"inconclusive (n = {e.interval.n}, no CI)"
    test = tested(effect.p, effect.p_adjusted)
    if effect.p_adjusted < ALPHA and e.interval.mean != 0:
        return f"{up if e.interval.mean > 0 else down} ({test})"
    return f"inconclusive ({test}; {seeds_to_resolve(effect)})"


def effect_sentence(term: str, what: str, effect: Effect | None, unit: Unit = SIGNED) -> str:
    """'+BN changes val accuracy by +1.20 pp [+0.30, +2.10]: an increase (p = 0.004, Holm-adjusted 0.021).'"""
    if effect is None:
        return f"{term}: no estimate of {what}."
    e = effect.estimate
    value = bound(e, unit, per_seed=False) if e.censored else interval(e.interval, unit)
    return f"{term} changes {what} by {value}: {direction(effect)}."


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table; a '|' inside a cell is escaped."""
    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def count(k: int, n: int) -> str:
    return f"{k} of {n}"


def optimizer_name(name: str) -> str:
    """'sgd' -> 'SGD with momentum', 'adam' -> 'Adam'; others unchanged."""
    return {"sgd": "SGD with momentum", "adam": "Adam"}.get(name, name)


UNITS = {"fraction": PP, "pp": DROP_PP}  # Claim.unit -> how its estimate is printed; others in their own units


def claim_estimate(c: Claim) -> str:
    """The claim's estimate with its CI and n; a bound where values are censored, and nothing where there is no
    measure to judge it on."""
    unit = UNITS.get(c.unit, PLAIN)
    if not c.measure:
        return "no measure (see the claim)"
    if c.estimate.censored:
        return f"{bound(c.estimate, unit, per_seed=False)}: a bound, no test"
    return estimate(c.estimate, unit, with_n=True)
