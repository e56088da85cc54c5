"""Where a `dvc repro`'s wall time went: each stage's own work against process start-up and DVC's bookkeeping.

    dvc repro 2>&1 | python tools/repro_breakdown.py --record repro.log     # run it, each line timestamped
    python tools/repro_breakdown.py repro.log [--timings timings]           # the table

``--record`` copies its input to stdout and to the log, each line prefixed with the time it arrived (seconds since
the epoch), after a first line ``<time> START``: the wall time runs from START (or the first line) to the last
line. For each 'Running stage' the log holds:
- the command: from 'Running stage' to the command's last line of output (a stage script prints one when it has
  written its outputs), or to DVC's next line where it printed none;
- the stage's own work: the ``wall_s`` of its timings/ files (training: its run's; a probe stage: the files in its
  timings folder, one per seed it probed; where they live is ``landscape.study.stage``'s). A stage without such files
  (download, aggregate, plots) counts its whole command as work;
- start-up: the command less its own work (starting Python, importing torch, loading params and data, exiting);
- DVC after the command: to the next 'Running stage' or the log's end (hashing outputs, the cache, the lock).
Overhead is the wall time less the work; the table gives it as a share of the wall time. Stages are grouped by
their kind, and a stage's kind and matrix item come from ``landscape.study.shape`` (DVC's own resolution of the
pipeline in ``--root``, the checkout that ran the log).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from landscape.study import shape  # noqa: E402
from landscape.study.stage import PROBE_KINDS, TIMINGS_DIR, RunPaths, stage_dirs  # noqa: E402

STAMP = re.compile(r"^(\d+\.\d+) ?(.*)$")
RUNNING = re.compile(r"^Running stage '([^']+)'")
DVC_LINE = re.compile(r"^(WARNING|ERROR|Running stage|Updating lock|Stage '|Use `dvc push`|To track|> |\s*$)")


@dataclass(frozen=True)
class StageTime:
    name: str  # as DVC prints it, e.g. pipeline/train/dvc.yaml:train_mlp@mlp-0
    kind: str  # its pipeline/<kind>/ (landscape.study.shape.kind), or its name for a stage of the root dvc.yaml
    command_s: float
    work_s: float
    dvc_after_s: float


def read_log(path: Path) -> list[tuple[float, str]]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        m = STAMP.match(raw)
        if m:
            lines.append((float(m.group(1)), m.group(2)))
    if not lines:
        record = "dvc repro 2>&1 | python tools/repro_breakdown.py --record LOG"
        sys.exit(f"error: {path} has no timestamped lines; record one with `{record}`.")
    return lines


def own_work(kind: str, item: dict | None, timings: Path) -> float | None:
    """The stage's own work from its timings/ files under ``timings``; None for a stage that writes none."""
    if kind == "train":
        files = [timings / RunPaths(item["variant"], item["seed"]).timing(kind).relative_to(TIMINGS_DIR)]
    elif kind in PROBE_KINDS:
        (folder,) = [d for d in stage_dirs(item["variant"], kind) if d.is_relative_to(TIMINGS_DIR)]
        files = sorted((timings / folder.relative_to(TIMINGS_DIR)).glob(f"*/{kind}.json"))
    else:
        return None
    found = [f for f in files if f.is_file()]
    return sum(json.loads(f.read_text())["wall_s"] for f in found) if found else None


def stage_times(lines: list[tuple[float, str]], timings: Path, root: Path) -> list[StageTime]:
    items = {r.address: r.item for r in shape.stages(root.resolve())}
    starts = [(i, RUNNING.match(text).group(1)) for i, (_, text) in enumerate(lines) if RUNNING.match(text)]
    result = []
    for k, (i, name) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(lines)
        block = lines[i + 1 : end]
        output = [t for t, text in block if not DVC_LINE.match(text)]
        dvc = [t for t, text in block if DVC_LINE.match(text) and not text.startswith("> ")]
        done = output[-1] if output else (dvc[0] if dvc else lines[i][0])
        following = lines[end][0] if end < len(lines) else lines[-1][0]
        if name not in items:
            fix = "pass --root, the checkout that ran the log"
            sys.exit(f"error: the log's stage {name!r} is not in the pipeline of {root}; {fix}.")
        command = done - lines[i][0]
        kind = shape.kind(name, root.resolve()) or name
        work = own_work(kind, items[name], timings)
        result.append(StageTime(name, kind, command, command if work is None else work, following - done))
    return result


def table(lines: list[tuple[float, str]], stages: list[StageTime]) -> str:
    start = next((t for t, text in lines if text == "START"), lines[0][0])
    wall = lines[-1][0] - start
    first = next((t for t, text in lines if RUNNING.match(text)), lines[-1][0])
    out = [
        "| stage kind | stages | command | of it own work | start-up per stage | DVC after the command per stage |",
        "|---|---|---|---|---|---|",
    ]
    kinds: dict[str, list[StageTime]] = defaultdict(list)
    for s in stages:
        kinds[s.kind].append(s)
    for kind, group in kinds.items():
        n = len(group)
        command, work = sum(s.command_s for s in group), sum(s.work_s for s in group)
        after = sum(s.dvc_after_s for s in group)
        out.append(
            f"| {kind} | {n} | {command:.0f} s | {work:.0f} s | {(command - work) / n:.1f} s | {after / n:.1f} s |"
        )
    work = sum(s.work_s for s in stages)
    out.append(
        f"\n{len(stages)} stages; wall time {wall:.0f} s ({wall / 60:.1f} min), of it {first - start:.0f} s before "
        f"the first stage; the stages' own work {work:.0f} s ({work / 60:.1f} min); overhead {wall - work:.0f} s "
        f"= {100 * (wall - work) / wall:.1f} % of the wall time ({(wall - work) / max(len(stages), 1):.1f} s a stage)."
    )
    return "\n".join(out)


def record(path: Path) -> None:
    with path.open("w") as log:
        log.write(f"{time.time():.6f} START\n")
        for line in sys.stdin:
            sys.stdout.write(line)
            sys.stdout.flush()
            log.write(f"{time.time():.6f} {line.rstrip()}\n")
            log.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path, nargs="?")
    parser.add_argument("--record", type=Path, metavar="LOG", help="copy stdin to stdout and to LOG, timestamped")
    parser.add_argument(
        "--timings", type=Path, default=Path("timings"), help="the stages' timings/ (default: %(default)s)"
    )
    parser.add_argument("--root", type=Path, default=Path("."), help="the checkout that ran it (%(default)s)")
    args = parser.parse_args(argv)
    if args.record:
        record(args.record)
        return
    if args.log is None or not args.log.is_file():
        parser.error("give the log a `--record` wrote (LOG), or --record LOG to write one")
    if not args.timings.is_dir():
        sys.exit(f"error: {args.timings} is not a directory; pass the run's timings/ with --timings.")
    lines = read_log(args.log)
    print(table(lines, stage_times(lines, args.timings, args.root)))


if __name__ == "__main__":
    main()
