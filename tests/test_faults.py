"""Faults at the stage edge: killed runs, divergence, a missing GPU, bad arguments, stale checkpoints, and
run-to-run determinism.

Each test runs the real stage scripts as subprocesses in a throwaway workspace that holds a tiny
params.yaml and data/raw/ built from the synthetic mirror. All of them are slow (a stage imports torch).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import (
    REPO,
    TINY_PARAMS,
    run_stage_script,
    start_command,
    tiny_params,
    update_params,
    write_synthetic_mirror,
)
from landscape.study.fetch import download

pytestmark = pytest.mark.slow

PROBES = ("robustness.py", "slice.py", "curvature.py")  # one stage per variant, over every seed of study.seeds


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    checksums = write_synthetic_mirror(tmp_path / "mirror")
    ws = tmp_path / "ws"
    ws.mkdir()
    tiny_params(ws / "params.yaml", tmp_path / "mirror", checksums)
    download(ws / "data" / "raw", tmp_path / "mirror", [], checksums)
    return ws


def stage(ws: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    return run_stage_script(ws, script, *args)


def assert_clean_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(r"^error: ", result.stderr, re.MULTILINE), result.stderr  # after any progress bar
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in {result.stderr!r}"


def files(root: Path, pattern: str) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob(pattern))} if root.exists() else {}


def test_a_diverging_run_is_recorded_as_diverged_and_writes_no_nan(workspace: Path) -> None:
    """A huge lr: the stage ends cleanly, says where the run diverged, keeps the last finite (here the initial)
    weights, and its train.json says so with no NaN or infinity anywhere (they would be numbers in metrics/)."""
    update_params(workspace / "params.yaml", {"train": {"optimizer": "sgd", "lr": 1e6, "epochs": 3}})
    result = stage(workspace, "train.py", "mlp", "0")
    assert result.returncode == 0, result.stderr
    assert re.search(r"training mlp \(seed 0\) diverged at epoch 1, batch \d+", result.stdout)
    text = (workspace / "metrics/runs/mlp/0/train.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    summary = json.loads(text)
    assert summary["diverged"]["epoch"] == 1 and summary["diverged"]["loss"] in ("nan", "inf", "-inf")
    assert summary["early"] is None and summary["epochs"] == 0
    assert summary["epochs_to_target"] == {"value": 3.0, "censored": True}
    for out in ("models/mlp/0/model.pt", "models/mlp/0/epoch1.pt", "plots/runs/mlp/0/sharpness.csv"):
        assert (workspace / out).exists(), out


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_clear_error(workspace: Path) -> None:
    update_params(workspace / "params.yaml", {"runtime": {"device": "cuda"}})
    assert_clean_error(stage(workspace, "train.py", "cnn", "0"), "'runtime.device' = 'cuda'", "Use 'auto'")


def test_auto_device_falls_back_and_is_recorded(workspace: Path) -> None:
    update_params(workspace / "params.yaml", {"runtime": {"device": "auto"}})
    assert stage(workspace, "train.py", "mlp", "0").returncode == 0
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert json.loads((workspace / "metrics/runs/mlp/0/train.json").read_text())["device"] == expected


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("resnet", "0"), ["unknown variant 'resnet'", "Variants in params.yaml"]),
        (("mlp", "zero"), ["seed argument must be an integer", "'zero'"]),
        (("mlp",), ["wrong arguments", "['mlp']"]),
        (("mlp", "0", "extra"), ["wrong arguments"]),
    ],
    ids=["unknown-variant", "bad-seed", "missing-seed", "extra-argument"],
)
def test_bad_stage_arguments_are_clean_errors(workspace: Path, args, fragments) -> None:
    assert_clean_error(stage(workspace, "train.py", *args), *fragments)
    assert not (workspace / "models").exists()


@pytest.mark.parametrize("script", PROBES)
def test_bad_probe_stage_arguments_are_clean_errors(workspace: Path, script: str) -> None:
    """A probe stage takes the variant only (it probes every seed); a seed argument is an error, not ignored."""
    assert_clean_error(stage(workspace, script, "mlp", "0"), "wrong arguments")
    assert_clean_error(stage(workspace, script, "resnet"), "unknown variant 'resnet'")
    assert not (workspace / "metrics").exists()


def test_probe_stage_refuses_a_missing_seed_checkpoint_and_names_the_fix(workspace: Path) -> None:
    """study.seeds is [0, 1] and only seed 0 is trained: the stage names seed 1's missing checkpoint before it
    probes any seed; the slice stage needs the initial weights (the path) too."""
    assert stage(workspace, "train.py", "mlp", "0").returncode == 0
    for script in PROBES:
        assert_clean_error(stage(workspace, script, "mlp"), "models/mlp/1/model.pt", "dvc repro")
    assert not (workspace / "metrics/runs/mlp/robustness").exists()
    assert not (workspace / "timings/mlp/robustness").exists()
    assert stage(workspace, "train.py", "mlp", "1").returncode == 0
    (workspace / "models/mlp/1/init.pt").unlink()
    result = stage(workspace, "slice.py", "mlp")
    assert_clean_error(result, "models/mlp/1/init.pt", "dvc repro")
    assert "models/mlp/0" not in result.stderr
    assert not (workspace / "metrics/runs/mlp/slice").exists()


def test_slice_stage_refuses_a_variant_outside_the_factorial(workspace: Path) -> None:
    """slice (with surface and path) runs over study.factorial only: a regime cell is refused by name, before any
    checkpoint is looked for; robustness takes it (and fails on the checkpoint it lacks, a different error)."""
    update_params(
        workspace / "params.yaml",
        {"study": {"variants": ["mlp", "cnn", "mlp_slow"], "train_mlp": ["mlp", "mlp_slow"]}},
    )
    result = stage(workspace, "slice.py", "mlp_slow")
    assert_clean_error(result, "study.factorial", "'mlp_slow' is not one of its cells", "mlp, cnn")
    assert "model.pt" not in result.stderr
    assert_clean_error(stage(workspace, "robustness.py", "mlp_slow"), "models/mlp_slow/0/model.pt")
    assert not (workspace / "metrics").exists()


def test_a_probe_stage_owns_its_folders_and_leaves_no_stale_seed(workspace: Path) -> None:
    """robustness@mlp writes <root>/mlp/robustness/<seed>/ for each seed of study.seeds, and first clears the
    folders it owns: a seed dropped from the study leaves nothing behind."""
    for seed in ("0", "1"):
        assert stage(workspace, "train.py", "mlp", seed).returncode == 0
    stale = ["metrics/runs/mlp/robustness/7/robustness.json", "plots/runs/mlp/robustness/7/robustness.csv"]
    stale.append("timings/mlp/robustness/7/robustness.json")
    for rel in stale:
        (workspace / rel).parent.mkdir(parents=True)
        (workspace / rel).write_text("{}")
    result = stage(workspace, "robustness.py", "mlp")
    assert result.returncode == 0, result.stderr
    assert re.findall(r"^robustness mlp seed (\d+): ", result.stdout, re.M) == ["0", "1"]
    for top in ("metrics/runs/mlp/robustness", "plots/runs/mlp/robustness", "timings/mlp/robustness"):
        assert sorted(p.name for p in (workspace / top).iterdir()) == ["0", "1"], top
    for seed in (0, 1):
        summary = json.loads((workspace / f"metrics/runs/mlp/robustness/{seed}/robustness.json").read_text())
        assert (summary["variant"], summary["seed"]) == ("mlp", seed)
    assert (workspace / "metrics/runs/mlp/0/train.json").is_file()  # training's folder is not the stage's


def test_probe_refuses_a_checkpoint_trained_with_another_config(workspace: Path) -> None:
    update_params(workspace / "params.yaml", {"study": {"seeds": [0]}})
    assert stage(workspace, "train.py", "mlp", "0").returncode == 0
    update_params(workspace / "params.yaml", {"mlp": {"hidden": [24, 16]}})
    result = stage(workspace, "slice.py", "mlp")
    fix = "dvc repro pipeline/train/dvc.yaml:train_mlp"
    assert_clean_error(result, "models/mlp/0/model.pt", "[32, 16]", "[24, 16]", fix)
    assert not (workspace / "metrics/runs/mlp/slice/0/slice.json").exists()


def test_outputs_are_byte_identical_across_runs_except_timings(workspace: Path) -> None:
    update_params(workspace / "params.yaml", {"study": {"seeds": [0]}})
    outputs = {}
    for attempt in range(2):
        for script, args in (("train.py", ("cnn", "0")), *((p, ("cnn",)) for p in PROBES)):
            result = stage(workspace, script, *args)
            assert result.returncode == 0, result.stderr
        outputs[attempt] = {
            "metrics": files(workspace / "metrics", "*.json"),
            "plots": files(workspace / "plots", "*.csv"),
            "models": files(workspace / "models", "*.pt"),
        }
        timings = files(workspace / "timings", "*.json")
        assert sorted(str(p) for p in timings) == [
            "cnn/0/train.json",
            "cnn/curvature/0/curvature.json",
            "cnn/robustness/0/robustness.json",
            "cnn/slice/0/slice.json",
        ]
        for path, blob in timings.items():
            extra = {"train_s", "during_training_s"} if path.name == "train.json" else set()
            assert set(json.loads(blob)) == {"wall_s", "peak_rss_mb"} | extra, path
    first = outputs[0]
    assert sorted(map(str, first["metrics"])) == [
        "runs/cnn/0/train.json",
        "runs/cnn/curvature/0/curvature.json",
        "runs/cnn/robustness/0/robustness.json",
        "runs/cnn/slice/0/path.json",
        "runs/cnn/slice/0/slice.json",
    ]
    assert sorted(map(str, first["plots"])) == [
        "runs/cnn/0/history.csv",
        "runs/cnn/0/sharpness.csv",
        "runs/cnn/robustness/0/robustness.csv",
        "runs/cnn/slice/0/path.csv",
        "runs/cnn/slice/0/slice.csv",
        "runs/cnn/slice/0/surface.csv",
    ]
    assert sorted(map(str, first["models"])) == ["cnn/0/epoch1.pt", "cnn/0/init.pt", "cnn/0/model.pt"]
    for blob in first["metrics"].values():
        text = blob.decode()
        assert "wall_s" not in text and "peak_rss" not in text  # timings live in timings/, not in the metrics
    assert outputs[0] == outputs[1]


def test_seeds_give_different_runs_and_a_run_does_not_depend_on_other_seeds(workspace: Path) -> None:
    assert stage(workspace, "train.py", "mlp", "1").returncode == 0
    alone = files(workspace / "metrics", "*.json")
    assert stage(workspace, "train.py", "mlp", "0").returncode == 0
    both = files(workspace / "metrics", "*.json")
    one = Path("runs/mlp/1/train.json")
    assert both[one] == alone[one]
    assert both[Path("runs/mlp/0/train.json")] != both[one]


def test_sigkill_mid_epoch_leaves_previous_outputs_intact(workspace: Path) -> None:
    params = workspace / "params.yaml"
    assert stage(workspace, "train.py", "cnn", "0").returncode == 0
    run_files = ("models/cnn/0/model.pt", "models/cnn/0/init.pt", "metrics/runs/cnn/0/train.json")
    previous = {p: (workspace / p).read_bytes() for p in run_files}

    update_params(params, {"train": {"epochs": 200}})
    proc = start_command(
        [sys.executable, REPO / "stages" / "train.py", "cnn", "0"], workspace, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    seen = ""
    while "batch/s" not in seen and time.monotonic() < deadline:  # a progress bar means an epoch is running
        seen += proc.stderr.read(64)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be killed: {seen[-500:]}"
    for path, content in previous.items():
        assert (workspace / path).read_bytes() == content, f"{path} changed after a killed run"
    leftovers = [p for p in workspace.rglob("*") if p.is_file() and ".tmp" in p.name]
    assert not leftovers, leftovers

    update_params(params, {"train": {"epochs": TINY_PARAMS["train"]["epochs"]}})
    assert stage(workspace, "train.py", "cnn", "0").returncode == 0
    for path, content in previous.items():
        assert (workspace / path).read_bytes() == content, f"{path} differs after a rerun"
