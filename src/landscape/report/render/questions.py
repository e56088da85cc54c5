"""Report sections 10 (question 1 at matched fit, and Model B's noise cells) and 11 (question 4), formatted from
``landscape.report.analysis.questions.analyse_questions``'s dict as stored in metrics/study.json (null for a missing
number). It formats the numbers it is given and nothing else: no statistics, no params."""

from __future__ import annotations

import math
from collections.abc import Mapping

from landscape.report.format import NO_VALUE, PERCENT, PP, interval, p_value, table
from landscape.report.render import question1, question4
from landscape.report.terms import Interval

DOSE_RESPONSE_PNG = "question1_dose_response.png"  # the figures of section 10 (plots/figures/)
STABILITY_PNG = "question1_stability.png"
B_TITLE = "### Model B's noise scale at the fixed budget, at equal training accuracy"


def _number(x: float | None) -> float:
    return math.nan if x is None else x


def _interval(d: Mapping) -> Interval:
    return Interval(*(_number(d.get(k)) for k in ("mean", "std", "ci_low", "ci_high")), d.get("n") or 0)


def dead_rule(questions: Mapping) -> str:
    return f"**Dead runs.** A run is dead when its {questions['dead']['why']}."


def during_training(q1: Mapping) -> str:
    """The edge of stability over every epoch of every fit run, and the figures."""
    p = q1["per_epoch"]
    reached = "; ".join(p["reached_by"]) or "none"
    return (
        f"**During training.** The largest lambda_max eta / (2 (1 + beta)) of any fit run at any epoch (epoch 0: the "
        f"initial weights; lambda_max of the training loss, raw) is {_number(p['largest']):.3g}; runs at or above "
        f"{p['threshold']:g} at some epoch: {reached}. At a constant rate 2 (1 + beta) / eta is a fixed line, so a "
        "ratio of 1 is heavy-ball SGD's edge of stability (Cohen et al. 2021).\n\n"
        f"![question 1 dose-response](plots/figures/{DOSE_RESPONSE_PNG})\n\n"
        f"![lambda_max eta / 2(1+beta) per epoch](plots/figures/{STABILITY_PNG})"
    )


def _seeds(rows: list[Mapping]) -> str:
    return "; ".join(f"seed {r['seed']}: {r['why']}" for r in rows)


def b_regimes(cells: list[Mapping]) -> str:
    """Model B's noise cells against the default: how to read, one row a cell, the seeds left out."""
    if not cells:
        return f"{B_TITLE}\n\nThe study has no regime cell of Model B at the fixed budget."
    how = (
        "**How to read.** Each noise cell trains Model B like its default (same epochs and schedule) at another "
        "learning rate, so it ends at another training loss, and the gap falls with under-fitting. Per training seed "
        "(paired: same initial weights and data order), the cell's gap (from the per-epoch history: eval-mode "
        "accuracy on the fixed train-eval subset minus validation accuracy) at its last epoch minus the default's at "
        "its last epoch; and minus the default's gap *at equal training accuracy*: read off the default's per-epoch "
        "history (eval-mode accuracy on the fixed train-eval subset) where it first reaches the cell's final training "
        "accuracy, linear between the two epochs around it. A cell whose final training accuracy lies outside the "
        "range of the default's history is not comparable there (never extrapolated), and the seed is named. Mean "
        "[95 % t CI over seeds], n, and the two-sided paired t-test p (estimates: not in question 1's Holm family)."
    )
    rows, left = [], []
    for c in cells:
        acc = [r["train_acc"] for r in c["seeds"]]
        base = [r["default_train_acc"] for r in c["seeds"]]
        last, equal = _interval(c["last_epoch"]), _interval(c["equal_accuracy"])
        rows.append([
            f"`{c['variant']}` vs `{c['default']}`", f"{c['lr']:g} vs {c['default_lr']:g}", f"x{c['noise']:g}",
            ", ".join(PERCENT(a) for a in acc) or NO_VALUE, ", ".join(PERCENT(a) for a in base) or NO_VALUE,
            interval(last, PP, with_n=True) if last.n else NO_VALUE, p_value(_number(c["last_epoch"]["p"])),
            interval(equal, PP, with_n=True) if equal.n else "not comparable",
            p_value(_number(c["equal_accuracy"]["p"])),
        ])  # fmt: skip
        if c["left_out"]:
            left.append(f"- `{c['variant']}`: {_seeds(c['left_out'])}.")
    header = ["cell vs default", "lr", "noise scale", "final train acc (per seed)", "default's final train acc",
              "gap difference, last epoch", "p", "gap difference, equal train acc", "p"]  # fmt: skip
    parts = [B_TITLE, how, table(header, rows), "Left out:\n" + "\n".join(left) if left else "No seed was left out."]
    return "\n\n".join(parts)


def render_questions(questions: Mapping) -> str:
    """The markdown of sections 10 and 11 from ``analyse_questions``'s dict."""
    q1 = questions["question1"]
    if q1 is None:
        ten = [f"{question1.TITLE}\n\nNo variant of this study trains to a training-loss target (train.stop_loss > 0)."]
    else:
        ten = [question1.section(q1), during_training(q1)]
    ten += [dead_rule(questions), b_regimes(questions["b_regimes"])]
    return "\n\n".join([*ten, question4.section(questions["question4"])])
