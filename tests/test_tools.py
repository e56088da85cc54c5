"""tools/run_stages.py: the stage commands of the real dvc.yaml, foreach expanded, in a runnable order."""

from __future__ import annotations

import importlib.util

import yaml

from conftest import REPO


def load_tool():
    spec = importlib.util.spec_from_file_location("run_stages", REPO / "tools" / "run_stages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stage_commands_expand_foreach_in_dependency_order() -> None:
    commands = dict(load_tool().stage_commands(REPO / "dvc.yaml"))
    names = list(commands)
    assert names[0] == "download" and names[-1] == "plots"
    assert commands["robustness@cnn"] == "python stages/robustness.py cnn"
    assert "${item}" not in "".join(commands.values())
    produced_by = {}
    for full, body, item in expanded_stages():
        for out in body.get("outs", []) + body.get("metrics", []):
            produced_by[substitute(next(iter(out)) if isinstance(out, dict) else out, item)] = full
    for full, body, item in expanded_stages():
        for dep in body.get("deps", []):
            producer = produced_by.get(substitute(dep, item))
            if producer:
                assert names.index(producer) < names.index(full), f"{full} runs before {producer}"


def expanded_stages():
    """(name, stage body, foreach item or None) for every stage of dvc.yaml, as DVC expands them."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        for item in stage.get("foreach", [None]):
            yield (f"{name}@{item}" if item else name), stage.get("do", stage), item


def substitute(path: str, item: str | None) -> str:
    return path.replace("${item}", str(item))
