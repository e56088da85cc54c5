"""tools/runs_bundle.py: pack the per-run outputs into one file, restore them byte for byte, refuse files that do not
match the locks; and, on the reproduced tiny project, a clone without the DVC cache reruns only aggregate and plots."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from conftest import DVC, REPO, copy_project, run_command

# test_tools.load_tool would do, but importing test_tools resolves the real pipeline (seconds)
_spec = importlib.util.spec_from_file_location("runs_bundle", REPO / "tools" / "runs_bundle.py")
TOOL = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(TOOL)

# Training writes <root>/<variant>/<seed>/<file> (one lock entry a file); a probe stage owns the folder
# <root>/<variant>/<kind> of every seed (one lock entry a folder, hashed as DVC hashes a directory).
FILES = {
    "metrics/runs/mlp/0/train.json": b'{\n  "val_acc": 0.5,\n  "name": "\\u00e9t\\u00e9"\n}\n',
    "metrics/runs/cnn/slice/0/slice.json": '{"note": "caf\u00e9"}'.encode(),
    "metrics/runs/cnn/slice/1/slice.json": b'{"note": "seed 1"}',
    "plots/runs/mlp/0/history.csv": b"epoch,loss\n0,2.3\n1,1.9\n",
    "plots/runs/cnn/slice/0/slice.csv": b"alpha,loss\r\n-1,3.0\r\n0,0.4\r\n",
    "plots/runs/cnn/slice/1/slice.csv": b"alpha,loss\n-1,2.9\n0,0.5\n",
}
PROBE_DIRS = ("metrics/runs/cnn/slice", "plots/runs/cnn/slice")  # the outs of the stage slice@cnn
SLICE_LOCK = "pipeline/slice/dvc.lock:slice@cnn"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def in_probe_dir(rel: str) -> bool:
    return any(rel.startswith(f"{d}/") for d in PROBE_DIRS)


def write_lock(root: Path, files: dict[str, bytes]) -> None:
    """pipeline/train and pipeline/slice dvc.yaml and dvc.lock files in DVC's format recording ``files`` as outputs:
    a training file as one stage's file out (plus a models/ output that the bundle leaves out), the slice folders as
    the folder outs of slice@cnn; and a root dvc.lock whose aggregate records the two directories' hashes."""
    hashes = {rel: md5(data) for rel, data in files.items()}
    for kind in ("train", "slice"):
        (root / "pipeline" / kind).mkdir(parents=True, exist_ok=True)
        (root / "pipeline" / kind / "dvc.yaml").write_text("stages: {}\n")
    trained = sorted((rel, data) for rel, data in files.items() if not in_probe_dir(rel))
    stages = {
        f"train@{n}": {"outs": [{"path": rel, "hash": "md5", "md5": md5(data), "size": len(data)}]}
        for n, (rel, data) in enumerate(trained)
    }
    stages["train@0"]["outs"].append({"path": "models/mlp/0/model.pt", "hash": "md5", "md5": "0" * 32, "size": 1})
    (root / "pipeline/train/dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}, sort_keys=False))
    folders = [{"path": d, "hash": "md5", "md5": TOOL.dir_md5(hashes, d)} for d in PROBE_DIRS]
    probe_lock = {"schema": "2.0", "stages": {"slice@cnn": {"outs": folders}}}
    (root / "pipeline/slice/dvc.lock").write_text(yaml.safe_dump(probe_lock, sort_keys=False))
    deps = [{"path": top, "hash": "md5", "md5": TOOL.dir_md5(hashes, top)} for top in TOOL.RUN_DIRS]
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"aggregate": {"deps": deps}}}))


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


