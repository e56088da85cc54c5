"""Question 4's analysis (landscape.report.analysis.question4) against early_warning's functions called directly,
each verdict on a synthetic study built so that the answer is known, dead runs, and the render of a hand-written
result (landscape.report.render.question4)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from landscape.report.analysis import early_warning as E
from landscape.report.analysis import question4 as A
from landscape.report.render import question4 as R

FAMILIES = {"lr": [0.005, 0.02, 0.05, 0.1, 0.3], "depth": [0.05] * 5, "init": [0.05] * 5, "momentum": [0.05] * 5}
BASELINE = ["train_loss_epoch1", "abs_log_lr"]
SIGNALS = [
    E.Signal("copy", 1, "a noisy copy of the cell's hardness that the baseline does not explain"),
    E.Signal("backwards", -1, "the same copy, declared the wrong way round"),
    E.Signal("weak", 1, "mostly the cell's own noise, a little of its hardness"),
    E.Signal("rare", 1, "the hardness itself, observed in 4 cells of one family only"),
]
RULES = A.Question4Rules(SIGNALS, BASELINE, ["copy"], 0.2, 999, 0, 0.05, 0.8, 10, 199)


def study(dead: dict[str, int] | None = None, seed: int = 3) -> list[E.Run]:
    """20 cells in 4 families, 3 seeds each: per cell a hardness u independent of the baseline; final loss
    u + |log(lr / 0.05)| + seed noise; epoch-1 loss random. ``dead``: cell -> how many of its seeds died (final
    loss at chance, and copy 0: a dead network's lambda_max)."""
    rng = np.random.default_rng(seed)
    runs = []
    for family, lrs in FAMILIES.items():
        for i, lr in enumerate(lrs):
            cell, far = f"{family}{i}", abs(math.log(lr / 0.05))
            u, e = rng.normal(size=2)
            for s in range(3):
                early = {"train_loss_epoch1": rng.normal(1.0, 0.2), "abs_log_lr": far}
                early["copy"] = early["backwards"] = u + 0.2 * rng.normal()
                early["weak"], early["rare"] = 0.35 * u + e + 0.2 * rng.normal(), u if cell in RARE else math.nan
                final, died = u + far + 0.05 * rng.normal(), s < (dead or {}).get(cell, 0)
                early["copy"] = 0.0 if died else early["copy"]
                runs.append(E.Run(cell, family, s, 2.3 if died else final, died, False, early))
    return runs


RARE = ("lr0", "lr1", "lr2", "lr3")
DEAD = {"lr4": 2, "depth4": 3}


@pytest.fixture(scope="module")
def plain() -> dict:
    return A.analyse(study(), RULES)


@pytest.fixture(scope="module")
def with_dead() -> tuple[list[E.Run], dict]:
    runs = study(DEAD)
    return runs, A.analyse(runs, RULES)


def by_name(result: dict) -> dict[str, dict]:
    return {s["name"]: s for s in result["signals"]}


def test_each_verdict_is_reached_on_a_study_built_for_it(plain):
    found = by_name(plain)
    assert {k: s["verdict"] for k, s in found.items()} == {
        "copy": "adds", "backwards": "does not add", "weak": "inconclusive", "rare": "cannot decide"
    }  # fmt: skip
    assert found["copy"]["partial_tau"] > 0.5 and found["copy"]["p_holm"] < 0.05
    assert found["copy"]["held_out"]["with_signal"]["tau"] > found["copy"]["held_out"]["baseline"]["tau"]
    assert found["backwards"]["p_equivalence_holm"] < 0.05
    rare = found["rare"]  # 4 cells of one family: 24 orderings, smallest p 0.043 > 0.05 / 4
    assert rare["cells"] == 4 and rare["runs"] == 12 and not rare["tested"]
    assert rare["reach"] == {"orderings": 24, "smallest_p": pytest.approx((999 / 24 + 1) / 1000), "threshold": 0.0125,
                             "can_decide": False}  # fmt: skip
    assert rare["p"] is None and rare["partial_tau"] is None and rare["mde_tau"] is None
    assert 0.1 < found["copy"]["mde_tau"] < 0.57


def test_without_dead_runs_the_analysis_is_early_warnings_evaluate(plain):
    decided = [s for s in SIGNALS if s.name != "rare"]
    rules = replace(RULES, signals=decided)
    ours = by_name(A.analyse(study(), rules))
    theirs = E.evaluate(study(), decided, BASELINE, RULES.margin, RULES.resamples, RULES.seed)
    for name, t in theirs.items():
        s = ours[name]
        assert (s["partial_tau"], s["p"], s["p_equivalence"]) == (t.partial_tau, t.p, t.p_equivalence)
        assert (s["p_holm"], s["p_equivalence_holm"], s["verdict"]) == (
            t.p_adjusted,
            t.p_equivalence_adjusted,
            t.verdict,
        )
        assert s["held_out"]["with_signal"] == {"tau": t.with_signal.tau, "mae": t.with_signal.mae}
    assert by_name(plain)["copy"]["p"] == ours["copy"]["p"]  # the untested signal does not change a test


def test_one_signal_agrees_with_early_warnings_functions_called_directly(with_dead):
    runs, result = with_dead
    found = by_name(result)["copy"]
    live = [r for r in runs if not r.dead]
    means, hard = E.cell_values(live, "copy"), E.difficulty(runs)
    cells = [c for c in hard if c != "depth4"]  # every seed of depth4 died: no landscape observation of it
    x, y = [means[c] for c in cells], [hard[c] for c in cells]
    zs = [[E.cell_values(runs, b)[c] for c in cells] for b in BASELINE]
    strata = [c.rstrip("0123456789") for c in cells]
    tau, p, p_eq = E.partial_tau_test(x, y, zs, 1, strata, RULES.margin, RULES.resamples, RULES.seed)
    assert (found["partial_tau"], found["p"], found["p_equivalence"]) == (tau, p, p_eq)
    held = E.leave_one_cell_out(y, [*zs, x])
    assert found["held_out"]["with_signal"] == {"tau": held.tau, "mae": held.mae}
    assert found["strata"] == {"lr": 5, "depth": 4, "init": 5, "momentum": 5}
    assert found["reach"]["orderings"] == E.smallest_reachable_p(19, 4, [5, 4, 5, 5], RULES.resamples).orderings
    assert found["mde_tau"] == E.minimum_detectable_tau([5, 4, 5, 5], 4, 0.8, 10, 199, 0)


def test_dead_runs_leave_the_geometry_signals_and_keep_their_difficulty(with_dead):
    runs, result = with_dead
    cells = {c["cell"]: c for c in result["cells"]}
    assert result["n_dead"] == 5 and result["n_runs"] == 60
    assert {c: cells[c]["difficulty"] for c in cells} == pytest.approx(E.difficulty(runs))
    assert cells["depth4"]["difficulty"] == 58.0  # the 5 dead runs tie on ranks 56..60
    assert (cells["lr4"]["dead"], cells["lr4"]["signals"]["copy"]["runs"]) == (2, 1)
    assert cells["lr4"]["signals"]["copy"]["mean"] == next(
        r.early["copy"] for r in runs if r.cell == "lr4" and r.seed == 2
    )
    assert cells["lr4"]["signals"]["weak"]["runs"] == 3  # not a geometry signal: the dead runs keep it
    assert cells["depth4"]["signals"]["copy"] == {"mean": None, "runs": 0}
    copy = by_name(result)["copy"]
    assert (copy["cells"], copy["runs"], copy["cells_left_out"]) == (19, 55, ["depth4"])
    left = {(r["signal"], r["why"]): r["seeds"] for r in result["left_out"]}
    assert left.keys() == {("copy", A.DEAD), ("rare", A.NOT_FINITE)}
    assert left[("copy", A.DEAD)] == {"lr4": [0, 1], "depth4": [0, 1, 2]}
    assert left[("rare", A.NOT_FINITE)] == {c: [0, 1, 2] for c in cells if c not in RARE}


def test_the_result_survives_a_strict_json_round_trip(with_dead):
    _, result = with_dead
    text = json.dumps(result, allow_nan=False)
    assert json.loads(text) == result
    assert by_name(result)["rare"]["held_out"]["baseline"] == {"tau": None, "mae": None}


def test_rules_are_checked():
    with pytest.raises(ValueError, match="geometry"):
        replace(RULES, geometry=["lambda_max"])
    with pytest.raises(ValueError, match="alpha"):
        replace(RULES, alpha=0.1)
    with pytest.raises(ValueError, match="twice"):
        replace(RULES, signals=[*SIGNALS, SIGNALS[0]])
    with pytest.raises(ValueError, match="share"):
        replace(RULES, baseline=["copy"])


HAND = {
    "rules": {"signals": [], "baseline": ["train_loss_epoch1", "abs_log_lr"], "geometry": ["lambda_max"],
              "margin": 0.2, "resamples": 9999, "seed": 0, "alpha": 0.05, "power": 0.8, "power_sims": 200,
              "power_resamples": 999},
    "n_runs": 6, "n_cells": 2, "n_dead": 2, "n_diverged": 0,
    "cells": [
        {"cell": "lr0", "family": "lr", "runs": 3, "dead": 0, "diverged": 0, "difficulty": 2.0,
         "baseline": {"train_loss_epoch1": 0.61, "abs_log_lr": 0.0},
         "signals": {"lambda_max": {"mean": 7.25, "runs": 3}, "gap_trend": {"mean": -0.5, "runs": 3}}},
        {"cell": "lr1", "family": "lr", "runs": 3, "dead": 2, "diverged": 0, "difficulty": 5.0,
         "baseline": {"train_loss_epoch1": 2.3, "abs_log_lr": 1.79},
         "signals": {"lambda_max": {"mean": 31.5, "runs": 1}, "gap_trend": {"mean": None, "runs": 0}}},
    ],
    "signals": [
        {"name": "lambda_max", "direction": 1, "why": "sharper is harder", "geometry": True, "runs": 36, "cells": 12,
         "cells_left_out": [], "strata": {"lr": 12}, "tested": True, "partial_tau": 0.4123, "p": 0.0041,
         "p_holm": 0.0082, "p_equivalence": 0.9, "p_equivalence_holm": 0.9,
         "reach": {"orderings": 479001600, "smallest_p": 0.0001, "threshold": 0.025, "can_decide": True},
         "held_out": {"baseline": {"tau": 0.3, "mae": 0.2}, "with_signal": {"tau": 0.45, "mae": 0.1}},
         "mde_tau": 0.3512, "verdict": "adds"},
        {"name": "gap_trend", "direction": -1, "why": "a closing gap is hard", "geometry": False, "runs": 9,
         "cells": 4, "cells_left_out": ["lr1"], "strata": {"lr": 4}, "tested": False, "partial_tau": None,
         "p": None, "p_holm": None, "p_equivalence": None, "p_equivalence_holm": None,
         "reach": {"orderings": 24, "smallest_p": 0.04262, "threshold": 0.025, "can_decide": False},
         "held_out": {"baseline": {"tau": None, "mae": None}, "with_signal": {"tau": None, "mae": None}},
         "mde_tau": None, "verdict": "cannot decide"},
    ],
    "left_out": [{"signal": "lambda_max", "why": "dead (chance accuracy)", "seeds": {"lr1": [0, 2]}},
                 {"signal": "gap_trend", "why": "no finite value", "seeds": {"lr1": [0, 1, 2], "lr2": [1]}}],
}  # fmt: skip


def test_render_of_a_hand_written_result_gives_the_expected_rows():
    text = R.section(HAND)
    assert text.startswith(R.HEADING)
    header = "| cell | family | runs | dead | diverged | difficulty | train_loss_epoch1 | abs_log_lr | lambda_max |"
    assert header + " gap_trend |" in text
    assert "| `lr0` | lr | 3 | 0 | 0 | 2.00 | 0.61 | 0 | 7.25 | -0.5 |" in text
    assert "| `lr1` | lr | 3 | 2 | 0 | 5.00 | 2.3 | 1.79 | 31.5 (1 of 3) | - (0 of 3) |" in text
    assert ("| `lambda_max` | larger is harder | 12 (36 runs) | +0.41 | 0.004 | 0.008 | 0.900 | +0.30 -> +0.45 "
            "| **adds** | 0.3512 |") in text  # fmt: skip
    assert ("| `gap_trend` | smaller is harder | 4 (9 runs) | - | - | - | - | - -> - | **cannot decide** at n = 4 "
            "cells (smallest p 0.0426, Holm's first step 0.025) | - |") in text  # fmt: skip
    assert "- `lambda_max`: `lr1` seeds 0, 2: dead (chance accuracy)." in text
    assert "- `gap_trend`: `lr1` seeds 0, 1, 2; `lr2` seed 1: no finite value." in text
    assert "- `gap_trend` (smaller is harder): a closing gap is hard" in text
    assert "- `gap_trend`: cells `lr1` left out of its test" in text
    assert "Result: 1 adds, 1 cannot decide." in text
    assert "not read off the validation curve" in text and "all 6 runs" in text


def test_render_of_an_analysed_study_has_a_row_per_cell_and_signal(plain):
    text = R.section(plain)
    assert all(f"| `{c}` |" in text for c in (f"{f}{i}" for f in FAMILIES for i in range(5)))
    assert all(f"| `{s.name}` |" in text for s in SIGNALS)
    assert "No run or cell" not in text and "**cannot decide** at n = 4 cells" in text
