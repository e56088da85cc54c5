"""Report sections 10 and 11 from runs (landscape.report.analysis.questions, render.questions, plotting_regimes) on a
synthetic study over params.yaml's variants: every number checked against one computed here from the synthetic
values (numpy.polyfit slopes, scipy.stats intervals, closed-form interpolation), the rules' validation, a render that
only formats, the figures, and a strict JSON round trip."""

from __future__ import annotations

import ast
import copy
import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from conftest import REPO
from landscape.errors import StudyError
from landscape.probes.settings import Score
from landscape.report.analysis import early_warning as E
from landscape.report.analysis import question4
from landscape.report.analysis import questions as Q
from landscape.report.render import questions as render
from landscape.study.params import Params, parse_params
from landscape.study.results import (
    CurvatureSummary,
    Divergence,
    EarlySignals,
    RunResults,
    TrainSummary,
)

RAW = yaml.safe_load((REPO / "params.yaml").read_text())
SEEDS = [0, 1, 2]
FIT_EPOCHS = 12  # every fit run reaches the target at epoch 12
DEAD_FIT = ("fit_b128_x2", 2)  # dead at the target: leaves the geometry measures
HI_OUTSIDE = ("cnn_hi_noise", 0)  # its final training accuracy lies beyond the default's history
BROKEN = {("mlp_unstable", 0): "diverged", ("mlp_unstable", 1): "dead"}


def params_of(**changes) -> Params:
    """params.yaml with seeds SEEDS, cheap question-4 draws and ``changes`` ({"question1": {...}} etc.)."""
    raw = copy.deepcopy(RAW)
    raw["study"]["seeds"] = SEEDS
    raw["claim_rules"]["question4"] |= {"resamples": 199, "power_sims": 5, "power_resamples": 49}
    for key, value in changes.items():
        raw["claim_rules"][key] |= value
    return parse_params(raw)


PARAMS = params_of()
ETA0, B0 = 0.05, 128


def noise_x(lr: float, batch: int) -> float:
    return math.log2((lr / batch) / (ETA0 / B0))


def draw(variant: str, seed: int) -> np.ndarray:
    """Four seeded standard normals of one run."""
    return np.random.default_rng([PARAMS.study.variants.index(variant), seed]).normal(size=4)


def fit_truth(variant: str, seed: int) -> dict:
    """A fit run's values: gap and log sharpness linear in log2(eta / B) plus seed noise."""
    cfg, z = PARAMS.train_for(variant), draw(variant, seed)
    x = noise_x(cfg.lr, cfg.batch_size)
    return {"gap": 0.03 + 0.002 * x + 0.002 * z[0], "lambda_max": 20 * math.exp(-0.6 * x + 0.1 * z[1]),
            "adaptive_sharpness": 3 * math.exp(-0.3 * x + 0.1 * z[2]), "trace": 500 * math.exp(-0.5 * x + 0.1 * z[3]),
            "theta_norm": 30 + x}  # fmt: skip


def default_b(seed: int, epoch: float) -> tuple[float, float]:
    """Model B's default cell: (train_acc, gap) linear in the epoch."""
    return 0.70 + 0.025 * epoch, 0.005 * epoch + 0.001 * seed


B_FINAL = {"cnn_lo_noise": (0.86, 0.03), "cnn_hi_noise": (0.90, 0.02)}  # final (train_acc, gap) + 0.01 x seed


def budget_truth(variant: str, seed: int) -> dict:
    z = draw(variant, seed)
    lr = PARAMS.train_for(variant).lr
    return {"final_loss": 0.2 + 0.05 * abs(z[0]) + abs(math.log(lr / ETA0)) / 10, "loss1": 0.6 + 0.1 * z[1],
            "lambda_max": 10 + z[2], "noise_drop": 0.05 + 0.01 * abs(z[3]), "gap1": 0.01 * seed,
            "gap3": 0.02 + 0.01 * z[3]}  # fmt: skip


