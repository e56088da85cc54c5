"""What an edit in the report layer reruns, read from the dvc.yaml files instead of a `dvc repro`.

DVC reruns a stage when one of its deps changed, and a dep is a file or a directory above it; tests/test_dvc_deps.py
checks that every stage's deps are exactly the src/ modules its script imports. So which stages a report edit
reruns is a static fact of the deps: only aggregate and plots, every training and probe stage staying up to date
(the payoff of the layering in tests/test_layers.py).
"""

from __future__ import annotations

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
from stage_deps import stage_bodies  # noqa: E402

REPORT = sorted(str(p.relative_to(REPO)) for p in (REPO / "src/landscape/report").glob("*.py"))


def covers(dep: str, path: str) -> bool:
    """Whether a change to the file ``path`` is a change to the dep ``dep`` (the file itself or a directory above)."""
    return path == dep.rstrip("/") or path.startswith(f"{dep.rstrip('/')}/")


def stages_depending_on(paths: list[str]) -> dict[str, set[str]]:
    """Stage name -> which of ``paths`` its deps cover, for the stages of every dvc.yaml that depend on any."""
    found = {}
    for name, body in stage_bodies().items():
        hit = {p for p in paths for dep in body.get("deps", []) if covers(dep, p)}
        if hit:
            found[name] = hit
    return found


def test_covers_reads_files_and_directories() -> None:
    assert covers("src/landscape/report/report.py", "src/landscape/report/report.py")
    assert covers("src/landscape", "src/landscape/report/report.py") and covers("src/", "src/landscape/x.py")
    assert not covers("src/landscape/rep", "src/landscape/report/report.py")
    assert not covers("src/landscape/report/report.py", "src/landscape/report/report.pyc")


def test_a_report_edit_reruns_only_aggregate_and_plots() -> None:
    assert len(REPORT) > 10 and "src/landscape/report/report.py" in REPORT
    found = stages_depending_on(REPORT)
    assert set(found) == {"aggregate", "plots"}, found
    assert "src/landscape/report/aggregate.py" in found["aggregate"]
    assert "src/landscape/report/report.py" in found["plots"]
    # and none of them through a directory, which a new module in the layer would change too
    new_module = "src/landscape/report/new_module.py"
    assert stages_depending_on([new_module]) == {}
