"""tools/run_stages.py: the real pipeline's stages as DVC resolves them (landscape.study.shape), in a runnable order,
and a tiny one's; its plans, lanes, budget and per-stage timing; tools/compare_runs.py; tools/stage_times.py."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from conftest import DVC, REPO, run_command
from landscape.study import shape


def load_tool(name: str = "run_stages"):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # a dataclass in the tool looks its module up there
    spec.loader.exec_module(module)
    return module


TOOL = load_tool()
COMPARE = load_tool("compare_runs")
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def out_paths(body: dict) -> list[str]:
    entries = body.get("outs", []) + body.get("metrics", []) + body.get("plots", [])
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries]


def dvc_project(root: Path, files: dict[str, dict]) -> Path:
    """A DVC project (no git) at ``root`` with these dvc.yaml files (path relative to root -> contents)."""
    from dvc.repo import Repo

    Repo.init(str(root), no_scm=True).close()
    for rel, spec in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(yaml.safe_dump(spec, sort_keys=False))
    return root


def per_kind(stages: dict) -> dict:
    """A pipeline/<kind>/dvc.yaml as this study writes one: run from the root, params.yaml's keys in its vars."""
    return {"vars": ["../../params.yaml"], "stages": {n: {"wdir": "../..", **b} for n, b in stages.items()}}


def assert_in_dependency_order(resolved: list) -> int:
    """Every stage comes after each stage that writes one of its deps, a path inside one, or the directory holding
    one; returns how many such pairs there were."""
    position = {r.address: i for i, r in enumerate(resolved)}
    checked = 0
    for r in resolved:
        for dep in r.body.get("deps", []):
            dep = dep.rstrip("/")
            for other in resolved:
                related = [o for o in out_paths(other.body) if o == dep or o.startswith(dep + "/") or
                           dep.startswith(o.rstrip("/") + "/")]  # fmt: skip
                if related and other is not r:
                    assert position[other.address] < position[r.address], f"{r.address} runs before {other.address}"
                    checked += 1
    return checked


REAL = shape.stages(REPO)  # DVC's stages of the real pipeline, in run_stages' order
REAL_STAGES = TOOL.stages_of(REPO)


def test_the_real_stages_are_every_run_of_every_kind_with_its_command() -> None:
    """Training is one stage per variant and seed; each probe kind one stage per variant (robustness and curvature
    over study.variants, slice over study.factorial), whose cmd names the variant only."""
    names = [s.name for s in REAL_STAGES]
    assert names[0] == "download" and names[-2:] == ["aggregate", "plots"]
    assert "pipeline/slice/dvc.yaml:slice@mlp" in names  # a per-kind file's stage, named as DVC names it
    commands = {name.split(":")[-1]: s.cmd for name, s in zip(names, REAL_STAGES, strict=True)}
    study = PARAMS["study"]
    assert shape.kinds(REPO) == ["curvature", "robustness", "slice", "train"]
    over = {"robustness": study["variants"], "curvature": study["variants"], "slice": study["factorial"]}
    for seed in study["seeds"]:
        for family in ("mlp", "cnn"):
            for variant in study[f"train_{family}"]:
                cmd = f"PYTHONPATH=src python stages/train.py {variant} {seed}"
                assert commands[f"train_{family}@{variant}-{seed}"] == cmd
    for probe, variants in over.items():
        for variant in variants:
            assert commands[f"{probe}@{variant}"] == f"PYTHONPATH=src python stages/{probe}.py {variant}"
    assert not [n for n in commands if n.startswith("slice@") and n.split("@")[1] not in study["factorial"]]
    n_train = len(study["variants"]) * len(study["seeds"])
    n_probes = sum(len(v) for v in over.values())
    assert len(names) == 1 + n_train + n_probes + 2  # download, training, the probes, aggregate, plots
    assert "${" not in "".join(commands.values())
    kinds = {s.name: s.kind for s in REAL_STAGES}
    assert kinds["pipeline/train/dvc.yaml:train_cnn@cnn-0"] == "train" and kinds["download"] == "download"
    assert kinds["pipeline/curvature/dvc.yaml:curvature@cnn"] == "curvature"
    assert {s.lane_key for s in REAL_STAGES} == {None, *study["variants"]}  # a lane is a variant
    assert {s.wdir for s in REAL_STAGES} == {"."}
    timing = {s.name.split(":")[-1]: s.timing for s in REAL_STAGES}
    assert timing["train_cnn@cnn-0"] == Path("timings/cnn/0/train.json")
    assert timing["slice@mlp"] == Path("timings/mlp/slice")  # a probe stage's folder: one file per seed
    assert timing["download"] is None


