"""Report sections 10 and 11 from the study's runs: ``analyse_questions`` turns every run's summaries and per-epoch
curves into the inputs of question 1 at matched fit (``analysis.question1``), of Model B's noise cells at equal
training accuracy, and of question 4 (``analysis.question4``), and returns their numbers as one JSON-able dict (nan as
None) for metrics/study.json; ``landscape.report.render.questions`` only formats it.

- Question 1's runs are those of the variants trained to a training-loss target (train.stop_loss > 0). Each run's
  gap and validation accuracy are its history's last row (the epoch it stopped at); its geometry is the curvature
  probe's at the final weights. The old, fixed-budget reading of the same question is the same runs read at epoch
  train.epochs (the default budget) of their history and sharpness curves, whatever their training loss then.
- Model B's noise cells are the regime cells of the CNN family at the fixed budget, each against the factorial cell
  of the same network (the default). Per seed, the regime cell's gap at its last epoch minus the default's, and minus
  the default's gap where the default's eval-mode training accuracy equals the regime cell's final one (linear in
  training accuracy between the two epochs around its first crossing); a training accuracy outside the range of the
  default's history is no comparison (never extrapolated), and the seed is named instead.
- Question 4's runs are every run at the fixed budget (train.stop_loss == 0), difficulty from the final eval-mode
  training loss, dead and diverged runs hardest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from landscape.errors import StudyError
from landscape.report.analysis import dose_response as D
from landscape.report.analysis import early_warning as E
from landscape.report.analysis import question1, question4
from landscape.report.analysis.question1 import MatchedFitRun, OldReading, Question1Rules
from landscape.report.analysis.question4 import Question4Rules
from landscape.report.analysis.stats import finite_ci, geometric_ci
from landscape.study.params import Params
from landscape.study.results import RunResults, stability_ratio
from landscape.study.serialize import to_json
from landscape.study.validation import section

DEAD_VAL_ACC = 0.15
DEAD_WHY = (
    f"validation accuracy is at or below {DEAD_VAL_ACC:g}: chance on Fashion-MNIST's 10 balanced classes is 0.10, and "
    "a network that predicts one class scores 0.10 +- 0.003 on the 10k validation split, while a linear classifier "
    "already reaches about 0.84; the line sits near chance with room for a dead network's sampling wobble"
)
FAMILY_B = "cnn"  # Model B's family: its regime cells at the fixed budget are compared with its default at equal fit
GAP_TREND_EPOCH = 3  # gap_trend: (gap at this epoch - gap at epoch 1) / (this - 1), the gap's trend over epochs 1-3
EARLY = ("lambda_max", "lambda_max_scaled", "noise_drop", "gap_trend", "train_loss_epoch1", "abs_log_lr")
OLD_KEYS = {"lambda_max_slope": "log_lambda_max", "gap_slope_equal": "gap"}  # claim -> its measure at a fixed epoch

Frames = Mapping[str, pd.DataFrame]  # variant -> a per-run CSV's rows of every seed, with a ``seed`` column


def _rules(cls: type, raw: object, name: str):
    """``validation.section`` of a rules dataclass; its own cross-checks (ValueError) become a StudyError too."""
    try:
        return section(cls, raw, name)
    except ValueError as e:
        raise StudyError(f"params.yaml: '{name}': {e}") from None


def question_rules(params: Params) -> tuple[Question1Rules, Question4Rules]:
    """The rules of questions 1 and 4 from claim_rules.question1 / question4, checked: a bad key is a StudyError
    naming it; every fit cell's train.stop_loss must be question 1's target_loss; every signal and baseline variable
    must be one this module measures (``EARLY``)."""
    r1 = _rules(Question1Rules, params.claim_rules.question1, "claim_rules.question1")
    r4 = _rules(Question4Rules, params.claim_rules.question4, "claim_rules.question4")
    stops = {v: params.train_for(v).stop_loss for v in fit_variants(params)}
    if off := {v: s for v, s in stops.items() if not math.isclose(s, r1.target_loss)}:
        raise StudyError(
            f"params.yaml: 'claim_rules.question1.target_loss' = {r1.target_loss:g} differs from the train.stop_loss "
            f"of {', '.join(f'{v} ({s:g})' for v, s in off.items())}; question 1 compares runs at that loss: make "
            "them equal."
        )
    for key, names in (("signals", [s.name for s in r4.signals]), ("baseline", r4.baseline)):
        if unknown := [n for n in names if n not in EARLY]:
            raise StudyError(
                f"params.yaml: 'claim_rules.question4.{key}' names {', '.join(map(repr, unknown))}, which no run "
                f"records; choose from {', '.join(EARLY)}."
            )
    return r1, r4


def fit_variants(params: Params) -> list[str]:
    """The study's variants trained to a training-loss target (question 1 at matched fit)."""
    return [v for v in params.study.variants if params.train_for(v).stop_loss > 0]


