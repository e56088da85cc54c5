"""Faults at the stage edge: killed runs, divergence, a missing GPU, and run-to-run determinism.

Each test runs the real stage scripts as subprocesses in a throwaway workspace
that holds a tiny params.yaml and data/raw/ built from the synthetic mirror.
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

from conftest import REPO, subprocess_env, tiny_params, update_params, write_synthetic_mirror
from landscape.data import download


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    checksums = write_synthetic_mirror(tmp_path / "mirror")
    ws = tmp_path / "ws"
    ws.mkdir()
    tiny_params(ws / "params.yaml", tmp_path / "mirror", checksums)
    download(ws / "data" / "raw", tmp_path / "mirror", [], checksums)
    return ws


def stage(ws: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "stages" / script), *args],
        cwd=ws,
        env=subprocess_env(),
        capture_output=True,
        text=True,
    )


def without_timing(path: Path) -> dict:
    metrics = json.loads(path.read_text())
    metrics.pop("timing")
    return metrics


def test_divergence_stops_at_once_and_writes_nothing(workspace: Path) -> None:
    update_params(workspace / "params.yaml", {"train": {"optimizer": "sgd", "lr": 1e6, "epochs": 3}})
    result = stage(workspace, "train.py", "mlp")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert re.search(r"training mlp at epoch 1, batch \d+ diverged", result.stderr)
    assert "Lower 'train.lr'" in result.stderr
    assert not (workspace / "models").exists() and not (workspace / "metrics").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_clear_error(workspace: Path) -> None:
    update_params(workspace / "params.yaml", {"train": {"device": "cuda"}})
    result = stage(workspace, "train.py", "cnn")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "'train.device' = 'cuda'" in result.stderr and "Use 'auto'" in result.stderr


def test_auto_device_falls_back_and_is_recorded(workspace: Path) -> None:
    update_params(workspace / "params.yaml", {"train": {"device": "auto"}})
    assert stage(workspace, "train.py", "mlp").returncode == 0
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert json.loads((workspace / "metrics" / "mlp.json").read_text())["device"] == expected


def test_outputs_are_byte_identical_across_runs_except_timing(workspace: Path) -> None:
    outputs = {}
    for run in range(2):
        for script in ("train.py", "robustness.py", "slice.py"):
            result = stage(workspace, script, "cnn")
            assert result.returncode == 0, result.stderr
        outputs[run] = {
            "csv": {p.relative_to(workspace): p.read_bytes() for p in (workspace / "plots").rglob("*.csv")},
            "json": {p.relative_to(workspace): without_timing(p) for p in (workspace / "metrics").rglob("*.json")},
        }
    assert len(outputs[0]["csv"]) == 3 and len(outputs[0]["json"]) == 3
    assert outputs[0] == outputs[1]


def test_sigkill_mid_epoch_leaves_previous_outputs_intact(workspace: Path) -> None:
    params = workspace / "params.yaml"
    assert stage(workspace, "train.py", "cnn").returncode == 0
    previous = {p: p.read_bytes() for p in (workspace / "models" / "cnn.pt", workspace / "metrics" / "cnn.json")}
    reference = without_timing(workspace / "metrics" / "cnn.json")

    update_params(params, {"train": {"epochs": 200}})
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "stages" / "train.py"), "cnn"],
        cwd=workspace,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    seen = ""
    while "batch/s" not in seen and time.monotonic() < deadline:  # a progress bar means an epoch is running
        seen += proc.stderr.read(64)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be killed: {seen[-500:]}"
    for path, content in previous.items():
        assert path.read_bytes() == content, f"{path} changed after a killed run"

    update_params(params, {"train": {"epochs": 1}})
    assert stage(workspace, "train.py", "cnn").returncode == 0
    assert without_timing(workspace / "metrics" / "cnn.json") == reference
