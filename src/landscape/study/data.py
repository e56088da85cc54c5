"""Fashion-MNIST: load the verified idx files (see ``fetch``) once as tensors, split, batch.

The whole dataset is 55 MB as uint8. It is loaded into memory once, normalized
once, and batched by indexing a permutation: no per-sample DataLoader. The idx
format is a 4-byte magic (0, 0, dtype 0x08 = uint8, number of dimensions), the
dimensions as big-endian uint32, then the array: read directly, it costs one
file read and no torchvision import (tests/test_data.py checks that the tensors
equal torchvision's parse).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from landscape.errors import StudyError
from landscape.probes.data import ProbeData, Split

__all__ = ["Dataset", "ProbeData", "Split", "batch_indices", "load_dataset", "read_idx", "split_indices"]

IDX_FILES = {  # train -> (images, labels)
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
UBYTE = 0x08


def idx_array(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array of ``ndim`` dimensions stored in the idx file at ``path``; ``ValueError`` if it is not one."""
    blob = np.fromfile(path, dtype=np.uint8)
    header = 4 + 4 * ndim
    if len(blob) < header or tuple(blob[:4]) != (0, 0, UBYTE, ndim):
        raise ValueError(f"{path.name} does not start with the idx header of a {ndim}-d uint8 array")
    dims = struct.unpack(f">{ndim}I", blob[4:header].tobytes())
    if len(blob) - header != math.prod(dims):
        raise ValueError(f"{path.name} holds {len(blob) - header} bytes for an array of shape {dims}")
    return blob[header:].reshape(dims)


def read_idx(root: str | Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 from ``root/FashionMNIST/raw/``."""
    raw = Path(root) / "FashionMNIST" / "raw"
    if not raw.is_dir():
        raise StudyError(f"{raw} does not exist. Run the download stage first: dvc repro download")
    image_file, label_file = IDX_FILES[train]
    try:
        images, labels = idx_array(raw / image_file, 3), idx_array(raw / label_file, 1)
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
    except (OSError, ValueError) as e:
        raise StudyError(
            f"cannot read the idx files in {raw} ({e}); they are missing or corrupt. Rerun: dvc repro -f download"
        ) from None
    return torch.from_numpy(images), torch.from_numpy(labels).long()


@dataclass(frozen=True)
class Dataset:
    train: Split
    val: Split
    test: Split
    mean: float
    std: float


def split_indices(n: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded disjoint (train, val) index tensors covering range(n)."""
    if not 0 < val_size < n:
        raise StudyError(f"data.val_size = {val_size} must be between 1 and {n - 1} for {n} training images.")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    in_val = torch.zeros(n, dtype=torch.bool)
    in_val[perm[:val_size]] = True
    # Each part in ascending order, as sorting gives, from one mask: no sort (0.2 s on the busy 2-core machine).
    return (~in_val).nonzero().squeeze(1), in_val.nonzero().squeeze(1)


def pixel_mean_std(images: torch.Tensor) -> tuple[float, float]:
    """Exact mean and sample std of uint8 pixels scaled to [0, 1], from a 256-bin histogram."""
    counts = torch.bincount(images.flatten(), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255.0
    n = counts.sum()
    mean = (counts @ values) / n
    var = (counts @ (values - mean) ** 2) / (n - 1)
    return mean.item(), var.sqrt().item()


def load_dataset(root: str | Path, val_size: int, split_seed: int, device: torch.device | str = "cpu") -> Dataset:
    """Load, split and normalize with the training split's pixel mean and std."""
    images, labels = read_idx(root, train=True)
    test_images, test_labels = read_idx(root, train=False)
    train_idx, val_idx = split_indices(len(labels), val_size, split_seed)
    train_images = images.index_select(0, train_idx)  # a plain gather of whole images, cheaper than images[idx]
    mean, std = pixel_mean_std(train_images)

    def prepare(x: torch.Tensor, y: torch.Tensor) -> Split:
        x = x.to(torch.float32).unsqueeze(1)
        x.div_(255.0).sub_(mean).div_(std)  # in place: no full-size temporaries
        return Split(x.to(device), y.to(device))

    return Dataset(
        train=prepare(train_images, labels[train_idx]),
        val=prepare(images.index_select(0, val_idx), labels[val_idx]),
        test=prepare(test_images, test_labels),
        mean=mean,
        std=std,
    )


def batch_indices(
    n: int, batch_size: int, generator: torch.Generator, device: torch.device | str = "cpu"
) -> list[torch.Tensor]:
    """One epoch of shuffled index batches on ``device``; the last batch may be smaller.

    The permutation is drawn on the CPU (the same order on every device) and moved once per epoch.
    """
    return list(torch.randperm(n, generator=generator).to(device).split(batch_size))
