"""What an edit in the report layer reruns, read from the dvc.yaml files instead of a `dvc repro`.

DVC reruns a stage when one of its deps changed, and a dep is a file or a directory above it; tests/test_dvc_deps.py
checks that every stage's deps are exactly the src/ modules its script imports. So which stages a report edit
reruns is a static fact of the deps: only aggregate and plots, every training and probe stage staying up to date
(the payoff of the layering in tests/test_layers.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
from stage_deps import module_closure, stage_bodies  # noqa: E402

REPORT = sorted(str(p.relative_to(REPO)) for p in (REPO / "src/landscape/report").rglob("*.py"))
PROBE_STAGES = {"robustness", "slice", "curvature"}  # one stage per variant each (pipeline/<kind>/dvc.yaml)


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
    assert len(REPORT) > 10
    found = stages_depending_on(REPORT)
    assert set(found) == {"aggregate", "plots"}, found
    for stage in ("aggregate", "plots"):  # each through the report modules its script imports, at least
        imported = {m for m in module_closure(REPO / "stages" / f"{stage}.py") if m in REPORT}
        assert imported and imported <= found[stage], (stage, sorted(imported - found[stage]))
    # a new module of the layer, wherever in it, reruns at most these two (a folder dep covers it, a file list not)
    for folder in sorted({str(Path(m).parent) for m in REPORT}):
        assert set(stages_depending_on([f"{folder}/new_module.py"])) <= {"aggregate", "plots"}, folder


def test_a_new_probe_module_reruns_every_probe_stage_and_no_training() -> None:
    """The probe stages depend on src/landscape/probes as one folder (a new module there reruns them all, so none
    can miss one it comes to import); training lists the probe modules it imports, one by one."""
    found = stages_depending_on(["src/landscape/probes/new_module.py"])
    assert set(found) == PROBE_STAGES, found
    training = {name for name in stage_bodies() if name.startswith("train_")}
    assert training and not training & set(found)
    assert {"train_mlp", "train_cnn"} <= set(stages_depending_on(["src/landscape/probes/hessian.py"]))
