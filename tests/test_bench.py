"""bench/bench.py on tiny settings and synthetic data, so that it cannot rot; and its correctness check: ours and
the conventional DataLoader path see the same images and give the same loss and accuracy."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, tiny_params, write_synthetic_mirror
from landscape.study.data import load_dataset
from landscape.study.fetch import download
from landscape.study.models import save_checkpoint
from landscape.study.params import load_params
from landscape.study.stage import RunPaths


def load_bench():
    """bench/bench.py is a script, not a package module: import it from its file."""
    spec = importlib.util.spec_from_file_location("bench_script", REPO / "bench" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


bench = load_bench()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A repository-shaped directory: tiny params.yaml and data/raw/ with the synthetic dataset."""
    root = tmp_path_factory.mktemp("bench")
    mirror = root / "mirror"
    checksums = write_synthetic_mirror(mirror)
    tiny_params(root / "params.yaml", mirror, checksums)
    download(root / "data" / "raw", mirror, [], checksums)
    return root


@pytest.fixture(scope="module")
def study(workspace: Path):
    params = load_params(workspace / "params.yaml")
    data = load_dataset(workspace / "data" / "raw", params.data.val_size, params.data.split_seed)
    return params, data, workspace / "data" / "raw"


def test_the_validation_images_are_the_ones_data_subset_gives(study) -> None:
    params, data, _ = study
    images = bench.validation_images(params, data, 40, seed=3)
    expected = data.val.subset(40, 3)
    assert torch.equal(images.split.x, expected.x) and torch.equal(images.split.y, expected.y)


@pytest.mark.parametrize("variant", bench.VARIANTS)
def test_both_sides_evaluate_the_same_images_with_the_same_result(study, variant: str) -> None:
    params, data, raw = study
    torch.manual_seed(0)
    model = bench.build_model(params.model_config(variant)).eval()
    images = bench.validation_images(params, data, bench.TINY.eval_images)
    bs = params.runtime.eval_batch_size
    loader = bench.conventional_loader(raw, data, images.indices, bs, shuffle=False)
    x, y = next(iter(bench.conventional_loader(raw, data, images.indices, len(images.indices), shuffle=False)))
    assert torch.equal(y, images.split.y)
    torch.testing.assert_close(x, images.split.x, rtol=0, atol=1e-6)

    ours = bench.evaluate(model, images.split, bs)
    conventional = bench.conventional_eval(model, loader, torch.device("cpu"))
    assert conventional.acc == ours.acc
    assert conventional.loss == pytest.approx(ours.loss, rel=1e-6)


def test_a_trained_checkpoint_is_used_when_present(study, tmp_path: Path, monkeypatch) -> None:
    params, _, _ = study
    monkeypatch.chdir(tmp_path)
    cfg = params.model_config("mlp")
    save_checkpoint(RunPaths("mlp", 0).model, "mlp", cfg, bench.build_model(cfg), {})
    _, mlp = bench.benchmark_model("mlp", params, torch.device("cpu"))
    _, cnn = bench.benchmark_model("cnn", params, torch.device("cpu"))
    assert mlp == "trained (models/mlp/0/model.pt)"
    assert cnn == "freshly initialized (no models/cnn/0/model.pt)"


def test_memory_rows_come_from_the_timings_of_seed_0(tmp_path: Path) -> None:
    (tmp_path / "cnn" / "0").mkdir(parents=True)
    (tmp_path / "cnn" / "0" / "train.json").write_text(json.dumps({"wall_s": 1.0, "peak_rss_mb": 1234.4}))
    (tmp_path / "cnn" / "1").mkdir(parents=True)
    (tmp_path / "cnn" / "1" / "train.json").write_text(json.dumps({"wall_s": 1.0, "peak_rss_mb": 99.0}))
    assert bench.memory_rows(tmp_path) == [
        ["peak memory train cnn", "MB (resident, from the last dvc repro)", "1234", "", ""]
    ]


def table_rows(text: str) -> list[list[str]]:
    """The cells of every row of every markdown table in ``text`` (headers included, separators not)."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]
    return [cells for cells in rows if not set(cells[0]) <= {"-"}]


def test_the_tiny_benchmark_gives_every_row_with_finite_positive_ratios(workspace: Path, monkeypatch) -> None:
    monkeypatch.chdir(workspace)
    bench.main("--tiny", "--out", "results.md")
    text = (workspace / "results.md").read_text()
    rows = table_rows(text)
    expected = [
        *(f"{what} {v}" for v in bench.VARIANTS for what in ("train", "evaluate", "robustness probe", "slice probe")),
        "cnn train step FLOP/s",
        *bench.VARIANTS,  # the HVP and the batch-size tables
        "training batches (epochs)",
        "slice directions x points",
        "noise trials x levels",
        "evaluation subset (images)",
    ]
    names = [cells[0] for cells in rows]
    assert set(expected) <= set(names), f"missing rows: {set(expected) - set(names)}"
    ratios = [float(cells[-1].removesuffix("x")) for cells in rows if cells[-1].endswith("x")]
    assert len(ratios) == 8 + 2 + 4  # comparison rows but the FLOP/s one, HVP rows, scaling time ratios
    scaling = [float(cells[-2].removesuffix("x")) for cells in rows if cells[-2].endswith("x")]
    assert all(math.isfinite(r) and r > 0 for r in ratios + scaling), rows
    assert "mlp: freshly initialized (no models/mlp/0/model.pt)" in text
    assert "Hessian-vector product" in text


def test_dvc_overhead_times_the_whole_lock_and_each_kinds_part(tmp_path: Path) -> None:
    """bench/dvc_overhead.py on a small synthetic lock: the stage kinds come from the names, every part is timed
    with DVC's own lock update, and the full-run total is each lock's update time its stage count."""
    spec = importlib.util.spec_from_file_location("dvc_overhead", REPO / "bench" / "dvc_overhead.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = ("train_cnn@cnn-0", "slice@mlp", "curvature@fit_b128_x1", "aggregate")
    assert [module.kind(s) for s in names] == ["train", "slice", "curvature", "other"]
    entry = {"cmd": "python x.py", "deps": [{"path": "a", "hash": "md5", "md5": "0" * 32, "size": 1}]}
    # training: one stage per variant and seed; a probe kind: one stage per variant (over the seeds)
    stages = {f"train_mlp@{v}-{s}": entry for v in ("mlp", "mlp_bn") for s in (0, 1)}
    stages |= {f"slice@{v}": entry for v in ("mlp", "mlp_bn")}
    rows = module.measure({"schema": "2.0", "stages": {**stages, "aggregate": entry}}, 1, tmp_path)
    assert [(label, n) for label, n, _, _ in rows] == [("one lock for all", 7), ("other", 1), ("slice", 2),
                                                        ("train", 4)]  # fmt: skip
    assert all(lines > 0 and seconds > 0 for _, _, lines, seconds in rows)
    text = module.report(rows)
    whole, split = 7 * rows[0][3], sum(n * s for _, n, _, s in rows[1:])
    assert f"{whole / 60:.1f} min with one lock for all, {split / 60:.1f} min with one per stage kind" in text