def history_of(variant: str, seed: int) -> pd.DataFrame:
    cfg = PARAMS.train_for(variant)
    if BROKEN.get((variant, seed)) == "diverged":
        return pd.DataFrame(columns=["epoch", "train_loss", "train_acc", "val_acc", "gap", "seed"])
    if cfg.stop_loss > 0:
        t = fit_truth(variant, seed)
        e = np.arange(1, FIT_EPOCHS + 1)
        gap, acc = t["gap"] * e / FIT_EPOCHS, 0.8 + 0.01 * e
        return pd.DataFrame({"epoch": e, "train_loss": 1 / e, "train_acc": acc, "val_acc": acc - gap, "gap": gap})
    e = np.arange(1, cfg.epochs + 1)
    if variant == "cnn":
        acc, gap = default_b(seed, e)
    elif variant in B_FINAL:
        a, g = B_FINAL[variant]
        a = 0.97 if (variant, seed) == HI_OUTSIDE else a + 0.01 * seed
        acc, gap = a - 0.01 * (cfg.epochs - e), (g + 0.01 * seed) * e / cfg.epochs
    else:
        t = budget_truth(variant, seed)
        acc = 0.8 + 0.01 * e
        gap = np.interp(e, [1, 3, 10], [t["gap1"], t["gap3"], 0.05])
    loss = np.full(len(e), 0.5)
    if cfg.stop_loss == 0 and variant not in B_FINAL and variant != "cnn":
        loss[0] = budget_truth(variant, seed)["loss1"]
    return pd.DataFrame({"epoch": e, "train_loss": loss, "train_acc": acc, "val_acc": acc - gap, "gap": gap})


def sharpness_of(variant: str, seed: int) -> pd.DataFrame:
    e = np.arange(0, FIT_EPOCHS + 1)
    lam = fit_truth(variant, seed)["lambda_max"] * (0.5 + e / (2 * FIT_EPOCHS))  # the final value at the last epoch
    return pd.DataFrame({"epoch": e, "lambda_max": lam})


def run_of(variant: str, seed: int) -> RunResults:
    cfg, broken = PARAMS.train_for(variant), BROKEN.get((variant, seed))
    fit = cfg.stop_loss > 0
    t = fit_truth(variant, seed) if fit else budget_truth(variant, seed)
    val_acc = 0.1 if broken == "dead" or (variant, seed) == DEAD_FIT else 0.85
    early = None if broken == "diverged" else EarlySignals(
        0.8, 0.5, 0.05, -1.0, t["lambda_max"], t["lambda_max"] * cfg.lr / (2 * (1 + cfg.momentum)), 0.3,
        t.get("noise_drop", 0.05))  # fmt: skip
    train = TrainSummary(
        variant, seed, PARAMS.model_config(variant).family, 1000, FIT_EPOCHS if fit else cfg.epochs, 4000,
        cfg.stop_loss, True if fit else None, "cpu", Score(0.1 if fit else t["final_loss"], 0.95), Score(0.4, val_acc),
        Score(0.4, val_acc), 0.1, 0.1, {}, 0.9, 0.88, None, cfg.lr, cfg.batch_size, cfg.momentum,
        Divergence(1, 5, "nan") if broken == "diverged" else None, [], early,
    )  # fmt: skip
    curvature = CurvatureSummary(
        variant, seed, "weights", 500, [t["lambda_max"]], [0.0], [], [], t.get("trace", 1.0), 0.0, 1.0, 0.0, 1.0,
        0.0, t.get("adaptive_sharpness", 1.0), t.get("theta_norm", 1.0),
    )  # fmt: skip
    return RunResults(train, None, None, None, curvature)


def frames(make) -> dict[str, pd.DataFrame]:
    return {v: pd.concat([make(v, s).assign(seed=s) for s in SEEDS], ignore_index=True) for v in PARAMS.study.variants}


RUNS = {(v, s): run_of(v, s) for v in PARAMS.study.variants for s in SEEDS}
HISTORY, SHARPNESS = frames(history_of), frames(sharpness_of)


@pytest.fixture(scope="module")
def result() -> dict:
    return Q.analyse_questions(PARAMS, RUNS, HISTORY, SHARPNESS)


def claims(result: dict) -> dict[str, dict]:
    return {c["key"]: c for c in result["question1"]["claims"]}


def t_interval(x) -> tuple[float, float]:
    x = np.asarray(x, float)
    return stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))


BATCH_128 = [v for v in Q.fit_variants(PARAMS) if PARAMS.train_for(v).batch_size == 128]


def slopes(value) -> list[float]:
    """Per seed, the polyfit slope over the batch-128 fit cells of value(variant, seed) (nan: left out)."""
    out = []
    for s in SEEDS:
        points = [(noise_x(PARAMS.train_for(v).lr, 128), value(v, s)) for v in BATCH_128]
        x, y = np.array([p for p in points if math.isfinite(p[1])]).T
        out.append(np.polyfit(x, y, 1)[0])
    return out


