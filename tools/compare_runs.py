"""Does a second run of the study (e.g. on a GPU) agree with the first? Per variant and headline measure, whether
the second run's mean over seeds lies inside the first run's 95 % confidence interval.

    python tools/compare_runs.py CPU_STUDY_JSON GPU_STUDY_JSON

Both files are metrics/study.json of a run: ``variants.<variant>.<measure>`` with ``mean``, ``ci_low``,
``ci_high`` and ``n`` (over training seeds). The measures compared are the headline ones of the report: validation
accuracy, gap, every sigma*, exact curvature d^T H d, lambda_max, trace, relative flatness and epochs to target.
A measure without a finite interval in the first file (one seed, or every seed censored) or without a mean in
the second ("missing") is listed but not counted. Exit status 0 either way: this is a reading, not a test.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

HEADLINE = (
    "val_acc",
    "gap",
    "sigma_star_*",
    "curvature_exact",
    "lambda_max",
    "trace",
    "relative_flatness",
    "epochs_to_target",
)


def headline_measures(variant: dict) -> list[str]:
    """The headline measures ``variant`` holds, in HEADLINE's order (``*`` ends a prefix: every such measure)."""
    names = []
    for pattern in HEADLINE:
        if pattern.endswith("*"):
            names += sorted(m for m in variant if m.startswith(pattern[:-1]))
        elif pattern in variant:
            names.append(pattern)
    return names


def number(value: object) -> float:
    """A JSON number as a float; null (how the aggregate writes nan) and anything else as nan."""
    return float(value) if isinstance(value, int | float) else math.nan


def compare(first: dict, second: dict) -> list[dict]:
    """One row per headline (variant, measure) of the first run: its interval, the second run's mean (nan where
    the second run lacks it), and whether that mean lies inside (None where that cannot be said)."""
    rows = []
    variants = second.get("variants", {})
    for variant, measures in first.get("variants", {}).items():
        for measure in headline_measures(measures):
            a, b = measures[measure], variants.get(variant, {}).get(measure, {})
            low, high, mean = number(a.get("ci_low")), number(a.get("ci_high")), number(b.get("mean"))
            inside = low <= mean <= high if all(map(math.isfinite, (low, high, mean))) else None
            row = {"variant": variant, "measure": measure, "first_mean": number(a.get("mean"))}
            row |= {"ci_low": low, "ci_high": high, "second_mean": mean, "inside": inside}
            rows.append(row | {"n_first": a.get("n"), "n_second": b.get("n"), "censored": a.get("censored") or 0})
    return rows


def fmt(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:.4g}"


def report(rows: list[dict], first: str, second: str) -> str:
    lines = [
        f"First run: {first}; second run: {second}.",
        "| variant | measure | first mean [95 % CI] (n) | second mean (n) | inside |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        verdict = {True: "yes", False: "**no**", None: "no CI"}[r["inside"]]
        if not math.isfinite(r["second_mean"]):
            verdict = "missing"
        censored = f", {r['censored']} censored" if r["censored"] else ""
        interval = f"{fmt(r['first_mean'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}] ({r['n_first']}{censored})"
        lines.append(
            f"| {r['variant']} | {r['measure']} | {interval} | {fmt(r['second_mean'])} ({r['n_second']}) | {verdict} |"
        )
    judged = [r for r in rows if r["inside"] is not None]
    inside = sum(r["inside"] for r in judged)
    lines.append(
        f"\n{inside} of {len(judged)} second-run means lie inside the first run's 95 % CI"
        f" ({len(rows) - len(judged)} measures without an interval or a mean not counted)."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path, help="metrics/study.json of the reference run (e.g. the CPU one)")
    parser.add_argument("second", type=Path, help="metrics/study.json of the run to check (e.g. the GPU one)")
    args = parser.parse_args()
    rows = compare(json.loads(args.first.read_text()), json.loads(args.second.read_text()))
    print(report(rows, str(args.first), str(args.second)))


if __name__ == "__main__":
    main()
