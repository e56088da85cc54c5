"""Run the stage commands of dvc.yaml in order without DVC, timing each; for machines without DVC.

    python tools/run_stages.py [--skip download]

Expands ``foreach`` stages the way DVC does (``name@item``, ``${item}`` substituted) and runs them
in file order, which dvc.yaml keeps topological. Prints one line per stage and the total.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml


def stage_commands(dvc_yaml: Path) -> list[tuple[str, str]]:
    """(name, cmd) for every stage, foreach stages expanded."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    out = []
    for name, stage in stages.items():
        if "foreach" in stage:
            for item in stage["foreach"]:
                out.append((f"{name}@{item}", stage["do"]["cmd"].replace("${item}", str(item))))
        else:
            out.append((name, stage["cmd"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", action="append", default=[], help="stage name to skip (repeatable)")
    args = parser.parse_args()
    total = time.perf_counter()
    for name, cmd in stage_commands(Path("dvc.yaml")):
        if name in args.skip:
            print(f"{name:16s} skipped", flush=True)
            continue
        argv = shlex.split(cmd)
        if argv[0] == "python":
            argv[0] = sys.executable
        start = time.perf_counter()
        result = subprocess.run(argv, stdout=subprocess.DEVNULL)
        print(f"{name:16s} {time.perf_counter() - start:7.1f} s  (exit {result.returncode})", flush=True)
        if result.returncode != 0:
            sys.exit(result.returncode)
    print(f"{'whole pipeline':16s} {time.perf_counter() - total:7.1f} s")


if __name__ == "__main__":
    main()