def test_question1_uses_each_runs_last_history_row_and_final_geometry(result):
    found = claims(result)
    gap = slopes(lambda v, s: fit_truth(v, s)["gap"])
    assert found["gap_slope_equal"]["estimate"]["mean"] == pytest.approx(np.mean(gap), rel=1e-9)
    assert (found["gap_slope_equal"]["estimate"]["ci_low"], found["gap_slope_equal"]["estimate"]["ci_high"]) == (
        pytest.approx(t_interval(gap))
    )
    alive = slopes(lambda v, s: math.nan if (v, s) == DEAD_FIT else math.log(fit_truth(v, s)["adaptive_sharpness"]))
    assert found["adaptive_sharpness_slope"]["estimate"]["mean"] == pytest.approx(np.mean(alive), rel=1e-9)
    assert found["adaptive_sharpness_slope"]["dead"] == ["eta=0.1, B=128, seed 2"]
    assert result["question1"]["runs"]["excluded"] == [
        {"run": "eta=0.1, B=128, seed 2", "variant": "fit_b128_x2",
         "why": "dead (chance accuracy): left out of the geometry measures"}]  # fmt: skip
    cell = next(c for c in result["question1"]["cells"] if c["variant"] == "fit_b512_x1")
    assert cell["measures"]["val_acc"]["mean"] == pytest.approx(
        np.mean([0.8 + 0.01 * FIT_EPOCHS - fit_truth("fit_b512_x1", s)["gap"] for s in SEEDS])
    )
    assert cell["measures"]["epochs"]["mean"] == FIT_EPOCHS


def test_the_old_reading_is_the_same_runs_at_the_default_budget(result):
    rows = {r["key"]: r for r in result["question1"]["comparison"]["rows"]}
    epoch = PARAMS.train.epochs
    assert result["question1"]["comparison"]["epoch"] == epoch == 10
    gap = slopes(lambda v, s: fit_truth(v, s)["gap"] * epoch / FIT_EPOCHS)
    lam = slopes(lambda v, s: math.nan if (v, s) == DEAD_FIT else
                 math.log(fit_truth(v, s)["lambda_max"] * (0.5 + epoch / (2 * FIT_EPOCHS))))  # fmt: skip
    for key, per_seed in (("gap_slope_equal", gap), ("lambda_max_slope", lam)):
        old = rows[key]["old"]
        assert old["mean"] == pytest.approx(np.mean(per_seed), rel=1e-9)
        assert (old["ci_low"], old["ci_high"]) == pytest.approx(t_interval(per_seed))
    assert (
        rows["lambda_max_slope"]["old_dead"] == ["eta=0.1, B=128, seed 2"] and rows["gap_slope_equal"]["old_dead"] == []
    )
    assert rows["gap_slope_equal"]["unit"] == "fraction per doubling"


def test_lambda_max_per_epoch_and_the_edge_of_stability(result):
    p = result["question1"]["per_epoch"]
    ratios = {(v, s): [lam * PARAMS.train_for(v).lr / 3.8 for lam in sharpness_of(v, s)["lambda_max"]]
              for v in Q.fit_variants(PARAMS) for s in SEEDS}  # fmt: skip
    assert p["largest"] == pytest.approx(max(max(r) for r in ratios.values()))
    reached = [f"eta={PARAMS.train_for(v).lr:g}, B={PARAMS.train_for(v).batch_size}, seed {s}"
               for (v, s), r in ratios.items() if max(r) >= 0.9]  # fmt: skip
    assert p["reached_by"] == reached and "eta=0.2, B=4096, seed 0" in reached
    cell = next(c for c in p["cells"] if c["variant"] == "fit_b128_x1")
    assert [r["seed"] for r in cell["runs"]] == SEEDS and cell["runs"][1]["ratio"] == pytest.approx(
        ratios[("fit_b128_x1", 1)]
    )
    at = cell["per_epoch"][4]
    assert at["epoch"] == 4 and at["ratio"]["n"] == 3
    assert at["ratio"]["mean"] == pytest.approx(np.mean([ratios[("fit_b128_x1", s)][4] for s in SEEDS]))
    logs = np.log([sharpness_of("fit_b128_x1", s)["lambda_max"][4] for s in SEEDS])
    assert at["lambda_max"]["mean"] == pytest.approx(math.exp(logs.mean()))
    assert at["lambda_max"]["ci_high"] == pytest.approx(math.exp(t_interval(logs)[1]))