def budget_variants(params: Params) -> list[str]:
    """The study's variants trained for a fixed number of epochs (question 4's cells)."""
    return [v for v in params.study.variants if params.train_for(v).stop_loss == 0]


def b_cells(params: Params) -> dict[str, str]:
    """Model B's regime cells at the fixed budget -> their default: the factorial cell of the same network."""
    found = {}
    for v in budget_variants(params):
        cell = params.variant(v)
        if not cell.regime or cell.family != FAMILY_B:
            continue
        network = (cell.conv, cell.bn, cell.dropout)
        same = [f for f in params.factorial() if (params.variant(f).conv, params.variant(f).bn,
                                                  params.variant(f).dropout) == network]  # fmt: skip
        if len(same) != 1:
            raise StudyError(f"the regime cell {v} has no single factorial cell of the same network in study.variants")
        found[v] = same[0]
    return found


def is_dead(run: RunResults) -> bool:
    """At chance accuracy (``DEAD_VAL_ACC``); a diverged run is counted apart, not as dead."""
    return run.train.diverged is None and run.train.val.acc <= DEAD_VAL_ACC


def _rows(frames: Frames, variant: str, seed: int, what: str) -> pd.DataFrame:
    """One run's rows of a per-run CSV, by epoch."""
    if variant not in frames:
        raise StudyError(f"no {what}.csv rows of variant {variant}: rerun its train stage (dvc repro)")
    f = frames[variant]
    return f[f["seed"] == seed].sort_values("epoch")


def _at(rows: pd.DataFrame, epoch: int, column: str) -> float:
    """``column`` at ``epoch`` (nan where the run has no such epoch)."""
    found = rows.loc[rows["epoch"] == epoch, column]
    return float(found.iloc[0]) if len(found) else math.nan


def _lambda_max(run: RunResults) -> float:
    return run.curvature.eigenvalues[0] if run.curvature.eigenvalues else math.nan


def matched_fit_run(run: RunResults, history: pd.DataFrame) -> MatchedFitRun:
    """One question-1 run: gap and validation accuracy from its ``history`` rows' last (the epoch it stopped at),
    geometry from its curvature summary."""
    t, c = run.train, run.curvature
    last = history.iloc[-1] if len(history) else None
    gap, val_acc = (math.nan, math.nan) if last is None else (float(last["gap"]), float(last["val_acc"]))
    return MatchedFitRun(t.variant, t.seed, t.lr, t.batch_size, t.momentum, bool(t.reached_loss), float(t.epochs),
                         t.steps, gap, val_acc, _lambda_max(run), c.trace, c.adaptive_sharpness, c.theta_norm,
                         is_dead(run), t.diverged is not None)  # fmt: skip


def old_reading(fit: list[MatchedFitRun], history: Frames, sharpness: Frames, epoch: int, rules: Question1Rules):
    """The claims of ``OLD_KEYS`` read at ``epoch`` of the same runs (the fixed budget): per seed the slope of the
    gap and of log lambda_max (a dead run's left out, as at matched fit) on log2(eta / B) at ``rules.batch``."""
    live = []
    for r in fit:
        lam = _at(_rows(sharpness, r.variant, r.seed, "sharpness"), epoch, "lambda_max")
        gap = _at(_rows(history, r.variant, r.seed, "history"), epoch, "gap")
        log_lam = math.log(lam) if lam > 0 and not r.dead else math.nan
        live.append(D.Run(r.eta, r.batch, r.momentum, r.seed, {"gap": gap, "log_lambda_max": log_lam}))
    slopes = {k: D.slope_over_seeds(live, m, rules.batch, rules.alpha) for k, m in OLD_KEYS.items()}
    return OldReading(epoch, slopes)


