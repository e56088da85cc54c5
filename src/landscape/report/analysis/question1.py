"""Question 1 at matched fit (issue 26): does SGD's noise scale eta / B set Model A's sharpness and gap when every run
trains at a constant eta until its eval-mode training loss reaches one common target?

``analyse`` computes every number from one ``MatchedFitRun`` per run and the ``Question1Rules`` fixed before the run,
into a JSON-able dict (nan as None) that ``landscape.report.render.question1`` only formats; the statistics are
``analysis.dose_response``'s (scipy; the training seed is the unit, paired across cells). A run that hit the
epoch cap (censored: its values are bounds) or diverged enters no measure, a dead one (chance accuracy) no geometry
measure; each is named. Claims (one Holm family over those tested): 1. log adaptive sharpness falls per doubling of
eta / B at ``batch``; 2. so do log lambda_max and log trace (raw), beside log ||theta||'s slope; 3. the gap's slope
is within +-gap_margin (TOST); 4. at equal eta / B, ``large_batch`` minus ``batch`` (per seed, mean over the shared
levels) is within the margins for the gap and each primary log sharpness (TOST); 5. the near-full-batch cell minus
the default cell: a larger gap and sharper (Keskar et al. 2017); 6. lambda_max eta / (2 (1 + beta)) per cell, and
whether a run reaches ``eos_threshold`` (descriptive).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

import numpy as np

from landscape.report.analysis import dose_response as D
from landscape.report.analysis.stats import finite_ci, geometric_ci, holm_family
from landscape.report.terms import ALPHA, VERDICTS
from landscape.study.serialize import to_json
from landscape.study.validation import POSITIVE, checked, rule, subset_of

SHARPNESS = ("adaptive_sharpness", "lambda_max", "trace")  # scale measures: geometric cell means, claims on the log
GEOMETRY = (*SHARPNESS, "theta_norm")  # what a dead run leaves
MEASURES = ("epochs", "steps", "gap", "val_acc", *GEOMETRY)
RAW = "raw, changes with weight scale"
WORDS = {"adaptive_sharpness": "adaptive sharpness", "lambda_max": f"lambda_max ({RAW})", "trace": f"trace ({RAW})"}
INTEGER = rule("an integer > 0", lambda v: v > 0)
FRACTION = rule("a number in (0, 1)", lambda v: 0 < v < 1)


@dataclass(frozen=True)
class MatchedFitRun:
    """One run as the train stage records it at the training-loss target; where ``reached`` is False, at the epoch
    cap instead (``epochs`` and ``steps`` are then lower bounds). ``gap``: eval-mode train-subset accuracy minus
    validation accuracy (fractions); ``adaptive_sharpness``: lambda_max of diag|theta| H diag|theta|; ``dead``: at
    chance accuracy."""

    variant: str
    seed: int
    eta: float
    batch: int
    momentum: float
    reached: bool
    epochs: float
    steps: int
    gap: float
    val_acc: float
    lambda_max: float
    trace: float
    adaptive_sharpness: float
    theta_norm: float
    dead: bool
    diverged: bool

    @property
    def cell(self) -> tuple[float, int]:
        return (self.eta, self.batch)

    @property
    def name(self) -> str:
        return f"{D.cell_name(self.cell)}, seed {self.seed}"


@dataclass(frozen=True)
class Question1Rules:
    """The rules of question 1, fixed before the run (params-like: ``validation.section`` can read them from YAML)."""

    alpha: float = checked(**rule(f"{ALPHA} (the level holm_verdicts judges at)", lambda v: v == ALPHA))
    power: float = checked(**FRACTION)  # of every minimum detectable effect (0.8)
    target_loss: float = checked(**POSITIVE)  # the eval-mode training loss (train-eval subset) every run trains to
    gap_margin: float = checked(**FRACTION)  # the smallest gap change of interest (fraction): per doubling of eta / B
    # (claim 3), and from batch to large_batch at equal eta / B (claim 4)
    sharpness_margin: float = checked(**POSITIVE)  # claim 4's margin of a log sharpness (log 1.25: within 25 %)
    eos_threshold: float = checked(**POSITIVE)  # lambda_max eta / (2 (1 + beta)) that counts as the edge (0.9)
    primary: list[str] = checked(**subset_of(*SHARPNESS))  # the primary sharpness, which claims 4 and 5 test
    batch: int = checked(**INTEGER)  # the dose-response's batch (128); the default cell is (default_eta, batch)
    large_batch: int = checked(**INTEGER)  # claim 4's larger batch (512)
    full_batch: int = checked(**INTEGER)  # the near-full-batch cell's batch is at least this (4096)
    default_eta: float = checked(**POSITIVE)  # 0.05

    def __post_init__(self) -> None:
        for f in fields(self):
            if not f.metadata["ok"](value := getattr(self, f.name)):
                raise ValueError(f"Question1Rules.{f.name} = {value!r}: must be {f.metadata['allowed']}")


def _values(r: MatchedFitRun) -> dict[str, float]:
    """The run's value of each measure it enters, with the logs of the geometry measures (nan where <= 0)."""
    if not r.reached or r.diverged:
        return {}
    out = {m: float(getattr(r, m)) for m in MEASURES if not (r.dead and m in GEOMETRY)}
    return out | {f"log_{m}": math.log(v) if v > 0 else math.nan for m, v in out.items() if m in GEOMETRY}