def test_model_b_gap_at_the_last_epoch_and_at_equal_training_accuracy(result):
    cells = {c["variant"]: c for c in result["b_regimes"]}
    assert set(cells) == {"cnn_lo_noise", "cnn_hi_noise"} and cells["cnn_lo_noise"]["default"] == "cnn"
    assert cells["cnn_lo_noise"]["noise"] == pytest.approx(0.25) and cells["cnn_hi_noise"]["noise"] == pytest.approx(4)
    for v, c in cells.items():
        acc = {s: (0.97 if (v, s) == HI_OUTSIDE else B_FINAL[v][0] + 0.01 * s) for s in SEEDS}
        gap = {s: B_FINAL[v][1] + 0.01 * s for s in SEEDS}
        last = [gap[s] - default_b(s, 10)[1] for s in SEEDS]
        equal = {s: gap[s] - default_b(s, (acc[s] - 0.70) / 0.025)[1] for s in SEEDS if acc[s] <= 0.95}
        assert c["last_epoch"]["mean"] == pytest.approx(np.mean(last))
        assert (c["last_epoch"]["ci_low"], c["last_epoch"]["ci_high"]) == pytest.approx(t_interval(last))
        assert c["last_epoch"]["p"] == pytest.approx(stats.ttest_1samp(last, 0).pvalue)
        assert c["equal_accuracy"]["mean"] == pytest.approx(np.mean(list(equal.values())))
        assert c["equal_accuracy"]["n"] == len(equal)
        outside = [r["seed"] for r in c["left_out"]]
        assert outside == ([0] if v == HI_OUTSIDE[0] else [])
    row = next(r for r in cells["cnn_hi_noise"]["seeds"] if r["seed"] == 0)
    assert row["default_gap_equal"] is None and row["default_range"] == pytest.approx([0.725, 0.95])


def test_equal_accuracy_gap_reads_the_first_crossing_and_never_extrapolates():
    h = pd.DataFrame({"train_acc": [0.5, 0.7, 0.6, 0.9], "gap": [0.0, 0.02, 0.04, 0.08]})
    assert Q.equal_accuracy_gap(h, 0.65) == pytest.approx(0.015)  # epochs 1-2, not the later crossings
    assert Q.equal_accuracy_gap(h, 0.8) == pytest.approx(0.04 + (0.8 - 0.6) / 0.3 * 0.04)
    assert Q.equal_accuracy_gap(h, 0.7) == pytest.approx(0.02)
    assert Q.equal_accuracy_gap(h, 0.91) is None and Q.equal_accuracy_gap(h, 0.49) is None
    assert Q.equal_accuracy_gap(h.iloc[:0], 0.5) is None


def test_question4_gets_the_runs_as_built_here(result):
    runs = []
    for v in Q.budget_variants(PARAMS):
        for s in SEEDS:
            cfg, broken = PARAMS.train_for(v), BROKEN.get((v, s))
            h = history_of(v, s).set_index("epoch")
            t = budget_truth(v, s)
            early = {"train_loss_epoch1": h["train_loss"].get(1, math.nan),
                     "gap_trend": (h["gap"].get(3, math.nan) - h["gap"].get(1, math.nan)) / 2,
                     "abs_log_lr": abs(math.log(cfg.lr / 0.05)), "lambda_max": t["lambda_max"],
                     "lambda_max_scaled": t["lambda_max"] * cfg.lr / (2 * (1 + cfg.momentum)),
                     "noise_drop": t["noise_drop"]}  # fmt: skip
            if broken == "diverged":
                early = {k: (x if k == "abs_log_lr" else math.nan) for k, x in early.items()}
            final = math.nan if broken == "diverged" else run_of(v, s).train.train.loss
            family = "cnn" if v.startswith("cnn") else "mlp"
            runs.append(E.Run(v, family, s, final, broken == "dead", broken == "diverged", early))
    rules = Q.question_rules(PARAMS)[1]
    assert result["question4"] == json.loads(json.dumps(question4.analyse(runs, rules), allow_nan=False))
    cells = {c["cell"]: c for c in result["question4"]["cells"]}
    assert len(cells) == 17 and (cells["mlp_unstable"]["dead"], cells["mlp_unstable"]["diverged"]) == (1, 1)
    assert cells["mlp"]["signals"]["gap_trend"]["mean"] == pytest.approx(
        np.mean([(budget_truth("mlp", s)["gap3"] - 0.01 * s) / 2 for s in SEEDS])
    )


