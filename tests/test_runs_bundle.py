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

FILES = {
    "metrics/runs/mlp/0/train.json": b'{\n  "val_acc": 0.5,\n  "name": "\\u00e9t\\u00e9"\n}\n',
    "metrics/runs/cnn/0/slice.json": '{"note": "caf\u00e9"}'.encode(),
    "plots/runs/mlp/0/history.csv": b"epoch,loss\n0,2.3\n1,1.9\n",
    "plots/runs/cnn/0/slice.csv": b"alpha,loss\r\n-1,3.0\r\n0,0.4\r\n",
}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def write_lock(root: Path, files: dict[str, bytes]) -> None:
    """A pipeline/train/dvc.yaml and a dvc.lock in DVC's format recording ``files`` as outputs (one stage a file,
    plus a models/ output that the bundle leaves out), and a root dvc.lock whose aggregate records the two
    directories' hashes."""
    kind = root / "pipeline" / "train"
    kind.mkdir(parents=True, exist_ok=True)
    (kind / "dvc.yaml").write_text("stages: {}\n")
    stages = {
        f"train@{n}": {"outs": [{"path": rel, "hash": "md5", "md5": md5(data), "size": len(data)}]}
        for n, (rel, data) in enumerate(sorted(files.items()))
    }
    stages["train@0"]["outs"].append({"path": "models/mlp/0/model.pt", "hash": "md5", "md5": "0" * 32, "size": 1})
    (kind / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}, sort_keys=False))
    hashes = {rel: md5(data) for rel, data in files.items()}
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
    assert content["outs"]["plots/runs/cnn/0/slice.csv"]["size"] == len(FILES["plots/runs/cnn/0/slice.csv"])
    assert content["outs"]["metrics/runs/cnn/0/slice.json"]["lock"].startswith("pipeline/train/dvc.lock:train@")
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


def test_pack_refuses_a_missing_file_and_a_stray_one(study: Path, capsys: pytest.CaptureFixture) -> None:
    (study / "metrics/runs/cnn/0/slice.json").unlink()
    assert run("pack") == 2
    assert "metrics/runs/cnn/0/slice.json is missing" in capsys.readouterr().err
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
    for top in TOOL.RUN_DIRS:
        entries = [{"md5": h, "relpath": rel[len(top) + 1 :]} for rel, h in hashes.items() if rel.startswith(top)]
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
