"""The project modules a stage script reaches through imports, and dvc.yaml deps rewritten to them.

    python tools/stage_deps.py          # print each stage's src/ closure
    python tools/stage_deps.py --write  # rewrite the src/landscape lines of every stage's deps in the dvc.yaml files

A module counts with its packages' ``__init__.py`` files, which Python runs on import. The test
tests/test_dvc_deps.py uses the same closure, so deps can neither miss a module nor list a stale one.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
sys.path.insert(0, str(SRC))  # landscape, without an install too
from landscape.study import shape  # noqa: E402  (the pipeline's dvc.yaml files)


def module_file(name: str) -> Path | None:
    """The file of module ``name`` (a package's __init__.py), or None if it is not a project module."""
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def project_imports(path: Path) -> set[str]:
    """``landscape...`` module names imported by the file at ``path`` (any import form, relative too)."""
    found = set()
    package = ".".join(path.relative_to(SRC).with_suffix("").parts[:-1]) if path.is_relative_to(SRC) else ""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*parts, module] if module else parts)
            if module == "landscape" or module.startswith("landscape."):
                found.add(module)
                found |= {f"{module}.{a.name}" for a in node.names if module_file(f"{module}.{a.name}")}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "landscape"}
    return found


def with_packages(name: str) -> set[str]:
    """``a.b.c`` -> {a, a.b, a.b.c}: importing a module runs every enclosing package's __init__."""
    parts = name.split(".")
    return {".".join(parts[: i + 1]) for i in range(len(parts))}


def module_closure(script: Path) -> set[str]:
    """Repository-relative paths of every src/ file that running ``script`` imports."""
    seen: set[str] = set()
    todo = [m for name in project_imports(script) for m in with_packages(name)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is not None:
            todo += [m for child in project_imports(path) for m in with_packages(child)]
    return {str(module_file(n).relative_to(REPO)) for n in seen if module_file(n) is not None}


def folder_deps(deps: list[str]) -> list[str]:
    """The deps that are folders of src/ (``src/landscape/probes``): each covers every module under it."""
    return [d for d in deps if d.startswith("src/") and (REPO / d).is_dir()]


def covered(module: str, deps: list[str]) -> bool:
    """Whether ``module`` (a repository-relative path) is in ``deps`` itself or under one of its folder deps."""
    return module in deps or any(module.startswith(f"{folder}/") for folder in folder_deps(deps))


def dep_lines(closure: set[str], folders: list[str]) -> list[str]:
    """A stage's src/ deps: its ``folders`` (kept as written), then each module of ``closure`` outside them."""
    return [*folders, *sorted(m for m in closure if not covered(m, folders))]


def stage_bodies(dvc_yaml: Path | None = None) -> dict[str, dict]:
    """Stage name (as written, unique over the files) -> its body (a foreach stage's ``do``), of ``dvc_yaml`` or,
    by default, of every file of the pipeline (``landscape.study.shape.dvc_files``)."""
    import yaml

    out = {}
    for path in [dvc_yaml] if dvc_yaml else shape.dvc_files(REPO):
        for name, body in yaml.safe_load(path.read_text())["stages"].items():
            out[name] = body.get("do", body)
    return out


def stage_scripts(dvc_yaml: Path | None = None) -> dict[str, str]:
    """Stage name -> the script its cmd runs (the first ``stages/*.py`` word)."""
    return {
        name: next(w for w in body["cmd"].split() if w.startswith("stages/") and w.endswith(".py"))
        for name, body in stage_bodies(dvc_yaml).items()
    }


def rewrite_all() -> None:
    for path in shape.dvc_files(REPO):
        rewrite(path)


def rewrite(dvc_yaml: Path) -> None:
    """Replace each stage's block of src/ deps lines by its closure (sorted), keeping everything else; a folder dep
    of src/ stays, in place of the modules under it."""
    lines = dvc_yaml.read_text().splitlines(keepends=True)
    scripts = stage_scripts(dvc_yaml)
    out, stage, i = [], None, 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^  (\w+):\s*$", line)
        if m:
            stage = m.group(1)
        d = re.match(r"^(\s+)- src/", line)
        if d and stage in scripts:
            indent = d.group(1)
            block = []
            while i < len(lines) and re.match(r"^\s+- src/", lines[i]):
                block.append(lines[i].split("- ", 1)[1].strip())
                i += 1
            closure = module_closure(REPO / scripts[stage])
            out += [f"{indent}- {p}\n" for p in dep_lines(closure, folder_deps(block))]
            continue
        out.append(line)
        i += 1
    dvc_yaml.write_text("".join(out))


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        rewrite_all()
    for stage, script in stage_scripts().items():
        print(stage, script, *sorted(module_closure(REPO / script)), sep="\n  ")
