"""The report section of question 1 at matched fit, from ``landscape.report.analysis.question1.analyse``'s dict (as
stored, or read back from JSON: null for a missing number). It formats the numbers it is given and nothing else: it
reads no params, runs no statistics and derives no number from the others."""

from __future__ import annotations

import math
from collections.abc import Mapping

from landscape.report.format import NO_VALUE, PERCENT, PLAIN, PP, SIGNED, Unit, interval, p_value, table
from landscape.report.terms import Interval

TITLE = "## 10. Question 1 at matched fit: SGD's noise scale, sharpness and the gap"
UNITS = {
    "log per doubling": Unit(suffix=" per doubling", signed=True),
    "fraction per doubling": Unit(100.0, " pp per doubling", signed=True, decimals=2),
    "fraction": PP,
    "log": SIGNED,
    "ratio": PLAIN,
}
CELL_COLUMNS = {  # measure -> (header, unit)
    "epochs": ("epochs to target", PLAIN),
    "steps": ("steps", Unit(decimals=0)),
    "gap": ("gap", PP),
    "val_acc": ("val acc", PERCENT),
    "adaptive_sharpness": ("adaptive sharpness", PLAIN),
    "lambda_max": ("lambda_max (raw)", PLAIN),
    "trace": ("trace (raw)", PLAIN),
    "theta_norm": ("||theta||", PLAIN),
}
DECIDED = {"equivalent": "equivalence", "differs": "a difference beyond the margin", "inconclusive": "neither, smaller"}


def _number(x: float | None) -> float:
    return math.nan if x is None else x


def _interval(d: Mapping, mean: str = "mean") -> Interval:
    return Interval(*(_number(d.get(k)) for k in (mean, "std", "ci_low", "ci_high")), d.get("n") or 0)


def _unsigned(unit: Unit, x: float | None) -> str:
    return Unit(unit.scale, unit.suffix, False, unit.decimals)(_number(x))


def how_to_read(result: Mapping) -> str:
    rules, size = result["rules"], result["family_size"]
    return (
        f"**How to read.** Model A trains at a constant learning rate eta until its eval-mode training loss on the "
        f"fixed train-eval subset reaches {rules['target_loss']:g}, so every cell is compared at the same fit; a run "
        "that hits the epoch cap is censored (its epochs and steps are lower bounds) and is left out by name, as is a "
        "diverged one; a dead run (chance accuracy) leaves the geometry measures. The noise scale is eta/B. A slope is "
        "per doubling of eta/B, fitted per training seed (seeds are paired across cells: the same initial weights and "
        "data order), with its mean and 95 % t-interval over the seeds; a contrast is paired by seed. Adaptive "
        "sharpness (lambda_max of diag|theta| H diag|theta|) is scale-invariant and primary; lambda_max and trace "
        "are raw, changing with weight scale, so the slope of ||theta|| stands beside them. Sign claims are two-sided "
        "t-tests; a claim of no change is a two-one-sided test (TOST: agrees when the 90 % interval lies inside "
        f"+-margin). The {size} tested claims form one Holm family. MDE: the smallest true effect found with "
        f"{100 * rules['power']:g} % power at Holm's first step (alpha / {size}) with the observed seed sd; a TOST's "
        "floor: the smallest margin at which equivalence is shown with that power at this n (unadjusted, and at "
        "Holm's first step). Cell means are arithmetic, geometric for the three sharpness measures."
    )


def design(result: Mapping) -> str:
    d, rules = result["design"], result["rules"]
    cell = "none" if d["full"] is None else f"eta={d['full'][0]:g}, B={d['full'][1]}"
    checks = "; ".join(f"{c['what']}: {'met' if c['met'] else '**not met**'}" for c in d["checks"])
    return (
        f"**Design.** Noise levels eta/B at batch {rules['batch']}: {', '.join(f'{x:g}' for x in d['levels'])}; "
        f"of those at batch {rules['large_batch']}: {', '.join(f'{x:g}' for x in d['shared_levels']) or 'none'}; "
        f"near-full-batch cell: {cell}; seeds {', '.join(map(str, d['seeds']))}. Checks: {checks}. "
        f"{result['runs']['entered']} of {result['runs']['total']} runs entered."
    )


def cells_table(result: Mapping) -> str:
    rows = []
    for c in result["cells"]:
        row = [
            f"`{c['variant']}`",
            f"{c['eta']:g}",
            str(c["batch"]),
            f"{c['noise']:.4g}",
            f"{c['entered']} of {c['runs']}",
        ]
        for measure, (_, unit) in CELL_COLUMNS.items():
            m = c["measures"][measure]
            row.append(interval(_interval(m), unit, with_n=m["n"] != c["entered"]) if m["n"] else NO_VALUE)
        s = c["stability"]
        row.append(f"{interval(_interval(s['estimate']), PLAIN)}; max {_number(s['largest']):.2f}" if s else NO_VALUE)
        rows.append(row)
    header = ["cell", "eta", "B", "eta/B", "runs entered", *(h for h, _ in CELL_COLUMNS.values())]
    return table([*header, "lambda_max eta / 2(1+beta)"], rows)


