"""Fashion-MNIST: fetch and verify the idx files, load them once as tensors, split, batch.

The whole dataset is 55 MB as uint8. It is loaded into memory once, normalized
once, and batched by indexing a permutation: no per-sample DataLoader.
"""

from __future__ import annotations

import gzip
import hashlib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from landscape.atomic import replace_dir
from landscape.errors import StudyError

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MIRROR_HINT = "On Debian/Ubuntu install the mirror as root: apt-get install -y dataset-fashion-mnist"
URL_TIMEOUT_S = 60


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _decompress(blob: bytes, origin: str) -> bytes:
    try:
        return gzip.decompress(blob)
    except (OSError, EOFError) as e:
        raise StudyError(
            f"{origin} is not a valid gzip file ({e}); the source is corrupt or not the dataset."
        ) from None


def _from_mirror(mirror: Path, name: str) -> tuple[bytes | None, str]:
    for candidate in (mirror / f"{name}.gz", mirror / name):
        if candidate.is_file():
            blob = candidate.read_bytes()
            raw = _decompress(blob, str(candidate)) if candidate.suffix == ".gz" else blob
            return raw, str(candidate)
    return None, f"{mirror / (name + '.gz')} (not found)"


def _from_url(base: str, name: str) -> tuple[bytes | None, str]:
    url = f"{base.rstrip('/')}/{name}.gz"
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as response:
            blob = response.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        return None, f"{url} ({getattr(e, 'reason', e)})"
    return _decompress(blob, url), url


def fetch_file(name: str, mirror: str | Path, urls: list[str], expected_sha256: str) -> bytes:
    """Return the decompressed bytes of one idx file, verified against ``expected_sha256``.

    Sources are tried in order: the mirror directory, then each URL. The first
    source that has the file decides; a checksum mismatch is an error, not a
    reason to try the next source, because a wrong file should be fixed.
    """
    tried = []
    for fetch, where in [(_from_mirror, Path(mirror))] + [(_from_url, u) for u in urls]:
        raw, origin = fetch(where, name)
        if raw is None:
            tried.append(origin)
            continue
        actual = sha256(raw)
        if actual != expected_sha256:
            raise StudyError(
                f"checksum mismatch for {name} from {origin}:\n"
                f"  expected SHA-256 {expected_sha256}\n"
                f"  actual   SHA-256 {actual}\n"
                "The file is truncated, corrupt or a different dataset. Reinstall the mirror "
                f"({MIRROR_HINT}) or delete the bad file so the next source is used."
            )
        return raw
    raise StudyError(
        f"no source has {name}. Tried:\n  "
        + "\n  ".join(tried)
        + f"\n{MIRROR_HINT}, or make an upstream URL reachable."
    )


def download(out_dir: str | Path, mirror: str | Path, urls: list[str], checksums: dict[str, str]) -> Path:
    """Fetch and verify all four files, then write ``out_dir/FashionMNIST/raw/`` in one rename.

    Nothing is written unless every file verifies.
    """
    missing = [n for n in FILES if n not in checksums]
    if missing:
        raise StudyError(f"params.yaml: 'data.sha256' lacks a checksum for {', '.join(missing)}.")
    blobs = {name: fetch_file(name, mirror, urls, checksums[name]) for name in FILES}

    def fill(tmp: Path) -> None:
        raw = tmp / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        for name, blob in blobs.items():
            (raw / name).write_bytes(blob)

    return replace_dir(out_dir, fill)


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
