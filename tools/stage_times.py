"""Per-stage wall times and peak memory of the last `dvc repro`, from timings/<variant>/<seed>/train.json (training,
one stage per seed) and timings/<variant>/<kind>/<seed>/<kind>.json (a probe stage, one file per seed it probed).

    python tools/stage_times.py            # markdown table: variant x stage, median over seeds

The wall time is the stage's own work (from after loading data and model to the last write); each stage
process also spends a few seconds starting Python and torch and loading the dataset.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

STAGES = ("train", "robustness", "slice", "curvature")


def collect(root: Path) -> dict[tuple[str, str], dict[str, dict]]:
    """(stage, variant) -> seed -> that run's timing record (a probe stage's: the part of it spent on that seed)."""
    found: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)
    for path in [*sorted(root.glob("*/*/*.json")), *sorted(root.glob("*/*/*/*.json"))]:
        variant, seed, stage = path.relative_to(root).parts[0], path.parts[-2], path.stem
        found[(stage, variant)][seed] = json.loads(path.read_text())
    return found


def table(found: dict[tuple[str, str], dict[str, dict]]) -> str:
    """One row per variant: each stage's median over seeds, the median over seeds of a whole run (its stages
    summed), and lambda_max during training as a share of the training itself (during_training_s / train_s)."""
    variants = sorted({v for _, v in found}, key=lambda v: (not v.startswith("mlp"), v))
    lines = [
        "| variant | " + " | ".join(STAGES) + " | one run | lambda_max share of training |",
        "|---|" + "---|" * (len(STAGES) + 2),
    ]
    for v in variants:
        cells = []
        per_seed: dict[str, float] = defaultdict(float)  # a run's stages summed, matched by seed
        for stage in STAGES:
            runs = found.get((stage, v), {})
            cells.append(f"{statistics.median(r['wall_s'] for r in runs.values()):.1f} s" if runs else "–")
            for seed, r in runs.items():
                per_seed[seed] += r["wall_s"]
        cells.append(f"{statistics.median(per_seed.values()):.1f} s" if per_seed else "–")
        train = found.get(("train", v), {}).values()
        share = [r["during_training_s"] / r["train_s"] for r in train if r.get("train_s")]
        cells.append(f"{100 * statistics.median(share):.1f} %" if share else "–")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    total = sum(r["wall_s"] for runs in found.values() for r in runs.values())
    peak = max(r["peak_rss_mb"] for runs in found.values() for r in runs.values())
    n = sum(len(runs) for runs in found.values())
    lines.append(f"\n{n} stage runs, {total / 60:.1f} min of stage work in all; largest peak RSS {peak:.0f} MB.")
    return "\n".join(lines)


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("timings")
    if not root.is_dir():
        sys.exit(f"error: {root} does not exist; run dvc repro first.")
    print(table(collect(root)))


if __name__ == "__main__":
    main()
