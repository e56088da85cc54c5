"""Report sections 10 and 11: questions 1 and 4 from the training-regime arm (``landscape.report.regimes``)."""

from __future__ import annotations

import math

import numpy as np

from landscape.report import measures as M
from landscape.report import regimes as R
from landscape.report.format import NO_VALUE, PLAIN, PP, SIGNED, claim_estimate, interval, p_value, table
from landscape.report.schema import RegimeSummary, TauEvidence
from landscape.report.stats import verdict_rule
from landscape.report.study_data import StudyData

Q1 = "## 10. Question 1: SGD's noise scale, sharpness and the gap"
Q4 = "## 11. Question 4: do early observations signal hard optimization?"


def _cells_table(data: StudyData, r: RegimeSummary) -> str:
    """Every regime cell beside its default: lr, batch, noise scale, and per-seed means of the final training loss,
    the gap, lambda_max and how many seeds reached the target, diverged or spiked."""
    difficulty = {(d.variant, d.seed): d for d in r.difficulty}
    rows = []
    defaults = sorted({c.default for c in r.cells.values()})
    for v in defaults + list(r.cells):
        runs = [data.all_runs[(v, s)] for s in data.seeds]
        t = runs[0].train
        cell = r.cells.get(v)
        found = [difficulty[(v, s)] for s in data.seeds]
        kept = [x for x in runs if x.train.diverged is None]  # a diverged run's weights are its last finite epoch's
        finite = [x.train.train.loss for x in kept]
        lam = [x.curvature.eigenvalues[0] for x in kept if x.curvature.eigenvalues]
        gap = [x.train.gap for x in kept]
        rows.append(
            [
                f"`{v}`" + (" (default)" if cell is None else ""),
                f"{t.lr:g}",
                str(t.batch_size),
                "1" if cell is None else f"{cell.noise_scale:g}",
                estimate_of(finite, PLAIN),
                estimate_of(gap, PP),
                lambda_of(lam),
                f"{sum(d.reached for d in found)} of {len(found)}",
                f"{sum(d.spiked for d in found)}",
                f"{sum(d.diverged_epoch > 0 for d in found)}",
                f"{r.stability.get(v, math.nan):.2f}",
            ]
        )
    return table(
        ["cell", "lr", "batch", "noise scale", "final train loss", "gap", "lambda_max", "reached target", "spiked",
         "diverged", "max lambda lr_t / 2(1+beta)"],
        rows,
    )  # fmt: skip


def lambda_of(values: list[float]) -> str:
    """lambda_max of a cell: the geometric mean [95 % t-CI of the log, back-transformed], n, so that the interval
    of a scale measure never reaches below 0; the arithmetic ``estimate_of``, marked, where a run's value is <= 0
    (a network whose units all died has lambda_max 0)."""
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) <= 0:
        return estimate_of(finite, PLAIN) + " (arithmetic: a run at <= 0)"
    i = M.geometric_ci(finite)
    return interval(i, PLAIN, with_n=True) if i.n else NO_VALUE


def design(r: RegimeSummary) -> str:
    """The Q1 contrasts as this study's cells set them: the lr of the noise-scale pair at the default batch, and
    the larger batches with their noise scales."""
    contrast = (r.rules.noise_low, r.rules.noise_high)
    pair = [c for c in r.cells.values() if c.batch_ratio == 1 and round(c.noise_scale, 6) in contrast]
    lrs = " and ".join(f"{lr:g}" for lr in sorted({c.lr for c in pair}))
    batch = " and ".join(str(b) for b in sorted({c.batch_size for c in pair}))
    large = sorted({(c.batch_size, c.noise_scale) for c in r.cells.values() if c.batch_ratio > 1})
    text = f"the noise scale lr/batch at {contrast[0]:g}x and {contrast[1]:g}x the default's"
    text += f" (lr {lrs} at batch {batch})" if pair else " (no such cell in this study)"
    for b in sorted({b for b, _ in large}):
        text += f", and batch {b} at " + " and ".join(f"{n:g}x" for bb, n in large if bb == b)
    return text


def few_seeds(hard_seeds: int, n_seeds: int) -> str:
    """The caveat when the study has fewer seeds than a hard cell needs (a one-seed first look): none can be hard."""
    if n_seeds >= hard_seeds:
        return ""
    return (
        f" With {n_seeds} seed{'s' if n_seeds != 1 else ''} per cell, fewer than the {hard_seeds} the rule needs, no "
        "cell can be hard here (`claim_rules.regimes.hard_seeds`)."
    )


