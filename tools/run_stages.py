"""Run the stage commands of dvc.yaml without DVC, one process per stage, timing each; for machines without DVC.

    python tools/run_stages.py [--skip download] [--only robustness] [--lanes 3] [--budget 400]
                               [--table pipeline-times.txt]

Expands ``matrix`` and ``foreach`` stages the way DVC does (``name@<v1>-<v2>`` for a matrix,
``name@<item>`` for foreach; ``${item...}`` and ``${<params key>}`` substituted from the item and
params.yaml), over dvc.yaml and the per-kind ``pipeline/<kind>/dvc.yaml`` files (their stages named as DVC names
them, ``pipeline/slice/dvc.yaml:slice@cnn-0``), and runs each after the stages whose outputs it reads, in file
order otherwise. A cmd's leading ``NAME=value``
words set variables for it, as in the shell DVC runs it in (``PYTHONPATH=src python ...``), and ``python`` is
this interpreter. ``set_device`` sets the device key of a params file (tools/gpu_check.sh uses it).

Each stage's process wall time is split into its own work, the ``wall_s`` its ``timings/`` output holds
(``landscape.study.stage.Timer``: from after params, device and data are loaded to the last write), and
start-up, the rest: Python, imports, CUDA initialization, loading the data, and the exit. A timing file
older than the stage's process counts as missing. Stages without a ``timings/`` output (download,
aggregate, plots) have a process wall only.

``--lanes N`` runs the stages of different seeds concurrently: the single-machine analogue of one shard per
seed. Stages whose matrix item has a ``seed`` run in N worker lanes, each lane running all stages of one seed
in file order, one process each; the stages of no seed (download before, aggregate and plots after) run alone,
in order, between them. A seed's stages read only their own seed's outputs (checked before anything runs).

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

REFERENCE = re.compile(r"\$\{\s*([^}]+?)\s*\}")
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
TIMINGS = "timings/"
TAIL_LINES = 40  # lines of a failed stage's output shown
KIND_ORDER = {k: i for i, k in enumerate(("train", "robustness", "slice", "path", "curvature"))}  # pipeline/<kind>


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


def pipeline_files(dvc_yaml: Path) -> list[tuple[Path, str]]:
    """(file, the prefix DVC puts before its stage names) for ``dvc_yaml`` and every ``pipeline/<kind>/dvc.yaml``
    beside it: DVC addresses a stage of a dvc.yaml other than the root one as ``<its path>:<name>``."""
    root = dvc_yaml.parent
    files = sorted(root.glob("pipeline/*/dvc.yaml"), key=lambda f: (KIND_ORDER.get(f.parent.name, len(KIND_ORDER)), f))
    return [(dvc_yaml, "")] + [(f, f"{f.relative_to(root).as_posix()}:") for f in files]


def expanded_items(dvc_yaml: Path, params_file: Path | None = None) -> list[tuple[str, dict, Any]]:
    """(name, stage body with every reference resolved, its matrix or foreach item or None) for every stage of
    ``dvc_yaml`` and of the per-kind dvc.yaml files under ``pipeline/`` beside it, each after the stages whose
    outputs it reads (``dependency_order``). References resolve from ``params_file`` (default: the params.yaml
    beside ``dvc_yaml``), which the per-kind files read too (their ``vars``)."""
    params_file = params_file or dvc_yaml.parent / "params.yaml"
    params = yaml.safe_load(params_file.read_text()) if params_file.is_file() else {}
    items = [item for path, prefix in pipeline_files(dvc_yaml) for item in _file_items(path, prefix, params)]
    return dependency_order(items)


def _outputs(body: dict) -> list[str]:
    return [(next(iter(o)) if isinstance(o, dict) else o).rstrip("/") for key in ("outs", "metrics", "plots")
            for o in body.get(key, []) or []]  # fmt: skip


def dependency_order(items: list[tuple[str, dict, Any]]) -> list[tuple[str, dict, Any]]:
    """The stages in an order where each comes after every stage whose outputs it reads (a dep equal to an output,
    inside an output directory, or a directory holding outputs), otherwise in the order given."""
    producers: dict[str, set[int]] = {}  # an output path, and each folder above it -> the stages writing there
    exact: dict[str, set[int]] = {}
    for i, (_, body, _) in enumerate(items):
        for path in _outputs(body):
            exact.setdefault(path, set()).add(i)
            parts = path.split("/")
            for n in range(1, len(parts) + 1):
                producers.setdefault("/".join(parts[:n]), set()).add(i)
    before: list[set[int]] = []
    for j, (_, body, _) in enumerate(items):
        needed: set[int] = set()
        for dep in body.get("deps", []) or []:
            parts = dep.rstrip("/").split("/")
            needed |= producers.get("/".join(parts), set())  # the output itself, or outputs inside the dep
            for n in range(1, len(parts)):
                needed |= exact.get("/".join(parts[:n]), set())  # the dep inside an output directory
        before.append(needed - {j})
    order: list[int] = []
    done: set[int] = set()
    while len(order) < len(items):
        ready = next((k for k in range(len(items)) if k not in done and before[k] <= done), None)
        if ready is None:
            raise SystemExit("error: the stages' deps and outs form a cycle; dvc.yaml cannot be run in order")
        order.append(ready)
        done.add(ready)
    return [items[k] for k in order]


def _file_items(dvc_yaml: Path, prefix: str, params: dict) -> list[tuple[str, dict, Any]]:
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    out = []
    for name, stage in stages.items():
        name = prefix + name
        stage = {k: v for k, v in stage.items() if k != "wdir"}  # every stage runs in the repository root
        if "matrix" in stage:
            axes = {k: substitute(v, params) for k, v in stage["matrix"].items()}
            body = {k: v for k, v in stage.items() if k != "matrix"}
            for values in itertools.product(*axes.values()):
                item = dict(zip(axes, values, strict=True))
                key = "-".join(str(v) for v in values)
                out.append((f"{name}@{key}", substitute(body, {**params, "item": item}), item))
        elif "foreach" in stage:
            items = substitute(stage["foreach"], params)
            pairs = items.items() if isinstance(items, dict) else ((i, i) for i in items)
            for key, item in pairs:
                out.append((f"{name}@{key}", substitute(stage["do"], {**params, "item": item, "key": key}), item))
        else:
            out.append((name, substitute(stage, params), None))
    return out


def expanded_stages(dvc_yaml: Path, params_file: Path | None = None) -> list[tuple[str, dict]]:
    """(name, stage body with every reference resolved) for every stage, matrix and foreach stages expanded."""
    return [(name, body) for name, body, _ in expanded_items(dvc_yaml, params_file)]


def stage_commands(dvc_yaml: Path, params_file: Path | None = None) -> list[tuple[str, str]]:
    """(name, cmd) for every stage, in file order, matrix and foreach stages expanded."""
    return [(name, body["cmd"]) for name, body in expanded_stages(dvc_yaml, params_file)]


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
    name: str
    cmd: str
    lane_key: Any  # the matrix item's seed; None for a stage of the whole study
    timing: Path | None  # its timings/ output

    @property
    def kind(self) -> str:
        """The stage name before ``@``, without the dvc.yaml path DVC puts before a per-kind file's stages."""
        return self.name.split(":")[-1].split("@")[0]


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


