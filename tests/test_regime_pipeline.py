"""Integration: the training-regime arm through DVC on tiny synthetic data (one seed, to keep it short).

A and B with three MLP regime cells, one of which diverges (lr 1e6): the stages finish, the diverged run is
recorded as such, no NaN reaches metrics/, and the aggregate and plots stages write questions 1 and 4. Changing
one cell's override reruns that cell's stages (and the aggregate and plots) only. The project is a copy of
conftest's session-wide ``reproduced`` one (A and B, seed 0) with the regime cells added: A's and B's runs are
already there, and adding cells reruns none of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPRODUCED_SEEDS, commit_all, copy_project, repro, update_params

pytestmark = pytest.mark.slow

VARIANTS = ["mlp", "cnn", "mlp_lo_noise", "mlp_hi_noise", "mlp_unstable"]
MLP = ["mlp", "mlp_lo_noise", "mlp_hi_noise", "mlp_unstable"]
PROBES = ("robustness", "slice", "path", "curvature")


@pytest.fixture(scope="module")
def repo(reproduced: tuple[Path, set[str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert REPRODUCED_SEEDS == [0]
    repo = copy_project(reproduced[0], tmp_path_factory.mktemp("regimes"))
    update_params(
        repo / "params.yaml",
        {
            "study": {"variants": VARIANTS, "train_mlp": MLP, "train_cnn": ["cnn"]},
            "variants": {"mlp_unstable": {"conv": False, "bn": False, "dropout": False, "train": {"lr": 1e6}}},
        },
    )
    ran = repro(repo)
    cells = [v for v in VARIANTS if v not in ("mlp", "cnn")]
    stages = {f"train_mlp@{v}-0" for v in cells} | {f"{p}@{v}-0" for p in PROBES for v in cells}
    assert ran == stages | {"aggregate", "plots"}  # no stage of A's or B's runs
    commit_all(repo, "regimes")
    return repo


def test_the_diverged_run_is_recorded_and_nothing_downstream_breaks(repo: Path) -> None:
    train = json.loads((repo / "metrics/runs/mlp_unstable/0/train.json").read_text())
    assert train["diverged"]["epoch"] == 1 and train["early"] is None and train["epochs"] == 0
    for path in (repo / "metrics").rglob("*.json"):
        text = path.read_text()
        assert "NaN" not in text and "Infinity" not in text, path
    study = json.loads((repo / "metrics/study.json").read_text())
    regimes = study["regimes"]
    assert set(regimes["cells"]) == {"mlp_lo_noise", "mlp_hi_noise", "mlp_unstable"}
    assert regimes["cells"]["mlp_lo_noise"]["noise_scale"] == pytest.approx(0.25)
    diverged = [d for d in regimes["difficulty"] if d["diverged_epoch"]]
    assert [d["variant"] for d in diverged] == ["mlp_unstable"]
    assert max(d["score"] for d in regimes["difficulty"]) == diverged[0]["score"]  # the hardest run
    headline = json.loads((repo / "metrics/headline.json").read_text())
    assert set(headline["by_variant"]) == {"mlp", "cnn"}  # the factorial cells only
    assert "mlp_low_noise_log_lambda_max" in headline["regime_claims"]
    report = (repo / "report.md").read_text()
    assert "## 10. Question 1" in report and "## 11. Question 4" in report
    assert "A was trained again" in report and "B has no regime cell in this study" in report
    for figure in ("sharpness_training", "regimes", "early_signals"):
        assert (repo / "plots/figures" / f"{figure}.png").stat().st_size > 10_000, figure
    sharpness = (repo / "plots/runs/mlp/0/sharpness.csv").read_text().splitlines()
    assert sharpness[0] == "epoch,lambda_max,lr,threshold,ratio" and len(sharpness) == 1 + 1 + 2  # 0, 1, 2


def test_a_regime_override_reruns_only_its_own_stages(repo: Path) -> None:
    update_params(repo / "params.yaml", {"variants": {"mlp_hi_noise": {"conv": False, "bn": False, "dropout": False,
                                                                       "train": {"lr": 0.1}}}})  # fmt: skip
    ran = repro(repo)
    assert ran == {"train_mlp@mlp_hi_noise-0", *(f"{p}@mlp_hi_noise-0" for p in PROBES), "aggregate", "plots"}
    train = json.loads((repo / "metrics/runs/mlp_hi_noise/0/train.json").read_text())
    assert train["lr"] == 0.1
