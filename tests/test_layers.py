"""The package's layers: what each may import, what installing it needs, and what an edit in one reruns.

``landscape.probes`` (torch only) <- ``landscape.study`` (params, models, training, stage plumbing) <-
``landscape.report`` (statistics, aggregate, figures); ``landscape.errors`` is shared by all. Imports only go
down, which the AST of every module shows; ``pip install .`` gives the probes (torch, numpy) and the ``study``
extra the rest. The payoff, checked on a tiny repro'd project: an edit anywhere in the report layer leaves every
training and probe stage up to date.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, run_command
from landscape import probes

SRC = REPO / "src"
PACKAGE = SRC / "landscape"
# What each layer may import besides the standard library; a name allows itself and its submodules.
ALLOWED = {
    "probes": ("torch", "numpy", "landscape.errors", "landscape.probes"),
    "base": ("landscape.errors",),  # landscape/__init__.py and landscape/errors.py, which every layer imports
}
FORBIDDEN = {"study": ("landscape.report",)}
# The report's render pass (report.md and the figures, from metrics/study.json) reads no params and runs no
# statistics: it may not import params, scipy or anything of the analysis pass (report/analysis/, where every
# statistic is computed); the words both passes share (Interval, FACTORS, ALPHA, the verdict rule) are in
# report/terms.py. Its modules: report/render/ and the shared drawing and formatting helpers beside it.
RENDER = ("report/render/", "report/format.py", "report/plotting_style.py", "report/plotting_regimes.py")
RENDER_FORBIDDEN = ("landscape.study.params", "scipy", "landscape.report.analysis")
# What the probes must run without: the study extra, and the benchmark's reference side.
NOT_IN_BASE = ("dvc", "pandas", "matplotlib", "yaml", "tqdm", "torchvision")


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    name: str  # absolute dotted name: `from a.b import c` gives a.b.c when a/b/c is a module here, else a.b

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line} imports {self.name}"


def is_project_module(name: str) -> bool:
    base = SRC.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, source: str | None = None) -> list[Import]:
    """Every import in the module at ``path`` (nested in functions too; relative ones resolved), once per line."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            found += [Import(path, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            children = (f"{module}.{alias.name}" for alias in node.names)
            found += [Import(path, node.lineno, c if is_project_module(c) else module) for c in children]
    return sorted(set(found), key=lambda imp: (imp.line, imp.name))


def layer_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else "base"


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in prefixes)


def violations(path: Path, source: str | None = None) -> list[str]:
    """The imports of the module at ``path`` that its layer may not make, one message each."""
    layer, found = layer_of(path), []
    for imp in imports_of(path, source):
        if layer in ALLOWED and imp.name.split(".")[0] not in sys.stdlib_module_names:
            if not within(imp.name, ALLOWED[layer]):
                allowed = ", ".join(("the standard library", *ALLOWED[layer]))
                found.append(f"{imp}: {layer} may import only {allowed} (and their submodules)")
        if within(imp.name, FORBIDDEN.get(layer, ())):
            found.append(f"{imp}: {layer} may not import {', '.join(FORBIDDEN[layer])}")
    return found


def is_render(path: Path) -> bool:
    relative = path.relative_to(PACKAGE).as_posix()
    return any(relative.startswith(r) for r in RENDER)


def render_violations(path: Path, source: str | None = None) -> list[str]:
    """The imports of a render module that bring params, scipy or anything of the analysis pass."""
    found = []
    for imp in imports_of(path, source):
        if within(imp.name, RENDER_FORBIDDEN):
            found.append(f"{imp}: the render pass reads no params and runs no statistics (read study.json)")
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))
RENDER_MODULES = [p for p in MODULES if is_render(p)]


def test_every_layer_has_modules() -> None:
    assert {layer_of(p) for p in MODULES} == {"base", "probes", "study", "report"}
    assert {p.parent.name for p in MODULES if layer_of(p) == "report"} >= {"report", "analysis", "render"}


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_imports_only_go_down(path: Path) -> None:
    found = violations(path)
    assert not found, "\n".join(found)


@pytest.mark.parametrize("path", RENDER_MODULES, ids=[str(p.relative_to(PACKAGE)) for p in RENDER_MODULES])
def test_render_pass_imports_no_params_and_no_statistics(path: Path) -> None:
    found = render_violations(path)
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("source", "bad"),
    [
        ("from landscape.report.terms import Interval, ALPHA\nfrom landscape.report.schema import StudySummary\n", 0),
        ("from landscape.report.analysis.stats import holm_family\n", 1),
        ("from landscape.report.analysis.stats import ALPHA\n", 1),
        ("from landscape.report.analysis.aggregate import study_summary\n", 1),
        ("from landscape.report.analysis import ranking\n", 1),
        ("from landscape.study.params import load_params\n", 1),
        ("import scipy.stats\n", 1),
    ],
)
def test_render_violations_catch_statistics_and_params(source: str, bad: int) -> None:
    assert len(render_violations(PACKAGE / "report/render/report.py", source)) == bad


