"""The study matrix end to end without running it: the matrix stages of pipeline/<kind>/dvc.yaml against
params.yaml and the library's file layout (``stage.RunPaths``), what each stage's params make rerun, the torch-free
stage plumbing, and the fixed probe subsets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, run_command
from landscape.errors import StudyError
from landscape.study import shape
from landscape.study.data import Dataset, Split
from landscape.study.inputs import probe_data
from landscape.study.params import Samples, load_params
from landscape.study.stage import PROBE_KINDS, RunPaths, Timer, parse_seed, run_stage, stage_dirs

PARAMS = load_params(REPO / "params.yaml")
sys.path.insert(0, str(REPO / "tools"))
from stage_deps import stage_bodies  # noqa: E402

DVC_YAML = yaml.safe_load((REPO / "dvc.yaml").read_text())  # the root file: download, aggregate, plots, metrics
KIND_FILES = {kind: REPO / shape.kind_file(kind) for kind in shape.kinds(REPO)}
STAGES = stage_bodies()  # every dvc.yaml's stages (tools/stage_deps.py)
PER_RUN = ("train_mlp", "train_cnn", "robustness", "slice", "curvature")
PROBES = ("robustness", "slice", "curvature")  # the probe stage kinds: one stage per variant, over the seeds

EXPANDED = {s.address.split(":")[-1]: s.body for s in shape.stages(REPO)}  # DVC's stages, by bare name


def paths(entries: list) -> set[str]:
    return {next(iter(e)) if isinstance(e, dict) else e for e in entries}


def options(entries: list) -> dict[str, dict]:
    return {next(iter(e)): next(iter(e.values())) if isinstance(e, dict) else {} for e in entries}


# --- dvc.yaml's matrix against params.yaml ----------------------------------------------------


def test_matrix_groups_expand_over_the_study_section():
    """Training per variant x seed; robustness and curvature per variant of study.variants, slice per variant of
    study.factorial (each probe stage loops over study.seeds itself)."""
    assert STAGES["train_mlp"]["matrix"] == {"variant": "${study.train_mlp}", "seed": "${study.seeds}"}
    assert STAGES["train_cnn"]["matrix"] == {"variant": "${study.train_cnn}", "seed": "${study.seeds}"}
    for probe in ("robustness", "curvature"):
        assert STAGES[probe]["matrix"] == {"variant": "${study.variants}"}, probe
    assert STAGES["slice"]["matrix"] == {"variant": "${study.factorial}"}
    for name in ("download", "aggregate", "plots"):
        assert "matrix" not in STAGES[name] and "foreach" not in STAGES[name]


def test_each_per_run_stage_kind_has_its_own_dvc_yaml_run_from_the_root():
    """One dvc.yaml (so one dvc.lock) per per-run stage kind keeps DVC's lock update after each stage small
    (bench/README.md); each of its stages runs in the repository root and reads params.yaml for its matrix."""
    for kind, path in KIND_FILES.items():
        spec = yaml.safe_load(path.read_text())
        assert spec["vars"] == ["../../params.yaml"], kind
        for name, body in spec["stages"].items():
            assert body["wdir"] == "../..", name
            assert name.startswith(kind) and "matrix" in body, name
    assert set(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]) == {"download", "aggregate", "plots"}
    assert sorted(KIND_FILES) == sorted(("train", *PROBES))  # the kinds: training and each probe


def test_every_variant_and_seed_gets_training_and_every_variant_its_probes():
    factorial = set(PARAMS.study.factorial)
    assert factorial and factorial < set(PARAMS.study.variants)
    for v in PARAMS.study.variants:
        family = PARAMS.variant(v).family
        for s in PARAMS.study.seeds:
            assert f"train_{family}@{v}-{s}" in EXPANDED
            assert f"train_{'cnn' if family == 'mlp' else 'mlp'}@{v}-{s}" not in EXPANDED
        for probe in PROBES:
            name = f"{probe}@{v}"
            if probe == "slice" and v not in factorial:  # a regime cell: no slice, surface or path
                assert name not in EXPANDED
                continue
            assert EXPANDED[name]["cmd"] == f"PYTHONPATH=src python stages/{probe}.py {v}"
            assert not [n for n in EXPANDED if n.startswith(f"{probe}@{v}-")]  # no per-seed probe stage
    per_run = [n for n in EXPANDED if "@" in n]
    n_probes = 2 * len(PARAMS.study.variants) + len(factorial)
    assert len(per_run) == len(PARAMS.study.variants) * len(PARAMS.study.seeds) + n_probes


@pytest.mark.parametrize("variant", ["mlp", "cnn_nobn", "fit_b512_x1"])
def test_stage_outputs_are_the_library_run_paths(variant):
    """dvc.yaml declares exactly the files the train stage writes through ``stage.RunPaths`` and the folders a
    probe stage owns (``stage.stage_dirs``), and every file a probe stage writes for any seed lies in one of them."""
    family = PARAMS.variant(variant).family
    for seed in PARAMS.study.seeds:
        run = RunPaths(variant, seed)
        train = {run.model, run.initial, run.epoch1, run.metrics("train"), run.plot("history"), run.plot("sharpness")}
        body = EXPANDED[f"train_{family}@{variant}-{seed}"]
        assert paths(body["outs"]) == {str(p) for p in train | {run.timing("train")}}
    kinds = [k for k in PROBES if k != "slice" or variant in PARAMS.study.factorial]
    assert kinds == (list(PROBES) if not PARAMS.variant(variant).regime else ["robustness", "curvature"])
    for kind in kinds:
        body = EXPANDED[f"{kind}@{variant}"]
        owned = {str(d) for d in stage_dirs(variant, kind)}
        assert paths(body["outs"]) == owned, kind
        assert f"models/{variant}" in body["deps"], kind  # every seed's checkpoints, model.pt and init.pt
        for seed in PARAMS.study.seeds:
            run = RunPaths(variant, seed)
            written = [run.metrics(p) for p in PROBE_KINDS[kind]] + [run.timing(kind)]
            written += [run.plot(p) for p in PROBE_KINDS[kind] if kind != "curvature"]
            for path in written:
                assert any(Path(d) in path.parents for d in owned), (kind, path)
            assert str(run.model).startswith(f"models/{variant}/") and str(run.initial).startswith(f"models/{variant}/")


def test_study_outputs_are_in_git_and_per_run_outputs_in_the_cache():
    """A `cache: false` output keeps its stage out of DVC's run-cache, through which the runs made on several
    machines come together (README "Several machines", tests/test_shards.py); aggregate and plots run where they
    are collected, and their outputs are in git."""
    for name, body in EXPANDED.items():
        for path, opts in options(body.get("outs", []) + body.get("metrics", [])).items():
            in_git = name in ("aggregate", "plots")
            assert opts.get("cache", True) is (not in_git), f"{name}: {path}"


def test_only_the_study_headline_is_a_declared_metric():
    """Per-run files, timings and the full study table are plain outputs, so `dvc metrics diff` shows the study's
    headline results only."""
    assert DVC_YAML["metrics"] == ["metrics/headline.json"]
    declared = {name: paths(body.get("metrics", [])) for name, body in EXPANDED.items() if body.get("metrics")}
    assert declared == {"aggregate": {"metrics/headline.json"}}
    assert "metrics/study.json" in paths(EXPANDED["aggregate"]["outs"])


def params_of(name: str) -> list[str]:
    return [p if isinstance(p, str) else next(iter(p)) for p in STAGES[name].get("params", [])]


@pytest.mark.parametrize("name", PER_RUN)
def test_per_run_stages_do_not_depend_on_the_matrix_itself(name):
    """Adding a variant must rerun nothing that exists: no per-run stage reads all of `study` or all `variants`;
    a probe stage reads study.seeds (it probes every seed: adding one reruns it), training no `study` key at all."""
    study_keys = [key for key in params_of(name) if key.split(".")[0] == "study"]
    assert study_keys == ([] if name.startswith("train_") else ["study.seeds"]), name
    for key in params_of(name):
        assert key != "variants", key
    assert "variants.${item.variant}" in params_of(name)


def test_training_reads_no_probe_section_and_probes_read_no_training_conditions():
    """A probe's section reruns that probe, never training; `train:` reruns training (and, through the model, the
    probes), and a probe reads no `train` key: where it evaluates (device, batch size, threads) is `runtime:`,
    which training reads too. One family's widths never rerun the other family; both read `dropout:`. The slice
    stage also runs the path probe, so it reads `path:` too."""
    probe_sections = {"probes", "robustness", "slice", "path", "curvature"}
    own = {"robustness": {"robustness"}, "slice": {"slice", "path"}, "curvature": {"curvature"}}
    for group in ("train_mlp", "train_cnn"):
        assert not {k.split(".")[0] for k in params_of(group)} & probe_sections, group
        assert {"train", "runtime", "dropout"} <= set(params_of(group)), group
    assert not {k.split(".")[0] for k in params_of("train_cnn")} & {"mlp"}
    assert not {k.split(".")[0] for k in params_of("train_mlp")} & {"cnn"}
    for probe in PROBES:
        keys = params_of(probe)
        assert own[probe] <= set(keys) and "runtime" in keys, probe
        assert not {k.split(".")[0] for k in keys} & {"train", "mlp", "cnn", "dropout"}
        others = probe_sections - own[probe] - {"probes"}
        assert not {k.split(".")[0] for k in keys} & others, probe


def test_dvc_data_plots_colour_every_default_variant():
    """Each data plot reads a long-format study CSV through the by_variant template, whose colour scale
    names every factorial cell of the default study (the only variants the study CSVs hold, so A and B keep their
    colours in every plot), and every variant it names is one of params.yaml."""
    template = json.loads((REPO / ".dvc" / "plots" / "by_variant.json").read_text())
    assert template["encoding"]["color"]["field"] == "variant"
    domain = set(template["encoding"]["color"]["scale"]["domain"])
    assert set(PARAMS.study.factorial) <= domain <= set(PARAMS.variants)
    for plot in DVC_YAML["plots"]:
        if isinstance(plot, dict):
            (spec,) = plot.values()
            assert spec["template"] == "by_variant", spec["title"]
            assert all(path.startswith("plots/study/") for path in spec["y"]), spec["title"]


# --- stage plumbing (torch-free) ---------------------------------------------------------------


def test_parse_seed():
    assert parse_seed("3") == 3
    with pytest.raises(StudyError, match="'three'"):
        parse_seed("three")


def test_run_paths_layout():
    """Training's files in <root>/<variant>/<seed>/; a probe's in its stage kind's folder <root>/<variant>/<kind>/
    <seed>/ (the path probe is the slice stage's); a probe stage owns <root>/<variant>/<kind> in each output root."""
    run = RunPaths("mlp_bn", 2)
    assert run.model == Path("models/mlp_bn/2/model.pt")
    assert run.initial == Path("models/mlp_bn/2/init.pt")
    assert run.epoch1 == Path("models/mlp_bn/2/epoch1.pt")
    assert run.metrics("train") == Path("metrics/runs/mlp_bn/2/train.json")
    assert run.plot("history") == Path("plots/runs/mlp_bn/2/history.csv")
    assert run.timing("train") == Path("timings/mlp_bn/2/train.json")
    assert run.metrics("robustness") == Path("metrics/runs/mlp_bn/robustness/2/robustness.json")
    assert run.plot("robustness") == Path("plots/runs/mlp_bn/robustness/2/robustness.csv")
    assert run.timing("robustness") == Path("timings/mlp_bn/robustness/2/robustness.json")
    assert run.metrics("slice") == Path("metrics/runs/mlp_bn/slice/2/slice.json")
    assert run.plot("surface") == Path("plots/runs/mlp_bn/slice/2/surface.csv")
    assert run.metrics("path") == Path("metrics/runs/mlp_bn/slice/2/path.json")
    assert run.plot("path") == Path("plots/runs/mlp_bn/slice/2/path.csv")
    assert run.timing("slice") == Path("timings/mlp_bn/slice/2/slice.json")
    assert run.metrics("curvature") == Path("metrics/runs/mlp_bn/curvature/2/curvature.json")
    assert run.timing("curvature") == Path("timings/mlp_bn/curvature/2/curvature.json")
    assert stage_dirs("mlp_bn", "slice") == [
        Path("metrics/runs/mlp_bn/slice"),
        Path("plots/runs/mlp_bn/slice"),
        Path("timings/mlp_bn/slice"),
    ]
    assert stage_dirs("cnn", "curvature") == [Path("metrics/runs/cnn/curvature"), Path("timings/cnn/curvature")]
    assert sorted(PROBE_KINDS) == sorted(PROBES) and PROBE_KINDS["slice"] == ("slice", "surface", "path")


def stage_exit(monkeypatch, main, *argv: str) -> int:
    monkeypatch.setattr(sys, "argv", ["stages/x.py", *argv])
    with pytest.raises(SystemExit) as stop:
        run_stage(main)
    return stop.value.code


def test_run_stage_turns_user_errors_into_exit_status_2(monkeypatch, capsys):
    def main(variant: str, seed: str) -> None:
        raise StudyError(f"unknown variant '{variant}'")

    assert stage_exit(monkeypatch, main, "resnet", "0") == 2
    assert capsys.readouterr().err == "error: unknown variant 'resnet'\n"
    assert stage_exit(monkeypatch, main, "mlp") == 2
    assert "wrong arguments ['mlp']" in capsys.readouterr().err


def test_run_stage_on_interrupt_and_success(monkeypatch, capsys):
    def interrupted() -> None:
        raise KeyboardInterrupt

    assert stage_exit(monkeypatch, interrupted) == 130
    assert "interrupted" in capsys.readouterr().err
    calls = []
    monkeypatch.setattr(sys, "argv", ["stages/x.py", "cnn", "1"])
    run_stage(lambda variant, seed: calls.append((variant, seed)))
    assert calls == [("cnn", "1")]


def test_run_stage_lets_bugs_through(monkeypatch):
    def buggy() -> None:
        raise ZeroDivisionError

    monkeypatch.setattr(sys, "argv", ["stages/x.py"])
    with pytest.raises(ZeroDivisionError):
        run_stage(buggy)


def test_timer_writes_wall_time_and_peak_memory(tmp_path):
    timing = Timer().write(tmp_path / "timings" / "mlp" / "0" / "train.json")
    assert set(timing) == {"wall_s", "peak_rss_mb"} and timing["wall_s"] >= 0 and timing["peak_rss_mb"] > 0
    assert (tmp_path / "timings" / "mlp" / "0" / "train.json").is_file()


def test_stage_plumbing_and_the_torch_free_stages_do_not_import_torch():
    code = (
        "import sys; sys.path.insert(0, 'stages'); "
        "import landscape.study.stage, landscape.study.fetch, landscape.study.params, download, aggregate, plots; "
        "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    )
    assert run_command([sys.executable, "-c", code], REPO).stdout.strip() == "[]"


# --- the fixed probe subsets -------------------------------------------------------------------


def numbered(n: int, offset: int) -> Split:
    """Images whose first pixel is their index, so subsets can be identified."""
    x = torch.zeros(n, 1, 28, 28)
    x[:, 0, 0, 0] = torch.arange(offset, offset + n, dtype=torch.float32)
    return Split(x, torch.arange(n) % 10)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return Dataset(numbered(300, 0), numbered(100, 1000), numbered(50, 2000), 0.0, 1.0)


def ids(split: Split) -> list[int]:
    return split.x[:, 0, 0, 0].long().tolist()


def test_probe_subsets_are_fixed_sized_and_drawn_from_the_right_split(dataset):
    data = probe_data(Samples(train=40, val=30, bn=20), PARAMS, dataset)
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 40, "val": 30}
    assert len(data.bn_data) == 20 and data.batch_size == PARAMS.runtime.eval_batch_size
    assert all(0 <= i < 300 for i in ids(data.splits["train"]) + ids(data.bn_data))
    assert all(1000 <= i < 1100 for i in ids(data.splits["val"]))
    assert len(set(ids(data.splits["train"]))) == 40
    again = probe_data(Samples(train=40, val=30, bn=20), PARAMS, dataset)
    assert ids(again.splits["train"]) == ids(data.splits["train"]) and ids(again.bn_data) == ids(data.bn_data)


def test_probe_subsets_are_shared_between_probes_nested_by_size_and_skip_empty_splits(dataset):
    """One permutation per part: equal sizes give the same images in every probe (one Hessian loss for slice,
    curvature and path), a smaller subset is the prefix of a larger one, and the parts differ."""
    a = probe_data(Samples(train=40, val=30, bn=40), PARAMS, dataset)
    b = probe_data(Samples(train=40, val=0, bn=20), PARAMS, dataset)
    c = probe_data(Samples(train=80, val=0, bn=20), PARAMS, dataset)
    assert set(b.splits) == {"train"}
    assert ids(a.splits["train"]) == ids(b.splits["train"]) == ids(c.splits["train"])[:40]
    assert ids(b.bn_data) == ids(a.bn_data)[:20]
    assert ids(a.splits["train"]) != ids(a.bn_data)


def test_variants_of_one_family_share_their_random_draws():
    """Common random numbers: the factorial's same-shape variants are probed along the same directions."""
    families = {v: PARAMS.draw_family(v) for v in PARAMS.study.variants}
    assert len({families[v] for v in PARAMS.study.train_mlp}) == 1
    assert len({families[v] for v in PARAMS.study.train_cnn}) == 1
    assert families["mlp"] != families["cnn"]