def test_a_cmd_runs_with_its_variables_and_this_python() -> None:
    """A stage cmd's leading NAME=value words are its environment, as in the shell DVC runs it in."""
    assert TOOL.command("PYTHONPATH=src python stages/train.py mlp 0") == (
        {"PYTHONPATH": "src"},
        [sys.executable, "stages/train.py", "mlp", "0"],
    )
    assert TOOL.command("A=1 B='x y' echo C=2") == ({"A": "1", "B": "x y"}, ["echo", "C=2"])


def test_real_stages_run_after_the_stages_whose_outputs_they_read() -> None:
    assert [r.address for r in REAL] == [s.name for s in REAL_STAGES]
    produced = {path for r in REAL for path in out_paths(r.body)}
    assert "models/cnn/0/init.pt" in produced and "metrics/study.json" in produced
    assert "metrics/runs/cnn/curvature" in produced and "plots/runs/mlp/slice" in produced
    assert assert_in_dependency_order(REAL) > 100
    for r in REAL:
        assert "${" not in yaml.safe_dump(r.body), r.address


def test_every_run_writes_its_own_files() -> None:
    outs = [path for r in REAL for path in r.outs]
    assert len(outs) == len(set(outs)), "two stages write the same path"


def test_a_tiny_pipeline_is_expanded_resolved_and_ordered_by_its_deps(tmp_path: Path) -> None:
    """Stages listed before the stages whose outputs they read run after them; foreach and matrix items become the
    stage names, their references resolve from the item and params.yaml, and a per-kind file's stages are its kind."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"models": ["a", "b"], "train": {"epochs": 3}}))
    root_stages = {
        "report": {"cmd": "python r.py", "deps": ["out"]},
        "one": {"foreach": "${models}", "do": {"cmd": "python t.py ${item} ${train.epochs}", "outs": ["w/${item}"]}},
    }
    fit = {"fit": {"matrix": {"variant": ["x"], "seed": [1, 2]}, "cmd": "echo ${item.variant}/${item.seed}",
                   "deps": ["w"], "outs": ["out/${item.seed}"]}}  # fmt: skip
    dvc_project(tmp_path, {"dvc.yaml": {"stages": root_stages}, "pipeline/fit/dvc.yaml": per_kind(fit)})
    stages = TOOL.stages_of(tmp_path)
    assert [(s.name, s.kind, s.cmd, s.lane_key) for s in stages] == [
        ("one@a", "one@a", "python t.py a 3", None),
        ("one@b", "one@b", "python t.py b 3", None),
        ("pipeline/fit/dvc.yaml:fit@x-1", "fit", "echo x/1", "x"),  # a lane is the matrix item's variant
        ("pipeline/fit/dvc.yaml:fit@x-2", "fit", "echo x/2", "x"),
        ("report", "report", "python r.py", None),
    ]
    assert assert_in_dependency_order(shape.stages(tmp_path)) == 2 * 2 + 2
    assert shape.kinds(tmp_path) == ["fit"] and shape.address("fit@x-1", tmp_path) == stages[2].name
    assert shape.kind("fit@x-1", tmp_path) == "fit" and shape.kind("report", tmp_path) is None


@pytest.mark.slow
def test_stage_names_are_the_ones_dvc_lists(tmp_path: Path) -> None:
    """`dvc stage list` over the real dvc.yaml files and params.yaml names exactly the stages the tool runs."""
    for path in [*shape.dvc_files(REPO), REPO / "params.yaml"]:
        (tmp_path / path.relative_to(REPO)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, tmp_path / path.relative_to(REPO))
    run_command([*DVC, "init", "--no-scm", "-q"], tmp_path)
    listed = run_command([*DVC, "stage", "list", "--all", "--name-only"], tmp_path).stdout.split()
    assert sorted(listed) == sorted(s.name for s in REAL_STAGES)


@pytest.mark.slow
def test_a_plan_runs_the_same_stages_where_dvc_is_missing(tmp_path: Path) -> None:
    """--write-plan keeps DVC's stages for a machine without DVC; --plan runs them without importing DVC."""
    stages = fake_project(tmp_path, ["a", "b"])
    TOOL.write_plan(stages, tmp_path / "plan.json")
    assert TOOL.read_plan(tmp_path / "plan.json") == stages
    runner = (
        "import runpy, sys; sys.modules['dvc'] = None; "  # import dvc fails
        f"sys.argv = ['run_stages.py', '--plan', 'plan.json', '--only', 'prepare', '--only', 'train']; "
        f"runpy.run_path({str(REPO / 'tools' / 'run_stages.py')!r}, run_name='__main__')"
    )
    done = run_command([sys.executable, "-c", runner], tmp_path)
    assert "train b done" in done.stdout and "pipeline/probe/dvc.yaml:probe@a" in done.stdout
    assert [line.split()[1] for line in (tmp_path / "order.txt").read_text().splitlines()] == ["prepare", "train",
                                                                                               "train"]  # fmt: skip