def sharpness_per_epoch(fit: list[MatchedFitRun], sharpness: Frames, rules: Question1Rules) -> dict:
    """Per fit cell, each run's lambda_max per epoch (0: the initial weights) and lambda_max eta / (2 (1 + beta)),
    and per epoch over the seeds still training: the geometric mean of lambda_max and the mean ratio with their 95 %
    t CIs and n; the largest ratio of any run at any epoch, and the runs that reach ``rules.eos_threshold``."""
    cells, largest, reached = {}, math.nan, []
    for r in sorted(fit, key=lambda r: (r.batch, r.eta, r.seed)):
        rows = _rows(sharpness, r.variant, r.seed, "sharpness")
        lam = rows["lambda_max"].astype(float).tolist()
        ratio = [stability_ratio(x, r.eta, r.momentum) for x in lam]
        cell = cells.setdefault(r.variant, {"variant": r.variant, "eta": r.eta, "batch": r.batch,
                                            "momentum": r.momentum, "runs": []})  # fmt: skip
        cell["runs"].append({"seed": r.seed, "epoch": rows["epoch"].astype(int).tolist(), "lambda_max": lam,
                             "ratio": ratio})  # fmt: skip
        if finite := [x for x in ratio if math.isfinite(x)]:
            largest = float(np.fmax(largest, max(finite)))
            if max(finite) >= rules.eos_threshold:
                reached.append(r.name)
    for cell in cells.values():
        lam, ratio = ([dict(zip(run["epoch"], run[k], strict=True)) for run in cell["runs"]] for k in ("lambda_max",
                      "ratio"))  # fmt: skip
        epochs = sorted({e for run in lam for e in run})
        cell["per_epoch"] = [{"epoch": e, "lambda_max": geometric_ci([x[e] for x in lam if e in x]),
                              "ratio": finite_ci([x[e] for x in ratio if e in x])} for e in epochs]  # fmt: skip
    return {"threshold": rules.eos_threshold, "largest": largest, "reached_by": reached, "cells": list(cells.values())}


def equal_accuracy_gap(history: pd.DataFrame, acc: float) -> float | None:
    """The gap of a run's ``history`` where its eval-mode training accuracy first reaches ``acc`` along the epochs,
    linear in training accuracy between the two epochs around the crossing; None when ``acc`` lies outside the range
    of the history's training accuracies (that would be an extrapolation)."""
    a, g = history["train_acc"].to_numpy(float), history["gap"].to_numpy(float)
    if not len(a) or not a.min() <= acc <= a.max():
        return None
    for i in range(len(a)):
        if a[i] == acc:
            return float(g[i])
        if i and (a[i - 1] - acc) * (a[i] - acc) < 0:
            return float(g[i - 1] + (acc - a[i - 1]) / (a[i] - a[i - 1]) * (g[i] - g[i - 1]))
    raise AssertionError("unreachable: acc lies within the range of a piecewise-linear path")


def b_regime(variant: str, default: str, runs: Mapping, history: Frames, seeds: list[int], alpha: float) -> dict:
    """One of Model B's noise cells against its default, paired by seed: the gap difference at the last epoch, and
    at the regime run's final training accuracy on the default's history (``equal_accuracy_gap``)."""
    rows, last, equal, left = [], {}, {}, []
    for s in seeds:
        mine, base = runs[(variant, s)], runs[(default, s)]
        h, hd = _rows(history, variant, s, "history"), _rows(history, default, s, "history")
        if bad := [x.train.variant for x in (mine, base) if x.train.diverged is not None or is_dead(x)]:
            left.append({"seed": s, "why": f"{' and '.join(bad)} diverged or dead: no gap to compare"})
            continue
        acc, gap = float(h["train_acc"].iloc[-1]), float(h["gap"].iloc[-1])
        at = equal_accuracy_gap(hd, acc)
        last[s] = gap - float(hd["gap"].iloc[-1])
        if at is None:
            left.append({"seed": s, "why": "its final training accuracy lies outside the default's history: not "
                                           "comparable at equal training accuracy (no extrapolation)"})  # fmt: skip
        else:
            equal[s] = gap - at
        rows.append({"seed": s, "train_acc": acc, "gap": gap, "default_train_acc": float(hd["train_acc"].iloc[-1]),
                     "default_gap": float(hd["gap"].iloc[-1]), "default_gap_equal": at,
                     "default_range": [float(hd["train_acc"].min()), float(hd["train_acc"].max())]})  # fmt: skip
    t, td = runs[(variant, seeds[0])].train, runs[(default, seeds[0])].train
    return {"variant": variant, "default": default, "lr": t.lr, "batch": t.batch_size, "default_lr": td.lr,
            "default_batch": td.batch_size, "noise": (t.lr / t.batch_size) / (td.lr / td.batch_size),
            "seeds": rows, "last_epoch": D.over_seeds(last, alpha), "equal_accuracy": D.over_seeds(equal, alpha),
            "left_out": left}  # fmt: skip


