"""DVC's own cost per stage: the dvc.lock update that `dvc repro` runs after every stage it runs or restores.

    python bench/dvc_overhead.py                  # the committed locks, best of 3 updates per lock
    python bench/dvc_overhead.py --lock PATH --repeats 1

After each stage, DVC rewrites the whole dvc.lock of that stage's dvc.yaml (``Lockfile.dump_stages``: a ruamel
round-trip load and dump, ``dvc.utils.serialize.modify_yaml``), so the update costs time in proportion to the
lock's size, once per stage: in all, quadratic in the size of the study. This times that same call on one lock
holding every stage (the layout with a single dvc.yaml), and on the part that each stage kind (train,
robustness, slice, curvature, the rest) owns with one dvc.yaml per kind (``pipeline/<kind>/``), and prints
the lock I/O of one full run both ways (each stage's update times the number of stages that update it). By
default it reads every stage of dvc.lock and pipeline/*/dvc.lock. It changes no file of the repository: it
times copies in a temporary directory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml
from dvc.utils.serialize import modify_yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # landscape, without an install too
from landscape.study import shape  # noqa: E402


def kind(stage: str) -> str:
    """A stage's kind from its name in a lock (``landscape.study.shape.kind``): ``train_cnn@cnn-0`` -> train,
    ``slice@mlp`` -> slice; ``other`` for a stage of the root dvc.yaml."""
    return shape.kind(stage, REPO) or "other"


def update_seconds(path: Path, repeats: int) -> float:
    """Best of ``repeats`` timed updates of one stage's ``cmd`` (unchanged), after one untimed update that lets
    ruamel settle the file's formatting."""
    first = None
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        with modify_yaml(path) as data:
            stages = data["stages"]
            first = first or next(iter(stages))
            stages[first]["cmd"] = stages[first]["cmd"]
        if i:
            times.append(time.perf_counter() - start)
    return min(times)


def measure(lock: dict, repeats: int, workdir: Path) -> list[tuple[str, int, int, float]]:
    """(lock, stages, lines, seconds per update) for the whole lock and for each kind's part of it."""
    parts: dict[str, dict] = defaultdict(dict)
    for name, entry in lock["stages"].items():
        parts[kind(name)][name] = entry
    rows = []
    for label, stages in [("one lock for all", lock["stages"]), *sorted(parts.items())]:
        path = workdir / f"{label.replace(' ', '_')}.lock"
        with path.open("w") as f:
            yaml.dump({"schema": lock.get("schema", "2.0"), "stages": stages}, f, Dumper=yaml.CSafeDumper,
                      sort_keys=False)  # fmt: skip
        seconds = update_seconds(path, repeats)
        rows.append((label, len(stages), sum(1 for _ in path.open()), seconds))
    return rows


def report(rows: list[tuple[str, int, int, float]]) -> str:
    lines = [
        "| lock | stages | lines | one update | updates in a full run |",
        "|---|---|---|---|---|",
    ]
    for label, n, n_lines, seconds in rows:
        lines.append(f"| {label} | {n} | {n_lines:,} | {seconds:.2f} s | {n * seconds / 60:.1f} min |")
    whole = rows[0][1] * rows[0][3]
    split = sum(n * s for _, n, _, s in rows[1:])
    lines.append(
        f"\nLock I/O of a full run: {whole / 60:.1f} min with one lock for all, {split / 60:.1f} min with one per "
        f"stage kind ({whole / split:.1f}x less)."
        if split
        else ""
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, action="append", help="a dvc.lock (repeatable; default: all of them)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.repeats < 1:
        sys.exit(f"error: --repeats must be >= 1, got {args.repeats}.")
    stages: dict = {}
    for path in args.lock or [f.with_name("dvc.lock") for f in shape.dvc_files(REPO)]:
        if not path.is_file():
            sys.exit(f"error: {path} does not exist; give --lock PATH or run dvc repro first.")
        lock = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
        if not isinstance(lock, dict) or not isinstance(lock.get("stages"), dict):
            sys.exit(f"error: {path} has no 'stages' mapping; is it a dvc.lock?")
        stages.update(lock["stages"])
    with tempfile.TemporaryDirectory() as tmp:
        print(report(measure({"schema": "2.0", "stages": stages}, args.repeats, Path(tmp))))


if __name__ == "__main__":
    main()