def _why_excluded(r: MatchedFitRun) -> str | None:
    if r.diverged:
        return "diverged: left out of every measure"
    if not r.reached:
        return f"censored at the epoch cap (>= {r.epochs:g} epochs, >= {r.steps} steps): left out of every measure"
    return "dead (chance accuracy): left out of the geometry measures" if r.dead else None


def _design(cells: Mapping[tuple[float, int], list[MatchedFitRun]], rules: Question1Rules) -> dict:
    """The cells each claim compares, and whether the study has the cells and seeds the design asks for."""
    level = {c: float(f"{c[0] / c[1]:.9g}") for c in cells}  # eta / B, rounded: equal noise scales match across B
    small = {level[c]: c for c in cells if c[1] == rules.batch}
    large = {level[c]: c for c in cells if c[1] == rules.large_batch}
    shared, full = sorted(set(small) & set(large)), [c for c in cells if c[1] >= rules.full_batch]
    if len(full) > 1:
        raise ValueError(f"question1: more than one near-full-batch cell: {'; '.join(map(D.cell_name, full))}")
    default = next((c for c in small.values() if math.isclose(c[0], rules.default_eta)), None)
    levels = sorted(small)
    checks = {
        f">= 5 noise levels at batch {rules.batch}": len(levels) >= 5,
        "spanning >= 16x": len(levels) > 1 and levels[-1] / levels[0] >= 16 * (1 - 1e-9),
        f">= 2 of them at batch {rules.large_batch}": len(shared) >= 2,
        f"a cell at batch >= {rules.full_batch}": bool(full),
        f"the default cell (eta {rules.default_eta:g}, batch {rules.batch})": default is not None,
        ">= 3 seeds in every cell": min(map(len, cells.values()), default=0) >= 3,
        "one momentum in every run": len({r.momentum for runs in cells.values() for r in runs}) == 1,
    }
    return {"levels": levels, "shared_levels": shared, "pairs": [(small[x], large[x]) for x in shared],
            "full": full[0] if full else None, "default": default, "checks": checks}  # fmt: skip


def _cells(cells: Mapping[tuple[float, int], list[MatchedFitRun]], edge: Mapping) -> list[dict]:
    """Per cell, each measure's mean [95 % t CI over seeds] and n (geometric for the sharpness measures), the
    censored runs by name, and lambda_max eta / (2 (1 + beta)) (``edge_of_stability``)."""
    rows = []
    for cell, mine in cells.items():
        values, e = [_values(r) for r in mine], edge.get(cell)
        means = {m: (geometric_ci if m in SHARPNESS else finite_ci)([v[m] for v in values if m in v]) for m in MEASURES}
        rows.append({"variant": mine[0].variant, "eta": cell[0], "batch": cell[1], "noise": cell[0] / cell[1],
                     "runs": len(mine), "entered": sum(bool(v) for v in values), "measures": means,
                     "censored": [r.name for r in mine if not r.reached],
                     "stability": e and {"estimate": e.estimate, "largest": e.largest,
                                         "reaches": e.reaches}})  # fmt: skip
    return rows


def _batch_contrast(live: list[D.Run], pairs: list, measure: str, alpha: float) -> D.Contrast:
    """Per seed, the mean over the shared levels of ``measure`` at the large batch minus at the small one (a
    ``Contrast`` named by the first pair); a seed that lacks a level is dropped."""
    found = [D.paired_contrast(live, a, b, measure, alpha) for a, b in pairs]
    seeds = sorted({r.seed for r in live if any(r.cell in p for p in pairs)})
    d = {s: float(np.mean([c.estimate.per_seed[s] for c in found]))
         for s in seeds if found and all(s in c.estimate.per_seed for c in found)}  # fmt: skip
    dropped, dead = tuple(s for s in seeds if s not in d), tuple(x for c in found for x in c.dead)
    return D.Contrast(measure, *(pairs[0] if pairs else (None, None)), D.over_seeds(d, alpha), dropped, dead)