def test_stage_times_table_medians_over_seeds(tmp_path) -> None:
    module = load_tool("stage_times")
    for seed, wall in ((0, 10.0), (1, 20.0)):
        path = tmp_path / "cnn" / str(seed) / "train.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"wall_s": wall, "peak_rss_mb": 900.0 + seed}))
    text = module.table(module.collect(tmp_path))
    assert "| variant | train | robustness | slice | curvature | one run |" in text
    assert "| cnn | 15.0 s | – | – | – | 15.0 s | – |" in text  # no probe, no lambda_max during training
    assert "2 stage runs, 0.5 min" in text and "901 MB" in text


def test_stage_times_sum_a_run_by_seed_when_a_stage_is_missing(tmp_path) -> None:
    """A whole run is its seed's stages summed: with seed 0's robustness file missing, the runs are 10, 120 and
    230 s (median 120), not the lists summed by position (110, 220, 30: median 110). Training's timings are
    <variant>/<seed>/train.json, a probe stage's <variant>/<kind>/<seed>/<kind>.json."""
    module = load_tool("stage_times")
    walls = {"train": {0: 10.0, 1: 20.0, 2: 30.0}, "robustness": {1: 100.0, 2: 200.0}}
    for stage, by_seed in walls.items():
        for seed, wall in by_seed.items():
            folder = tmp_path / "cnn" / str(seed) if stage == "train" else tmp_path / "cnn" / stage / str(seed)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{stage}.json").write_text(json.dumps({"wall_s": wall, "peak_rss_mb": 900.0}))
    row = next(x for x in module.table(module.collect(tmp_path)).splitlines() if x.startswith("| cnn |"))
    assert row == "| cnn | 20.0 s | 150.0 s | – | – | 120.0 s | – |"


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
kind, variant, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
with open("order.txt", "a") as f:
    f.write(f"start {kind} {variant} {time.time()}\\n")
time.sleep(pause)
if kind == "fail":
    sys.exit(3)
if kind == "probe":  # a probe stage: one timing file per seed, in the folder it owns
    os.makedirs(f"timings/{variant}/probe", exist_ok=True)
    for seed in (0, 1):
        with open(f"timings/{variant}/probe/{seed}.json", "w") as f:
            json.dump({"wall_s": pause / 4}, f)
elif variant != "-":
    os.makedirs(f"timings/{variant}", exist_ok=True)
    with open(f"timings/{variant}/{kind}.json", "w") as f:
        json.dump({"wall_s": pause / 2}, f)
