"""Every stage's deps in dvc.yaml list the project modules its script imports, transitively within src/.

A module missing from deps would leave the stage's results stale after a change there while
`dvc status` says "up to date"; the failure message names the stage and the module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from conftest import REPO

SRC = REPO / "src" / "landscape"


def project_imports(path: Path) -> set[str]:
    """``landscape.<module>`` names imported by the file at ``path`` (any import form)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "landscape":
                found |= {f"landscape.{a.name}" for a in node.names if (SRC / f"{a.name}.py").is_file()}
            elif node.module.startswith("landscape."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("landscape.")}
    return found


def module_closure(script: Path) -> set[str]:
    """Repository-relative paths of every src/landscape module ``script`` reaches through imports."""
    seen: set[str] = set()
    todo = list(project_imports(script))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += project_imports(SRC / f"{name.split('.')[1]}.py")
    return {f"src/landscape/{name.split('.')[1]}.py" for name in seen}


def stage_bodies() -> list[tuple[str, dict]]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return [(name, body.get("do", body)) for name, body in stages.items()]


@pytest.mark.parametrize(("name", "body"), stage_bodies(), ids=[n for n, _ in stage_bodies()])
def test_stage_deps_cover_every_imported_module(name: str, body: dict) -> None:
    script = body["cmd"].split()[1]
    deps = set(body["deps"])
    assert script in deps, f"stage {name}: its script {script} is not in deps"
    missing = sorted(module_closure(REPO / script) - deps)
    assert not missing, f"stage {name} imports {', '.join(missing)} but dvc.yaml does not list it in deps"


def test_closure_follows_imports_transitively() -> None:
    closure = module_closure(REPO / "stages" / "download.py")
    assert "src/landscape/fetch.py" in closure and "src/landscape/errors.py" in closure
    assert "src/landscape/data.py" not in closure  # the download stage does not load tensors
