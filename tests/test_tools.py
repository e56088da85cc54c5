"""tools/run_stages.py: the stage commands of the real dvc.yaml, matrix expanded as DVC does, in a runnable order;
its lanes, budget and per-stage timing; tools/compare_runs.py; tools/stage_times.py."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from conftest import DVC, REPO, run_command


def load_tool(name: str = "run_stages"):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOL = load_tool()
COMPARE = load_tool("compare_runs")
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def out_paths(body: dict) -> list[str]:
    entries = body.get("outs", []) + body.get("metrics", []) + body.get("plots", [])
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries]


def test_stage_commands_expand_the_matrix_over_variants_and_seeds() -> None:
    full = dict(TOOL.stage_commands(REPO / "dvc.yaml"))
    names = list(full)
    assert names[0] == "download" and names[-1] == "plots"
    assert "pipeline/slice/dvc.yaml:slice@mlp-0" in full  # a per-kind file's stage, named as DVC names it
    commands = {name.split(":")[-1]: cmd for name, cmd in full.items()}
    study = PARAMS["study"]
    for seed in study["seeds"]:
        for variant in study["train_mlp"]:
            assert commands[f"train_mlp@{variant}-{seed}"] == f"PYTHONPATH=src python stages/train.py {variant} {seed}"
        for variant in study["train_cnn"]:
            assert commands[f"train_cnn@{variant}-{seed}"] == f"PYTHONPATH=src python stages/train.py {variant} {seed}"
        for variant in study["variants"]:
            for probe in ("robustness", "slice", "path", "curvature"):
                assert (
                    commands[f"{probe}@{variant}-{seed}"] == f"PYTHONPATH=src python stages/{probe}.py {variant} {seed}"
                )
    n_runs = len(study["variants"]) * len(study["seeds"])
    assert len(names) == 1 + n_runs * (1 + 4) + 2  # download, train + 4 probes per run, aggregate, plots
    assert "${" not in "".join(commands.values())


def test_a_cmd_runs_with_its_variables_and_this_python() -> None:
    """A stage cmd's leading NAME=value words are its environment, as in the shell DVC runs it in."""
    assert TOOL.command("PYTHONPATH=src python stages/train.py mlp 0") == (
        {"PYTHONPATH": "src"},
        [sys.executable, "stages/train.py", "mlp", "0"],
    )
    assert TOOL.command("A=1 B='x y' echo C=2") == ({"A": "1", "B": "x y"}, ["echo", "C=2"])


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
    """DVC's own expansion of the real dvc.yaml files and params.yaml names exactly the stages the tool runs."""
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(REPO / name, tmp_path / name)
    for path in REPO.glob("pipeline/*/dvc.yaml"):
        (tmp_path / path.relative_to(REPO)).parent.mkdir(parents=True)
        shutil.copy2(path, tmp_path / path.relative_to(REPO))
    run_command([*DVC, "init", "--no-scm", "-q"], tmp_path)
    listed = run_command([*DVC, "stage", "list", "--all", "--name-only"], tmp_path).stdout.split()
    assert sorted(listed) == sorted(name for name, _ in TOOL.stage_commands(REPO / "dvc.yaml"))


def test_stage_times_table_medians_over_seeds(tmp_path) -> None:
    module = load_tool("stage_times")
    for seed, wall in ((0, 10.0), (1, 20.0)):
        path = tmp_path / "cnn" / str(seed) / "train.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"wall_s": wall, "peak_rss_mb": 900.0 + seed}))
    text = module.table(module.collect(tmp_path))
    assert "| cnn | 15.0 s | – | – | – | – | 15.0 s | – |" in text  # no probe, no lambda_max during training
    assert "2 stage runs, 0.5 min" in text and "901 MB" in text


def test_stage_times_sum_a_run_by_seed_when_a_stage_is_missing(tmp_path) -> None:
    """A whole run is its seed's stages summed: with seed 0's robustness stage missing, the runs are 10, 120 and
    230 s (median 120), not the lists summed by position (110, 220, 30: median 110)."""
    module = load_tool("stage_times")
    walls = {"train": {0: 10.0, 1: 20.0, 2: 30.0}, "robustness": {1: 100.0, 2: 200.0}}
    for stage, by_seed in walls.items():
        for seed, wall in by_seed.items():
            path = tmp_path / "cnn" / str(seed) / f"{stage}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"wall_s": wall, "peak_rss_mb": 900.0}))
    row = next(x for x in module.table(module.collect(tmp_path)).splitlines() if x.startswith("| cnn |"))
    assert row == "| cnn | 20.0 s | 150.0 s | – | – | – | 120.0 s | – |"


def test_stage_times_give_the_share_of_lambda_max_during_training(tmp_path) -> None:
    module = load_tool("stage_times")
    for seed, (train, during) in enumerate(((100.0, 10.0), (100.0, 20.0), (50.0, 4.0))):
        path = tmp_path / "mlp" / str(seed) / "train.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"wall_s": train + during, "peak_rss_mb": 900.0, "train_s": train,
                                    "during_training_s": during}))  # fmt: skip
    row = next(x for x in module.table(module.collect(tmp_path)).splitlines() if x.startswith("| mlp |"))
    assert row.endswith("| 110.0 s | 10.0 % |")  # medians of 110, 120, 54 s and of 10 %, 20 %, 8 %