@dataclass(frozen=True)
class ClaimRow:
    """One claim before judging: ``estimate`` over seeds (slopes or paired differences) in ``unit``; ``sign``, the
    claimed sign of a sign claim (0: a TOST with ``margin``, or descriptive); seeds ``dropped``, runs ``dead``."""

    key: str
    number: str
    text: str
    role: str  # primary, secondary or descriptive
    unit: str  # "log" or "fraction", "... per doubling" for a slope on log2(eta / B)
    estimate: D.OverSeeds
    sign: int = 0
    margin: float = math.nan
    dropped: tuple[int, ...] = ()
    dead: tuple[str, ...] = ()


def _claims(live: list[D.Run], design: dict, rules: Question1Rules) -> list[ClaimRow]:
    """Every claim's estimate, in the order of the module docstring."""
    a, b, rows, per = rules.alpha, rules.batch, [], f"per doubling of eta/B at batch {rules.batch}"

    def add(key, number, text, role, unit, found, sign=0, margin=math.nan):
        rows.append(ClaimRow(key, number, text, role, unit, found.estimate, sign, margin, found.dropped, found.dead))

    for m in SHARPNESS:
        text, found = f"lower noise, sharper: log {WORDS[m]} falls {per}", D.slope_over_seeds(live, f"log_{m}", b, a)
        role = "primary" if m in rules.primary else "secondary"
        add(f"{m}_slope", "2" if rows else "1", text, role, "log per doubling", found, -1)
    text, found = f"beside the raw measures: log ||theta|| {per}", D.slope_over_seeds(live, "log_theta_norm", b, a)
    add("theta_norm_slope", "2", text, "descriptive", "log per doubling", found)
    text, found = "at matched fit the gap does not change with the noise scale", D.slope_over_seeds(live, "gap", b, a)
    add("gap_slope_equal", "3", text, "primary", "fraction per doubling", found, margin=rules.gap_margin)
    tested = {"gap": ("the gap", "a larger gap", "fraction", rules.gap_margin)}
    for p in rules.primary:
        tested[f"log_{p}"] = (f"log {WORDS[p]}", f"larger log {WORDS[p]}", "log", rules.sharpness_margin)
    for m, (what, _, unit, margin) in tested.items():
        text = f"at equal eta/B, batch {rules.large_batch} leaves {what} as batch {b} does"
        add(f"batch_{m}_equal", "4", text, "primary", unit, _batch_contrast(live, design["pairs"], m, a), margin=margin)
    for m, (_, what, unit, _) in tested.items():
        text = f"the near-full-batch cell has {what} than the default cell at the same training loss"
        found = D.paired_contrast(live, design["default"], design["full"], m, a)
        add(f"full_batch_{m}", "5", text, "primary", unit, found, 1)
    return rows


def _judge(rows: list[ClaimRow], rules: Question1Rules) -> list[dict]:
    """Holm over the tested claims (``holm_verdicts``); each one's MDE at Holm's first step with its observed seed sd
    and whether it is resolvable; for a TOST its 1 - 2 alpha interval, the Holm p that decided it, its margin floors."""
    a = rules.alpha
    signed = {r.key: (r.estimate, r.sign) for r in rows if r.sign}
    tost = {r.key: D.equivalence_of_slope(r.estimate, r.margin, a) for r in rows if math.isfinite(r.margin)}
    verdicts, size = D.holm_verdicts(signed, tost), len(signed) + len(tost)
    differs = holm_family({**dict.fromkeys(signed, math.nan), **{k: q.p_differs for k, q in tost.items()}})
    out = []
    for r in rows:
        e = r.estimate
        testable = e.n >= 2 and e.std > 0 and r.key in verdicts
        mde = D.mde_for_holm(e.n, e.std, size, a, rules.power) if testable else math.nan
        p_holm, verdict = verdicts.get(r.key, (math.nan, "descriptive"))
        row = {**to_json(r), "p": e.p, "p_holm": p_holm, "verdict": verdict, "mde": mde}
        row["resolvable"] = bool(testable and abs(e.mean) >= mde)  # the estimate is at least the MDE
        if r.key in tost:  # a TOST at alpha reads the 1 - 2 alpha interval; resolvable: the margin is above the floor
            q, interval = tost[r.key], D.over_seeds(e.per_seed, 2 * a)
            outcome, p = D.equivalence_outcome(p_holm, differs[r.key], a)
            floor, floor_holm = (D.equivalence_margin_floor(e.n, e.std, x, rules.power) if testable else math.nan
                                 for x in (a, a / size))  # fmt: skip
            row |= {"p": q.p_equivalent, "p_equivalent": q.p_equivalent, "p_differs": q.p_differs,
                    "p_differs_holm": differs[r.key], "tost_low": interval.ci_low, "tost_high": interval.ci_high,
                    "decided_by": outcome, "p_decided": p, "margin_floor": floor, "margin_floor_holm": floor_holm,
                    "resolvable": bool(testable and r.margin >= floor_holm)}  # fmt: skip
        out.append(row)
    return out


