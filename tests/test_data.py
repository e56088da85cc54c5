"""Fetching, verifying, parsing, splitting and batching Fashion-MNIST, on tiny idx files the tests write."""

from __future__ import annotations

import gzip
import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO, idx_bytes, run_command, synthetic_arrays, tiny_params, write_synthetic_mirror
from landscape.errors import StudyError
from landscape.study import shape
from landscape.study.data import (
    IDX_FILES,
    Split,
    batch_indices,
    load_dataset,
    pixel_mean_std,
    read_idx,
    split_indices,
)
from landscape.study.fetch import FILES, download

N_TRAIN, N_TEST, SEED = 120, 40, 3
REAL_MIRROR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def mirror(tmp_path) -> tuple[Path, dict[str, str]]:
    directory = tmp_path / "mirror"
    return directory, write_synthetic_mirror(directory, N_TRAIN, N_TEST, SEED)


@pytest.fixture
def raw_root(tmp_path, mirror) -> Path:
    directory, checksums = mirror
    return download(tmp_path / "raw", directory, [], checksums)


def raw_files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "FashionMNIST" / "raw").iterdir())}


def write_gz(path: Path, raw: bytes) -> str:
    path.write_bytes(gzip.compress(raw, mtime=0))
    return hashlib.sha256(raw).hexdigest()


# --- download and verification ----------------------------------------------------------------


def test_download_writes_the_four_decompressed_files(tmp_path, mirror, raw_root):
    directory, checksums = mirror
    files = raw_files(raw_root)
    assert sorted(files) == sorted(FILES)
    for name, blob in files.items():
        assert blob == gzip.decompress((directory / f"{name}.gz").read_bytes())
        assert hashlib.sha256(blob).hexdigest() == checksums[name]


@pytest.mark.parametrize("train", [True, False])
def test_read_idx_returns_the_arrays_written(raw_root, train):
    images, labels = read_idx(raw_root, train=train)
    n, seed = (N_TRAIN, SEED) if train else (N_TEST, SEED + 1)
    expected_x, expected_y = synthetic_arrays(n, seed)
    assert images.shape == (n, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (n,) and labels.dtype == torch.int64
    assert np.array_equal(images.numpy(), expected_x)
    assert np.array_equal(labels.numpy(), expected_y.astype(np.int64))


def test_uncompressed_mirror_file_is_used(tmp_path, mirror):
    directory, checksums = mirror
    name = FILES[1]
    gz = directory / f"{name}.gz"
    (directory / name).write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    root = download(tmp_path / "raw", directory, [], checksums)
    assert hashlib.sha256(raw_files(root)[name]).hexdigest() == checksums[name]


def test_checksum_mismatch_names_file_and_both_hashes(tmp_path, mirror):
    directory, checksums = mirror
    name = "train-labels-idx1-ubyte"
    other_labels = (synthetic_arrays(N_TRAIN, SEED)[1] + 1) % 10
    actual = write_gz(directory / f"{name}.gz", idx_bytes(other_labels))
    out = tmp_path / "raw"
    with pytest.raises(StudyError) as err:
        download(out, directory, [], checksums)
    message = str(err.value)
    assert name in message
    assert checksums[name] in message
    assert actual in message
    assert not out.exists()


def test_failed_download_keeps_the_previous_good_copy(tmp_path, mirror, raw_root):
    directory, checksums = mirror
    before = raw_files(raw_root)
    write_gz(directory / f"{FILES[0]}.gz", b"not the dataset")
    with pytest.raises(StudyError, match="checksum mismatch"):
        download(raw_root, directory, [], checksums)
    assert raw_files(raw_root) == before


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda gz: b"<!DOCTYPE html><html><body>404 Not Found</body></html>", id="html"),
        pytest.param(lambda gz: gz[: len(gz) // 2], id="truncated"),
    ],
)
def test_mirror_file_that_is_not_gzip_is_a_study_error(tmp_path, mirror, corrupt):
    directory, checksums = mirror
    bad = directory / f"{FILES[0]}.gz"
    bad.write_bytes(corrupt(bad.read_bytes()))
    out = tmp_path / "raw"
    with pytest.raises(StudyError, match="not a valid gzip") as err:
        download(out, directory, [], checksums)
    assert str(bad) in str(err.value)
    assert not out.exists()


