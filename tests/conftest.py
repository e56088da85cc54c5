"""Shared fixtures: tiny synthetic Fashion-MNIST idx files that tests write themselves."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


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