def stages_of(dvc_yaml: Path, params_file: Path | None = None) -> list[Stage]:
    out = []
    for name, body, item in expanded_items(dvc_yaml, params_file):
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in body.get("outs", [])]
        timing = next((Path(o) for o in outs if o.startswith(TIMINGS) and o.endswith(".json")), None)
        seed = item.get("seed") if isinstance(item, dict) else None
        out.append(Stage(name, body["cmd"], seed, timing))
    return out


def check_lanes(dvc_yaml: Path, params_file: Path | None = None) -> None:
    """Refuse to run lanes if a seed's stage reads another seed's output (lanes would race)."""
    items = expanded_items(dvc_yaml, params_file)
    producer = {}
    for name, body, item in items:
        for o in body.get("outs", []) + body.get("metrics", []) + body.get("plots", []):
            path = next(iter(o)) if isinstance(o, dict) else o
            producer[path.rstrip("/")] = (name, item.get("seed") if isinstance(item, dict) else None)
    for name, body, item in items:
        seed = item.get("seed") if isinstance(item, dict) else None
        if seed is None:
            continue
        for dep in body.get("deps", []):
            dep = dep.rstrip("/")
            for path, (other, other_seed) in producer.items():
                related = path == dep or path.startswith(dep + "/") or dep.startswith(path + "/")
                if related and other_seed is not None and other_seed != seed:
                    raise SystemExit(
                        f"error: {name} (seed {seed}) reads {dep} of {other} (seed {other_seed}): no lanes"
                    )


def phases(stages: list[Stage]) -> list[list[Stage]]:
    """The stages cut into consecutive runs of laned (seeded) and unlaned ones."""
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
            done = subprocess.run(argv, env={**os.environ, **assigned}, capture_output=True, text=True, timeout=left)
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
        """The phase's stages grouped by seed; ``lanes`` workers each take a seed and run its stages in order."""
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
                            self.record(Result(rest, f"not run: {self.stop or 'an earlier stage of its seed failed'}"))
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
    """``wall_s`` of the stage's timing file if this process wrote it (not older than ``started``)."""
    if stage.timing is None or not stage.timing.is_file() or stage.timing.stat().st_mtime < started:
        return None
    try:
        return float(json.loads(stage.timing.read_text())["wall_s"])
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
    """Per stage kind (the dvc.yaml stage name before ``@``): medians, totals and start-up's share."""
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
    parser.add_argument("--skip", action="append", default=[], help="stage or group name to skip (repeatable)")
    parser.add_argument("--only", action="append", default=[], help="run only this stage or group (repeatable)")
    parser.add_argument("--lanes", type=int, default=1, help="worker lanes for the stages of different seeds")
    parser.add_argument("--budget", type=float, help="seconds after which no stage starts and a running one is killed")
    parser.add_argument("--table", type=Path, help="write the table and summaries here too")
    args = parser.parse_args()
    if args.lanes < 1:
        parser.error("--lanes must be at least 1")
    dvc_yaml, params_file = Path("dvc.yaml"), Path("params.yaml")
    params = yaml.safe_load(params_file.read_text()) or {}
    section = device_section(params)
    device = params.get(section, {}).get("device", "auto")
    if args.lanes > 1:
        check_lanes(dvc_yaml, params_file)
    selected = []
    for stage in stages_of(dvc_yaml, params_file):
        if (
            stage.name in args.skip
            or stage.kind in args.skip
            or (args.only and not {stage.name, stage.kind} & set(args.only))
        ):
            print(f"{stage.name:30s} skipped", flush=True)
        else:
            selected.append(stage)
    budget = "no budget" if args.budget is None else f"budget {args.budget:.0f} s"
    header = (
        f"Stages of dvc.yaml, one process each ({sys.executable}); {section}.device = {device}; {args.lanes} "
        f"lane(s), {budget}.\n"
        "start-up = process wall - work; work = the stage's own wall_s in timings/<variant>/<seed>/<stage>.json, "
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
