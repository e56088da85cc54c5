"""Integration: the cells outside the factorial through DVC on tiny synthetic data (one seed, to keep it short).

A and B with four MLP cells: one that diverges (mlp_unstable at lr 1e6), a slow one, one with widths of its own
(variants.<v>.hidden) and a matched-fit one (constant lr until its train loss reaches stop_loss, under an epoch cap).
Each is trained and gets the robustness and curvature probes, and no slice stage (slice, surface and path run over
study.factorial only); the diverged run is recorded as such, no NaN reaches metrics/, and the aggregate and plots
stages run over them. Changing one cell's override reruns that cell's stages (and the aggregate and plots) only.
The project is a copy of conftest's session-wide ``reproduced`` one (A and B, seed 0) with the cells added: A's and
B's runs are already there, and adding cells reruns none of them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from conftest import REPRODUCED_SEEDS, SUMMARY, Reproduction, commit_all, copy_project, repro, update_params

pytestmark = pytest.mark.slow

CELLS = ["mlp_slow", "mlp_unstable", "mlp_deep10", "fit_b128_x2"]
VARIANTS = ["mlp", "cnn", *CELLS]
MLP = ["mlp", *CELLS]
MODEL_A = {"conv": False, "bn": False, "dropout": False}
STOP_LOSS = 1.5  # well under ln 10 = 2.3, the loss of a uniform guess: reached within the cap on the tiny data
FIT = {"schedule": "constant", "epochs": 6, "stop_loss": STOP_LOSS, "stop_window": 2, "lr": 0.1}
NOT_FACTORIAL = ("robustness", "curvature")  # the probe kinds of a cell outside study.factorial


def cell_stages(cells: list[str]) -> set[str]:
    return {f"train_mlp@{v}-0" for v in cells} | {f"{kind}@{v}" for kind in NOT_FACTORIAL for v in cells}


@pytest.fixture(scope="module")
def added(reproduced: tuple[Path, Reproduction], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Reproduction]:
    assert REPRODUCED_SEEDS == [0]
    repo = copy_project(reproduced[0], tmp_path_factory.mktemp("regimes"))
    question1 = yaml.safe_load((repo / "params.yaml").read_text())["claim_rules"]["question1"]
    update_params(
        repo / "params.yaml",
        {
            "study": {"variants": VARIANTS, "factorial": ["mlp", "cnn"], "train_mlp": MLP, "train_cnn": ["cnn"]},
            "variants": {
                "mlp_unstable": {**MODEL_A, "train": {"lr": 1e6}},
                "mlp_deep10": {**MODEL_A, "hidden": [8, 8, 8]},
                "fit_b128_x2": {**MODEL_A, "train": FIT},
            },
            "claim_rules": {"question1": {**question1, "target_loss": STOP_LOSS}},  # question 1 compares at stop_loss
        },
    )
    done = repro(repo)
    commit_all(repo, "regimes")
    return repo, done


@pytest.fixture(scope="module")
def repo(added: tuple[Path, Reproduction]) -> Path:
    return added[0]


def test_adding_cells_runs_their_training_robustness_and_curvature_only(added: tuple[Path, Reproduction]) -> None:
    repo, done = added
    assert done.runs == cell_stages(CELLS)  # no stage of A's or B's runs, and no slice stage of a cell
    for v in CELLS:
        assert not (repo / "metrics/runs" / v / "slice").exists(), v
        for kind in NOT_FACTORIAL:
            summary = json.loads((repo / f"metrics/runs/{v}/{kind}/0/{kind}.json").read_text())
            assert (summary["variant"], summary["seed"]) == (v, 0)
    assert done.summary() == set(SUMMARY)


def test_the_diverged_run_is_recorded_and_no_nan_reaches_the_run_metrics(repo: Path) -> None:
    train = json.loads((repo / "metrics/runs/mlp_unstable/0/train.json").read_text())
    assert train["diverged"]["epoch"] == 1 and train["early"] is None and train["epochs"] == 0
    assert train["steps"] == 0 and train["lr"] == 1e6
    for path in (repo / "metrics/runs").rglob("*.json"):
        text = path.read_text()
        assert "NaN" not in text and "Infinity" not in text, path


def test_a_cell_with_widths_of_its_own_trains_that_network(repo: Path) -> None:
    train = json.loads((repo / "metrics/runs/mlp_deep10/0/train.json").read_text())
    assert train["n_parameters"] == (784 * 8 + 8) + 2 * (8 * 8 + 8) + (8 * 10 + 10)
    assert train["lr"] == json.loads((repo / "metrics/runs/mlp/0/train.json").read_text())["lr"]


def test_the_matched_fit_cell_stops_at_the_first_epoch_its_windowed_train_loss_reaches_stop_loss(repo: Path) -> None:
    """From its history.csv: the run ended at the first epoch whose mean train loss over the last stop_window epochs
    is <= stop_loss, before the cap, and says so."""
    train = json.loads((repo / "metrics/runs/fit_b128_x2/0/train.json").read_text())
    with (repo / "plots/runs/fit_b128_x2/0/history.csv").open() as f:
        losses = [float(row["train_loss"]) for row in csv.DictReader(f)]
    window = FIT["stop_window"]
    means = [sum(losses[e + 1 - window : e + 1]) / window for e in range(window - 1, len(losses))]
    assert means and means[-1] <= STOP_LOSS and all(m > STOP_LOSS for m in means[:-1])
    assert train["epochs"] == len(losses) < FIT["epochs"]
    assert (train["stop_loss"], train["reached_loss"], train["lr"]) == (STOP_LOSS, True, FIT["lr"])
    assert train["steps"] == len(losses) * -(-500 // train["batch_size"])  # 600 images - 100 validation


def test_the_summary_runs_over_the_cells(added: tuple[Path, Reproduction]) -> None:
    repo, done = added
    done.summary()
    for path in (repo / "metrics").glob("*.json"):
        text = path.read_text()
        assert "NaN" not in text and "Infinity" not in text, path
    headline = json.loads((repo / "metrics/headline.json").read_text())
    assert set(headline["by_variant"]) == {"mlp", "cnn"}  # the factorial cells only


def test_a_cells_override_reruns_only_its_own_stages(repo: Path) -> None:
    update_params(
        repo / "params.yaml",
        {"variants": {"mlp_slow": {**MODEL_A, "train": {"lr": 0.01}}, "mlp_deep10": {**MODEL_A, "hidden": [8, 8]}}},
    )
    done = repro(repo)
    commit_all(repo, "other overrides")
    assert done.runs == cell_stages(["mlp_slow", "mlp_deep10"])
    assert json.loads((repo / "metrics/runs/mlp_slow/0/train.json").read_text())["lr"] == 0.01
    train = json.loads((repo / "metrics/runs/mlp_deep10/0/train.json").read_text())
    assert train["n_parameters"] == (784 * 8 + 8) + (8 * 8 + 8) + (8 * 10 + 10)
    assert done.summary() == set(SUMMARY)
