"""Seconds from process start to a stage's first line of work, per stage kind, and how much of it is `import torch`.

    python tools/startup_times.py [--repeats 5] [--variant cnn] [--baseline DIR]    # needs data/raw

``--baseline DIR`` measures another checkout too (e.g. ``git worktree add DIR HEAD``, with its own data/raw),
in the same rounds, and shows both: a before/after table of a change.

Each measurement is a fresh ``python`` process, started the way dvc.yaml starts a stage (its checkout's ``src``
first on the path). A torch stage's process first imports torch and reads the clock, as every torch stage
imports it before anything else of weight; then every process runs the stage script's imports (the script is
loaded under another name, so its ``main`` does not run) and the start-up that ``main`` begins with, and reads
the clock again: params validation for ``download``, ``aggregate`` and ``plots``; params, device and the
dataset (``study_inputs``) for the torch stages. Start-up is the second clock minus the clock just before the
process was spawned, ``import torch`` the first, and what the stage adds to torch the difference of the two
clocks within one process, which load from other work on the machine disturbs least. Processes of all stage
kinds and both checkouts take turns; the table shows medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARAMS = "from landscape.study.params import load_params; load_params()"
INPUTS = "from landscape.study.inputs import study_inputs; study_inputs({variant!r})"
# stage kind -> the start-up its main() runs before the first line of work
STARTUP = {
    "download": PARAMS,
    "train": INPUTS,
    "robustness": INPUTS,
    "slice": INPUTS,
    "path": INPUTS,
    "curvature": INPUTS,
    "aggregate": PARAMS,
    "plots": PARAMS,
}
CHILD = """\
import runpy, sys, time
{torch}
runpy.run_path({script!r}, run_name="startup")
{startup}
print(time.time(), "torch" in sys.modules)
"""
IMPORT_TORCH = "import torch\nprint(time.time())"


def measure(root: Path, kind: str, variant: str) -> dict[str, float]:
    """Clock readings of one fresh process in ``root``, in seconds after its spawning: ``end`` of the start-up of
    ``kind``, and for a torch stage ``torch`` (after ``import torch``)."""
    uses_torch = STARTUP[kind] == INPUTS
    code = CHILD.format(
        torch=IMPORT_TORCH if uses_torch else "",
        script=f"stages/{kind}.py",
        startup=STARTUP[kind].format(variant=variant),
    )
    start = time.time()
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env={**os.environ, "PYTHONPATH": "src"}, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"start-up of {kind} in {root} failed:\n{done.stderr}")
    *stamps, end, torch_loaded = done.stdout.split()
    if not uses_torch and torch_loaded == "True":
        sys.exit(f"{kind} in {root} imported torch; list it as a torch stage in STARTUP")
    return {"end": float(end) - start} | ({"torch": float(stamps[-1]) - start} if uses_torch else {})


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """Median start-up, ``import torch`` and the start-up beyond torch (per process) of ``runs``."""
    out = {"end": statistics.median(r["end"] for r in runs)}
    if "torch" in runs[0]:
        out["torch"] = statistics.median(r["torch"] for r in runs)
        out["beyond"] = statistics.median(r["end"] - r["torch"] for r in runs)
    return out


def table(now: dict[str, dict[str, float]], before: dict[str, dict[str, float]] | None) -> str:
    """Markdown: per stage kind the start-up (the baseline's first, if any), ``import torch``, what the stage adds
    to it, and torch's share of the start-up."""
    head = ["stage", *(["start-up before"] if before else []), "start-up", "`import torch`", "beyond torch"]
    lines = ["| " + " | ".join([*head, "torch's share"]) + " |", "|" + "---|" * (len(head) + 1)]
    for kind, m in now.items():
        cells = [kind, *([f"{before[kind]['end']:.2f} s"] if before else []), f"{m['end']:.2f} s"]
        if "torch" not in m:
            cells += ["(no torch)", "", ""]
        else:
            beyond = f"{before[kind]['beyond']:.2f} → {m['beyond']:.2f} s" if before else f"{m['beyond']:.2f} s"
            cells += [f"{m['torch']:.2f} s", beyond, f"{100 * m['torch'] / m['end']:.0f} %"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per stage kind (median)")
    parser.add_argument("--variant", default="cnn", help="the variant the torch stages start up for")
    parser.add_argument("--baseline", type=Path, help="another checkout to measure in the same rounds (before)")
    args = parser.parse_args()
    roots = [REPO, *([args.baseline.resolve()] if args.baseline else [])]
    for root in roots:
        if not (root / "data" / "raw").is_dir():
            sys.exit(
                f"{root}/data/raw is missing: run the download stage there (PYTHONPATH=src python stages/download.py)"
            )
    runs: dict[Path, dict[str, list]] = {root: {kind: [] for kind in STARTUP} for root in roots}
    for _ in range(args.repeats):
        for kind in STARTUP:
            for root in roots:
                runs[root][kind].append(measure(root, kind, args.variant))
    summary = {root: {kind: medians(r) for kind, r in by_kind.items()} for root, by_kind in runs.items()}
    print(f"Median of {args.repeats} fresh processes per cell, on {os.cpu_count()} CPUs:\n")
    print(table(summary[REPO], summary[roots[1]] if args.baseline else None))


if __name__ == "__main__":
    main()
