"""Question 4 without circularity (issue 26): do early landscape observations signal hard optimization beyond what
is known without the landscape? ``analyse`` computes every number of the question from one ``early_warning.Run``
per run and the ``Question4Rules`` fixed before the run, into a JSON-able dict (nan as None) that
``landscape.report.render.question4`` only formats.

The statistics are ``analysis.early_warning``'s; this module fixes how they are run and what is reported:

- The rules: the signals with their declared directions, the baseline variables (names in each run's ``early``: the
  rules may declare |log(lr / lr_default)| in place of the learning rate, since difficulty is U-shaped in it), the
  signals a dead run leaves, the equivalence margin, the draws and their seed, alpha and the power simulation's size.
- Difficulty (``early_warning.difficulty``) is over every run, dead and diverged ones hardest. A dead run (chance
  accuracy) leaves the geometry signals, since a dead network's lambda_max or noise drop is no landscape observation,
  and keeps its difficulty; a run without a finite value leaves that signal. Counts are of the runs that entered.
- The power check comes before the test: a signal whose permutation test cannot pass Holm's first step at its cells
  (``early_warning.smallest_reachable_p``) is not run, and its verdict is "cannot decide" (it stays in the Holm
  family as p = 1: the family was fixed with the rules). A signal that is run gets its minimum detectable partial
  tau (``early_warning.minimum_detectable_tau``), then the evidence and verdict of ``early_warning.evaluate``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

from landscape.report.analysis import early_warning as E
from landscape.report.analysis.stats import holm_family
from landscape.report.terms import ALPHA
from landscape.study.serialize import to_json
from landscape.study.validation import NONEMPTY, checked, rule

CANNOT_DECIDE = "cannot decide"
VERDICTS = (*E.OUTCOMES, CANNOT_DECIDE)
DEAD = "dead (chance accuracy at the budget): a dead network's geometry is no landscape observation"
NOT_FINITE = "no finite value (diverged in epoch 1, or not measured)"
COUNT = rule("an integer >= 1", lambda v: v >= 1)
UNIT = rule("a number in (0, 1)", lambda v: 0 < v < 1)


@dataclass(frozen=True)
class Question4Rules:
    """The rules of question 4, fixed before the run (params-like: ``validation.section`` reads them from YAML)."""

    signals: list[E.Signal] = checked(**NONEMPTY)  # each with its declared direction
    baseline: list[str] = checked(**NONEMPTY)  # names in each run's ``early``: train_loss_epoch1, abs_log_lr
    geometry: list[str] = checked(**rule("a list", lambda v: True))  # the signals a dead run leaves
    margin: float = checked(**UNIT)  # the smallest partial tau of interest (early_warning.MARGIN)
    resamples: int = checked(**COUNT)  # Freedman-Lane draws per test
    seed: int = checked(**rule("an integer >= 0", lambda v: v >= 0))
    alpha: float = checked(**rule(f"{ALPHA} (the level early_warning tests at)", lambda v: v == ALPHA))
    power: float = checked(**UNIT)  # of the minimum detectable partial tau
    power_sims: int = checked(**COUNT)  # simulated studies per rho in minimum_detectable_tau
    power_resamples: int = checked(**COUNT)  # draws per simulated test

    def __post_init__(self) -> None:
        for f in fields(self):
            if not f.metadata["ok"](getattr(self, f.name)):
                raise ValueError(
                    f"Question4Rules.{f.name} = {getattr(self, f.name)!r}: must be {f.metadata['allowed']}"
                )
        names = [s.name for s in self.signals]
        for bad, text in (
            (len(set(names)) < len(names), f"signals {names} name one twice"),
            (bool(set(names) & set(self.baseline)), f"signals {names} and baseline {self.baseline} share a name"),
            (bool(set(self.geometry) - set(names)), f"geometry {self.geometry} is not a subset of signals {names}"),
        ):
            if bad:
                raise ValueError(f"Question4Rules: {text}")


def _families(runs: Sequence[E.Run]) -> dict[str, str]:
    families: dict[str, str] = {}
    for r in runs:
        if families.setdefault(r.cell, r.family) != r.family:
            raise ValueError(f"analyse: cell {r.cell!r} is in families {families[r.cell]!r} and {r.family!r}")
    return families


def _why_left(run: E.Run, name: str, rules: Question4Rules) -> str | None:
    """Why ``run`` does not enter signal ``name`` (None: it enters)."""
    if run.dead and name in rules.geometry:
        return DEAD
    return None if math.isfinite(run.early.get(name, math.nan)) else NOT_FINITE


def _entered(runs: Sequence[E.Run], name: str, rules: Question4Rules) -> list[E.Run]:
    return [r for r in runs if _why_left(r, name, rules) is None]


def _signal(s: E.Signal, runs, rules: Question4Rules, families, hard, base, mde_cache) -> dict:
    """One signal's power check, then (if it can decide) its test and held-out prediction; p's not yet adjusted."""
    entered = _entered(runs, s.name, rules)
    means = E.cell_values(entered, s.name)
    cells = [c for c in hard if math.isfinite(means.get(c, math.nan)) and all(math.isfinite(b[c]) for b in base)]
    strata = [families[c] for c in cells]
    counts = {f: strata.count(f) for f in dict.fromkeys(strata)}
    sizes = list(counts.values())
    reach = E.smallest_reachable_p(len(cells), len(rules.signals), sizes or [0], rules.resamples)
    none = E.HeldOut(math.nan, math.nan)
    found = {
        "name": s.name, "direction": s.direction, "why": s.why, "geometry": s.name in rules.geometry,
        "runs": sum(r.cell in cells for r in entered), "cells": len(cells),
        "cells_left_out": [c for c in hard if c not in cells], "strata": counts, "reach": reach,
        "tested": reach.can_decide and len(cells) >= E.MIN_CELLS,
        "partial_tau": math.nan, "p": math.nan, "p_equivalence": math.nan, "mde_tau": None,
        "held_out": {"baseline": none, "with_signal": none},
    }  # fmt: skip
    if not found["tested"]:
        return found
    key = tuple(sizes)
    if key not in mde_cache:
        mde_cache[key] = E.minimum_detectable_tau(
            sizes, len(rules.signals), rules.power, rules.power_sims, rules.power_resamples, rules.seed
        )
    y, zs, x = [hard[c] for c in cells], [[b[c] for c in cells] for b in base], [means[c] for c in cells]
    tau, p, p_eq = E.partial_tau_test(x, y, zs, s.direction, strata, rules.margin, rules.resamples, rules.seed)
    only, both = E.leave_one_cell_out(y, zs), E.leave_one_cell_out(y, [*zs, [s.direction * v for v in x]])
    found.update(partial_tau=tau, p=p, p_equivalence=p_eq, mde_tau=mde_cache[key])
    found["held_out"] = {"baseline": only, "with_signal": both}
    return found


def _cell_rows(runs, rules: Question4Rules, families, hard, base) -> list[dict]:
    """Per cell: family, runs, dead and diverged runs, difficulty, baseline means, each signal's mean and runs."""
    rows = []
    for c, difficulty in hard.items():
        mine = [r for r in runs if r.cell == c]
        signals = {}
        for s in rules.signals:
            entered = _entered(mine, s.name, rules)
            signals[s.name] = {"mean": E.cell_values(entered, s.name).get(c, math.nan), "runs": len(entered)}
        rows.append({
            "cell": c, "family": families[c], "runs": len(mine), "dead": sum(r.dead for r in mine),
            "diverged": sum(r.diverged for r in mine), "difficulty": difficulty,
            "baseline": {name: b[c] for name, b in zip(rules.baseline, base, strict=True)}, "signals": signals,
        })  # fmt: skip
    return rows


