"""Integration: the whole DVC pipeline on a tiny synthetic dataset in a throwaway git repo.

Checks that `dvc repro` runs every stage, that a change under `mlp:` reruns only
MLP work, that a change under `robustness:` reruns no training, and that
`dvc metrics diff` / `dvc plots diff` compare against HEAD.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, subprocess_env, tiny_params, update_params, write_synthetic_mirror

COPIED = [
    "src",
    "stages",
    "dvc.yaml",
    "params.yaml",
    ".dvcignore",
    ".dvc/config",
    ".dvc/plots_template.html",
    ".gitignore",
    "pyproject.toml",
]
TRAINING = {"train_mlp", "train_cnn"}
CNN_WORK = {"train_cnn", "robustness@cnn", "slice@cnn"}


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=subprocess_env(cwd / "src"), capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def ran_stages(output: str) -> set[str]:
    """Stage names from `dvc repro` lines like: Running stage 'train_mlp':"""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def commit(repo: Path, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", message], repo)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    repo = root / "repo"
    for rel in COPIED:
        src, dst = REPO / rel, repo / rel
        if not src.exists():  # the offline plots template exists only after set-up
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, dst)
    checksums = write_synthetic_mirror(root / "mirror", n_train=600, n_test=200)
    tiny_params(repo / "params.yaml", root / "mirror", checksums)
    run(["git", "init", "-q"], repo)
    first = run([sys.executable, "-m", "dvc", "repro"], repo)
    assert ran_stages(first.stdout) == {
        "download",
        "train_mlp",
        "train_cnn",
        "robustness@mlp",
        "robustness@cnn",
        "slice@mlp",
        "slice@cnn",
        "plots",
    }
    commit(repo, "tiny pipeline")
    return repo


def test_first_repro_writes_every_output(repo: Path) -> None:
    for model in ("mlp", "cnn"):
        metrics = json.loads((repo / "metrics" / f"{model}.json").read_text())
        assert 0.0 <= metrics["val"]["acc"] <= 1.0
        assert metrics["gap"] == pytest.approx(metrics["train"]["acc"] - metrics["val"]["acc"])
        assert (repo / "plots" / "history" / f"{model}.csv").read_text().startswith("epoch,train_loss,train_acc,")
        assert (repo / "metrics" / "robustness" / f"{model}.json").is_file()
        assert (repo / "metrics" / "slice" / f"{model}.json").is_file()
    for figure in ("learning_curves", "generalization_gap", "robustness", "slices", "summary"):
        assert (repo / "plots" / "figures" / f"{figure}.png").stat().st_size > 1000
    assert "## 1. Which network" in (repo / "report.md").read_text()
    assert run([sys.executable, "-m", "dvc", "status"], repo).stdout.strip().endswith("up to date.")


def test_mlp_change_reruns_only_mlp_work(repo: Path) -> None:
    update_params(repo / "params.yaml", {"mlp": {"hidden": [24, 16]}})
    out = run([sys.executable, "-m", "dvc", "repro"], repo).stdout
    assert ran_stages(out) == {"train_mlp", "robustness@mlp", "slice@mlp", "plots"}
    assert not ran_stages(out) & CNN_WORK
    diff = run([sys.executable, "-m", "dvc", "metrics", "diff", "--json"], repo).stdout
    changed = json.loads(diff)
    assert "metrics/mlp.json" in changed and "n_parameters" in changed["metrics/mlp.json"]
    assert "metrics/cnn.json" not in changed
    out_dir = repo.parent / "plots_diff"
    run([sys.executable, "-m", "dvc", "plots", "diff", "HEAD", "-o", str(out_dir)], repo)
    html = (out_dir / "index.html").read_text()
    assert "Learning_curves_-_accuracy" in html and "HEAD" in html and "workspace" in html
    commit(repo, "wider mlp")


def test_robustness_change_reruns_no_training(repo: Path) -> None:
    update_params(repo / "params.yaml", {"robustness": {"trials": 3}})
    out = run([sys.executable, "-m", "dvc", "repro"], repo).stdout
    assert ran_stages(out) == {"robustness@mlp", "robustness@cnn", "plots"}
    assert not ran_stages(out) & TRAINING
    commit(repo, "more trials")