def excluded(result: Mapping) -> str:
    found = result["runs"]["excluded"]
    if not found:
        return "No run was left out."
    return "Left out: " + "; ".join(f"{e['run']} (`{e['variant']}`): {e['why']}" for e in found) + "."


def _estimate(c: Mapping) -> str:
    if c["key"] == "edge_of_stability":
        return f"largest {_number(c['largest']):.2f}; reached in {'; '.join(c['reached_by']) or 'no cell'}"
    unit = UNITS[c["unit"]]
    i = _interval(c["estimate"])
    return interval(i, unit, with_n=True) if i.n else "no estimate (n = 0)"


def _mde(c: Mapping, power: float) -> str:
    """The MDE, or for a TOST its margin floors; where the data cannot reach it, said so."""
    unit, n = UNITS[c["unit"]], c["estimate"]["n"]
    if c["mde"] is None:
        return NO_VALUE
    if "margin_floor" in c:
        text = f"floor {_unsigned(unit, c['margin_floor'])} ({_unsigned(unit, c['margin_floor_holm'])} at Holm's)"
        note = f"above the margin, equivalence unreachable at n = {n}"
    else:
        text, note = _unsigned(unit, c["mde"]), f"above the size of the estimate, under {power:g} % power at n = {n}"
    return text if c["resolvable"] else f"{text}: {note}"


def _tost(c: Mapping) -> str:
    if c["margin"] is None:
        return NO_VALUE
    unit = UNITS[c["unit"]]
    bounds = Unit(unit.scale, "", unit.signed, unit.decimals)
    ci = f"[{bounds(_number(c['tost_low']))}, {bounds(_number(c['tost_high']))}]"
    return (
        f"90 % CI {ci}, margin +-{_unsigned(unit, c['margin'])}; decided by {DECIDED[c['decided_by']]}: Holm p "
        f"{p_value(_number(c['p_decided']))} (equivalence raw {p_value(_number(c['p_equivalent']))}, difference raw "
        f"{p_value(_number(c['p_differs']))})"
    )


def claims_table(result: Mapping) -> str:
    rows = [
        [c["number"], c["text"], c["role"], _estimate(c), p_value(_number(c["p"])), p_value(_number(c["p_holm"])),
         _mde(c, 100 * result["rules"]["power"]), f"**{c['verdict']}**", _tost(c)]
        for c in result["claims"]
    ]  # fmt: skip
    mde = f"MDE ({100 * result['rules']['power']:g} %, Holm)"
    header = ["#", "claim", "role", "estimate [95 % CI], n", "p", "Holm p", mde, "verdict", "TOST"]
    return table(header, rows)


def left_out_of_claims(result: Mapping) -> str:
    lines = []
    for c in result["claims"]:
        parts = [f"seed {s} (too few live runs)" for s in c["dropped"]] + [f"{d} (no finite value)" for d in c["dead"]]
        if parts:
            lines.append(f"- {c['number']} `{c['key']}`: {'; '.join(parts)}")
    return "Left out of claims:\n" + "\n".join(lines) if lines else "Every claim used every entered run."


def comparison(result: Mapping) -> str:
    """Two lines: some claims read at a fixed epoch of the same runs (the old fixed-budget reading), and the
    matched-fit reading of the same claims."""
    found = result["comparison"]
    if not found or not found["rows"]:
        return ""
    claims = {c["key"]: c for c in result["claims"]}

    def left_out(x: Mapping) -> str:
        names = [*x["old_dead"], *(f"seed {s}" for s in x["old_dropped"])]
        return f" (left out: {'; '.join(names)})" if names else ""

    old = "; ".join(f"{x['number']} `{x['key']}`: {interval(_interval(x['old']), UNITS[x['unit']], with_n=True)}"
                    f"{left_out(x)}" for x in found["rows"])  # fmt: skip
    new = "; ".join(f"{x['number']} `{x['key']}`: **{claims[x['key']]['verdict']}**, {_estimate(claims[x['key']])}"
                    for x in found["rows"])  # fmt: skip
    return (
        f"- **Old reading** (a fixed budget: epoch {found['epoch']} of these constant-rate runs, whatever their "
        f"training loss then; estimates only): {old}\n"
        f"- **This reading** (matched fit: every run at training loss {result['rules']['target_loss']:g}): {new}"
    )


def section(result: Mapping) -> str:
    """The markdown of question 1 at matched fit."""
    tally = ", ".join(f"{n} {verdict}" for verdict, n in result["tally"].items())
    parts = [TITLE, how_to_read(result), design(result), cells_table(result), excluded(result), claims_table(result),
             left_out_of_claims(result), f"Verdicts: {tally}.", comparison(result)]  # fmt: skip
    return "\n\n".join(p for p in parts if p)
