"""Every stage imports the library from its own checkout.

`dvc exp run --queue` (and `--temp`) runs an experiment in a copy of the repository under .dvc/tmp/exps/.
The library is installed editable, so `import landscape` from that copy would find the *workspace's* src/
unless the stage's cmd puts its own checkout's src/ first (dvc.yaml: `PYTHONPATH=src python stages/...`).

A throwaway DVC project reproduces that. Its package ``pkg`` lives in src/, and the test environment makes the
workspace's src/ importable from everywhere (PYTHONPATH, as the editable install's .pth does for the real
project). Two stages print which ``pkg`` they imported: one with the real dvc.yaml's cmd prefix, one with a bare
``python``. An experiment queued with a code change must see its own code in the first stage, while the
second, the control, shows that the setup does reproduce the bug.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from conftest import DVC, REPO, run_command

sys.path.insert(0, str(REPO / "tools"))
from stage_deps import stage_bodies, stage_scripts  # noqa: E402

STAGES = stage_bodies()  # dvc.yaml's and pipeline/<kind>/dvc.yaml's
SCRIPT = "stages/which.py"
PRINTS_ITS_PKG = """\
import json, sys
from pathlib import Path

import pkg

Path(sys.argv[1]).write_text(json.dumps({"mark": pkg.MARK, "file": pkg.__file__}))
"""


def cmd_prefix() -> str:
    """What the real dvc.yaml's cmds put before their script (e.g. ``PYTHONPATH=src python ``); the same for all."""
    scripts = stage_scripts()
    prefixes = {STAGES[name]["cmd"].split(script)[0] for name, script in scripts.items()}
    assert len(prefixes) == 1, f"the stages of dvc.yaml start their scripts differently: {prefixes}"
    return prefixes.pop()


def test_every_stage_runs_its_own_checkouts_src() -> None:
    assert cmd_prefix() == "PYTHONPATH=src python "


def write_pkg(root: Path, mark: str) -> None:
    (root / "src" / "pkg" / "__init__.py").write_text(f"MARK = {mark!r}\n")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "stages").mkdir()
    write_pkg(root, "workspace")
    (root / SCRIPT).write_text(PRINTS_ITS_PKG)
    deps = [SCRIPT, "src/pkg/__init__.py"]
    stages = {
        name: {"cmd": f"{prefix}{SCRIPT} {name}.json", "deps": deps, "metrics": [{f"{name}.json": {"cache": False}}]}
        for name, prefix in (("own", cmd_prefix()), ("bare", "python "))
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    for args in (["git", "init", "-q"], [*DVC, "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        run(args, root)
    return root


def run(args: list[str], root: Path) -> str:
    """``args`` in ``root`` with the workspace's src/ importable from anywhere, as an editable install makes it."""
    return run_command(args, root, src=root / "src", timeout=120).stdout


@pytest.mark.slow
def test_queued_experiment_imports_its_own_code(project: Path) -> None:
    write_pkg(project, "experiment")
    run([*DVC, "exp", "run", "--queue", "-n", "changed"], project)
    write_pkg(project, "workspace")  # the workspace goes on with other code while the experiment waits
    run([*DVC, "exp", "run", "--run-all"], project)
    run([*DVC, "exp", "apply", "changed"], project)
    own, bare = (json.loads((project / f"{name}.json").read_text()) for name in ("own", "bare"))
    assert own["mark"] == "experiment", own
    assert ".dvc/tmp/exps" in Path(own["file"]).as_posix(), own
    assert bare["mark"] == "workspace", f"the control no longer reproduces the bug: {bare}"
    assert Path(bare["file"]) == project / "src" / "pkg" / "__init__.py", bare