def test_no_source_lists_what_was_tried(tmp_path, mirror):
    _, checksums = mirror
    empty = tmp_path / "empty"
    empty.mkdir()
    unreachable = (tmp_path / "nowhere").as_uri()
    out = tmp_path / "raw"
    with pytest.raises(StudyError) as err:
        download(out, empty, [unreachable], checksums)
    message = str(err.value)
    assert "Tried" in message
    assert str(empty / f"{FILES[0]}.gz") in message
    assert f"{unreachable}/{FILES[0]}.gz" in message
    assert "apt-get install -y dataset-fashion-mnist" in message
    assert not out.exists()


def test_missing_mirror_with_no_urls(tmp_path, mirror):
    _, checksums = mirror
    missing = tmp_path / "no-such-mirror"
    with pytest.raises(StudyError, match="apt-get install -y dataset-fashion-mnist") as err:
        download(tmp_path / "raw", missing, [], checksums)
    assert str(missing / f"{FILES[0]}.gz") in str(err.value)


def test_urls_are_tried_in_order_after_the_mirror(tmp_path, mirror):
    directory, checksums = mirror
    urls = [(tmp_path / "nowhere").as_uri(), directory.as_uri()]
    root = download(tmp_path / "raw", tmp_path / "no-such-mirror", urls, checksums)
    assert sorted(raw_files(root)) == sorted(FILES)


def test_missing_checksum_is_a_study_error(tmp_path, mirror):
    directory, checksums = mirror
    del checksums[FILES[2]]
    with pytest.raises(StudyError, match=FILES[2]):
        download(tmp_path / "raw", directory, [], checksums)


def test_download_twice_replaces_cleanly(tmp_path, mirror, raw_root):
    directory, checksums = mirror
    (raw_root / "stray.txt").write_text("left over")
    first = raw_files(raw_root)
    download(raw_root, directory, [], checksums)
    assert not (raw_root / "stray.txt").exists()
    assert raw_files(raw_root) == first
    assert sorted(p.name for p in raw_root.parent.iterdir()) == sorted(["mirror", "raw"])


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda blob: blob[: len(blob) // 2], id="truncated"),
        pytest.param(lambda blob: b"<html>not an idx file</html>" * 10, id="garbage"),
    ],
)
def test_corrupt_raw_file_is_a_study_error(raw_root, corrupt):
    path = raw_root / "FashionMNIST" / "raw" / FILES[0]
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(StudyError, match="cannot read the idx files"):
        read_idx(raw_root, train=True)


def test_read_idx_without_download_is_a_study_error(tmp_path):
    with pytest.raises(StudyError, match="download"):
        read_idx(tmp_path, train=True)


def test_missing_idx_file_is_a_study_error(raw_root):
    (raw_root / "FashionMNIST" / "raw" / FILES[3]).unlink()
    with pytest.raises(StudyError, match=f"cannot read the idx files .*{FILES[3]}.*dvc repro -f download"):
        read_idx(raw_root, train=False)


def test_images_and_labels_of_different_lengths_are_a_study_error(raw_root):
    labels = raw_root / "FashionMNIST" / "raw" / FILES[1]
    labels.write_bytes(idx_bytes(synthetic_arrays(N_TRAIN - 1, SEED)[1]))
    with pytest.raises(StudyError, match=f"{N_TRAIN} images but {N_TRAIN - 1} labels"):
        read_idx(raw_root, train=True)


def test_idx_files_parsed_here_are_the_four_downloaded():
    assert sorted(IDX_FILES[True] + IDX_FILES[False]) == sorted(FILES)


@pytest.mark.parametrize("train", [True, False])
def test_read_idx_equals_torchvision(raw_root, train):
    """The idx files are read directly (no torchvision import at start-up); the tensors are torchvision's."""
    datasets = pytest.importorskip("torchvision.datasets")
    reference = datasets.FashionMNIST(str(raw_root), train=train, download=False)
    images, labels = read_idx(raw_root, train=train)
    assert images.dtype == reference.data.dtype and torch.equal(images, reference.data)
    assert labels.dtype == reference.targets.dtype and torch.equal(labels, reference.targets)


