"""Run the stages of the pipeline's dvc.yaml files without `dvc repro`, one process per stage, timing each.

    python tools/run_stages.py [--skip download] [--only robustness] [--lanes 3] [--budget 400]
                               [--table pipeline-times.txt] [--plan FILE | --write-plan FILE]

The stages are DVC's own (``landscape.study.shape.stages``: DVC's stage loader and graph over dvc.yaml and the
per-kind ``pipeline/<kind>/dvc.yaml`` files): matrix and foreach stages expanded and named as DVC names them
(``pipeline/slice/dvc.yaml:slice@cnn-0``), every ``${}`` resolved, each run after the stages whose outputs it reads;
of the stages ready, the first in file order goes first (so a run's probes follow its training). A machine without
DVC (tools/gpu_check.sh's) runs a plan instead: ``--write-plan FILE``, where DVC is, writes the stages in that order
to FILE and runs nothing; ``--plan FILE`` runs them from FILE. A stage's kind is the ``<kind>`` of its
``pipeline/<kind>/dvc.yaml``, or its own name for a stage of the root dvc.yaml (download, aggregate, plots);
``--only`` and ``--skip`` take stage names and kinds. A cmd runs in its stage's ``wdir``; its leading
``NAME=value`` words set variables for it, as in the shell DVC runs it in (``PYTHONPATH=src python ...``), and
``python`` is this interpreter. ``set_device`` sets the device key of a params file (tools/gpu_check.sh uses it).

Each stage's process wall time is split into its own work, the ``wall_s`` its ``timings/`` output holds
(``landscape.study.stage.Timer``: from after params, device and data are loaded to the last write), and
start-up, the rest: Python, imports, CUDA initialization, loading the data, and the exit. A timing file
older than the stage's process counts as missing. Stages without a ``timings/`` output (download,
aggregate, plots) have a process wall only.

``--lanes N`` runs the stages of different variants concurrently: the single-machine analogue of one shard per
variant (``make shard VARIANT=...``). Stages whose matrix item has a ``variant`` (training, one stage per seed, and
the probes, one stage per variant looping over the seeds) run in N worker lanes, each lane running all stages of one
variant in order, one process each; the stages of no variant (download before, aggregate and plots after) run
alone, in order, between them. A variant's stages read only their own variant's outputs (checked before anything
runs).

``--budget S`` starts no stage after S seconds and kills one still running then; what ran stays in the table.
After the first failure no further stage starts. ``--table FILE`` writes the table and summaries, rewritten
after every stage. The exit status is 0 when every selected stage ran, 1 after a failure, 124 when the budget
ran out.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import queue
import re
import shlex
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # landscape, without an install too
from landscape.study import shape  # noqa: E402

ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
TIMINGS = "timings/"
TAIL_LINES = 40  # lines of a failed stage's output shown


def command(cmd: str) -> tuple[dict[str, str], list[str]]:
    """A stage cmd as (the variables its leading ``NAME=value`` words set, argv), with ``python`` this interpreter."""
    words = shlex.split(cmd)
    assigned = {}
    while words and ASSIGNMENT.match(words[0]):
        name, value = words.pop(0).split("=", 1)
        assigned[name] = value
    if words and words[0] == "python":
        words[0] = sys.executable
    return assigned, words


# The device key


def device_section(params: dict) -> str:
    """The section whose ``device`` key sets where stages compute: ``runtime``, or ``train`` in params without one."""
    return "runtime" if isinstance(params.get("runtime"), dict) else "train"


def set_device(params_file: Path, device: str) -> str:
    """Set the device in ``params_file`` to ``device`` (``runtime.device``, or ``train.device`` in params without
    a ``runtime`` section), editing only that line so comments stay; returns the key it set."""
    text = params_file.read_text()
    params = yaml.safe_load(text) or {}
    section = device_section(params)
    if not isinstance(params.get(section), dict):
        raise SystemExit(f"error: {params_file} has neither a 'runtime' nor a 'train' section to set the device in")
    lines = text.splitlines(keepends=True)
    edited = device_line_edited(lines, section, device)
    new_text = "".join(edited) if edited else yaml.safe_dump({**params, section: {**params[section], "device": device}})
    if (yaml.safe_load(new_text) or {}).get(section, {}).get("device") != device:
        raise SystemExit(f"error: could not set {section}.device in {params_file}")
    params_file.write_text(new_text)
    return f"{section}.device"


def device_line_edited(lines: list[str], section: str, device: str) -> list[str] | None:
    """``lines`` with the block section's ``device:`` value replaced (or the key added); None for a flow-style
    section, which the caller rewrites through YAML instead."""
    header = next((i for i, line in enumerate(lines) if re.match(rf"{section}:\s*(#.*)?$", line)), None)
    if header is None:
        return None
    end = next(
        (i for i in range(header + 1, len(lines)) if re.match(r"[^\s#]", lines[i])),
        len(lines),
    )
    keys = [i for i in range(header + 1, end) if re.match(r"\s+[^\s#]", lines[i])]
    indent = re.match(r"\s*", lines[keys[0]]).group(0) if keys else "  "
    for i in keys:
        found = re.match(rf"({indent}device:\s*)([^#\s]*)(.*)", lines[i], re.S)
        if found:
            return [*lines[:i], found.group(1) + device + found.group(3), *lines[i + 1 :]]
    return [*lines[: header + 1], f"{indent}device: {device}\n", *lines[header + 1 :]]


# Running and timing (NamedTuples, not dataclasses: the tests load this file without registering it as a module)


class Stage(NamedTuple):
    name: str  # as DVC addresses it
    kind: str  # its pipeline/<kind>/dvc.yaml's kind, or its name for a stage of the root dvc.yaml
    cmd: str
    wdir: str  # where its cmd runs, relative to the repository root
    lane_key: Any  # the matrix item's variant; None for a stage of the whole study
    timing: Path | None  # its timings/ output: a file, or a probe stage's folder of one file per seed
    after: tuple[str, ...]  # the stages whose outputs it reads


class Result(NamedTuple):
    stage: Stage
    status: str  # "ok", or why it did not run or did not finish
    lane: int | None = None  # the worker lane that ran it
    started: float = 0.0  # seconds after the run began
    wall: float | None = None  # the process's wall seconds
    work: float | None = None  # the stage's own wall_s from its timing file

    @property
    def startup(self) -> float | None:
        return None if self.wall is None or self.work is None else self.wall - self.work


def stages_of(root: Path) -> list[Stage]:
    """The stages of the pipeline at ``root``, from DVC, in the order they run."""
    out = []
    for resolved in shape.stages(root):
        timing = next((o for o in resolved.outs if o.startswith(TIMINGS)), None)
        item = resolved.item
        variant = item.get("variant") if isinstance(item, dict) else None
        kind = shape.kind(resolved.address, root) or resolved.address
        path = None if timing is None else Path(timing)
        out.append(Stage(resolved.address, kind, resolved.body["cmd"], resolved.wdir, variant, path, resolved.after))
    return out


def write_plan(stages: list[Stage], path: Path) -> None:
    """The stages, in order, as JSON for ``read_plan`` on a machine without DVC."""
    rows = [{**s._asdict(), "timing": None if s.timing is None else s.timing.as_posix()} for s in stages]
    path.write_text(json.dumps({"stages": rows}, indent=1) + "\n")


def read_plan(path: Path) -> list[Stage]:
    rows = json.loads(path.read_text())["stages"]
    return [
        Stage(**{**row, "timing": None if row["timing"] is None else Path(row["timing"]), "after": tuple(row["after"])})
        for row in rows
    ]


def check_lanes(stages: list[Stage]) -> None:
    """Refuse to run lanes if a variant's stage reads another variant's output (lanes would race)."""
    seed_of = {s.name: s.lane_key for s in stages}
    for stage in stages:
        for other in stage.after:
            if stage.lane_key is not None and seed_of.get(other) not in (None, stage.lane_key):
                raise SystemExit(
                    f"error: {stage.name} (variant {stage.lane_key}) reads an output of {other} (variant "
                    f"{seed_of[other]}): no lanes"
                )


def phases(stages: list[Stage]) -> list[list[Stage]]:
    """The stages cut into consecutive runs of laned (per-variant) and unlaned ones."""
    return [list(group) for _, group in itertools.groupby(stages, key=lambda s: s.lane_key is None)]


class Runner:
    """Runs stages, records their results, prints a line for each and rewrites the table file."""

    def __init__(self, budget: float | None, table: Path | None, header: str) -> None:
        self.begin = time.perf_counter()
        self.deadline = None if budget is None else self.begin + budget
        self.table, self.header = table, header
        self.results: list[Result] = []
        self.lanes: list[tuple[int, float, float]] = []  # (lanes, phase wall, summed stage wall) per laned phase
        self.stop: str | None = None  # why no further stage starts
        self.lock = threading.Lock()

    def record(self, result: Result, output: str = "") -> None:
        with self.lock:
            self.results.append(result)
            lane = f"  [lane {result.lane}]" if result.lane is not None else ""
            print(f"{result.stage.name:30s} {self.line(result)}{lane}", flush=True)
            if output.strip():
                print("\n".join(f"    {line}" for line in output.rstrip().splitlines()), flush=True)
            if self.table:
                self.table.write_text(self.report())

    @staticmethod
    def line(r: Result) -> str:
        if r.wall is None:
            return r.status
        text = f"{r.wall:7.1f} s"
        if r.work is not None:
            text += f"  work {r.work:6.1f} s  start-up {r.startup:5.1f} s"
        return text if r.status == "ok" else f"{text}  {r.status}"

    def run(self, stage: Stage, lane: int | None = None) -> bool:
        """Run one stage; whether the run may go on."""
        if self.stop:
            self.record(Result(stage, f"not run: {self.stop}", lane))
            return False
        left = None if self.deadline is None else self.deadline - time.perf_counter()
        if left is not None and left <= 0:
            self.stop = "budget spent"
            self.record(Result(stage, f"not run: {self.stop}", lane))
            return False
        assigned, argv = command(stage.cmd)
        stamp, start = time.time(), time.perf_counter()
        try:
            done = subprocess.run(
                argv, cwd=stage.wdir, env={**os.environ, **assigned}, capture_output=True, text=True, timeout=left
            )
            status, output = "ok", done.stdout
            if done.returncode != 0:
                status = f"failed (exit {done.returncode})"
                output = tail(done.stdout + done.stderr)
                self.stop = f"{stage.name} failed"
        except subprocess.TimeoutExpired as e:
            status, output = "killed: budget spent", tail(as_text(e.stdout) + as_text(e.stderr))
            self.stop = "budget spent"
        wall = time.perf_counter() - start
        result = Result(stage, status, lane, start - self.begin, wall, stage_work(stage, stamp))
        self.record(result, output)
        return status == "ok"

    def run_all(self, stages: list[Stage], lanes: int) -> None:
        for phase in phases(stages):
            if lanes > 1 and phase[0].lane_key is not None:
                self.run_lanes(phase, lanes)
            else:
                for stage in phase:
                    self.run(stage)

    def run_lanes(self, phase: list[Stage], lanes: int) -> None:
        """The phase's stages grouped by variant; ``lanes`` workers each take a variant and run its stages in
        order."""
        by_seed: dict[Any, list[Stage]] = {}
        for stage in phase:
            by_seed.setdefault(stage.lane_key, []).append(stage)
        work: queue.Queue[list[Stage]] = queue.Queue()
        for seed_stages in by_seed.values():
            work.put(seed_stages)

        def worker(lane: int) -> None:
            while True:
                try:
                    seed_stages = work.get_nowait()
                except queue.Empty:
                    return
                for i, stage in enumerate(seed_stages):
                    if not self.run(stage, lane):
                        for rest in seed_stages[i + 1 :]:
                            self.record(
                                Result(rest, f"not run: {self.stop or 'an earlier stage of its variant failed'}")
                            )
                        break

        count = min(lanes, len(by_seed))
        start = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(lane,)) for lane in range(1, count + 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        phase_wall = time.perf_counter() - start
        names = {s.name for s in phase}
        summed = sum(r.wall or 0.0 for r in self.results if r.stage.name in names)
        self.lanes.append((count, phase_wall, summed))

    def report(self) -> str:
        return "\n\n".join([self.header, stage_table(self.results), kind_table(self.results), self.totals()]) + "\n"

    def totals(self) -> str:
        ran = [r for r in self.results if r.wall is not None]
        split = [r for r in ran if r.work is not None]
        wall = sum(r.wall for r in ran)
        lines = [f"{len(ran)} stage processes ran, {len(self.results) - len(ran)} stages did not."]
        if split:
            s_wall, s_work = sum(r.wall for r in split), sum(r.work for r in split)
            lines.append(
                f"Stages with a timing file ({len(split)}): process wall {s_wall:.1f} s = work {s_work:.1f} s + "
                f"start-up {s_wall - s_work:.1f} s; start-up share {share(s_wall - s_work, s_wall)}."
            )
        rest = [r for r in ran if r.work is None]
        if rest:
            names = ", ".join(sorted({r.stage.kind for r in rest}))
            lines.append(f"Stages without a timing file ({names}): process wall {sum(r.wall for r in rest):.1f} s.")
        lines.append(f"Summed process wall of every stage (the sequential time): {wall:.1f} s.")
        for count, phase_wall, summed in self.lanes:
            lines.append(
                f"Per-run stages in {count} lane(s): {phase_wall:.1f} s of wall time for {summed:.1f} s of summed "
                f"stage time ({summed / phase_wall:.2f}x)."
                + "".join(
                    f" Lane {lane}: {sum(r.wall for r in ran if r.lane == lane):.1f} s." for lane in range(1, count + 1)
                )
            )
        lines.append(f"Whole run so far: {time.perf_counter() - self.begin:.1f} s of wall time.")
        return "\n".join(lines)


def tail(text: str) -> str:
    return "\n".join(text.rstrip().splitlines()[-TAIL_LINES:])


def as_text(output: str | bytes | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def stage_work(stage: Stage, started: float) -> float | None:
    """``wall_s`` of the stage's timing file if this process wrote it (not older than ``started``); for a probe
    stage's timings folder, the sum over its per-seed files, all written by this process."""
    if stage.timing is None:
        return None
    files = sorted(stage.timing.rglob("*.json")) if stage.timing.is_dir() else [stage.timing]
    if not files or any(not f.is_file() or f.stat().st_mtime < started for f in files):
        return None
    try:
        return sum(float(json.loads(f.read_text())["wall_s"]) for f in files)
    except (ValueError, KeyError, TypeError):
        return None


def seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} s"


def share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f} %" if whole > 0 else "–"


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def stage_table(results: list[Result]) -> str:
    rows = [
        [
            r.stage.name,
            "" if r.lane is None else str(r.lane),
            "" if r.wall is None else f"{r.started:.1f} s",
            seconds(r.wall),
            seconds(r.work),
            seconds(r.startup),
            r.status,
        ]
        for r in sorted(results, key=lambda r: (r.wall is None, r.started))
    ]
    return markdown(["stage", "lane", "started at", "process wall", "work", "start-up", "status"], rows)


def median(values: list[float]) -> str:
    return seconds(statistics.median(values)) if values else "–"


def kind_table(results: list[Result]) -> str:
    """Per stage kind: medians, totals and start-up's share."""
    kinds: dict[str, list[Result]] = {}
    for r in results:
        if r.wall is not None:
            kinds.setdefault(r.stage.kind, []).append(r)
    rows = []
    for kind, runs in kinds.items():
        walls = [r.wall for r in runs]
        works = [r.work for r in runs if r.work is not None]
        startups = [r.startup for r in runs if r.startup is not None]
        split_wall = sum(r.wall for r in runs if r.work is not None)
        rows.append(
            [
                kind,
                str(len(runs)),
                median(walls),
                median(works),
                median(startups),
                seconds(sum(walls)),
                seconds(sum(works)) if works else "–",
                seconds(sum(startups)) if startups else "–",
                share(sum(startups), split_wall) if startups else "–",
            ]
        )
    header = ["kind", "stages", "median wall", "median work", "median start-up", "total wall", "total work"]
    return "Per stage kind:\n\n" + markdown([*header, "total start-up", "start-up share"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", action="append", default=[], help="stage name or kind to skip (repeatable)")
    parser.add_argument("--only", action="append", default=[], help="run only this stage or kind (repeatable)")
    parser.add_argument("--lanes", type=int, default=1, help="worker lanes for the stages of different variants")
    parser.add_argument("--budget", type=float, help="seconds after which no stage starts and a running one is killed")
    parser.add_argument("--table", type=Path, help="write the table and summaries here too")
    plan = parser.add_mutually_exclusive_group()
    plan.add_argument("--plan", type=Path, help="run the stages of this plan instead of asking DVC")
    plan.add_argument("--write-plan", type=Path, help="write DVC's stages to this plan and run nothing")
    args = parser.parse_args()
    if args.lanes < 1:
        parser.error("--lanes must be at least 1")
    if args.write_plan:
        write_plan(stages_of(Path.cwd()), args.write_plan)
        return
    stages = read_plan(args.plan) if args.plan else stages_of(Path.cwd())
    params = yaml.safe_load(Path("params.yaml").read_text()) or {}
    section = device_section(params)
    device = params.get(section, {}).get("device", "auto")
    if args.lanes > 1:
        check_lanes(stages)
    selected = []
    for stage in stages:
        if {stage.name, stage.kind} & set(args.skip) or (args.only and not {stage.name, stage.kind} & set(args.only)):
            print(f"{stage.name:30s} skipped", flush=True)
        else:
            selected.append(stage)
    budget = "no budget" if args.budget is None else f"budget {args.budget:.0f} s"
    header = (
        f"Stages of the dvc.yaml files, one process each ({sys.executable}); {section}.device = {device}; {args.lanes} "
        f"lane(s), {budget}.\n"
        "start-up = process wall - work; work = the stage's own wall_s in its timings/ file(s) (summed over seeds), "
        "timed from after params, device and data are loaded to its last write. Start-up is Python, imports, "
        "CUDA initialization, loading the data, and the exit."
    )
    runner = Runner(args.budget, args.table, header)
    runner.run_all(selected, args.lanes)
    print("\n" + runner.report(), flush=True)
    if runner.stop == "budget spent":
        sys.exit(124)
    if runner.stop:
        sys.exit(1)


if __name__ == "__main__":
    main()
