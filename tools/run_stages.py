"""Run the stage commands of dvc.yaml in order without DVC, timing each; for machines without DVC.

    python tools/run_stages.py [--skip download] [--only robustness]

Expands ``matrix`` and ``foreach`` stages the way DVC does (``name@<v1>-<v2>`` for a matrix,
``name@<item>`` for foreach; ``${item...}`` and ``${<params key>}`` substituted from the item and
params.yaml) and runs them in file order, which dvc.yaml keeps topological. Prints one line per
stage and the total.
"""

from __future__ import annotations

import argparse
import itertools
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REFERENCE = re.compile(r"\$\{\s*([^}]+?)\s*\}")


def lookup(key: str, context: dict[str, Any]) -> Any:
    """The value of a dotted ``key`` (``study.seeds``, ``item.variant``) in ``context``."""
    value: Any = context
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(f"dvc.yaml refers to ${{{key}}}, which neither params.yaml nor the stage's item defines")
        value = value[part]
    return value


def substitute(value: Any, context: dict[str, Any]) -> Any:
    """``value`` with every ``${key}`` replaced, recursively; a string that is one reference keeps its type."""
    if isinstance(value, dict):
        return {substitute(k, context): substitute(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, context) for v in value]
    if not isinstance(value, str):
        return value
    whole = REFERENCE.fullmatch(value.strip())
    if whole:
        return lookup(whole.group(1), context)
    return REFERENCE.sub(lambda m: str(lookup(m.group(1), context)), value)


def expanded_stages(dvc_yaml: Path, params_file: Path | None = None) -> list[tuple[str, dict]]:
    """(name, stage body with every reference resolved) for every stage, matrix and foreach stages expanded."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    params_file = params_file or dvc_yaml.parent / "params.yaml"
    params = yaml.safe_load(params_file.read_text()) if params_file.is_file() else {}
    out = []
    for name, stage in stages.items():
        if "matrix" in stage:
            axes = {k: substitute(v, params) for k, v in stage["matrix"].items()}
            body = {k: v for k, v in stage.items() if k != "matrix"}
            for values in itertools.product(*axes.values()):
                item = dict(zip(axes, values, strict=True))
                key = "-".join(str(v) for v in values)
                out.append((f"{name}@{key}", substitute(body, {**params, "item": item})))
        elif "foreach" in stage:
            items = substitute(stage["foreach"], params)
            pairs = items.items() if isinstance(items, dict) else ((i, i) for i in items)
            for key, item in pairs:
                out.append((f"{name}@{key}", substitute(stage["do"], {**params, "item": item, "key": key})))
        else:
            out.append((name, substitute(stage, params)))
    return out


def stage_commands(dvc_yaml: Path, params_file: Path | None = None) -> list[tuple[str, str]]:
    """(name, cmd) for every stage, in file order, matrix and foreach stages expanded."""
    return [(name, body["cmd"]) for name, body in expanded_stages(dvc_yaml, params_file)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", action="append", default=[], help="stage or group name to skip (repeatable)")
    parser.add_argument("--only", action="append", default=[], help="run only this stage or group (repeatable)")
    args = parser.parse_args()
    total = time.perf_counter()
    for name, cmd in stage_commands(Path("dvc.yaml")):
        group = name.split("@")[0]
        if name in args.skip or group in args.skip or (args.only and not {name, group} & set(args.only)):
            print(f"{name:28s} skipped", flush=True)
            continue
        argv = shlex.split(cmd)
        if argv[0] == "python":
            argv[0] = sys.executable
        start = time.perf_counter()
        result = subprocess.run(argv, stdout=subprocess.DEVNULL)
        print(f"{name:28s} {time.perf_counter() - start:7.1f} s  (exit {result.returncode})", flush=True)
        if result.returncode != 0:
            sys.exit(result.returncode)
    print(f"{'whole pipeline':28s} {time.perf_counter() - total:7.1f} s")


if __name__ == "__main__":
    main()