# --- the device key ---------------------------------------------------------------------------


def test_set_device_edits_runtime_device_and_keeps_the_rest(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy2(REPO / "params.yaml", params)
    before = params.read_text()
    assert TOOL.set_device(params, "cuda") == "runtime.device"
    after = params.read_text()
    assert yaml.safe_load(after)["runtime"]["device"] == "cuda"
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert len(changed) == 1 and changed[0][1].startswith("  device: cuda") and "#" in changed[0][1]


def test_set_device_without_a_runtime_section_sets_train_device(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  epochs: 2   # two\n  device: auto  # where\nmlp:\n  device: keep\n")
    assert TOOL.set_device(params, "cuda") == "train.device"
    assert params.read_text() == "train:\n  epochs: 2   # two\n  device: cuda  # where\nmlp:\n  device: keep\n"
    params.write_text("train:\n  epochs: 2\nruntime: {threads: 0}\n")  # no device key; a flow-style section
    assert TOOL.set_device(params, "cpu") == "runtime.device"
    assert yaml.safe_load(params.read_text()) == {"train": {"epochs": 2}, "runtime": {"threads": 0, "device": "cpu"}}
    params.write_text("train:\n  # comment\n  epochs: 2\n")
    TOOL.set_device(params, "cuda")
    assert yaml.safe_load(params.read_text()) == {"train": {"device": "cuda", "epochs": 2}}


# --- lanes, budget and the timing table ------------------------------------------------------

FAKE_STAGE = """\
import json, os, sys, time
kind, seed, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
with open("order.txt", "a") as f:
    f.write(f"start {kind} {seed} {time.time()}\\n")
time.sleep(pause)
if kind == "fail":
    sys.exit(3)
if seed != "-":
    os.makedirs(f"timings/{seed}", exist_ok=True)
    with open(f"timings/{seed}/{kind}.json", "w") as f:
        json.dump({"wall_s": pause / 2}, f)
print(f"{kind} {seed} done")
"""


def fake_project(root: Path, seeds: list[int], pause: float = 0.05, fail: bool = False) -> list:
    """A dvc.yaml of fake stages: prepare, then train and probe per seed (probe reads train's output), then report."""
    (root / "stage.py").write_text(FAKE_STAGE)
    (root / "params.yaml").write_text(yaml.safe_dump({"seeds": seeds, "runtime": {"device": "cpu"}}))

    def per_seed(kind: str, deps: list[str]) -> dict:
        return {
            "matrix": {"seed": "${seeds}"},
            "cmd": f"python stage.py {kind} ${{item.seed}} {pause}",
            "deps": deps,
            "outs": [f"out/${{item.seed}}/{kind}", f"timings/${{item.seed}}/{kind}.json"],
        }

    stages = {
        "prepare": {"cmd": f"python stage.py prepare - {pause}", "outs": ["data"]},
        "train": per_seed("fail" if fail else "train", ["data"]),
        "probe": per_seed("probe", ["data", "out/${item.seed}/train"]),
        "report": {"cmd": f"python stage.py report - {pause}", "deps": ["out"]},
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    return TOOL.stages_of(root / "dvc.yaml")


def starts(root: Path) -> list[tuple[str, str, float]]:
    lines = (root / "order.txt").read_text().splitlines()
    return [(kind, seed, float(t)) for _, kind, seed, t in (line.split() for line in lines)]


@pytest.mark.slow
def test_lanes_run_each_seed_in_order_between_the_global_stages(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    stages = fake_project(tmp_path, [0, 1, 2], pause=0.3)
    assert [s.lane_key for s in stages] == [None, 0, 1, 2, 0, 1, 2, None]
    assert stages[1].timing == Path("timings/0/train.json")
    TOOL.check_lanes(tmp_path / "dvc.yaml")
    runner = TOOL.Runner(budget=None, table=tmp_path / "table.txt", header="fake")
    runner.run_all(stages, lanes=2)
    order = starts(tmp_path)
    assert order[0][0] == "prepare" and order[-1][0] == "report"
    for seed in "012":
        kinds = [kind for kind, s, _ in order if s == seed]
        assert kinds == ["train", "probe"]
    assert max(t for _, _, t in order[1:3]) - min(t for _, _, t in order[1:3]) < 0.25  # two lanes started together
    results = {r.stage.name: r for r in runner.results}
    assert all(r.status == "ok" for r in results.values()) and len(results) == 8
    assert {results[f"train@{s}"].lane for s in range(3)} == {1, 2}
    assert results["probe@1"].work == pytest.approx(0.15) and results["probe@1"].startup > 0
    assert results["prepare"].work is None and results["prepare"].wall >= 0.3
    text = (tmp_path / "table.txt").read_text()
    assert "| probe | 3 |" in text and "Per-run stages in 2 lane(s)" in text and "start-up share" in text
    assert "probe 1 done" in capsys.readouterr().out


@pytest.mark.slow
def test_a_stale_timing_file_is_no_work_and_a_failure_stops_the_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    stages = fake_project(tmp_path, [0, 1], fail=True)
    (tmp_path / "timings" / "0").mkdir(parents=True)
    (tmp_path / "timings" / "0" / "fail.json").write_text(json.dumps({"wall_s": 9.0}))
    runner = TOOL.Runner(budget=None, table=None, header="fake")
    runner.run_all(stages, lanes=1)
    status = {r.stage.name: r.status for r in runner.results}
    assert status["prepare"] == "ok" and status["train@0"] == "failed (exit 3)"
    assert all(s.startswith("not run") for name, s in status.items() if name not in ("prepare", "train@0"))
    assert next(r for r in runner.results if r.stage.name == "train@0").work is None
    assert runner.stop == "train@0 failed"


@pytest.mark.slow
def test_the_budget_kills_the_running_stage_and_starts_no_other(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    stages = fake_project(tmp_path, [0, 1], pause=3.0)
    runner = TOOL.Runner(budget=1.0, table=None, header="fake")
    runner.run_all(stages, lanes=2)
    status = [r.status for r in runner.results]
    assert status[0] == "killed: budget spent" and runner.stop == "budget spent"
    assert all(s == "not run: budget spent" for s in status[1:]) and len(status) == len(stages)
    assert time_of(runner) < 2.5


def time_of(runner) -> float:
    return max(r.started + (r.wall or 0.0) for r in runner.results)


def test_lanes_are_refused_when_a_seed_reads_another_seeds_output(tmp_path: Path) -> None:
    fake_project(tmp_path, [0, 1])
    spec = yaml.safe_load((tmp_path / "dvc.yaml").read_text())
    spec["stages"]["probe"]["deps"].append("out/0/train")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(SystemExit, match="probe@1 .seed 1. reads out/0/train"):
        TOOL.check_lanes(tmp_path / "dvc.yaml")
    TOOL.check_lanes(REPO / "dvc.yaml")  # the real pipeline's seeds are independent


# --- tools/compare_runs.py ---------------------------------------------------------------------


def estimate(mean: float | None, low: float | None, high: float | None, n: int = 3, censored: int = 0) -> dict:
    return {"mean": mean, "std": 0.1, "ci_low": low, "ci_high": high, "n": n, "censored": censored}


def test_compare_runs_says_which_means_lie_inside_the_first_runs_interval(tmp_path: Path, capsys) -> None:
    first = {
        "variants": {
            "mlp": {
                "val_acc": estimate(0.89, 0.88, 0.90),
                "gap": estimate(0.04, 0.03, 0.05),
                "sigma_star_filter_frozen_drop_1pp": estimate(0.3, 0.2, 0.4, censored=1),
                "lambda_max": estimate(5.0, None, None, n=1),  # one seed: no interval
                "n_parameters": estimate(1e5, 1e5, 1e5),  # not a headline measure
            },
            "cnn": {"val_acc": estimate(0.92, 0.91, 0.93), "trace": estimate(40.0, 10.0, 80.0)},
        }
    }
    second = {
        "variants": {
            "mlp": {
                "val_acc": estimate(0.895, 0.0, 1.0),
                "gap": estimate(0.06, 0.0, 1.0),
                "sigma_star_filter_frozen_drop_1pp": estimate(0.4, 0.0, 1.0),
                "lambda_max": estimate(5.1, 0.0, 9.0),
                "n_parameters": estimate(7.0, 7.0, 7.0),
            },
            "cnn": {"val_acc": estimate(0.925, 0.9, 0.95)},  # trace missing
        }
    }
    rows = COMPARE.compare(first, second)
    verdicts = {(r["variant"], r["measure"]): r["inside"] for r in rows}
    assert verdicts == {
        ("mlp", "val_acc"): True,
        ("mlp", "gap"): False,
        ("mlp", "sigma_star_filter_frozen_drop_1pp"): True,  # the interval's ends count as inside
        ("mlp", "lambda_max"): None,
        ("cnn", "val_acc"): True,
        ("cnn", "trace"): None,
    }
    paths = [tmp_path / "cpu.json", tmp_path / "gpu.json"]
    for path, study in zip(paths, (first, second), strict=True):
        path.write_text(json.dumps(study))
    monkeypatch_argv = ["compare_runs.py", *map(str, paths)]
    sys.argv, saved = monkeypatch_argv, sys.argv
    try:
        COMPARE.main()
    finally:
        sys.argv = saved
    out = capsys.readouterr().out
    assert "3 of 4 second-run means lie inside the first run's 95 % CI (2 measures" in out
    assert "| mlp | gap | 0.04 [0.03, 0.05] (3) | 0.06 (3) | **no** |" in out
    assert "(3, 1 censored)" in out and "| cnn | trace |" in out and "| missing |" in out and "| no CI |" in out
    assert "n_parameters" not in out