def test_rules_are_validated_with_the_key_named():
    with pytest.raises(StudyError, match=r"claim_rules\.question1\.bogus"):
        Q.question_rules(params_of(question1={"bogus": 1}))
    with pytest.raises(StudyError, match=r"claim_rules\.question1\.gap_margin"):
        Q.question_rules(params_of(question1={"gap_margin": 2.0}))
    with pytest.raises(StudyError, match=r"target_loss.*fit_b128_x1_8 \(0\.1\)"):
        Q.question_rules(params_of(question1={"target_loss": 0.05}))
    signals = [*RAW["claim_rules"]["question4"]["signals"], {"name": "slice", "direction": 1, "why": "x"}]
    with pytest.raises(StudyError, match=r"claim_rules\.question4\.signals.*'slice'"):
        Q.question_rules(params_of(question4={"signals": signals}))
    with pytest.raises(StudyError, match=r"claim_rules\.question4.*direction"):
        Q.question_rules(params_of(question4={"signals": [{"name": "lambda_max", "direction": 2, "why": "x"}]}))
    with pytest.raises(StudyError, match="no summaries of run"):
        Q.analyse_questions(PARAMS, {k: r for k, r in RUNS.items() if k != ("mlp", 1)}, HISTORY, SHARPNESS)


def test_the_result_is_strict_json_and_renders_sections_10_and_11(result):
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    text = render.render_questions(result)
    assert text.startswith("## 10. Question 1") and "\n## 11. Question 4" in text and render.B_TITLE in text
    lines = text.splitlines()
    old = [line for line in lines if line.startswith("- **Old reading**")]
    new = [line for line in lines if line.startswith("- **This reading**")]
    assert len(old) == len(new) == 1 and "epoch 10 of these constant-rate runs" in old[0]
    assert "`lambda_max_slope`" in old[0] and "`gap_slope_equal`" in new[0]
    assert "| `cnn_hi_noise` vs `cnn` | 0.2 vs 0.05 | x4 |" in text and "not comparable at equal training" in text
    assert "raw, changes with weight scale" in text and "None" not in text and "nan" not in text
    assert "validation accuracy is at or below 0.15" in text and f"plots/figures/{render.STABILITY_PNG}" in text
    tree = ast.parse(open(render.__file__).read())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "math", "collections.abc", "landscape.report.format", "landscape.report.render",
                        "landscape.report.terms"}  # fmt: skip


def test_a_study_without_fit_or_b_cells_still_renders():
    raw = copy.deepcopy(RAW)
    raw["study"] = {"seeds": SEEDS, "variants": ["mlp", "cnn"], "factorial": ["mlp", "cnn"], "train_mlp": ["mlp"],
                    "train_cnn": ["cnn"]}  # fmt: skip
    raw["claim_rules"]["question4"] |= {"resamples": 99, "power_sims": 2, "power_resamples": 19}
    params = parse_params(raw)
    runs = {k: RUNS[k] for k in RUNS if k[0] in ("mlp", "cnn")}
    result = json.loads(json.dumps(Q.analyse_questions(params, runs, HISTORY, SHARPNESS), allow_nan=False))
    assert result["question1"] is None and result["b_regimes"] == []
    text = render.render_questions(result)
    assert "No variant of this study trains to a training-loss target" in text and "no regime cell of Model B" in text


def test_figures_are_written_from_the_dict(result, tmp_path):
    from landscape.report import plotting_regimes as P

    stored = json.loads(json.dumps(result))
    paths = P.write_question_figures(stored, tmp_path)
    assert [p.name for p in paths] == [render.DOSE_RESPONSE_PNG, render.STABILITY_PNG]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)
    fig = P.dose_response(stored)
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "log", "linear"]
    assert "error bar = 95 % t-CI over seeds" in fig.get_suptitle()
    ax = P.stability(stored).axes[0]
    assert 1.0 in [line.get_ydata()[0] for line in ax.lines if line.get_ls() == "-" and len(line.get_ydata()) == 2]
    empty = P.write_question_figures({**stored, "question1": None}, tmp_path / "none")
    assert len(empty) == 2
