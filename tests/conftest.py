"""Shared fixtures: tiny synthetic Fashion-MNIST idx files that tests write themselves."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from landscape.params import CNNParams, MLPParams

REPO = Path(__file__).resolve().parents[1]

# Small model configs for fast unit tests of the models and the training loop.
SMALL_MODELS = {
    "mlp": MLPParams(hidden=[16, 8]),
    "cnn": CNNParams(channels=[4, 8], fc=16, dropout_conv=0.25, dropout_fc=0.5),
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the idx format (magic 0x08 = ubyte, then dims, big-endian)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def synthetic_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable images: class c brightens a class-specific horizontal band, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.int32)
    for i, c in enumerate(labels):
        images[i, 2 * c + 4 : 2 * c + 7, 4:24] += 180
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_synthetic_mirror(directory: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> dict[str, str]:
    """Write the four gzip idx files; return the SHA-256 of each decompressed file."""
    directory.mkdir(parents=True, exist_ok=True)
    train_x, train_y = synthetic_arrays(n_train, seed)
    test_x, test_y = synthetic_arrays(n_test, seed + 1)
    content = {
        "train-images-idx3-ubyte": idx_bytes(train_x),
        "train-labels-idx1-ubyte": idx_bytes(train_y),
        "t10k-images-idx3-ubyte": idx_bytes(test_x),
        "t10k-labels-idx1-ubyte": idx_bytes(test_y),
    }
    for name, raw in content.items():
        (directory / f"{name}.gz").write_bytes(gzip.compress(raw, mtime=0))
    return {name: hashlib.sha256(raw).hexdigest() for name, raw in content.items()}


@pytest.fixture
def synthetic_mirror(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    mirror = tmp_path / "mirror"
    return mirror, write_synthetic_mirror(mirror)


# Params small enough that every stage runs in seconds on the synthetic mirror (600 train, 200 test images).
TINY_PARAMS = {
    "data": {"val_size": 100, "train_eval_size": 100},
    "train": {"epochs": 1, "batch_size": 64, "eval_batch_size": 100, "device": "cpu"},
    "mlp": {"hidden": [32, 16]},
    "cnn": {"channels": [4, 8], "fc": 16},
    "robustness": {
        "sigmas": [0.0, 0.01, 0.1],
        "trials": 2,
        "bisect_steps": 2,
        "train_samples": 100,
        "val_samples": 100,
        "bn_samples": 50,
    },
    "slice": {"directions": 2, "points": 9, "train_samples": 100, "val_samples": 100, "bn_samples": 50},
}


def update_params(path: Path, changes: dict) -> None:
    """Merge ``{section: {key: value}}`` into the params file at ``path``."""
    params = yaml.safe_load(path.read_text())
    for section, values in changes.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def tiny_params(path: Path, mirror: Path, checksums: dict[str, str], **changes: dict) -> None:
    """Write the repo's params.yaml to ``path`` with TINY_PARAMS, the synthetic mirror, and ``changes``."""
    shutil.copy2(REPO / "params.yaml", path)
    data = {**TINY_PARAMS["data"], "mirror": str(mirror), "urls": [], "sha256": checksums}
    update_params(path, {**TINY_PARAMS, "data": data})
    update_params(path, changes)


def subprocess_env(src: Path = REPO / "src") -> dict[str, str]:
    """Environment for stage/DVC subprocesses: this venv's python first on PATH, the library importable."""
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(src),
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
