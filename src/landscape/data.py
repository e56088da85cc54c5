"""Fashion-MNIST: load the verified idx files (see ``fetch``) once as tensors, split, batch.

The whole dataset is 55 MB as uint8. It is loaded into memory once, normalized
once, and batched by indexing a permutation: no per-sample DataLoader.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from landscape.errors import StudyError


def read_idx(root: str | Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 from ``root/FashionMNIST/raw/``."""
    from torchvision.datasets import FashionMNIST

    root = Path(root)
    raw = root / "FashionMNIST" / "raw"
    if not raw.is_dir():
        raise StudyError(f"{raw} does not exist. Run the download stage first: dvc repro download")
    try:
        ds = FashionMNIST(str(root), train=train, download=False)
    except (RuntimeError, AssertionError, ValueError) as e:
        raise StudyError(
            f"cannot read the idx files in {raw} ({e!r}); they are corrupt. Rerun: dvc repro -f download"
        ) from None
    return ds.data, ds.targets


@dataclass(frozen=True)
class Split:
    """Normalized images (N, 1, 28, 28) float32 and labels (N,) int64, on one device."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, n: int, seed: int) -> Split:
        """A fixed seeded subset of ``n`` samples (the whole split when n == len)."""
        if n > len(self):
            raise StudyError(f"asked for a subset of {n} samples from a split of only {len(self)}; lower the param.")
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].to(self.y.device)
        return Split(self.x[idx], self.y[idx])


@dataclass(frozen=True)
class Dataset:
    train: Split
    val: Split
    test: Split
    mean: float
    std: float


@dataclass(frozen=True)
class ProbeData:
    """What a probe evaluates on (named splits) and the training images that recalibrate BN."""

    splits: dict[str, Split]
    bn_data: Split
    batch_size: int


def split_indices(n: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded disjoint (train, val) index tensors covering range(n)."""
    if not 0 < val_size < n:
        raise StudyError(f"data.val_size = {val_size} must be between 1 and {n - 1} for {n} training images.")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


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
    mean, std = pixel_mean_std(images[train_idx])

    def prepare(x: torch.Tensor, y: torch.Tensor) -> Split:
        x = x.to(torch.float32).unsqueeze(1)
        x.div_(255.0).sub_(mean).div_(std)  # in place: no full-size temporaries
        return Split(x.to(device), y.to(device))

    return Dataset(
        train=prepare(images[train_idx], labels[train_idx]),
        val=prepare(images[val_idx], labels[val_idx]),
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