def _left_out(runs, rules: Question4Rules) -> list[dict]:
    """Per signal and reason, the seeds of each cell that left it."""
    found = []
    for s in rules.signals:
        by_reason: dict[str, dict[str, list[int]]] = {}
        for r in runs:
            if (why := _why_left(r, s.name, rules)) is not None:
                by_reason.setdefault(why, {}).setdefault(r.cell, []).append(r.seed)
        found += [{"signal": s.name, "why": why, "seeds": seeds} for why, seeds in by_reason.items()]
    return found


def analyse(runs: Sequence[E.Run], rules: Question4Rules) -> dict:
    """Question 4 over ``runs`` under ``rules``: the rules; per cell its family, runs, dead and diverged runs,
    difficulty, baseline and signal means; per signal its reach, test, Holm-adjusted p's, held-out tau with and
    without it, minimum detectable partial tau and verdict; the runs left out of each signal, with the reason."""
    families = _families(runs)
    hard = E.difficulty(runs)
    base = [E.cell_values(runs, b) for b in rules.baseline]
    mde_cache: dict[tuple[int, ...], float | None] = {}
    signals = [_signal(s, runs, rules, families, hard, base, mde_cache) for s in rules.signals]
    adjusted = holm_family({s["name"]: s["p"] for s in signals})
    adjusted_eq = holm_family({s["name"]: s["p_equivalence"] for s in signals})
    for s in signals:
        s["p_holm"], s["p_equivalence_holm"] = adjusted[s["name"]], adjusted_eq[s["name"]]
        improves = s["held_out"]["with_signal"].tau > s["held_out"]["baseline"].tau
        s["verdict"] = E.outcome(s["p_holm"], s["p_equivalence_holm"], improves) if s["tested"] else CANNOT_DECIDE
    return to_json({
        "rules": rules, "n_runs": len(runs), "n_cells": len(hard),
        "n_dead": sum(r.dead for r in runs), "n_diverged": sum(r.diverged for r in runs),
        "cells": _cell_rows(runs, rules, families, hard, base), "signals": signals, "left_out": _left_out(runs, rules),
    })  # fmt: skip
