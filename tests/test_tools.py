"""tools/run_stages.py: the stage commands of the real dvc.yaml, matrix expanded as DVC does, in a runnable order."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import DVC, REPO, run_command


def load_tool():
    spec = importlib.util.spec_from_file_location("run_stages", REPO / "tools" / "run_stages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOL = load_tool()
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def out_paths(body: dict) -> list[str]:
    entries = body.get("outs", []) + body.get("metrics", []) + body.get("plots", [])
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries]


def test_stage_commands_expand_the_matrix_over_variants_and_seeds() -> None:
    commands = dict(TOOL.stage_commands(REPO / "dvc.yaml"))
    names = list(commands)
    assert names[0] == "download" and names[-1] == "plots"
    study = PARAMS["study"]
    for seed in study["seeds"]:
        for variant in study["train_mlp"]:
            assert commands[f"train_mlp@{variant}-{seed}"] == f"python stages/train.py {variant} {seed}"
        for variant in study["train_cnn"]:
            assert commands[f"train_cnn@{variant}-{seed}"] == f"python stages/train.py {variant} {seed}"
        for variant in study["variants"]:
            for probe in ("robustness", "slice", "path", "curvature"):
                assert commands[f"{probe}@{variant}-{seed}"] == f"python stages/{probe}.py {variant} {seed}"
    n_runs = len(study["variants"]) * len(study["seeds"])
    assert len(names) == 1 + n_runs * (1 + 4) + 2  # download, train + 4 probes per run, aggregate, plots
    assert "${" not in "".join(commands.values())


def test_stages_run_after_the_stages_whose_outputs_they_read() -> None:
    stages = TOOL.expanded_stages(REPO / "dvc.yaml")
    names = [name for name, _ in stages]
    produced_by = {path: name for name, body in stages for path in out_paths(body)}
    assert "models/cnn/0/init.pt" in produced_by and "metrics/study.json" in produced_by
    checked = 0
    for name, body in stages:
        assert "${" not in yaml.safe_dump(body), name
        for dep in body.get("deps", []):
            inside = [p for out, p in produced_by.items() if out == dep or out.startswith(dep.rstrip("/") + "/")]
            for producer in inside:
                assert names.index(producer) < names.index(name), f"{name} runs before {producer}"
                checked += 1
    assert checked > 100


def test_every_run_writes_its_own_files() -> None:
    stages = TOOL.expanded_stages(REPO / "dvc.yaml")
    outs = [path for _, body in stages for path in out_paths(body)]
    assert len(outs) == len(set(outs)), "two stages write the same path"


def test_foreach_and_params_references_expand_too(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"models": ["a", "b"], "train": {"epochs": 3}}))
    (tmp_path / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "one": {"foreach": "${models}", "do": {"cmd": "python t.py ${item} ${train.epochs}"}},
                    "two": {"matrix": {"m": ["x"], "s": [1, 2]}, "cmd": "echo ${item.m}/${item.s}"},
                }
            }
        )
    )
    assert TOOL.stage_commands(tmp_path / "dvc.yaml") == [
        ("one@a", "python t.py a 3"),
        ("one@b", "python t.py b 3"),
        ("two@x-1", "echo x/1"),
        ("two@x-2", "echo x/2"),
    ]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"bad": {"cmd": "echo ${nope.key}"}}}))
    with pytest.raises(KeyError, match="nope.key"):
        TOOL.stage_commands(tmp_path / "dvc.yaml")


@pytest.mark.slow
def test_stage_names_are_the_ones_dvc_gives(tmp_path: Path) -> None:
    """DVC's own expansion of the real dvc.yaml and params.yaml names exactly the stages the tool runs."""
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(REPO / name, tmp_path / name)
    run_command([*DVC, "init", "--no-scm", "-q"], tmp_path)
    listed = run_command([*DVC, "stage", "list", "--name-only"], tmp_path).stdout.split()
    assert sorted(listed) == sorted(name for name, _ in TOOL.stage_commands(REPO / "dvc.yaml"))


def test_stage_times_table_medians_over_seeds(tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("stage_times", REPO / "tools" / "stage_times.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for seed, wall in ((0, 10.0), (1, 20.0)):
        path = tmp_path / "cnn" / str(seed) / "train.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"wall_s": wall, "peak_rss_mb": 900.0 + seed}))
    text = module.table(module.collect(tmp_path))
    assert "| train | 15.0 s |" in text
    assert "2 stage runs, 0.5 min" in text and "901 MB" in text
