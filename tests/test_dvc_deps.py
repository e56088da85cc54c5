"""Every stage's deps in the dvc.yaml files list the project modules its script imports, transitively within src/.

A module missing from deps would leave the stage's results stale after a change there while
`dvc status` says "up to date"; the failure message names the stage and the module.
"""

from __future__ import annotations

import sys

import pytest

from conftest import REPO
from landscape.study import shape

sys.path.insert(0, str(REPO / "tools"))
from stage_deps import covered, folder_deps, module_closure, stage_bodies, stage_scripts  # noqa: E402

BODIES = list(stage_bodies().items())  # every stage of dvc.yaml and of pipeline/<kind>/dvc.yaml


def test_every_stage_kind_is_checked() -> None:
    """Every stage DVC resolves (landscape.study.shape) is one of the stages checked here, as its group's body."""
    groups = {r.address.split(":")[-1].split("@")[0] for r in shape.stages(REPO)}
    assert {n for n, _ in BODIES} == groups
    assert {"download", "train_mlp", "train_cnn", "aggregate", "plots"} < groups


@pytest.mark.parametrize(("name", "body"), BODIES, ids=[n for n, _ in BODIES])
def test_stage_deps_cover_every_imported_module(name: str, body: dict) -> None:
    script = stage_scripts()[name]
    deps = list(body["deps"])
    assert script in deps, f"stage {name}: its script {script} is not in deps"
    closure = module_closure(REPO / script)
    missing = sorted(m for m in closure if not covered(m, deps))
    assert not missing, f"stage {name} imports {', '.join(missing)} but dvc.yaml does not list it in deps"
    stale = sorted(
        p for p in deps if p.startswith("src/") and p not in folder_deps(deps) and p not in closure
    ) + sorted(f for f in folder_deps(deps) if not any(m.startswith(f"{f}/") for m in closure))
    assert not stale, (
        f"stage {name} lists {', '.join(stale)} in deps but does not import it (python tools/stage_deps.py --write)"
    )
    redundant = sorted(m for m in deps if m not in folder_deps(deps) and covered(m, folder_deps(deps)))
    assert not redundant, f"stage {name} lists {', '.join(redundant)} and a folder dep above it"


def test_probe_stages_depend_on_the_probes_folder() -> None:
    """The probe stages depend on src/landscape/probes as one folder (issue 27), not on each module of it."""
    bodies = dict(BODIES)
    for name in ("robustness", "slice", "curvature"):
        deps = bodies[name]["deps"]
        assert "src/landscape/probes" in deps, name
        assert not [d for d in deps if d.startswith("src/landscape/probes/")], name


def test_closure_follows_imports_transitively() -> None:
    closure = module_closure(REPO / "stages" / "download.py")
    assert "src/landscape/study/fetch.py" in closure and "src/landscape/errors.py" in closure
    assert "src/landscape/study/data.py" not in closure  # the download stage does not load tensors