@pytest.mark.parametrize(("n", "val_size", "seed"), [(120, 20, 1), (1000, 999, 0), (60000, 10000, 0), (7, 1, 3)])
def test_split_indices_are_the_sorted_parts_of_the_seeded_permutation(n, val_size, seed):
    """The split as first written (sort each part of the permutation): the same indices, bit for bit."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train, val = split_indices(n, val_size, seed)
    assert train.dtype == val.dtype == torch.int64
    assert torch.equal(train, perm[val_size:].sort().values) and torch.equal(val, perm[:val_size].sort().values)


def test_load_dataset_is_bitwise_the_torchvision_path(raw_root):
    """The normalized tensors equal, bit for bit, those of the first loader: torchvision's parse, the split by
    sorting each part of the permutation, the histogram mean and std, and the in-place float32 normalization."""
    datasets = pytest.importorskip("torchvision.datasets")
    train_set, test_set = (datasets.FashionMNIST(str(raw_root), train=t, download=False) for t in (True, False))
    perm = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(5))
    train_idx, val_idx = perm[30:].sort().values, perm[:30].sort().values
    mean, std = pixel_mean_std(train_set.data[train_idx])

    def normalized(x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32).unsqueeze(1).div_(255.0).sub_(mean).div_(std)

    ds = load_dataset(raw_root, 30, split_seed=5)
    assert (ds.mean, ds.std) == (mean, std)
    for split, x, y in [
        (ds.train, train_set.data[train_idx], train_set.targets[train_idx]),
        (ds.val, train_set.data[val_idx], train_set.targets[val_idx]),
        (ds.test, test_set.data, test_set.targets),
    ]:
        assert torch.equal(split.y, y)
        assert torch.equal(split.x, normalized(x))


TORCH_STAGES = ("train", "robustness", "slice", "curvature")  # the per-run kinds (pipeline/<kind>/dvc.yaml)
STARTS_UP = """\
import runpy, sys
for stage in {stages!r}:
    runpy.run_path(f"{repo}/stages/{{stage}}.py", run_name="startup")
