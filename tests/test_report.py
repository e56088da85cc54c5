"""The report, its verdicts and the figures, on synthetic runs (no torch, no training, deterministic).

A factory fills every field of ``RunResults`` from a few levels (accuracy, gap, sigma*, curvature, ...), so each
claim can be made to come out "agrees", "differs" or "inconclusive"; the report and every figure are then built
from ``aggregate.study_summary`` of those runs, read back from its JSON, as the plots stage builds them.

The report's wording is checked once, against a golden file: GOLDEN is the report of the full factorial study with
one cell outside it (``full_factorial``), rendered from its study.json alone. After a deliberate change to the
report's text, regenerate it with ``UPDATE_GOLDEN=1 pytest tests/test_report.py -k golden`` and review its diff. The
other tests check the numbers of study.json against values computed here.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, run_command
from landscape.errors import StudyError
from landscape.report.analysis.aggregate import (
    MODEL_A,
    MODEL_B,
    ClaimSpec,
    claim_specs,
    claims,
    headline,
    judge,
    loss_area,
    moderate_sigma,
)
from landscape.report.analysis.stats import mean_ci
from landscape.report.analysis.study import analyse_study
from landscape.report.analysis.study_data import StudyData, load_study
from landscape.report.render.plotting import FIGURES, write_figures
from landscape.report.render.report import build_report
from landscape.report.schema import Claim, Estimate, Headline, StudySummary, read_study, val_loss_area
from landscape.report.terms import FACTORS
from landscape.study import results as M
from landscape.study.params import Params, VariantParams, load_params
from landscape.study.results import (
    TRAIN_MODES,
    Censored,
    CurvatureSummary,
    LayerCurvature,
    NoiseCurve,
    PathSummary,
    RobustnessSummary,
    RunResults,
    Score,
    SigmaPoint,
    SliceCurve,
    SliceSummary,
    Spread,
    TrainSummary,
    Width,
    drop_key,
    number_key,
    run_measures,
)
from landscape.study.serialize import from_json, to_json
from landscape.study.stage import RunPaths

FACTORIAL = {
    "mlp": VariantParams(False, False, False),
    "mlp_bn": VariantParams(False, True, False),
    "mlp_dropout": VariantParams(False, False, True),
    "mlp_bn_dropout": VariantParams(False, True, True),
    "cnn_plain": VariantParams(True, False, False),
    "cnn_nobn": VariantParams(True, False, True),
    "cnn_nodropout": VariantParams(True, True, False),
    "cnn": VariantParams(True, True, True),
}
OUTSIDE = {"mlp_slow": VariantParams(False, False, False, train={"lr": 0.003})}  # a cell with no slice or path
CELLS = FACTORIAL | OUTSIDE
LAYERS = {
    False: [("net.1.weight", 784), ("net.3.weight", 256), ("net.5.weight", 128)],
    True: [
        ("features.0.weight", 9),
        ("features.4.weight", 288),
        ("classifier.2.weight", 3136),
        ("classifier.5.weight", 128),
    ],
}


@dataclass(frozen=True)
class Levels:
    """The numbers one run is built around (accuracies and gaps as fractions)."""

    val_acc: float = 0.88
    gap: float = 0.02
    gap_running: float = 0.01
    acc_moderate: float = 0.85  # accuracy at each mode's REFERENCE_SIGMA (the noise curve's knee)
    sigma_star: float = 0.05
    censored: bool = False
    curvature: float = 1.0
    epochs: float = 5.0  # epochs to target; the validation-loss area over epochs 1-2 is 0.35 + 0.0075 * epochs

    def plus(self, k: float, scale: Levels) -> Levels:
        """Each numeric field moved by k times the same field of ``scale``."""
        return dataclasses.replace(
            self,
            **{
                f.name: getattr(self, f.name) + k * getattr(scale, f.name)
                for f in dataclasses.fields(self)
                if f.name != "censored"
            },
        )


NO_NOISE = Levels(0, 0, 0, 0, 0, False, 0, 0)
SEED_OFFSETS = (-1.0, 0.0, 1.0)
# Where each mode's synthetic accuracy curve leaves val_acc: below it the drop is 0, at it val_acc - acc_moderate. So
# for Model A (Levels(): a 3 pp drop there) the moderate-noise rule (1 pp) picks exactly these sigmas.
REFERENCE_SIGMA = {"absolute": 0.01, "filter": 0.1}


GOLDEN = Path(__file__).parent / "golden" / "report.md"


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(REPO / "params.yaml")


def spread(mean: float, n: int = 3) -> Spread:
    return Spread(mean, abs(mean) * 0.1, n)


def train_summary(v: str, seed: int, lv: Levels) -> TrainSummary:
    modes = {m: lv.val_acc + lv.gap + (-0.03 if m.startswith("dropout_on") else 0.0) for m in TRAIN_MODES}
    return TrainSummary(
        variant=v,
        seed=seed,
        family="cnn" if CELLS[v].conv else "mlp",
        n_parameters=1000 + 7 * len(v),
        epochs=8,
        steps=8 * 352,
        stop_loss=0.0,
        reached_loss=None,
        device="cpu",
        train=Score(0.3, lv.val_acc + lv.gap),
        val=Score(0.35, lv.val_acc),
        test=Score(0.36, lv.val_acc),
        gap=lv.gap,
        gap_running=lv.gap_running,
        train_acc_modes=modes,
        train_acc_running=lv.val_acc + lv.gap_running,
        target_acc=0.88,
        epochs_to_target=Censored(lv.epochs, False),
        lr=0.05,
        batch_size=128,
        momentum=0.9,
        diverged=None,
        sharpness=[],
        early=None,
    )


def noise_curve(mode: str, bn: str, lv: Levels, params: Params) -> NoiseCurve:
    moderate = REFERENCE_SIGMA[mode]
    points = {}
    for s in params.robustness.sigmas:
        acc = lv.val_acc if s < moderate else min(lv.val_acc, lv.acc_moderate - 0.1 * math.log10(s / moderate))
        points[number_key("sigma", s)] = SigmaPoint(s, spread(acc, 5), spread(lv.val_acc - acc, 5))
    drops = {drop_key(d): d for d in params.robustness.drops}
    stars = {drop_key(d): Censored(lv.sigma_star * (1 + 10 * d), lv.censored) for d in params.robustness.drops}
    return NoiseCurve(mode, bn, points, stars, drops)


def slice_summary(v: str, seed: int, lv: Levels, bns: list[str], params: Params) -> SliceSummary:
    c = lv.curvature
    widths = {number_key("tau", t): Width(t, spread(0.3 * t / c), 0) for t in params.slice.taus}
    curve = SliceCurve(0.3, spread(1.05 * c), spread(0.99), spread(0.01), widths, spread(1.0), spread(1.1))
    return SliceSummary(
        variant=v,
        seed=seed,
        parameters="weights",
        directions=3,
        fit_window=0.25,
        theta_norm=20.0,
        direction_norm_rel=spread(1.0),
        curvature_exact=spread(c),
        curvature_exact_per_direction=[0.9 * c, c, 1.1 * c],
        curvature_fit_per_direction=[0.95 * c, 1.05 * c, 1.15 * c],
        curves={bn: {"train": curve, "val": curve} for bn in bns},
        surface_area={number_key("tau", t): 0.2 * t for t in params.slice.taus},
    )


def curvature_summary(v: str, seed: int, lv: Levels) -> CurvatureSummary:
    c = lv.curvature
    layers = [
        LayerCurvature(name, fan_in, 10 * c, 0.5, 2 * c, 0.1, spread(30 * c / fan_in))
        for name, fan_in in LAYERS[CELLS[v].conv]
    ]
    return CurvatureSummary(
        v,
        seed,
        "weights",
        1000,
        [40 * c, 20 * c],
        [0.01, 0.05],
        [-0.5 * c, 0.1 * c, 20 * c, 40 * c],
        [0.4, 0.5, 0.06, 0.04],
        100 * c,
        5.0,
        8 * c,
        0.4,
        2 * c,
        0.1,
        12 * c,
        20.0,
        layers,
    )


def path_summary(v: str, seed: int, lv: Levels, bn: str, params: Params) -> PathSummary:
    both = ("train", "val")
    return PathSummary(
        variant=v,
        seed=seed,
        bn=bn,
        distance_rel=2.0 + lv.curvature,
        loss_at_0=dict.fromkeys(both, 2.3),
        loss_at_1={"train": 0.3, "val": 0.35},
        acc_at_1={"train": lv.val_acc + lv.gap, "val": lv.val_acc},
        monotonic=dict.fromkeys(both, True),
        tolerance=params.path.monotonic_tolerance,
        max_rise=dict.fromkeys(both, 0.0),
        barrier=dict.fromkeys(both, 0.0),
    )


def make_run(v: str, seed: int, lv: Levels, params: Params) -> RunResults:
    """A run with every field filled, its measures following ``lv``; a cell outside the factorial has no slice
    and no path, as the pipeline runs no such probe for it."""
    bns = ["frozen", "recalibrated"] if CELLS[v].bn else ["frozen"]
    curves = {m: {bn: noise_curve(m, bn, lv, params) for bn in bns} for m in params.robustness.modes}
    inside = v in FACTORIAL
    return RunResults(
        train=train_summary(v, seed, lv),
        robustness=RobustnessSummary(v, seed, "val", "weights", 5, 2000, curves),
        slice=slice_summary(v, seed, lv, bns, params) if inside else None,
        path=path_summary(v, seed, lv, bns[-1], params) if inside else None,
        curvature=curvature_summary(v, seed, lv),
    )


def history_frame(seed: int, lv: Levels) -> pd.DataFrame:
    epochs = np.arange(1, 5)
    acc = lv.val_acc - 0.02 * (4 - epochs) + 0.001 * seed
    return pd.DataFrame(
        {
            "epoch": epochs,
            "train_loss": 0.3,
            "train_acc": acc + lv.gap,
            "train_loss_running": 0.4,
            "train_acc_running": acc,
            "val_loss": 0.35 + 0.01 * lv.epochs / epochs,
            "val_acc": acc,
            "gap": lv.gap,
            "seed": seed,
        }
    )


def slice_frame(seed: int, lv: Levels) -> pd.DataFrame:
    alphas = np.linspace(-1, 1, 21)
    rows = []
    for d in range(3):
        loss = 0.3 + 0.5 * lv.curvature * (1 + 0.1 * d + 0.01 * seed) * alphas**2
        for split in ("train", "val"):
            rows.append(
                pd.DataFrame(
                    {
                        "bn": "frozen",
                        "direction": d,
                        "alpha": alphas,
                        "split": split,
                        "loss": loss,
                        "acc": 0.8,
                        "seed": seed,
                    }
                )
            )
    return pd.concat(rows)


def path_frame(seed: int) -> pd.DataFrame:
    t = np.linspace(0, 1.2, 13)
    loss = 2.3 - 2 * t + t**2 * 0.1 * (1 + seed)
    return pd.concat(
        pd.DataFrame({"t": t, "split": split, "loss": loss, "acc": 0.5, "seed": seed}) for split in ("train", "val")
    )


def make_frames(seeds: list[int], lv: Levels, per_seed: list[Levels]) -> dict[str, pd.DataFrame]:
    """Long CSV rows of every seed, shaped like history.csv (from each seed's ``per_seed`` levels), slice.csv,
    path.csv and surface.csv (first seed)."""
    a, b = np.meshgrid(np.linspace(-1, 1, 11), np.linspace(-1, 1, 11))
    surface = pd.DataFrame(
        {
            "a": a.ravel(),
            "b": b.ravel(),
            "split": "train",
            "acc": 0.8,
            "seed": seeds[0],
            "loss": 0.3 + 0.5 * lv.curvature * (a**2 + 1.3 * b**2).ravel(),
        }
    )
    return {
        "history": pd.concat(history_frame(s, x) for s, x in zip(seeds, per_seed, strict=True)),
        "slices": pd.concat(slice_frame(s, lv) for s in seeds),
        "paths": pd.concat(path_frame(s) for s in seeds),
        "surface": surface,
    }


@dataclass(frozen=True)
class Made(StudyData):
    """A synthetic study: the analysis pass's input, and the StudySummary it wrote, read back from its JSON."""

    study: StudySummary | None = None


def study_params(params: Params, variants: list[str], seeds: list[int]) -> Params:
    """params.yaml's, with the study matrix of ``variants`` x ``seeds``."""
    factorial = [v for v in variants if v in FACTORIAL]
    study = dataclasses.replace(params.study, variants=variants, seeds=seeds, factorial=factorial)
    return dataclasses.replace(params, study=study)


def make_study(params: Params, levels: dict[str, Levels], seeds: list[int], noise: dict[str, Levels] | None = None):
    """(study.json's JSON, Made) for the variants of ``levels``; seed k adds SEED_OFFSETS[k] times
    ``noise[variant]``. Variants outside FACTORIAL have no slices or paths."""
    noise = noise or {}
    variants = list(levels)
    inside = [v for v in variants if v in FACTORIAL]
    per_seed = {v: [levels[v].plus(SEED_OFFSETS[i], noise.get(v, NO_NOISE)) for i in range(len(seeds))] for v in levels}
    runs = {(v, s): make_run(v, s, per_seed[v][i], params) for v in variants for i, s in enumerate(seeds)}
    frames = {v: make_frames(seeds, levels[v], per_seed[v]) for v in variants}
    data = StudyData(
        variants=inside,
        seeds=seeds,
        factorial={v: FACTORIAL[v] for v in inside},
        runs={k: r for k, r in runs.items() if k[0] in inside},
        history={v: f["history"] for v, f in frames.items()},
        slices={v: frames[v]["slices"] for v in inside},
        paths={v: frames[v]["paths"] for v in inside},
        surfaces={v: frames[v]["surface"] for v in inside},
        all_runs=runs,
        sharpness={},
    )
    raw = json.loads(json.dumps(to_json(analyse_study(data, study_params(params, variants, seeds), {}))))
    made = Made(**{f.name: getattr(data, f.name) for f in dataclasses.fields(StudyData)})
    return raw, dataclasses.replace(made, study=from_json(StudySummary, raw))


A = Levels()
SCENARIOS = {
    "agrees": (
        A,
        Levels(0.91, -0.01, -0.02, 0.95, 0.08, False, 0.5, 3.0),
        Levels(0.002, 0.002, 0.002, 0.002, 0.002, False, 0.02, 0.0),
    ),
    "differs": (
        A,
        Levels(0.85, 0.05, 0.03, 0.80, 0.03, False, 2.0, 7.0),
        Levels(0.002, 0.002, 0.002, 0.002, 0.002, False, 0.02, 0.0),
    ),
    "inconclusive": (
        Levels(0.92, 0.0, 0.0, 0.90, 0.05, False, 1.0, 5.0),
        Levels(0.92, 0.0, 0.0, 0.90, 0.05, False, 1.0, 5.0),
        Levels(0.01, 0.01, 0.01, 0.01, 0.01, False, 0.2, 1.0),
    ),
}


def ab_study(params: Params, scenario: str, seeds=(0, 1, 2), b_censored: bool = False):
    a, b, noise = SCENARIOS[scenario]
    b = dataclasses.replace(b, censored=b_censored)
    return make_study(params, {MODEL_A: a, MODEL_B: b}, list(seeds), {MODEL_B: noise})


def verdicts(raw: dict) -> dict[str, str]:
    return {c["key"]: c["verdict"] for c in raw["claims"]}


def claim_json(raw: dict, key: str) -> dict:
    (found,) = [c for c in raw["claims"] if c["key"] == key]
    return found


def claim_row(report: str, claim: Claim) -> str:
    (row,) = [line for line in report.splitlines() if line.startswith(f"| {claim.text} |")]
    return row


@pytest.mark.parametrize("scenario", ["agrees", "differs", "inconclusive"])
def test_every_claim_can_take_every_verdict(params: Params, scenario: str) -> None:
    raw, data = ab_study(params, scenario)
    assert set(verdicts(raw).values()) == {scenario}, verdicts(raw)
    assert len(raw["claims"]) == 13
    report = build_report(data.study)
    for claim in data.study.claims:
        assert claim_row(report, claim).endswith(f"**{scenario}** |")


def test_censored_sigma_star_makes_noise_claims_inconclusive(params: Params) -> None:
    raw, data = ab_study(params, "agrees", b_censored=True)
    v = verdicts(raw)
    assert v["noise_tolerant_filter"] == v["noise_tolerant_absolute"] == "inconclusive"
    assert v["val_acc"] == v["a_steeper"] == "agrees"
    tolerant = claim_json(raw, "noise_tolerant_filter")
    assert tolerant["p"] is tolerant["p_adjusted"] is None  # a bound is no test
    assert tolerant["estimate"]["interval"]["ci_low"] is None and tolerant["estimate"]["bound"] == 1
    report = build_report(data.study)
    row = claim_row(report, next(c for c in data.study.claims if c.key == "noise_tolerant_filter"))
    assert "| >= " in row and "(3 censored values): a bound, no test | n/a | n/a |" in row  # B's sigma* >= its value
    assert "(3 of 3 censored)" in report  # B's own sigma* in the results table is a lower bound


def test_equal_models_and_zero_gap_are_inconclusive_without_crash(params: Params) -> None:
    same = Levels(0.92, 0.0, 0.0, 0.90, 0.05, False, 1.0, 5.0)
    raw, data = make_study(params, {MODEL_A: same, MODEL_B: same}, [0, 1, 2])
    assert set(verdicts(raw).values()) == {"inconclusive"}
    for key in ("val_acc", "gap_smaller", "a_steeper"):
        interval = claim_json(raw, key)["estimate"]["interval"]
        assert interval["mean"] == interval["ci_low"] == interval["ci_high"] == 0.0
    report = build_report(data.study)
    assert "+0.00 pp [+0.00, +0.00]" in report


def test_one_seed_gives_no_interval_and_inconclusive_verdicts(params: Params, tmp_path) -> None:
    raw, data = ab_study(params, "agrees", seeds=(0,))
    assert set(verdicts(raw).values()) == {"inconclusive"}
    assert raw["effects"] == {}
    report = build_report(data.study)
    assert "n = 1, no CI" in report
    assert "factorial effects need all 8 variants" in report
    written = write_figures(data.study, tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{name}.png" for name in FIGURES)
    assert all(p.stat().st_size > 5000 for p in written)


NOISE_WEIGHTS = (1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 1.5, -1.5)  # per variant, so the per-seed contrasts vary


def full_factorial(params: Params, scale: float = 0.003, **changes: dict) -> tuple[dict, StudyData]:
    """8 variants x 3 seeds: conv raises accuracy by 3 pp, BN lowers curvature, dropout lowers the gap; BN's
    +0.2 pp on accuracy is within its seed noise (of size ``scale``); and mlp_slow, a cell outside the factorial.
    ``changes``: variant -> Levels fields to replace."""
    levels, noise = {}, {}
    for (v, f), weight in zip(FACTORIAL.items(), NOISE_WEIGHTS, strict=True):
        levels[v] = Levels(
            val_acc=0.87 + 0.03 * f.conv + 0.002 * f.bn,
            gap=0.03 - 0.02 * f.dropout,
            gap_running=0.02 - 0.03 * f.dropout,
            acc_moderate=0.86,
            sigma_star=0.05 + 0.01 * f.bn,
            curvature=2.0 - 0.8 * f.bn,
            epochs=5 - f.conv,
        )
        levels[v] = dataclasses.replace(levels[v], **changes.get(v, {}))
        noise[v] = NO_NOISE.plus(weight, Levels(scale, scale, scale, scale, scale, False, 0.05, 0.0))
    levels["mlp_slow"] = Levels(0.84, 0.01, 0.0, 0.82, 0.06, False, 1.5, 9.0)  # outside the factorial: no slices
    noise["mlp_slow"] = NO_NOISE.plus(1.0, Levels(scale, scale, scale, scale, scale, False, 0.05, 0.0))
    return make_study(params, levels, [0, 1, 2], noise)


@pytest.fixture(scope="module")
def factorial(params: Params) -> tuple[dict, StudyData]:
    """``full_factorial(params)``, built once: the tests only read it."""
    return full_factorial(params)


@pytest.fixture(scope="module")
def factorial_report(params: Params, factorial: tuple[dict, StudyData]) -> str:
    return build_report(factorial[1].study)


def test_the_report_of_the_factorial_study_is_the_golden_file(factorial_report: str) -> None:
    """Every section's wording at once (UPDATE_GOLDEN=1 rewrites GOLDEN; see the module's docstring)."""
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(factorial_report)
    want = GOLDEN.read_text()
    diff = difflib.unified_diff(
        want.splitlines(keepends=True), factorial_report.splitlines(keepends=True), str(GOLDEN), "rendered"
    )
    assert factorial_report == want, (
        "the report differs from the golden file; if the change is meant, rerun with UPDATE_GOLDEN=1 and review "
        "the golden file's diff:\n" + "".join(diff)
    )


def test_factorial_report_answers_the_questions_from_the_effects(
    params: Params, factorial: tuple[dict, StudyData], factorial_report: str, tmp_path
) -> None:
    raw, data = factorial
    effects = raw["effects"]
    assert {"conv", "bn", "dropout", "conv:bn:dropout"} <= set(effects["val_acc"])
    assert "mlp_slow" not in raw["factorial"] and "mlp_slow" in raw["variants"]  # outside: no factorial term
    # the levels full_factorial builds in: conv +3 pp accuracy, dropout -2 pp gap, BN -0.8 curvature
    assert effects[M.VAL_ACC]["conv"]["estimate"]["interval"]["mean"] == pytest.approx(0.03)
    assert effects[M.GAP]["dropout"]["estimate"]["interval"]["mean"] == pytest.approx(-0.02)
    assert effects[M.CURVATURE_EXACT]["bn"]["estimate"]["interval"]["mean"] == pytest.approx(-0.8)
    assert effects[M.VAL_ACC]["conv"]["p_adjusted"] < 0.001
    assert effects[M.VAL_ACC]["bn"]["p_adjusted"] > 0.05  # +0.2 pp within its seed noise
    assert effects[M.VAL_ACC]["bn"]["seeds_for_power"] > 3
    written = write_figures(data.study, tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{name}.png" for name in FIGURES)


def test_opposite_simple_effects_replace_the_main_effect(params: Params) -> None:
    """BN lowers accuracy by 1 pp in the MLPs and raises it by 1 pp in the CNNs: its main effect (0) averages them,
    the conv x BN interaction is (+1 - (-1)) / 2 = +1 pp, and the report gives the simple effects instead."""
    bn = {"mlp_bn": 0.86, "mlp_bn_dropout": 0.86, "cnn_nodropout": 0.91, "cnn": 0.91}  # without BN: 0.87, 0.90
    raw, data = full_factorial(params, scale=0.001, **{v: {"val_acc": acc} for v, acc in bn.items()})
    assert raw["effects"][M.VAL_ACC]["bn"]["estimate"]["interval"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert raw["effects"][M.VAL_ACC]["conv:bn"]["estimate"]["interval"]["mean"] == pytest.approx(0.01)
    simple = {(e["factor"], tuple(e["within"].items())): e for e in raw["simple_effects"][M.VAL_ACC]["conv:bn"]}
    assert simple[("bn", (("conv", False),))]["estimate"]["interval"]["mean"] == pytest.approx(-0.01)
    assert simple[("bn", (("conv", True),))]["estimate"]["interval"]["mean"] == pytest.approx(0.01)
    assert simple[("conv", (("bn", True),))]["estimate"]["interval"]["mean"] == pytest.approx(0.05)  # 0.91 - 0.86
    assert simple[("conv", (("bn", False),))]["estimate"]["interval"]["mean"] == pytest.approx(0.03)


def test_the_effects_figure_marks_a_main_effect_that_averages_opposite_simple_effects(params: Params) -> None:
    """The conv x BN case above: the figure greys BN's (and conv's) main effect on accuracy and draws the simple
    effects beside it; a measure with no decided interaction keeps its main effects black."""
    from landscape.report.render.plotting_geometry import effects, interacting_factors

    bn = {"mlp_bn": 0.86, "mlp_bn_dropout": 0.86, "cnn_nodropout": 0.91, "cnn": 0.91}
    _, data = full_factorial(params, scale=0.001, **{v: {"val_acc": acc} for v, acc in bn.items()})
    found = interacting_factors(data.study, M.VAL_ACC)
    assert set(found) == {"conv", "bn"}
    assert sorted(round(s.estimate.interval.mean, 6) for s in found["bn"]) == [-0.01, 0.01]
    assert interacting_factors(data.study, M.GAP) == {}
    fig = effects(data.study)
    texts = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert "Grey: the factor is in an interaction" in texts and "enter at their lower bound" not in texts


def test_a_censored_effect_is_a_bound_with_no_ci(params: Params) -> None:
    """sigma* censored in mlp_dropout (conv off, BN off, dropout on) and mlp_bn_dropout (BN on): dropout's contrast
    takes both with weight +1/4 (a lower bound), conv's with -1/4 (an upper bound), BN's with both signs (none)."""
    raw, data = full_factorial(params, mlp_dropout={"censored": True}, mlp_bn_dropout={"censored": True})
    star = data.study.setup.sigma_star
    found = raw["effects"][star]
    assert {t: found[t]["estimate"]["bound"] for t in FACTORS} == {"conv": -1, "bn": 0, "dropout": 1}
    for term, effect in found.items():
        interval = effect["estimate"]["interval"]
        assert interval["ci_low"] is interval["ci_high"] is interval["std"] is None, term
        assert effect["p"] is effect["p_adjusted"] is None and effect["estimate"]["censored"] == 6, term
    assert star not in raw["simple_effects"]
    assert raw["effects"][M.GAP]["dropout"]["estimate"]["interval"]["ci_low"] is not None  # uncensored: a CI


def test_judge_decides_at_the_holm_adjusted_p() -> None:
    """Four claims with t = 7, 14, 1 and -1 on 3 seeds (df 2, p = 1 - t / sqrt(2 + t^2)): t = 7 has raw p 0.0198
    (its CI excludes 0) but Holm's 3 x 0.0198 = 0.059: inconclusive. t = 14: 4 x 0.00506 = 0.020, agrees."""
    r3 = math.sqrt(3)
    values = {"x": 7.0, "y": 14.0, "z": 1.0, "w": -1.0}
    specs = [ClaimSpec(k, f"claim {k}", "m", "B - A > 0", 1) for k in values]
    estimates = [Estimate(mean_ci([t - r3, t, t + r3]), 0) for t in values.values()]
    p = {k: 1 - abs(t) / math.sqrt(2 + t * t) for k, t in values.items()}
    judged = {c.key: c for c in judge(specs, estimates)}
    assert {k: c.p for k, c in judged.items()} == pytest.approx(p, abs=1e-12)
    want = {"y": 4 * p["y"], "x": 3 * p["x"], "z": 2 * p["z"], "w": 2 * p["z"]}  # sorted y, x, z, w; monotone
    assert {k: c.p_adjusted for k, c in judged.items()} == pytest.approx(want, abs=1e-12)
    assert judged["x"].p < 0.05 < judged["x"].p_adjusted and judged["x"].estimate.interval.ci_low > 0
    assert {k: c.verdict for k, c in judged.items()} == {
        "x": "inconclusive",
        "y": "agrees",
        "z": "inconclusive",
        "w": "inconclusive",
    }
    untested = Estimate(mean_ci([1.0, 2.0, 3.0]), 1)  # a censored value: no test, but one more in the family
    five = {c.key: c for c in judge([*specs, ClaimSpec("v", "claim v", "m", "B - A > 0", 1)], [*estimates, untested])}
    assert five["y"].p_adjusted == pytest.approx(5 * p["y"]) and five["x"].p_adjusted == pytest.approx(4 * p["x"])
    assert math.isnan(five["v"].p) and math.isnan(five["v"].p_adjusted) and five["v"].verdict == "inconclusive"


def test_a_claim_decided_raw_and_undecided_adjusted_is_reported_as_borderline(params: Params) -> None:
    """B's accuracy 3 pp above A's with a per-seed spread that gives t = 7 (raw p 0.0198): the CI excludes 0, but
    Holm over the 13 claims leaves it inconclusive; the report shows both p-values and lists it as borderline."""
    a, b, noise = SCENARIOS["agrees"]
    spread = 0.03 * math.sqrt(3) / 7
    raw, data = make_study(
        params, {MODEL_A: a, MODEL_B: b}, [0, 1, 2], {MODEL_B: dataclasses.replace(noise, val_acc=spread)}
    )
    claim = next(c for c in data.study.claims if c.key == "val_acc")
    assert claim.p == pytest.approx(1 - 7 / math.sqrt(51), abs=1e-9)
    assert claim.estimate.interval.ci_low > 0 and claim.p_adjusted > 0.05 and claim.verdict == "inconclusive"
    assert 0.01 <= claim.p_adjusted <= 0.1  # in the borderline band the report lists


def test_moderate_noise_is_where_the_reference_drops_by_the_rule(params: Params) -> None:
    """Model A's synthetic curve drops 0 below REFERENCE_SIGMA and val_acc - acc_moderate there: at 3 pp the rule
    (1 pp) picks REFERENCE_SIGMA; at 0 pp there, the first grid sigma where 0.1 log10(sigma / REFERENCE_SIGMA)
    reaches 1 pp, i.e. sigma >= 10^0.1 REFERENCE_SIGMA; never where the curve never drops."""
    grid = params.robustness.sigmas
    later = {m: min(s for s in grid if s >= 10**0.1 * r) for m, r in REFERENCE_SIGMA.items()}
    for acc_moderate, want in ((0.85, REFERENCE_SIGMA), (0.88, later)):
        runs = [make_run(MODEL_A, s, Levels(acc_moderate=acc_moderate), params) for s in (0, 1, 2)]
        for mode, sigma in want.items():
            assert sigma in grid and moderate_sigma(runs, mode, 0.01) == sigma
    flat = [make_run(MODEL_A, s, Levels(acc_moderate=1.2), params) for s in (0, 1)]
    assert moderate_sigma(flat, "filter", 0.01) is None
    raw, data = make_study(params, {MODEL_A: Levels(acc_moderate=1.2), MODEL_B: SCENARIOS["agrees"][1]}, [0, 1, 2])
    for key in ("above_90_filter", "drop_smaller_filter"):
        c = claim_json(raw, key)
        assert c["measure"] == "" and c["p"] is None and c["verdict"] == "inconclusive"
        assert "no grid sigma: `mlp`'s mean drop never reaches 1 pp" in c["text"]


def test_the_speed_claim_is_the_validation_loss_area() -> None:
    history = pd.DataFrame({"epoch": [1, 2, 3], "val_loss": [0.5, 0.3, 0.2]})
    assert loss_area(history, 2) == pytest.approx(0.4)  # (0.5 + 0.3) / 2
    assert loss_area(history, 3) == pytest.approx(0.65)  # 0.4 + (0.3 + 0.2) / 2
    with pytest.raises(ValueError, match=r"epoch\(s\) \[4\]"):
        loss_area(history, 4)
    assert val_loss_area(2) == "val_loss_area_epochs_1_2"


def test_the_speed_claim_follows_the_early_loss(params: Params) -> None:
    raw, data = ab_study(params, "agrees")  # the area is 0.35 + 0.0075 * epochs: A 5, B 3 epochs
    c = claim_json(raw, "b_faster")
    assert c["measure"] == val_loss_area(params.claim_rules.early_epochs) and c["verdict"] == "agrees"
    assert c["estimate"]["interval"]["mean"] == pytest.approx(0.0075 * (3 - 5))


def test_a_claim_at_sigma_zero_is_refused(params: Params) -> None:
    _, data = ab_study(params, "agrees")
    measures = {k: run_measures(r) for k, r in data.runs.items()}
    with pytest.raises(ValueError, match="above_90_filter.*sigma = 0"):
        claims(measures, data.seeds, {"filter": 0.0}, 0.01, ["filter"], params.claim_rules)


def test_study_json_keeps_each_claims_text_and_rule(params: Params) -> None:
    raw, data = ab_study(params, "differs")
    text = json.dumps(raw, allow_nan=False)  # what the stage writes: no NaN, every value plain JSON
    back = from_json(StudySummary, json.loads(text))
    specs = claim_specs(REFERENCE_SIGMA, min(params.robustness.drops), params.robustness.modes, params.claim_rules)
    assert [(c.key, c.text, c.rule, c.measure, c.sign, c.unit) for c in back.claims] == [
        (s.key, s.text, s.rule, s.measure, s.sign, s.unit) for s in specs
    ]
    assert back.claims == data.study.claims and {c.verdict for c in back.claims} == {"differs"}
    assert back.b_minus_a == data.study.b_minus_a and back.variants == data.study.variants


def test_the_report_takes_every_number_from_study_json(params: Params, tmp_path) -> None:
    """The plots stage computes nothing: an edited verdict, text and number in study.json are what it shows."""
    raw, _ = ab_study(params, "agrees", seeds=(0, 1))
    edited = claim_json(raw, "val_acc")
    edited["verdict"], edited["text"] = "differs", "B's accuracy, as study.json words it"
    raw["geometry"]["trace_rel_se"] = 0.4321
    path = tmp_path / "study.json"
    path.write_text(json.dumps(raw))
    loaded = read_study(path)
    assert loaded.claims[0].verdict == "differs"
    report = build_report(loaded)
    assert claim_row(report, loaded.claims[0]).endswith("**differs** |")
    assert "mean relative standard error of 43.21 % over" in report
    assert "| B's validation accuracy is higher than A's |" not in report
    stored = [c["verdict"] for c in raw["claims"]]
    assert f"Result: {stored.count('agrees')} agrees, {stored.count('differs')} differs," in report


def _at(tree, path: tuple[str, ...]):
    for key in path:
        tree = tree[key]
    return tree


def leaves(tree) -> list[tuple[str, ...]]:
    """Every leaf's key path in a JSON tree (a list is one leaf, as DVC shows it)."""
    if isinstance(tree, dict):
        return [(k, *rest) for k, sub in tree.items() for rest in leaves(sub)]
    return [()]


def test_headline_is_small_and_names_no_params_section(factorial: tuple[dict, StudyData]) -> None:
    raw, data = factorial
    head = headline(data.study, data.runs[("mlp", 0)], data.variants)
    tree = to_json(head)
    paths = leaves(tree)
    assert len(paths) <= 150, len(paths)
    assert not [p for p in paths if isinstance(_at(tree, p), list)]  # DVC leaves lists out of metrics
    sections = set(yaml.safe_load((REPO / "params.yaml").read_text()))
    assert not set(tree) & sections, set(tree) & sections  # DVC would show a metric and a param under one name
    assert not [p for p in paths if any("." in k for k in p)]  # DVC joins the keys with dots
    assert from_json(Headline, json.loads(json.dumps(tree, allow_nan=False))) == head
    star = data.study.setup.sigma_star
    assert tree["n_seeds"] == 3 and set(tree["by_variant"]) == set(FACTORIAL)
    cnn = tree["by_variant"]["cnn"]
    assert set(cnn) == {M.VAL_ACC, M.GAP, star}
    for measure, value in cnn.items():  # the mean and CI of study.json
        want = data.study.get("cnn", measure).interval
        assert value == pytest.approx({"mean": want.mean, "ci_low": want.ci_low, "ci_high": want.ci_high})
    assert cnn[M.VAL_ACC]["mean"] == pytest.approx(0.87 + 0.03 + 0.002)  # full_factorial's levels, seed noise 0
    assert tree["censored"]["cnn"] == {star: 0}
    assert [c["key"] for c in raw["claims"]] == list(tree["claims"])
    for c in data.study.claims:
        i = c.estimate.interval
        want = {"estimate": i.mean, "ci_low": i.ci_low, "ci_high": i.ci_high}
        want |= {"p_adjusted": c.p_adjusted, "verdict": c.verdict}
        assert tree["claims"][c.key] == to_json(want)


def test_a_censored_claim_has_no_estimate_in_the_headline(params: Params) -> None:
    _, data = ab_study(params, "agrees", b_censored=True)
    tree = to_json(headline(data.study, data.runs[("mlp", 0)], data.variants))
    star = data.study.setup.sigma_star
    assert tree["claims"]["noise_tolerant_filter"] == {
        "estimate": None,
        "ci_low": None,
        "ci_high": None,
        "p_adjusted": None,
        "verdict": "inconclusive",
    }
    assert tree["censored"]["cnn"][star] == 3 and tree["censored"]["mlp"][star] == 0
    assert tree["by_variant"]["cnn"][star]["ci_low"] is tree["by_variant"]["cnn"][star]["ci_high"] is None  # a bound


def test_measure_names_match_run_measures(params: Params) -> None:
    names = set(run_measures(make_run("cnn", 0, A, params)))
    built = {
        M.sigma_star("filter", "frozen", 0.01),
        M.accuracy_at("absolute", "frozen", 0.01),
        M.drop_at("filter", "recalibrated", 0.1),
        M.width("frozen", "val", 0.1),
        M.curvature_fit("frozen", "val"),
        M.path_barrier("train"),
        M.path_max_rise("val"),
        M.path_monotonic("train"),
        *(M.train_mode_gap(d, b) for d in (True, False) for b in (True, False)),
    }
    assert built <= names, built - names
    constants = {M.VAL_ACC, M.TEST_ACC, M.GAP, M.GAP_RUNNING, M.N_PARAMETERS, M.EPOCHS_TO_TARGET, M.CURVATURE_EXACT,
                 M.LAMBDA_MAX, M.TRACE, M.FLATNESS, M.FLATNESS_FEATURE, M.PATH_DISTANCE, M.ADAPTIVE_SHARPNESS,
                 M.THETA_NORM}  # fmt: skip
    assert constants <= names, constants - names
    assert M.accuracy_at("filter", "frozen", 0.0) not in names  # sigma = 0 is never a measure


def write_run_files(root, data: StudyData) -> None:
    """The files the aggregate stage reads, laid out as the pipeline writes them (``RunPaths``): a cell outside the
    factorial has no slice, path or surface file."""
    for (v, s), run in data.all_runs.items():
        paths = RunPaths(v, s)
        frames = {"history": data.history[v]}
        if v in data.variants:
            frames |= {"slice": data.slices[v], "path": data.paths[v], "surface": data.surfaces[v]}
        for probe in ("train", "robustness", "slice", "path", "curvature"):
            if getattr(run, probe) is not None:
                (root / paths.metrics(probe)).parent.mkdir(parents=True, exist_ok=True)
                (root / paths.metrics(probe)).write_text(json.dumps(to_json(getattr(run, probe))))
        for probe, frame in frames.items():
            (root / paths.plot(probe)).parent.mkdir(parents=True, exist_ok=True)
            frame[frame["seed"] == s].drop(columns="seed").to_csv(root / paths.plot(probe), index=False)
        columns = ["epoch", "lambda_max", "lr", "threshold", "ratio"]
        rows = [[q.epoch, q.lambda_max, q.lr, 2 * 1.9 / q.lr, q.lambda_max * q.lr / 3.8] for q in run.train.sharpness]
        (root / paths.plot("sharpness")).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows, columns=columns).to_csv(root / paths.plot("sharpness"), index=False)


def test_load_study_reads_what_the_pipeline_writes_and_names_a_missing_file(params: Params, tmp_path, monkeypatch):
    a, b, noise = SCENARIOS["differs"]
    raw, data = make_study(params, {MODEL_A: a, MODEL_B: b, "mlp_slow": a}, [0, 1], {MODEL_B: noise})
    write_run_files(tmp_path, data)
    monkeypatch.chdir(tmp_path)
    chosen = study_params(params, [MODEL_A, MODEL_B, "mlp_slow"], [0, 1])
    loaded = load_study(chosen)
    assert loaded.all_runs == data.all_runs and loaded.variants == [MODEL_A, MODEL_B]
    assert loaded.all_runs[("mlp_slow", 0)].slice is None and "mlp_slow" not in loaded.slices
    again = json.loads(json.dumps(to_json(analyse_study(loaded, chosen, {}))))
    assert again == raw
    broken = tmp_path / RunPaths("cnn", 1).metrics("curvature")
    broken.write_text('{"variant": "cnn"}')
    with pytest.raises(StudyError, match="curvature.json does not match the metrics schema.*dvc repro"):
        load_study(chosen)
    broken.unlink()
    with pytest.raises(StudyError, match=f"cannot read {RunPaths('cnn', 1).metrics('curvature')}.*dvc repro"):
        load_study(chosen)


@pytest.mark.slow
def test_plots_stage_imports_no_torch_and_no_scipy() -> None:
    """The render pass loads neither torch nor the statistics library, not even through a module it imports."""
    code = (
        "import sys; sys.path[:0] = ['src', 'stages']; import plots; "
        "bad = [m for m in ('torch', 'torchvision', 'scipy') if m in sys.modules]; assert not bad, bad"
    )
    run_command([sys.executable, "-c", code], REPO, timeout=60)


# --- Curvature named for what it is: the local Hessian beside the finite-step curvature (report.finite_step) ---


def quartic_slice(alphas: np.ndarray, a: float, b: float, directions: int = 2) -> pd.DataFrame:
    """Rows of one run's curve L = 0.3 + 0.2 alpha + a (1 + d) alpha^2 + b alpha^4 per direction d."""
    return pd.concat(
        pd.DataFrame(
            {"direction": d, "alpha": alphas, "loss": 0.3 + 0.2 * alphas + a * (1 + d) * alphas**2 + b * alphas**4}
        )
        for d in range(directions)
    )


def test_finite_step_curvature_is_the_central_second_difference_at_each_step() -> None:
    from landscape.report.analysis.finite_step import finite_step_alphas, finite_step_curvature

    grid = np.linspace(-1, 1, 17)
    assert finite_step_alphas(grid) == pytest.approx([0.125, 0.25, 0.5])
    assert finite_step_alphas(np.linspace(-1, 1, 21)) == pytest.approx([0.1, 0.2, 0.4])
    assert finite_step_alphas(np.linspace(-1, 1, 5)) == pytest.approx([0.5, 1.0])  # 4 steps leave the grid
    rows = quartic_slice(grid, a=0.7, b=3.0)
    for alpha in (0.125, 0.25, 0.5):
        # (L(a) + L(-a) - 2 L(0)) / a^2 = 2 a_d + 2 b alpha^2: the odd term cancels, the quartic shows at larger steps
        expected = [2 * 0.7 * (1 + d) + 2 * 3.0 * alpha**2 for d in range(2)]
        assert finite_step_curvature(rows, alpha) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="no alpha = 0.3"):
        finite_step_curvature(rows, 0.3)


def test_report_sets_the_local_dhd_beside_the_finite_step_curvature(factorial: tuple[dict, StudyData]) -> None:
    from landscape.report.analysis import finite_step as F

    _, data = factorial
    assert F.study_alphas(data) == pytest.approx([0.1, 0.2, 0.4]) and F.steepness_alpha(data) == pytest.approx(0.1)
    # the synthetic slices are parabolas: kappa = c (1 + 0.1 d + 0.01 seed) at every step, c the variant's level
    c = 2.0  # mlp
    for alpha in (0.1, 0.4):
        assert F.variant_kappa(data, "mlp", alpha).mean == pytest.approx(c * 1.11)
    ratios = [data.runs[("mlp", s)].slice.curvature_exact.mean / (c * (1.1 + 0.01 * s)) for s in data.seeds]
    assert F.local_to_finite(data, "mlp", 0.1).mean == pytest.approx(np.mean(ratios))
    assert F.directions_below(data, "mlp", 0.1) == (9, 9)  # 0.9, 1, 1.1 times c_seed against c (1, 1.1, 1.2)


def test_estimator_noise_sets_each_runs_se_beside_the_between_seed_sd(factorial: tuple[dict, StudyData]) -> None:
    from landscape.report.analysis.geometry import within_run_share

    assert within_run_share([0.1, 0.1, 0.1], 0.1) == pytest.approx(1.0)
    assert math.isnan(within_run_share([0.1], 0.0))
    raw, _ = factorial
    (mlp,) = [r for r in raw["geometry"]["noise"] if r["variant"] == "mlp"]
    levels = [2.0 - 0.05, 2.0, 2.0 + 0.05]  # mlp's curvature level per seed (noise weight 1)
    # d^T H d: spread(c) has std 0.1 c over n = 3 directions; the run means c move by 0.05 per seed
    assert mlp["se"]["dHd"] == pytest.approx([0.1 * c / math.sqrt(3) for c in levels])
    assert mlp["sd"]["dHd"] == pytest.approx(0.05)
    # kappa over directions c (1, 1.1, 1.2) + 0.01 c seed: std 0.1 c; its run means c (1.1 + 0.01 seed): SD 0.02
    assert mlp["se"]["kappa"] == pytest.approx([0.2 / math.sqrt(3)] * 3)
    assert mlp["sd"]["kappa"] == pytest.approx(0.02)
    # trace: SE 5 in every run, trace = 100 c: SD 5
    assert mlp["se"]["trace"] == [5, 5, 5] and mlp["sd"]["trace"] == pytest.approx(5.0)
    assert mlp["share"]["trace"] == pytest.approx(1.0)


def test_lanczos_residuals_below_float32_rounding_are_not_shown_as_precise(factorial: tuple[dict, StudyData]) -> None:
    from landscape.report.analysis.geometry import FLOAT32_EPS, lanczos_rows
    from landscape.report.render.estimator_noise import FLOAT32_EPS as RENDERED_EPS
    from landscape.report.render.estimator_noise import residual_text

    assert FLOAT32_EPS == RENDERED_EPS == pytest.approx(1.1920929e-07)
    assert residual_text(1e-19) == residual_text(FLOAT32_EPS) == "<= 1.2e-07 (rounding level)"
    assert residual_text(2e-7) == "2.0e-07"
    _, data = factorial
    run = data.runs[("mlp", 0)]
    converged = dataclasses.replace(run.curvature, eigen_residuals=[1e-19, 3e-4])
    runs = {**data.runs, ("mlp", 0): dataclasses.replace(run, curvature=converged)}
    rows = lanczos_rows(dataclasses.replace(data, runs=runs))
    assert [r.pair for r in rows] == [1, 2]
    assert (rows[0].largest_residual, rows[0].at_rounding, rows[0].runs) == (0.01, 1, 24)
    assert (rows[1].largest_residual, rows[1].at_rounding) == (0.05, 0)


def with_layer_curvature(data: StudyData, curvature) -> StudyData:
    """``data`` with every per-layer slice curvature replaced by ``curvature(fan_in)`` (n = 2 directions)."""
    runs = {}
    for key, run in data.runs.items():
        layers = [
            dataclasses.replace(lay, slice_curvature=Spread(curvature(lay.fan_in), 0.0, 2))
            for lay in run.curvature.layers
        ]
        runs[key] = dataclasses.replace(run, curvature=dataclasses.replace(run.curvature, layers=layers))
    return dataclasses.replace(data, runs=runs)


def test_fan_in_test_ranks_the_distinct_layers_and_never_confirms(factorial: tuple[dict, StudyData]) -> None:
    from landscape.report.analysis.geometry import fan_in

    _, data = factorial
    found = fan_in(data)
    # slice curvature 30 c / fan-in, c averaging 1.6 over each family's variants and seeds; 3 directions x 12 runs
    assert [(r.name, r.fan_in) for r in found.layers] == [
        ("MLP tensor 1", 784), ("MLP tensor 2", 256), ("MLP tensor 3", 128),
        ("CNN tensor 1", 9), ("CNN tensor 2", 288), ("CNN tensor 3", 3136), ("CNN tensor 4", 128),
    ]  # fmt: skip
    assert [r.curvature for r in found.layers] == pytest.approx([48 / r.fan_in for r in found.layers])
    assert {r.directions for r in found.layers} == {36} and found.run_directions == [3]
    # tau-b = -1 with fan-in 128 tied (and its curvature too): 2 of the 7! = 5040 orderings are as extreme
    assert found.tau == pytest.approx(-1.0) and found.p == pytest.approx(2 / 5040) and found.permutations == 5040
    assert found.consistent
    rising = fan_in(with_layer_curvature(data, lambda f: f / 100))
    assert not rising.consistent and rising.run_directions == [2] and {r.directions for r in rising.layers} == {24}


def test_path_finds_where_the_validation_loss_rises(params: Params, factorial: tuple[dict, StudyData]) -> None:
    from landscape.report.analysis.geometry import largest_rise, paths

    tolerance = params.path.monotonic_tolerance
    t = np.linspace(0, 1.2, 13)
    assert largest_rise(t, 0.2 + 0.4 * (t - 0.9) ** 2) == pytest.approx((0.004, 0.9, 1.0))
    assert largest_rise(t, 2 - t) == pytest.approx((0.0, 0.0, 0.0))
    _, data = factorial
    runs = dict(data.runs)
    for key, rise in ((("mlp", 0), 0.004), (("cnn", 1), 0.5 * tolerance)):
        p = runs[key].path
        flags = {**p.monotonic, "val": rise <= tolerance}  # as the path stage decides it
        runs[key] = dataclasses.replace(
            runs[key], path=dataclasses.replace(p, max_rise={**p.max_rise, "val": rise}, monotonic=flags)
        )
    frame = data.paths["mlp"].copy()
    dip = (frame["seed"] == 0) & (frame["split"] == "val")
    frame.loc[dip, "loss"] = 0.2 + 0.4 * (frame.loc[dip, "t"] - 0.9) ** 2
    found = paths(dataclasses.replace(data, runs=runs, paths={**data.paths, "mlp": frame}))
    assert found.monotonic == {"train": [24, 24], "val": [23, 24]}  # the rise under the tolerance stays monotonic
    assert found.rises["train"] == [] and len(found.rises["val"]) == 1
    (r,) = found.rises["val"]
    assert (r.variant, r.seed) == ("mlp", 0) and (r.rise, r.t_min, r.t_peak) == pytest.approx((0.004, 0.9, 1.0))
    assert found.tolerance == tolerance


def test_correlations_take_the_variant_means_as_the_unit(params: Params) -> None:
    from itertools import permutations

    from landscape.report.analysis.stats import kendall_tau

    raw, data = full_factorial(params, curvature={"cnn": 3.0})
    # the local d^T H d row, recomputed here by brute force over every ordering of the gap means
    x = [np.mean([data.runs[(v, s)].slice.curvature_exact.mean for s in data.seeds]) for v in data.variants]
    y = [np.mean([data.runs[(v, s)].train.gap for s in data.seeds]) for v in data.variants]
    tau = kendall_tau(x, y)
    hits = sum(abs(kendall_tau(x, [y[i] for i in order])) >= abs(tau) - 1e-12 for order in permutations(range(8)))
    (row,) = [r for r in raw["correlations"]["rows"] if r["name"] == "local d^T H d"]
    assert row["tau_means"] == pytest.approx(tau) and row["p_means"] == pytest.approx(hits / 40320)
    assert row["variants"] == 8 and row["n_runs"] == 24 and row["exact_means"]
    assert not row["exact_within"]  # 3!^8 orderings within variants: seeded draws
    assert raw["correlations"]["runs"] == 24


def test_a_dead_network_leaves_the_geometry_rankings(params: Params) -> None:
    """A run at chance accuracy enters no ranking, and each row's n says how many runs did."""
    raw, data = full_factorial(params, curvature={"cnn": 3.0}, mlp_bn={"val_acc": 0.1, "gap": 0.0})
    assert raw["correlations"]["runs"] == 21
    assert {r["n_runs"] for r in raw["correlations"]["rows"]} == {21}
    assert {r["variants"] for r in raw["correlations"]["rows"]} == {7}


def test_negative_curvature_reads_the_bottom_of_each_ritz_spectrum(params: Params) -> None:
    """The synthetic spectrum (curvature_summary): theta = [-0.5c, 0.1c, 20c, 40c] with weights [0.4, 0.5, 0.06,
    0.04], so theta_min = -0.5c in every run, -theta_min / theta_max = 0.5 / 40 and 40 % of the mass is below 0."""
    same = Levels(0.92, 0.01, 0.01, 0.90, 0.05, False, 2.0, 5.0)
    _, data = make_study(params, {MODEL_A: same, MODEL_B: same}, [0, 1, 2])
    (row,) = [r for r in data.study.geometry.spectrum if r.variant == MODEL_A]
    assert row.theta_min.mean == pytest.approx(-1.0) and (row.negative, row.runs) == (3, 3)
    assert row.ratio.mean == pytest.approx(0.0125) and row.mass_below.mean == pytest.approx(0.4)


def test_the_steepness_claim_reads_the_finite_step_curvature_of_each_slice(params: Params) -> None:
    """slice_frame's losses are exact parabolas 0.3 + 0.5 c (1 + 0.1 d + 0.01 s) alpha^2, so kappa at any step is
    c (1 + 0.1 d + 0.01 s): a run's mean over its 3 directions is c (1.1 + 0.01 s), whatever the grid step."""
    from landscape.report.schema import STEP_CURVATURE

    raw, data = ab_study(params, "agrees")
    for v in (MODEL_A, MODEL_B):
        c = SCENARIOS["agrees"][0 if v == MODEL_A else 1].curvature
        got = data.study.get(v, STEP_CURVATURE).interval
        assert got.mean == pytest.approx(c * (1.1 + 0.01 * np.mean(data.seeds)))
        assert got.n == len(data.seeds)
    claim = next(c for c in data.study.claims if c.key == "a_steeper")
    assert claim.measure == STEP_CURVATURE and "finite-step curvature kappa(h)" in claim.text
