"""How the report writes numbers: estimates with their CIs and n, censored values, effects in words, tables.

Every function here formats an object it is given (an ``Estimate``, an ``Interval``); none reads a file or a key.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from landscape.aggregate import Estimate
from landscape.stats import Interval, t_quantile_975, verdict


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
    return i.n >= 2 and math.isfinite(i.low) and math.isfinite(i.high)


def interval(i: Interval, unit: Unit = PLAIN, with_n: bool = False) -> str:
    """'mean [low, high]' (', n = k' if asked), or 'mean (n = 1, no CI)' where there is no interval."""
    if not has_ci(i):
        return f"{unit(i.mean)} ({'no CI' if i.n >= 2 else f'n = {i.n}, no CI'})"
    bounds = Unit(unit.scale, "", unit.signed, unit.decimals)
    text = f"{unit(i.mean)} [{bounds(i.low)}, {bounds(i.high)}]"
    return f"{text}, n = {i.n}" if with_n else text


def estimate(e: Estimate | None, unit: Unit = PLAIN, with_n: bool = False) -> str:
    """An Estimate; censored seeds make it a lower bound: '>= mean (k of n censored)', never an exact CI."""
    if e is None:
        return NO_VALUE
    if e.censored:
        return f">= {unit(e.interval.mean)} ({e.censored} of {e.interval.n} censored)"
    return interval(e.interval, unit, with_n)


def seeds_to_resolve(i: Interval) -> str:
    """The smallest seed count above the current n whose t-interval, at this mean and spread, would exclude 0:
    a planning guess (the mean and spread themselves move with more seeds), not a promise."""
    if not has_ci(i) or i.mean == 0 or i.std == 0:
        return "more seeds"
    for n in range(i.n + 1, 101):
        if t_quantile_975(n - 1) * i.std / math.sqrt(n) < abs(i.mean):
            return f"about {n} seeds at this mean and spread"
    return "more than 100 seeds at this spread (no visible effect)"


def direction(i: Interval, up: str = "an increase", down: str = "a decrease") -> str:
    """The verdict vocabulary applied to a signed effect: which side of 0 its CI lies on, or 'inconclusive'."""
    v = verdict(i, 1)
    if v == "agrees":
        return f"{up} (the CI excludes 0)"
    if v == "differs":
        return f"{down} (the CI excludes 0)"
    if not has_ci(i):
        return f"inconclusive (n = {i.n}, no CI)"
    return f"inconclusive (the CI includes 0; {seeds_to_resolve(i)} would decide it)"


def effect_sentence(term: str, what: str, i: Interval | None, unit: Unit = SIGNED) -> str:
    """'+BN changes val accuracy by +1.20 pp [0.30, 2.10]: an increase (the CI excludes 0).'"""
    if i is None:
        return f"{term}: no estimate of {what}."
    return f"{term} changes {what} by {interval(i, unit)}: {direction(i)}."


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