@dataclass(frozen=True)
class OldReading:
    """The fixed-budget reading of some claims, for the comparison with the matched-fit one: each claim's slope
    (``dose_response.slope_over_seeds``, in the claim's unit) read at epoch ``epoch`` of the same runs."""

    epoch: int
    slopes: Mapping[str, D.Slope]


def _comparison(claims: list[dict], old: OldReading | None) -> dict | None:
    """Per claim of ``old``: its number, unit and fixed-budget estimate over seeds, with the runs left out of it."""
    if old is None:
        return None
    rows = [{"key": c["key"], "number": c["number"], "unit": c["unit"], "old": old.slopes[c["key"]].estimate,
             "old_dead": old.slopes[c["key"]].dead, "old_dropped": old.slopes[c["key"]].dropped}
            for c in claims if c["key"] in old.slopes]  # fmt: skip
    return {"epoch": old.epoch, "rows": rows}


def analyse(runs: Iterable[MatchedFitRun], rules: Question1Rules, old: OldReading | None = None) -> dict:
    """Question 1's design checks, cells, claims, verdicts and minimum detectable effects as plain JSON values.
    ``old``: the same claims read at a fixed epoch, kept for the comparison (``comparison``: None without it). A
    repeated (cell, seed), a cell with two variants, two near-full-batch cells or an ``old`` slope of no claim
    -> ValueError."""
    runs, cells = list(runs), {}
    for r in sorted(runs, key=lambda r: (r.batch, r.eta, r.seed)):
        cells.setdefault(r.cell, []).append(r)
    for cell, mine in cells.items():
        if len({r.variant for r in mine}) > 1 or len({r.seed for r in mine}) < len(mine):
            raise ValueError(f"question1: {D.cell_name(cell)} has two variants or a seed twice: {mine}")
    live = [D.Run(r.eta, r.batch, r.momentum, r.seed, v) for r in runs if (v := _values(r))]
    design = _design(cells, rules)
    edge = D.edge_of_stability(live, rules.eos_threshold, "lambda_max", rules.alpha)
    text = f"some run reaches lambda_max eta / (2 (1 + beta)) >= {rules.eos_threshold:g}"
    edge_row = ClaimRow("edge_of_stability", "6", text, "descriptive", "ratio", D.over_seeds({}))
    claims = _judge([*_claims(live, design, rules), edge_row], rules)
    claims[-1] |= {"largest": max((e.largest for e in edge.values()), default=math.nan),
                   "reached_by": [D.cell_name(c) for c, e in edge.items() if e.reaches]}  # fmt: skip
    if unknown := sorted(set(old.slopes if old else ()) - {c["key"] for c in claims}):
        raise ValueError(f"question1: old readings of no claim: {unknown}")
    return to_json({
        "rules": rules, "family_size": sum(c["verdict"] != "descriptive" for c in claims),
        "tally": {v: sum(c["verdict"] == v for c in claims) for v in VERDICTS},
        "design": {**{k: v for k, v in design.items() if k != "pairs"}, "seeds": sorted({r.seed for r in runs}),
                   "checks": [{"what": w, "met": m} for w, m in design["checks"].items()]},
        "runs": {"total": len(runs), "entered": len(live), "excluded": [
            {"run": r.name, "variant": r.variant, "why": w} for r in runs if (w := _why_excluded(r))]},
        "cells": _cells(cells, edge), "claims": claims,
        "comparison": _comparison(claims, old),
    })  # fmt: skip