def early_warning_run(run: RunResults, history: pd.DataFrame, family: str, default_eta: float) -> E.Run:
    """One question-4 run: final eval-mode training loss (nan if diverged), dead and diverged flags, and its early
    observations (``EARLY``; nan where the run has none, e.g. diverged in epoch 1)."""
    t, e = run.train, run.train.early
    diverged = t.diverged is not None
    trend = (_at(history, GAP_TREND_EPOCH, "gap") - _at(history, 1, "gap")) / (GAP_TREND_EPOCH - 1)
    early = {
        "lambda_max": e.lambda_max if e else math.nan,
        "lambda_max_scaled": e.lambda_max_scaled if e else math.nan,
        "noise_drop": e.noise_drop if e else math.nan,
        "gap_trend": trend,
        "train_loss_epoch1": _at(history, 1, "train_loss"),
        "abs_log_lr": abs(math.log(t.lr / default_eta)),
    }
    final = math.nan if diverged else t.train.loss
    return E.Run(t.variant, family, t.seed, final, is_dead(run), diverged, early)


def analyse_questions(
    params: Params, runs: Mapping[tuple[str, int], RunResults], history: Frames, sharpness: Frames
) -> dict:
    """Every number of report sections 10 and 11 as plain JSON values (nan as None): ``question1`` (None without a
    fit cell; with ``per_epoch``, lambda_max per epoch of every fit run), ``b_regimes`` (one entry per noise cell of
    Model B), ``question4`` and ``dead`` (the rule that calls a run dead). ``runs``: (variant, seed) -> summaries of
    every run of the study; ``history`` and ``sharpness``: variant -> the rows of every seed's history.csv and
    sharpness.csv (``runs_io.long_rows``). Bad rules or a missing run -> StudyError."""
    r1, r4 = question_rules(params)
    seeds = list(params.study.seeds)
    if missing := [f"{v}/{s}" for v in params.study.variants for s in seeds if (v, s) not in runs]:
        raise StudyError(f"no summaries of run(s) {', '.join(missing)}: rerun their stages (dvc repro)")
    fit = [matched_fit_run(runs[(v, s)], _rows(history, v, s, "history")) for v in fit_variants(params) for s in seeds]
    q1 = None
    if fit:
        try:
            q1 = question1.analyse(fit, r1, old_reading(fit, history, sharpness, params.train.epochs, r1))
        except ValueError as e:
            raise StudyError(f"question 1: {e}; check the variants with train.stop_loss in params.yaml") from None
        q1["per_epoch"] = sharpness_per_epoch(fit, sharpness, r1)
    b = [b_regime(v, d, runs, history, seeds, r1.alpha) for v, d in b_cells(params).items()]
    q4_runs = [early_warning_run(runs[(v, s)], _rows(history, v, s, "history"), params.model_config(v).family,
                                 r1.default_eta) for v in budget_variants(params) for s in seeds]  # fmt: skip
    q4 = question4.analyse(q4_runs, r4)
    return to_json({"dead": {"val_acc_at_most": DEAD_VAL_ACC, "why": DEAD_WHY}, "question1": q1, "b_regimes": b,
                    "question4": q4})  # fmt: skip