def test_the_plots_stage_reaches_no_params_and_no_analysis() -> None:
    """stages/plots.py's whole import closure: no params, and none of the analysis pass's computing modules."""
    sys.path.insert(0, str(REPO / "tools"))
    from stage_deps import module_closure

    closure = module_closure(REPO / "stages" / "plots.py")
    assert "src/landscape/study/params.py" not in closure
    computing = [m for m in closure if m.startswith("src/landscape/report/analysis/") and not m.endswith("__init__.py")]
    assert not computing, computing


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("probes/sweeps.py", "import torch.nn as nn\nimport math\nfrom landscape.probes import data\n", []),
        ("probes/sweeps.py", "import numpy\nfrom landscape.errors import StudyError\n", []),
        ("probes/sweeps.py", "x = 1\ndef f():\n    import pandas\n", ["3 imports pandas"]),
        ("probes/sweeps.py", "from landscape import study\n", ["1 imports landscape.study"]),
        ("probes/layers.py", "from ..study.params import X\n", ["1 imports landscape.study.params"]),
        ("probes/__init__.py", "from . import data\nfrom .. import report\n", ["2 imports landscape.report"]),
        ("study/train.py", "import pandas\nfrom landscape.probes import data\n", []),
        (
            "study/train.py",
            "from landscape.report.analysis.stats import t\n",
            ["1 imports landscape.report.analysis.stats"],
        ),
        ("errors.py", "from landscape.probes import data\n", ["1 imports landscape.probes.data"]),
        ("report/analysis/stats.py", "import matplotlib\nfrom landscape.study import params\n", []),
    ],
)
def test_violations_name_module_line_and_import(module: str, source: str, expected: list[str]) -> None:
    found = violations(PACKAGE / module, source)
    assert len(found) == len(expected), found
    for message, where in zip(found, expected, strict=True):
        assert message.startswith(f"src/landscape/{module}:{where}:"), message


def requirement_pins(lines: list[str]) -> dict[str, str]:
    """``name==version`` requirements (markers aside) as {canonical name: version}."""
    pins = {}
    for line in lines:
        requirement = line.split(";")[0].strip()
        if requirement:
            name, _, version = requirement.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def installed_requirements() -> dict[str | None, dict[str, str]]:
    """The installed package's metadata: extra (None for the base) -> {name: pinned version}."""
    by_extra: dict[str | None, list[str]] = {}
    for requirement in importlib.metadata.requires("landscape") or []:
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", requirement)
        by_extra.setdefault(extra and extra.group(1), []).append(requirement)
    return {extra: requirement_pins(lines) for extra, lines in by_extra.items()}


PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_installed_base_needs_torch_and_numpy_only() -> None:
    declared = PYPROJECT["project"]
    installed = installed_requirements()
    assert installed[None] == requirement_pins(declared["dependencies"]), "stale install: run make setup"
    for extra, requirements in declared["optional-dependencies"].items():
        assert installed.get(extra) == requirement_pins(requirements), f"stale install of [{extra}]: run make setup"
    assert set(installed[None]) == {"torch", "numpy"}
    assert set(installed["study"]) == {"dvc", "pyyaml", "pandas", "matplotlib", "tqdm", "scipy"}


def test_pyproject_is_the_one_source_of_the_pins() -> None:
    """Every requirement, of the package, its extras and its build, is an exact pin in pyproject.toml; no
    requirements file repeats them (requirements.txt only installs the package with its extras), and `make setup`
    installs from pyproject.toml alone."""
    declared = PYPROJECT["project"]
    requirements = [*declared["dependencies"], *PYPROJECT["build-system"]["requires"]]
    requirements += [r for extra in declared["optional-dependencies"].values() for r in extra]
    loose = [r for r in requirements if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[0-9][0-9A-Za-z.+!-]*", r)]
    assert not loose, f"not an exact name==version pin: {loose}"
    assert sorted(REPO.glob("requirements*.txt")) == [REPO / "requirements.txt"], "the pins live in pyproject.toml only"
    lines = [line for line in (REPO / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert lines == ["-e .[study,dev]"], f"requirements.txt repeats a pin: {lines}"
    install = (REPO / "Makefile").read_text().partition("$(VENV)/.installed:")[2].partition("\n\n")[0]
    assert install.splitlines()[0].split() == ["pyproject.toml"], install
    assert '["build-system"]["requires"]' in install and "-e '.[study,dev]'" in install, install
    assert "-r " not in install, install


def test_each_layer_installs_what_it_imports() -> None:
    """Every third-party import of a layer comes from a distribution that installing that layer brings."""
    distributions = importlib.metadata.packages_distributions()
    installed = installed_requirements()
    brings = {"probes": set(installed[None]), "base": set()}
    brings["study"] = brings["report"] = brings["probes"] | set(installed["study"])
    missing = []
    for path in MODULES:
        for imp in imports_of(path):
            top = imp.name.split(".")[0]
            if top in sys.stdlib_module_names or top == "landscape":
                continue
            names = {re.sub(r"[-_.]+", "-", d).lower() for d in distributions.get(top, [top])}
            if not names & brings[layer_of(path)]:
                missing.append(f"{imp}, which {layer_of(path)}'s install does not bring")
    assert not missing, "\n".join(missing)


# Run in a fresh interpreter: a finder ahead of all others refuses NOT_IN_BASE, then every probes module and
# every name of landscape.probes is imported; nothing of the study or report layers may have been loaded.
WITHOUT_STUDY_EXTRA = """
import importlib, pkgutil, sys
BLOCKED = set(sys.argv[1:])
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: not a dependency of the base install")
sys.meta_path.insert(0, Refuse())
from landscape import probes
for info in pkgutil.iter_modules(probes.__path__, "landscape.probes."):
    importlib.import_module(info.name)
for name in probes.__all__:
    getattr(probes, name)
upper = ("landscape.study", "landscape.report")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED or m.startswith(upper))
assert not loaded, loaded
print(len(probes.__all__), "names")
"""


@pytest.mark.slow
def test_probes_import_without_the_study_extra(tmp_path: Path) -> None:
    out = run_command([sys.executable, "-c", WITHOUT_STUDY_EXTRA, *NOT_IN_BASE], tmp_path).stdout
    assert out.strip() == f"{len(probes.__all__)} names"
