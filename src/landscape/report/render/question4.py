"""Question 4's report section, formatted from ``landscape.report.analysis.question4.analyse``'s dict alone: no
statistics, no params."""

from __future__ import annotations

from landscape.report.format import NO_VALUE, PLAIN, p_value, table

HEADING = "## 11. Question 4: do early landscape observations signal hard optimization?"


def _num(v: float | None) -> str:
    return NO_VALUE if v is None else PLAIN(v)


def _tau(v: float | None) -> str:
    return NO_VALUE if v is None else f"{v:+.2f}"


def _p(v: float | None) -> str:
    return NO_VALUE if v is None else p_value(v)


def _harder(direction: int) -> str:
    return "larger" if direction > 0 else "smaller"


def how_to_read(result: dict) -> str:
    rules, k = result["rules"], len(result["signals"])
    baseline = ", ".join(f"`{b}`" for b in rules["baseline"])
    families = ", ".join(dict.fromkeys(c["family"] for c in result["cells"]))
    return (
        "**How to read.** A cell is one training setting, trained with several seeds; cells come in families that "
        f"differ in one setting (here {families}). *Difficulty* is the outcome at the study's fixed budget: each "
        f"run's rank among all {result['n_runs']} runs by its final eval-mode training loss, dead (chance accuracy) "
        "and diverged runs tied hardest, averaged over the cell's seeds (larger is harder). It is not read off the "
        "validation curve: the signals are taken from the same training after epoch 1, and a difficulty read off that "
        "curve (epochs to a target accuracy) shares its first point with them, so a signal would agree with it by "
        "construction; validation accuracy also mixes generalization into a question about optimization. A signal "
        f"adds when it ranks difficulty beyond a baseline that needs no landscape ({baseline}): (a) the partial "
        "Kendall tau of the signal's cell means with difficulty given the baseline (signed as measured; the declared "
        "direction says which sign means harder), with a one-sided p in the declared direction from "
        f"{rules['resamples']} Freedman-Lane draws within families, Holm over the {k} signals; (b) leave-one-cell-out "
        "predictions of difficulty's rank from the baseline, with and without the signal, scored by Kendall's tau "
        f"with difficulty (held-out tau). Verdicts, fixed before the run: **adds** when (a)'s Holm p is below "
        f"{rules['alpha']:g} and (b)'s held-out tau rises with the signal; **does not add** when the partial tau in "
        f"the declared direction is shown below +{rules['margin']:g} (equivalence, Holm); **inconclusive** otherwise; "
        "**cannot decide** when, before any test, the permutation test could not pass Holm's first step "
        f"({rules['alpha']:g} / {k}) at the signal's cells and families: it is not run. MDE: the smallest partial "
        f"tau that the test detects at Holm's first step with {100 * rules['power']:g} % power at those cells, "
        "simulated with i.i.d. cells whose baseline explains half of difficulty; 'not reached' where even that "
        "model's largest, 0.57, is not."
    )


def declared(result: dict) -> str:
    """The signals as the rules declared them: the direction that means harder, and why."""
    return "\n".join(
        f"- `{s['name']}` ({_harder(s['direction'])} is harder"
        + ("; geometry: a dead run leaves it" if s["geometry"] else "")
        + f"): {s['why']}"
        for s in result["signals"]
    )


def cells_table(result: dict) -> str:
    """One row a cell: family, runs, dead, diverged, difficulty, baseline means, signal means (k of n runs)."""
    baseline = result["rules"]["baseline"]
    names = [s["name"] for s in result["signals"]]
    rows = []
    for c in result["cells"]:
        signals = [
            _num(v["mean"]) + (f" ({v['runs']} of {c['runs']})" if v["runs"] < c["runs"] else "")
            for v in (c["signals"][n] for n in names)
        ]
        rows.append([f"`{c['cell']}`", c["family"], str(c["runs"]), str(c["dead"]), str(c["diverged"]),
                     f"{c['difficulty']:.2f}", *(_num(c["baseline"][b]) for b in baseline), *signals])  # fmt: skip
    header = ["cell", "family", "runs", "dead", "diverged", "difficulty", *baseline, *names]
    return table(header, rows)


def verdict(s: dict) -> str:
    if s["tested"]:  # not tested: the analysis's power check found the test cannot pass Holm's first step
        return f"**{s['verdict']}**"
    r = s["reach"]
    return (
        f"**cannot decide** at n = {s['cells']} cells (smallest p {r['smallest_p']:.3g}, Holm's first step "
        f"{r['threshold']:.3g})"
    )


def signals_table(result: dict) -> str:
    rows = []
    for s in result["signals"]:
        held = f"{_tau(s['held_out']['baseline']['tau'])} -> {_tau(s['held_out']['with_signal']['tau'])}"
        mde = NO_VALUE if not s["tested"] else _num(s["mde_tau"]) if s["mde_tau"] is not None else "not reached"
        rows.append([f"`{s['name']}`", f"{_harder(s['direction'])} is harder", f"{s['cells']} ({s['runs']} runs)",
                     _tau(s["partial_tau"]), _p(s["p"]), _p(s["p_holm"]), _p(s["p_equivalence_holm"]),
                     held, verdict(s), mde])  # fmt: skip
    header = ["signal", "direction", "cells (runs)", "partial tau", "p", "Holm p", "equivalence Holm p",
              "held-out tau: baseline -> +signal", "verdict", "MDE (partial tau)"]  # fmt: skip
    return table(header, rows)


def _seeds(seeds: list[int]) -> str:
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(str(s) for s in seeds)}"


def left_out(result: dict) -> str:
    """Per signal and reason the runs left out of it, and the cells left out of its test."""
    lines = [
        f"- `{r['signal']}`: " + "; ".join(f"`{c}` {_seeds(s)}" for c, s in r["seeds"].items()) + f": {r['why']}."
        for r in result["left_out"]
    ]
    lines += [
        f"- `{s['name']}`: cells {', '.join(f'`{c}`' for c in s['cells_left_out'])} left out of its test (no run of "
        "theirs entered it, or the baseline has no finite value)."
        for s in result["signals"]
        if s["cells_left_out"]
    ]
    return "\n".join(lines) if lines else "No run or cell was left out of a signal."


def section(result: dict) -> str:
    """The whole section: how to read it, the declared signals, the cells, the signals' evidence, what was left out."""
    n = result
    found = [s["verdict"] for s in n["signals"]]
    tally = ", ".join(f"{found.count(v)} {v}" for v in dict.fromkeys(found))
    return "\n\n".join(
        [
            HEADING,
            how_to_read(result),
            "**Signals, declared before the run** (the direction in which a signal means harder):\n\n"
            + declared(result),
            f"**Cells.** {n['n_runs']} runs in {n['n_cells']} cells ({n['n_dead']} dead, {n['n_diverged']} "
            "diverged). Difficulty: mean rank of the cell's runs (1 = easiest run); baseline and signals: means over "
            "the runs that entered, with (k of n) where fewer than all did.",
            cells_table(result),
            f"**Does each signal add to the baseline?** Result: {tally}.",
            signals_table(result),
            "**Left out, and why.**\n\n" + left_out(result),
        ]
    )