from landscape.study.inputs import study_inputs
study_inputs("mlp")
print(sorted(m for m in ("torchvision", "pandas", "matplotlib") if m in sys.modules))
"""


@pytest.mark.slow
def test_torch_stages_start_without_torchvision_pandas_or_matplotlib(tmp_path, mirror, raw_root):
    """The imports of every torch stage and its start-up (params, device, dataset) leave out the packages that
    only the report needs, and torchvision (tools/startup_times.py measures what that saves)."""
    assert set(TORCH_STAGES) == set(shape.kinds(REPO))
    directory, checksums = mirror
    tiny_params(tmp_path / "params.yaml", directory, checksums)
    (tmp_path / "data").mkdir()
    raw_root.rename(tmp_path / "data" / "raw")
    code = STARTS_UP.format(stages=TORCH_STAGES, repo=REPO)
    assert run_command([sys.executable, "-c", code], tmp_path).stdout.strip() == "[]"


# --- splits, normalization, subsets, batches -------------------------------------------------


def test_split_indices_are_disjoint_and_cover_range():
    train, val = split_indices(100, 30, seed=5)
    assert len(train) == 70 and len(val) == 30
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(100))


def test_split_indices_are_seeded():
    same = [split_indices(100, 30, seed=5) for _ in range(2)]
    other = split_indices(100, 30, seed=6)
    assert all(torch.equal(a, b) for a, b in zip(*same, strict=True))
    assert not torch.equal(same[0][1], other[1])


@pytest.mark.parametrize("val_size", [0, 100, 101, -1])
def test_split_indices_rejects_bad_sizes(val_size):
    with pytest.raises(StudyError, match="val_size"):
        split_indices(100, val_size, seed=0)


def test_load_dataset_splits_and_normalizes_with_train_statistics(raw_root):
    val_size = 20
    ds = load_dataset(raw_root, val_size, split_seed=1)
    images, labels = synthetic_arrays(N_TRAIN, SEED)
    test_images, test_labels = synthetic_arrays(N_TEST, SEED + 1)
    train_idx, val_idx = split_indices(N_TRAIN, val_size, seed=1)
    pixels = images[train_idx.numpy()] / 255.0
    mean, std = pixels.mean(), pixels.std(ddof=1)
    assert ds.mean == pytest.approx(mean, rel=1e-12)
    assert ds.std == pytest.approx(std, rel=1e-12)

    def normalized(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((x / 255.0 - mean) / std).float().unsqueeze(1)

    for split, x, y in [
        (ds.train, images[train_idx.numpy()], labels[train_idx.numpy()]),
        (ds.val, images[val_idx.numpy()], labels[val_idx.numpy()]),
        (ds.test, test_images, test_labels),
    ]:
        assert split.x.shape == (len(y), 1, 28, 28) and split.x.dtype == torch.float32
        assert split.y.dtype == torch.int64
        assert torch.equal(split.y, torch.from_numpy(y.astype(np.int64)))
        torch.testing.assert_close(split.x, normalized(x), rtol=1e-5, atol=1e-5)

    train_x = ds.train.x.double()
    assert abs(train_x.mean().item()) < 1e-5
    assert train_x.std().item() == pytest.approx(1.0, abs=1e-5)


def numbered_split(n: int) -> Split:
    """Sample i has label i and every pixel equal to i, so a subset shows which samples it took."""
    return Split(torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 28, 28), torch.arange(n))


def test_subset_is_seeded_and_keeps_samples_whole():
    split = numbered_split(50)
    a, b, c = split.subset(20, seed=1), split.subset(20, seed=1), split.subset(20, seed=2)
    assert torch.equal(a.y, b.y) and torch.equal(a.x, b.x)
    assert not torch.equal(a.y, c.y)
    assert len(a) == 20 and len(set(a.y.tolist())) == 20
    assert torch.equal(a.x[:, 0, 0, 0], a.y.float())
    assert torch.equal(a.x[:, 0, 27, 27], a.y.float())


def test_subset_of_everything_is_a_permutation():
    assert sorted(numbered_split(30).subset(30, seed=0).y.tolist()) == list(range(30))


def test_subset_larger_than_split_is_a_study_error():
    with pytest.raises(StudyError, match="31"):
        numbered_split(30).subset(31, seed=0)


@pytest.mark.parametrize(("n", "batch_size"), [(103, 10), (100, 10), (5, 64), (1, 1)])
def test_batch_indices_cover_every_index_once_per_epoch(n, batch_size):
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):
        batches = batch_indices(n, batch_size, generator)
        assert sorted(torch.cat(batches).tolist()) == list(range(n))
        assert [len(b) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
        assert 1 <= len(batches[-1]) <= batch_size


def test_batch_indices_follow_the_generator():
    def epochs(seed: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(seed)
        return [torch.cat(batch_indices(50, 8, g)).tolist() for _ in range(2)]

    first, second = epochs(0)
    assert epochs(0) == [first, second]
    assert first != second  # each epoch reshuffles
    assert epochs(1) != [first, second]


# --- the real dataset (CI installs the Debian mirror) ---------------------------------------


@pytest.mark.skipif(
    not REAL_MIRROR.is_dir(), reason=f"{REAL_MIRROR} not installed (apt-get install dataset-fashion-mnist)"
)
def test_real_mirror_matches_params_checksums(tmp_path):
    checksums = yaml.safe_load((REPO / "params.yaml").read_text())["data"]["sha256"]
    root = download(tmp_path / "raw", REAL_MIRROR, [], checksums)
    for train, n in [(True, 60000), (False, 10000)]:
        images, labels = read_idx(root, train=train)
        assert images.shape == (n, 28, 28) and images.dtype == torch.uint8
        assert labels.shape == (n,)
        assert labels.min().item() == 0 and labels.max().item() == 9