print(f"{kind} {variant} done")
"""


def fake_project(root: Path, variants: list[str], pause: float = 0.05, fail: bool = False) -> list:
    """A DVC project of fake stages, laid out as the study's: prepare, then train and probe per variant (probe reads
    train's output; its timings are a folder of one file per seed) in pipeline/train/ and pipeline/probe/, then
    report."""
    (root / "stage.py").write_text(FAKE_STAGE)
    (root / "params.yaml").write_text(yaml.safe_dump({"variants": variants, "runtime": {"device": "cpu"}}))

    def per_variant(kind: str, deps: list[str], timing: str, script: str | None = None) -> dict:
        return {
            "matrix": {"variant": "${variants}"},
            "cmd": f"python stage.py {script or kind} ${{item.variant}} {pause}",
            "deps": deps,
            "outs": [f"out/${{item.variant}}/{kind}", timing],
        }

    stages = {
        "prepare": {"cmd": f"python stage.py prepare - {pause}", "outs": ["data"]},
        "report": {"cmd": f"python stage.py report - {pause}", "deps": ["out"]},
    }
    train = per_variant("train", ["data"], "timings/${item.variant}/train.json", "fail" if fail else None)
    probe = per_variant("probe", ["data", "out/${item.variant}/train"], "timings/${item.variant}/probe")
    dvc_project(
        root,
        {
            "dvc.yaml": {"stages": stages},
            "pipeline/train/dvc.yaml": per_kind({"train": train}),
            "pipeline/probe/dvc.yaml": per_kind({"probe": probe}),
        },
    )
    return TOOL.stages_of(root)


TRAIN, PROBE = "pipeline/train/dvc.yaml:train", "pipeline/probe/dvc.yaml:probe"  # the fake stages' addresses


def starts(root: Path) -> list[tuple[str, str, float]]:
    lines = (root / "order.txt").read_text().splitlines()
    return [(kind, seed, float(t)) for _, kind, seed, t in (line.split() for line in lines)]


@pytest.mark.slow
def test_lanes_run_each_variant_in_order_between_the_global_stages(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    stages = fake_project(tmp_path, ["a", "b", "c"], pause=0.3)
    # a variant's probe right after its training
    assert [s.lane_key for s in stages] == [None, "a", "a", "b", "b", "c", "c", None]
    assert stages[1].timing == Path("timings/a/train.json") and stages[2].timing == Path("timings/a/probe")
    TOOL.check_lanes(stages)
    runner = TOOL.Runner(budget=None, table=tmp_path / "table.txt", header="fake")
    runner.run_all(stages, lanes=2)
    order = starts(tmp_path)
    assert order[0][0] == "prepare" and order[-1][0] == "report"
    for variant in "abc":
        kinds = [kind for kind, v, _ in order if v == variant]
        assert kinds == ["train", "probe"]
    assert max(t for _, _, t in order[1:3]) - min(t for _, _, t in order[1:3]) < 0.25  # two lanes started together
    results = {r.stage.name: r for r in runner.results}
    assert all(r.status == "ok" for r in results.values()) and len(results) == 8
    assert {results[f"{TRAIN}@{v}"].lane for v in "abc"} == {1, 2}
    assert results[f"{TRAIN}@b"].work == pytest.approx(0.15) and results[f"{TRAIN}@b"].startup > 0
    assert results[f"{PROBE}@b"].work == pytest.approx(2 * 0.075)  # its folder's two per-seed files, summed
    assert results["prepare"].work is None and results["prepare"].wall >= 0.3
    text = (tmp_path / "table.txt").read_text()
    assert "| probe | 3 |" in text and "Per-run stages in 2 lane(s)" in text and "start-up share" in text
    assert "probe b done" in capsys.readouterr().out


@pytest.mark.slow
def test_a_stale_timing_file_is_no_work_and_a_failure_stops_the_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    stages = fake_project(tmp_path, ["a", "b"], fail=True)
    (tmp_path / "timings" / "a").mkdir(parents=True)
    (tmp_path / "timings" / "a" / "train.json").write_text(json.dumps({"wall_s": 9.0}))  # from an earlier run
    runner = TOOL.Runner(budget=None, table=None, header="fake")
    runner.run_all(stages, lanes=1)
    status = {r.stage.name: r.status for r in runner.results}
    assert status["prepare"] == "ok" and status[f"{TRAIN}@a"] == "failed (exit 3)"
    assert all(s.startswith("not run") for name, s in status.items() if name not in ("prepare", f"{TRAIN}@a"))
    assert next(r for r in runner.results if r.stage.name == f"{TRAIN}@a").work is None
    assert runner.stop == f"{TRAIN}@a failed"


def test_a_probe_stages_work_is_its_folders_files_all_from_this_run(tmp_path: Path) -> None:
    """A probe stage's timings are a folder of one file per seed: its work is their sum, and none when one of them
    is older than the stage's process (a seed it did not rerun) or the folder is empty."""
    stage = TOOL.Stage("p@a", "p", "true", ".", "a", tmp_path / "p", ())
    (tmp_path / "p").mkdir()
    assert TOOL.stage_work(stage, 0.0) is None
    for seed, wall in ((0, 1.5), (1, 2.25)):
        (tmp_path / "p" / str(seed)).mkdir()
        (tmp_path / "p" / str(seed) / "p.json").write_text(json.dumps({"wall_s": wall}))
    assert TOOL.stage_work(stage, 0.0) == 3.75
    assert TOOL.stage_work(stage, (tmp_path / "p" / "1" / "p.json").stat().st_mtime + 1) is None