def estimate_of(values: list[float], unit) -> str:
    """Mean [95 % t-CI], n of the finite values (``measures.finite_ci``); "-" where there is none."""
    i = M.finite_ci(values)
    return interval(i, unit, with_n=True) if i.n else NO_VALUE


def _claims_table(r: RegimeSummary) -> str:
    rows = []
    for c in r.claims:
        extra = ""
        if "TOST" in c.rule and c.estimate.interval.n >= 2:
            low, high = R.tost_interval(c.estimate.interval)
            extra = f"; 90 % CI [{PLAIN(low)}, {PLAIN(high)}]"
        rows.append(
            [c.text, c.rule, claim_estimate(c) + extra, p_value(c.p), p_value(c.p_adjusted), f"**{c.verdict}**"]
        )
    return table(["claim", "rule", "estimate [95 % CI], n", "p", "Holm p", "verdict"], rows)


def _tau_rows(found: list[TauEvidence]) -> list[list[str]]:
    return [
        [
            e.label,
            e.scope,
            f"{e.tau:+.2f}" if math.isfinite(e.tau) else "-",
            f"{e.cells}",
            p_value(e.p) + ("" if e.exact else " (drawn)"),
            p_value(e.p_adjusted),
            interval(e.runs, SIGNED),
            str(e.excluded),
        ]
        for e in found
    ]


TAU_HEADER = ["measure", "runs of", "tau (cell means)", "cells", "permutation p", "Holm p", "tau over runs [CI]",
              "runs left out"]  # fmt: skip


def warm_start_check(data: StudyData) -> str:
    """How close each run's last per-epoch lambda_max (warm-started, few iterations) comes to the curvature probe's
    (seeded start, its own iterations) on the same final weights: the largest relative difference over runs."""
    gaps = [
        abs(r.train.sharpness[-1].lambda_max - r.curvature.eigenvalues[0]) / abs(r.curvature.eigenvalues[0])
        for r in data.all_runs.values()
        if r.train.diverged is None and r.train.sharpness and r.curvature.eigenvalues and r.curvature.eigenvalues[0]
    ]
    if not gaps:
        return "No run has both values to compare."
    return (
        f"At the final weights the last per-epoch value and the curvature probe's lambda_max differ by at most "
        f"{100 * max(gaps):.2g} % over {len(gaps)} runs (median {100 * float(np.median(gaps)):.2g} %): a Ritz value "
        "is a lower bound, so a warm start with few iterations reads lambda_max low where it has not converged."
    )


