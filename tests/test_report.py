"""The report, its verdicts and the figures, on synthetic runs (no torch, no training, deterministic).

A factory fills every field of ``RunResults`` from a few levels (accuracy, gap, sigma*, curvature, ...), so each
claim can be made to come out "agrees", "differs" or "inconclusive"; the report and every figure are then built
from ``aggregate.study_json`` of those runs, as the plots stage builds them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, run_command
from landscape import measures as M
from landscape.aggregate import MODEL_A, MODEL_B, Claim, Estimate, study_json
from landscape.errors import StudyError
from landscape.params import Params, VariantParams, load_params
from landscape.plotting import FIGURES, write_figures
from landscape.report import build_report, check_claims, study_claims
from landscape.results import (
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
from landscape.serialize import to_json
from landscape.stage import RunPaths
from landscape.stats import VERDICT_RULE, Interval
from landscape.study_data import StudyData, load_study

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
    acc_moderate: float = 0.85  # accuracy at each mode's moderate sigma
    sigma_star: float = 0.05
    censored: bool = False
    curvature: float = 1.0
    epochs: float = 5.0

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
        family="cnn" if FACTORIAL[v].conv else "mlp",
        n_parameters=1000 + 7 * len(v),
        epochs=8,
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
    )


def noise_curve(mode: str, bn: str, lv: Levels, params: Params) -> NoiseCurve:
    moderate = params.robustness.moderate_sigma.get(mode, 0.01)
    points = {}
    for s in params.robustness.sigmas:
        acc = lv.val_acc if s == 0 else min(lv.val_acc, lv.acc_moderate - 0.1 * math.log10(s / moderate))
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
        for name, fan_in in LAYERS[FACTORIAL[v].conv]
    ]
    return CurvatureSummary(
        v, seed, "weights", 1000, [40 * c, 20 * c], [0.01, 0.05], 100 * c, 5.0, 8 * c, 0.4, 2 * c, 0.1, layers
    )


def path_summary(v: str, seed: int, lv: Levels, bn: str) -> PathSummary:
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
        max_rise=dict.fromkeys(both, 0.0),
        barrier=dict.fromkeys(both, 0.0),
    )


def make_run(v: str, seed: int, lv: Levels, params: Params) -> RunResults:
    """A run with every field filled, its measures following ``lv``."""
    bns = ["frozen", "recalibrated"] if FACTORIAL[v].bn else ["frozen"]
    curves = {m: {bn: noise_curve(m, bn, lv, params) for bn in bns} for m in params.robustness.modes}
    return RunResults(
        train=train_summary(v, seed, lv),
        robustness=RobustnessSummary(v, seed, "val", "weights", 5, 2000, curves),
        slice=slice_summary(v, seed, lv, bns, params),
        path=path_summary(v, seed, lv, bns[-1]),
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
            "val_loss": 0.35,
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


def make_frames(seeds: list[int], lv: Levels) -> dict[str, pd.DataFrame]:
    """Long CSV rows of every seed, shaped like history.csv, slice.csv, path.csv and surface.csv (first seed)."""
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
        "history": pd.concat(history_frame(s, lv) for s in seeds),
        "slices": pd.concat(slice_frame(s, lv) for s in seeds),
        "paths": pd.concat(path_frame(s) for s in seeds),
        "surface": surface,
    }


def make_study(params: Params, levels: dict[str, Levels], seeds: list[int], noise: dict[str, Levels] | None = None):
    """(runs, StudyData) for the variants of ``levels``; seed k adds SEED_OFFSETS[k] times ``noise[variant]``."""
    noise = noise or {}
    variants = list(levels)
    runs = {
        (v, s): make_run(v, s, levels[v].plus(SEED_OFFSETS[i], noise.get(v, NO_NOISE)), params)
        for v in variants
        for i, s in enumerate(seeds)
    }
    factorial = {v: FACTORIAL[v] for v in variants}
    raw = study_json(
        runs,
        variants,
        seeds,
        factorial,
        params.robustness.moderate_sigma,
        min(params.robustness.drops),
        params.robustness.modes,
    )
    frames = {v: make_frames(seeds, levels[v]) for v in variants}
    data = StudyData(
        variants=variants,
        seeds=seeds,
        factorial=factorial,
        train_eval_size=10000,
        runs=runs,
        study=M.StudyView.from_json(json.loads(json.dumps(raw))),
        history={v: f["history"] for v, f in frames.items()},
        slices={v: f["slices"] for v, f in frames.items()},
        paths={v: f["paths"] for v, f in frames.items()},
        surfaces={v: f["surface"] for v, f in frames.items()},
    )
    return raw, data


A = Levels()
SCENARIOS = {
    "agrees": (
        A,
        Levels(0.91, -0.01, -0.02, 0.95, 0.08, False, 0.5, 3.0),
        Levels(0.002, 0.002, 0.002, 0.002, 0.002, False, 0.02, 0.0),
    ),
    "differs": (
        A,
        Levels(0.85, 0.05, 0.03, 0.85, 0.03, False, 2.0, 7.0),
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
    return {k: c["verdict"] for k, c in raw["claims"].items()}


def claim_row(report: str, claim: Claim) -> str:
    (row,) = [line for line in report.splitlines() if line.startswith(f"| {claim.text} |")]
    return row


@pytest.mark.parametrize("scenario", ["agrees", "differs", "inconclusive"])
def test_every_claim_can_take_every_verdict(params: Params, scenario: str) -> None:
    raw, data = ab_study(params, scenario)
    assert set(verdicts(raw).values()) == {scenario}, verdicts(raw)
    assert len(raw["claims"]) == 11
    report = build_report(data, params)
    for claim in study_claims(data, params):
        assert claim_row(report, claim).endswith(f"**{scenario}** |")
    assert VERDICT_RULE in report
    assert "no correction for multiplicity" in report


def test_censored_sigma_star_makes_noise_claims_inconclusive(params: Params) -> None:
    raw, data = ab_study(params, "agrees", b_censored=True)
    v = verdicts(raw)
    assert v["noise_tolerant_filter"] == v["noise_tolerant_absolute"] == "inconclusive"
    assert v["val_acc"] == v["a_steeper"] == "agrees"
    report = build_report(data, params)
    assert "censored value(s): no valid estimate" in report
    assert "(3 of 3 censored)" in report  # B's own sigma* in the results table is a lower bound


def test_equal_models_and_zero_gap_are_inconclusive_without_crash(params: Params) -> None:
    same = Levels(0.92, 0.0, 0.0, 0.90, 0.05, False, 1.0, 5.0)
    raw, data = make_study(params, {MODEL_A: same, MODEL_B: same}, [0, 1, 2])
    assert set(verdicts(raw).values()) == {"inconclusive"}
    for key in ("val_acc", "gap_smaller", "a_steeper"):
        assert raw["claims"][key]["mean"] == raw["claims"][key]["ci_low"] == raw["claims"][key]["ci_high"] == 0.0
    report = build_report(data, params)
    assert "+0.00 pp [+0.00, +0.00]" in report


def test_one_seed_gives_no_interval_and_inconclusive_verdicts(params: Params, tmp_path) -> None:
    raw, data = ab_study(params, "agrees", seeds=(0,))
    assert set(verdicts(raw).values()) == {"inconclusive"}
    assert "effects" not in raw
    report = build_report(data, params)
    assert "n = 1, no CI" in report
    assert "factorial effects need all 8 variants" in report
    written = write_figures(data, tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{name}.png" for name in FIGURES)
    assert all(p.stat().st_size > 5000 for p in written)


NOISE_WEIGHTS = (1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 1.5, -1.5)  # per variant, so the per-seed contrasts vary


def full_factorial(params: Params) -> tuple[dict, StudyData]:
    """8 variants x 3 seeds: conv raises accuracy by 3 pp, BN lowers curvature, dropout lowers the gap; BN's
    +0.2 pp on accuracy is within its seed noise."""
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
        noise[v] = NO_NOISE.plus(weight, Levels(0.003, 0.003, 0.003, 0.003, 0.003, False, 0.05, 0.0))
    return make_study(params, levels, [0, 1, 2], noise)


def test_factorial_report_answers_the_questions_from_the_effects(params: Params, tmp_path) -> None:
    raw, data = full_factorial(params)
    assert {"conv", "bn", "dropout", "conv:bn:dropout"} <= set(raw["effects"]["val_acc"])
    report = build_report(data, params)
    assert "+conv changes validation accuracy by +3.00 pp" in report
    assert "+dropout changes the gap by -2.00 pp" in report
    assert "+BN changes the exact slice curvature d^T H d by -0.8" in report
    conv_val = next(line for line in report.splitlines() if line.startswith("- +conv changes validation accuracy"))
    assert "an increase (the CI excludes 0)" in conv_val
    bn_val = next(line for line in report.splitlines() if line.startswith("- +BN changes validation accuracy"))
    assert "inconclusive (the CI includes 0" in bn_val
    assert "**confirmed**" in report  # slice curvature = 30 c / fan-in: smaller fan-in, larger curvature
    written = write_figures(data, tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{name}.png" for name in FIGURES)


def test_negative_gap_is_traced_to_dropout(params: Params) -> None:
    _, data = full_factorial(params)
    report = build_report(data, params)
    section = report.split("## 4.")[1].split("## 5.")[0]
    assert "every negative cell has dropout on" in section
    assert "`mlp_dropout` (dropout on, BN batch statistics and dropout on, BN running statistics)" in section
    assert "| mlp |" not in section  # only variants with BN or dropout


def test_a_claim_at_sigma_zero_is_refused(params: Params) -> None:
    _, data = ab_study(params, "agrees")
    est = Estimate(Interval(0.1, 0.01, 0.05, 0.15, 3), 0)
    bad = Claim(
        "above_90_at_0",
        "B above 90 % without noise",
        M.accuracy_at("filter", "frozen", 0.0),
        "B > 0.9",
        1,
        est,
        "agrees",
    )
    with pytest.raises(ValueError, match="sigma = 0"):
        check_claims([bad], data)


def test_stale_study_json_is_refused(params: Params) -> None:
    _, data = ab_study(params, "agrees")
    stale = dataclasses.replace(data, study=dataclasses.replace(data.study, verdicts={"val_acc": "differs"}))
    with pytest.raises(StudyError, match="dvc repro"):
        build_report(stale, params)


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
    constants = {getattr(M, c) for c in dir(M) if c.isupper() and isinstance(getattr(M, c), str)}
    assert constants <= names, constants - names
    assert M.accuracy_at("filter", "frozen", 0.0) not in names  # sigma = 0 is never a measure


def write_run_files(root, data: StudyData, raw: dict) -> None:
    """The files the plots stage reads, laid out as the pipeline writes them."""
    for (v, s), run in data.runs.items():
        paths = RunPaths(v, s)
        for probe in ("train", "robustness", "slice", "path", "curvature"):
            (root / paths.metrics(probe)).parent.mkdir(parents=True, exist_ok=True)
            (root / paths.metrics(probe)).write_text(json.dumps(to_json(getattr(run, probe))))
        (root / paths.plot("x")).parent.mkdir(parents=True, exist_ok=True)
        for probe, frame in (
            ("history", data.history[v]),
            ("slice", data.slices[v]),
            ("path", data.paths[v]),
            ("surface", data.surfaces[v]),
        ):
            frame[frame["seed"] == s].drop(columns="seed").to_csv(root / paths.plot(probe), index=False)
    (root / "metrics" / "study.json").write_text(json.dumps(raw))


def test_load_study_reads_what_the_pipeline_writes_and_names_a_missing_file(params: Params, tmp_path, monkeypatch):
    raw, data = ab_study(params, "differs", seeds=(0, 1))
    write_run_files(tmp_path, data, raw)
    monkeypatch.chdir(tmp_path)
    study_params = dataclasses.replace(
        params, study=dataclasses.replace(params.study, variants=["mlp", "cnn"], seeds=[0, 1])
    )
    loaded = load_study(study_params)
    assert loaded.runs == data.runs
    assert build_report(loaded, study_params) == build_report(data, study_params)
    (tmp_path / RunPaths("cnn", 1).metrics("curvature")).write_text('{"variant": "cnn"}')
    with pytest.raises(StudyError, match="curvature.json does not match the metrics schema.*dvc repro"):
        load_study(study_params)
    (tmp_path / RunPaths("cnn", 1).metrics("curvature")).unlink()
    with pytest.raises(StudyError, match="cannot read metrics/runs/cnn/1/curvature.json.*dvc repro"):
        load_study(study_params)
    other = dataclasses.replace(study_params, study=dataclasses.replace(study_params.study, seeds=[0, 1, 2]))
    with pytest.raises(StudyError, match="rerun the aggregate stage"):
        load_study(other)


@pytest.mark.slow
def test_plots_stage_imports_no_torch() -> None:
    code = (
        "import sys; sys.path[:0] = ['src', 'stages']; import plots; "
        "bad = [m for m in ('torch', 'torchvision') if m in sys.modules]; assert not bad, bad"
    )
    run_command([sys.executable, "-c", code], REPO, timeout=60)