@pytest.fixture
def study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake finished study at ``tmp_path`` (the cwd): FILES, a DVC .gitignore beside one, and locks recording
    FILES."""
    write_files(tmp_path, FILES)
    (tmp_path / "metrics/runs/mlp/0/.gitignore").write_text("/train.json\n")
    write_lock(tmp_path, FILES)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str) -> int:
    return TOOL.main(list(args))


def test_pack_delete_restore_gives_identical_files(study: Path, capsys: pytest.CaptureFixture) -> None:
    assert run("pack") == 0
    bundle = study / TOOL.DEFAULT_BUNDLE
    content = json.loads(bundle.read_text())
    assert content["format"] == 1 and sorted(content["files"]) == sorted(FILES)
    csv = "plots/runs/cnn/slice/0/slice.csv"
    assert content["outs"][csv]["size"] == len(FILES[csv]) and content["outs"][csv]["md5"] == md5(FILES[csv])
    assert content["outs"]["metrics/runs/mlp/0/train.json"]["lock"].startswith("pipeline/train/dvc.lock:train@")
    for rel in FILES:  # a file in a probe stage's folder: the lock of the stage owning the folder
        assert (content["outs"][rel]["lock"] == SLICE_LOCK) == in_probe_dir(rel), rel
    first = bundle.read_bytes()
    assert run("pack") == 0 and bundle.read_bytes() == first  # deterministic
    for top in TOOL.RUN_DIRS:
        shutil.rmtree(study / top)
    capsys.readouterr()
    assert run("restore") == 0
    assert f"restored {len(FILES)} files" in capsys.readouterr().out
    assert {rel: (study / rel).read_bytes() for rel in FILES} == FILES
    assert run("restore") == 0 and "restored 0 files" in capsys.readouterr().out  # already in place
    assert run("check") == 0


def test_pack_refuses_a_tampered_file(study: Path, capsys: pytest.CaptureFixture) -> None:
    (study / "plots/runs/mlp/0/history.csv").write_bytes(b"epoch,loss\n0,2.4\n")
    assert run("pack", "--out", "bundle.json") == 2
    err = capsys.readouterr().err
    assert "plots/runs/mlp/0/history.csv" in err and "pipeline/train/dvc.lock:train@" in err
    assert not (study / "bundle.json").exists()
    assert [p.name for p in study.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_pack_refuses_a_changed_file_in_a_probe_stages_folder(study: Path, capsys: pytest.CaptureFixture) -> None:
    (study / "plots/runs/cnn/slice/1/slice.csv").write_bytes(b"alpha,loss\n-1,2.9\n0,0.6\n")
    assert run("pack") == 2
    err = capsys.readouterr().err
    assert "plots/runs/cnn/slice hashes to" in err and SLICE_LOCK in err
    assert not (study / TOOL.DEFAULT_BUNDLE).exists()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("rm metrics/runs/mlp/0/train.json", "metrics/runs/mlp/0/train.json is missing"),
        ("rm metrics/runs/cnn/slice/1/slice.json", "metrics/runs/cnn/slice hashes to"),  # a seed gone
        ("add metrics/runs/cnn/slice/2/slice.json", "metrics/runs/cnn/slice hashes to"),  # a stale seed left behind
    ],
)
def test_pack_refuses_a_missing_or_extra_file(study: Path, capsys: pytest.CaptureFixture, change, expected) -> None:
    action, rel = change.split()
    if action == "rm":
        (study / rel).unlink()
    else:
        write_files(study, {rel: b"{}"})
    assert run("pack") == 2
    assert expected in capsys.readouterr().err
    assert not (study / TOOL.DEFAULT_BUNDLE).exists()


def test_pack_refuses_a_stray_file(study: Path, capsys: pytest.CaptureFixture) -> None:
    write_files(study, FILES | {"metrics/runs/old/0/train.json": b"{}"})
    assert run("pack") == 2
    err = capsys.readouterr().err
    assert "metrics/runs hashes to" in err and "metrics/runs/old/0/train.json" in err
    assert not (study / TOOL.DEFAULT_BUNDLE).exists()


def test_restore_refuses_to_overwrite_a_different_file(study: Path, capsys: pytest.CaptureFixture) -> None:
    assert run("pack") == 0
    shutil.rmtree(study / "plots/runs")
    (study / "metrics/runs/mlp/0/train.json").write_text("{}\n")
    assert run("restore") == 2
    assert "metrics/runs/mlp/0/train.json exists and differs" in capsys.readouterr().err
    assert not (study / "plots/runs").exists()  # refused before writing anything


def test_check_catches_a_stale_bundle(study: Path, capsys: pytest.CaptureFixture) -> None:
    assert run("pack") == 0 and run("check") == 0
    rerun = FILES | {"metrics/runs/mlp/0/train.json": b'{"val_acc": 0.6}\n'}
    write_lock(study, rerun)  # a later run of the study, committed without a new bundle
    capsys.readouterr()
    assert run("check") == 2
    assert "metrics/runs/mlp/0/train.json has md5" in capsys.readouterr().err
    assert run("restore") == 2
    write_lock(study, FILES | {"metrics/runs/cnn/slice/1/slice.json": b'{"note": "rerun"}'})  # a probe stage rerun
    capsys.readouterr()
    assert run("check") == 2
    err = capsys.readouterr().err
    assert "metrics/runs/cnn/slice hashes to" in err and SLICE_LOCK in err


def test_a_damaged_bundle_is_refused(study: Path, capsys: pytest.CaptureFixture) -> None:
    assert run("pack") == 0
    bundle = study / TOOL.DEFAULT_BUNDLE
    content = json.loads(bundle.read_text())
    content["files"]["plots/runs/mlp/0/history.csv"] += "2,1.0\n"
    bundle.write_text(json.dumps(content))
    assert run("check") == 2
    assert "plots/runs/mlp/0/history.csv in" in capsys.readouterr().err
    assert run("restore", "--bundle", "absent.json") == 2
    assert "no bundle at absent.json" in capsys.readouterr().err


def test_dir_md5_is_dvcs() -> None:
    from dvc_data.hashfile.tree import Tree

    hashes = {rel: md5(data) for rel, data in FILES.items()}
    for top in (*TOOL.RUN_DIRS, *PROBE_DIRS):
        entries = [{"md5": h, "relpath": rel[len(top) + 1 :]} for rel, h in hashes.items() if rel.startswith(f"{top}/")]
        assert entries, top
        tree = Tree.from_list(entries, hash_name="md5")
        tree.digest()
        assert TOOL.dir_md5(hashes, top) == tree.hash_info.value


@pytest.mark.slow
def test_a_clone_without_the_cache_reruns_only_aggregate_and_plots(reproduced, tmp_path: Path) -> None:
    repo = copy_project(reproduced[0], tmp_path)
    tool = [sys.executable, REPO / "tools" / "runs_bundle.py"]
    run_command([*tool, "pack"], repo)
    study = (repo / "metrics/study.json").read_bytes()
    for gone in [*TOOL.RUN_DIRS, ".dvc/cache", "models", "timings"]:
        shutil.rmtree(repo / gone)
    assert "restored" in run_command([*tool, "restore"], repo).stdout
    status = run_command([*DVC, "status", "aggregate", "plots"], repo, src=repo / "src").stdout
    assert "up to date" in status, status
    skipped = run_command([*DVC, "repro", "--single-item", "aggregate", "plots"], repo, src=repo / "src").stdout
    assert "Running stage" not in skipped, skipped
    out = run_command([*DVC, "repro", "--single-item", "--force", "aggregate"], repo, src=repo / "src").stdout
    assert "Running stage 'aggregate'" in out
    assert (repo / "metrics/study.json").read_bytes() == study