def question_1(data: StudyData) -> str:
    r = data.study.regimes
    if r is None:
        return f"{Q1}\n\nThis study has no training-regime cell (a variant with `train:` overrides in params.yaml)."
    tally = ", ".join(f"{sum(c.verdict == v for c in r.claims)} {v}" for v in ("agrees", "differs", "inconclusive"))
    rules = r.rules
    crossed = [v for v, x in r.stability.items() if x >= 1]
    crossed_base = [v for v, x in r.stability_base.items() if x >= 1]
    families = {c.family for c in r.cells.values()}
    trained = " and ".join(name for family, name in (("mlp", "A"), ("cnn", "B")) if family in families)
    missing = [name for family, name in (("mlp", "A"), ("cnn", "B")) if family not in families]
    absent = (
        f" {' and '.join(missing)} {'has' if len(missing) == 1 else 'have'} no regime cell in this study "
        "(docs/regimes.md: how to add regime cells), so no claim is made for "
        f"{'it' if len(missing) == 1 else 'them'}."
        if missing
        else ""
    )
    return "\n\n".join(
        [
            Q1,
            f"**Experiment.** {trained} {'was' if len(families) == 1 else 'were'} trained again under other SGD "
            "settings, everything else equal (same seeds, "
            "so the same initial weights, data order and probe directions per seed): "
            f"{design(r)}. lambda_max, trace and relative flatness are of the local Hessian at the final weights "
            "(one activation pattern of a ReLU network), sigma* is the headline noise tolerance." + absent,
            _cells_table(data, r),
            "Final train loss: eval mode, whole training split; a diverged run is left out of the loss, gap and "
            "lambda_max columns (its weights are those of its last finite epoch). lambda_max: the geometric mean "
            "over seeds with the 95 % t-CI of log lambda_max, back-transformed. Spiked: "
            f"a batch loss above {rules.first_epoch_spike * R.UNIFORM_LOSS:.2f} nats ({rules.first_epoch_spike:g}x a "
            f"uniform guess's) in epoch 1, or above {rules.spike_factor:g}x the previous epoch's running mean later.",
            "**Rules, fixed before the results** (params.yaml, `claim_rules.regimes`). (a) Lower noise, sharper and a "
            f"larger gap: the {rules.noise_low:g}x cell minus the {rules.noise_high:g}x cell, paired by seed, on log "
            "lambda_max, log trace, log relative flatness (larger is sharper), sigma* (smaller is sharper) and the gap "
            "(larger). (b) At equal noise, batch size alone changes neither the gap "
            f"(margin +-{100 * rules.gap_margin:g} pp) nor lambda_max (+-{100 * rules.lambda_margin:g} %): the "
            "larger-batch cell at the default's noise scale minus the default, judged by a two-one-sided test "
            "(TOST): agrees when equivalence is shown (the 90 % CI inside the margin, the larger one-sided p "
            "Holm-adjusted), differs when a difference beyond the margin is, inconclusive otherwise. (a) and (b) "
            "form one Holm family; (a) is judged as the reference's claims are. "
            + verdict_rule("low - high", level=False),
            _claims_table(r),
            f"Result: {tally}.",
            "**Which sharpness measures rank with the gap within one architecture**, across its default and regime "
            "cells (cells are the unit: the runs of one cell are a cluster; exact permutation p over the cell means, "
            "Holm over the table; the tau over runs with a CI from resampling whole cells is secondary):",
            table(TAU_HEADER, _tau_rows(r.sharpness_tau)),
            "**Sharpness during training.** lambda_max of the training loss (Lanczos on a fixed training subset, eval "
            "mode) at the initial weights and after every epoch. Heavy-ball SGD is stable along the top eigenvector "
            "of a quadratic while lambda_max < 2 (1 + beta) / lr (Cohen et al. 2021's edge of stability). With the "
            "lr of that epoch (cosine schedule), the largest lambda_max lr_t / (2 (1 + beta)) of any run is "
            f"{max(r.stability.values()):.2f} ({', '.join(f'`{v}`' for v in crossed) or 'no run'} reaches 1); "
            f"with the base lr in its place {max(r.stability_base.values()):.2f} "
            f"({', '.join(f'`{v}`' for v in crossed_base) or 'no run'} reaches 1). " + warm_start_check(data),
            "![lambda_max during training](plots/figures/sharpness_training.png)\n\n"
            "![sharpness against the gap across regimes](plots/figures/regimes.png)",
        ]
    )


def question_4(data: StudyData) -> str:
    r = data.study.regimes
    if r is None:
        return f"{Q4}\n\nThis study has no training-regime cell, so no run is hard to train."
    hard = ", ".join(f"`{v}`" for v in r.hard_cells) or "none"
    verdicts = "; ".join(f"{g}: **{v}**" for g, v in r.q4_verdicts.items())
    n = len(r.difficulty)
    return "\n\n".join(
        [
            Q4,
            "**Difficulty, defined before the analysis.** A run that reached the target accuracy ranks by the epochs "
            "it took; one that did not ranks above all of those, by its final training loss; a diverged run above "
            f"every other (earlier divergence harder). A cell is hard when >= {r.rules.hard_seeds} of its seeds miss "
            f"the target, spike or diverge. Hard cells in this study: {hard}."
            + few_seeds(r.rules.hard_seeds, len(data.seeds)),
            "**Early signals**, each measured after epoch 1 (from the epoch-1 weights, saved as `epoch1.pt`), "
            f"against difficulty over all {n} runs: Kendall's tau over the cell means with a permutation p (the runs "
            "of one cell are a cluster), Holm over the signals; the tau over runs with a CI from resampling whole "
            "cells beside it. A run that diverged in epoch 1 has no signal and is left out.",
            table(TAU_HEADER, _tau_rows(r.early_tau)),
            "The same for measures taken at the end of training, to show whether the early ones add anything:",
            table(TAU_HEADER, _tau_rows(r.final_tau)),
            "**The reference's claim** that early learning-curve behaviour, generalization-gap trends and "
            "sensitivity to parameter noise signal how hard optimization will be, per signal group (agrees where at "
            f"least one of its signals has a Holm-adjusted p below 0.05, in either direction): {verdicts}.",
            "![early signals against difficulty](plots/figures/early_signals.png)",
        ]
    )