@pytest.mark.slow
def test_the_budget_kills_the_running_stage_and_starts_no_other(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    stages = fake_project(tmp_path, ["a", "b"], pause=3.0)
    runner = TOOL.Runner(budget=1.0, table=None, header="fake")
    runner.run_all(stages, lanes=2)
    status = [r.status for r in runner.results]
    assert status[0] == "killed: budget spent" and runner.stop == "budget spent"
    assert all(s == "not run: budget spent" for s in status[1:]) and len(status) == len(stages)
    assert time_of(runner) < 2.5


def time_of(runner) -> float:
    return max(r.started + (r.wall or 0.0) for r in runner.results)


def test_lanes_are_refused_when_a_variant_reads_another_variants_output(tmp_path: Path) -> None:
    fake_project(tmp_path, ["a", "b"])
    path = tmp_path / "pipeline" / "probe" / "dvc.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["stages"]["probe"]["deps"].append("out/a/train")
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(SystemExit, match=f"{PROBE}@b .variant b. reads an output of {TRAIN}@a .variant a."):
        TOOL.check_lanes(TOOL.stages_of(tmp_path))
    TOOL.check_lanes(REAL_STAGES)  # the real pipeline's variants are independent


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


BREAKDOWN = load_tool("repro_breakdown")


def test_repro_breakdown_splits_each_stage_into_work_start_up_and_dvc(tmp_path: Path) -> None:
    """A hand-made timestamped log of three stages: a training run (its timings file says 10 s of work), a probe
    stage over two seeds (4 + 5 s) and the aggregate (no timings file: its command is all work)."""
    log = tmp_path / "repro.log"
    log.write_text(
        "100.0 START\n"
        "110.0 Running stage 'pipeline/train/dvc.yaml:train_mlp@mlp-0':\n"
        "110.0 > PYTHONPATH=src python stages/train.py mlp 0\n"
        "123.0 mlp seed 0: val acc 0.8\n"
        "123.5 WARNING: 'src/landscape/study/__init__.py' is empty.\n"
        "126.0 Updating lock file 'pipeline/train/dvc.lock'\n"
        "128.0 Running stage 'pipeline/robustness/dvc.yaml:robustness@mlp':\n"
        "128.1 > PYTHONPATH=src python stages/robustness.py mlp\n"
        "133.0 robustness mlp seed 0: 500 rows\n"
        "140.0 robustness mlp seed 1: 500 rows\n"
        "141.0 Updating lock file 'pipeline/robustness/dvc.lock'\n"
        "143.0 Running stage 'aggregate':\n"
        "150.0 aggregate: done\n"
        "151.0 Use `dvc push` to send your updates to remote storage.\n"
    )
    timings = tmp_path / "timings"
    for rel, wall in {"mlp/0/train.json": 10.0, "mlp/robustness/0/robustness.json": 4.0,
                      "mlp/robustness/1/robustness.json": 5.0}.items():  # fmt: skip
        (timings / rel).parent.mkdir(parents=True, exist_ok=True)
        (timings / rel).write_text(json.dumps({"wall_s": wall}))
    lines = BREAKDOWN.read_log(log)
    stages = BREAKDOWN.stage_times(lines, timings, REPO)
    assert [(s.kind, s.command_s, s.work_s, s.dvc_after_s) for s in stages] == [
        ("train", 13.0, 10.0, 5.0),
        ("robustness", 12.0, 9.0, 3.0),
        ("aggregate", 7.0, 7.0, 1.0),
    ]
    text = BREAKDOWN.table(lines, stages)
    assert "| train | 1 | 13 s | 10 s | 3.0 s | 5.0 s |" in text
    # wall 151 - 100 = 51 s, 10 s before the first stage; work 10 + 9 + 7 = 26 s; overhead 25 s = 49.0 %
    assert "wall time 51 s (0.8 min), of it 10 s before the first stage" in text
    assert "overhead 25 s = 49.0 % of the wall time (8.3 s a stage)" in text


def test_repro_breakdown_refuses_a_log_without_timestamps(tmp_path: Path) -> None:
    (tmp_path / "plain.log").write_text("Running stage 'aggregate':\n")
    (tmp_path / "timings").mkdir()
    result = run_command(
        [sys.executable, REPO / "tools/repro_breakdown.py", tmp_path / "plain.log", "--timings", tmp_path / "timings"],
        tmp_path,
        check=False,
    )
    assert result.returncode == 1 and "has no timestamped lines" in result.stderr and "Traceback" not in result.stderr
