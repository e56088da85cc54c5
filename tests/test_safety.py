"""Static safety checks on the code that ships: no shell, no eval/exec, no unsafe loading, one network door."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO

SHIPPED = sorted(p for d in ("src", "stages", "tools") for p in (REPO / d).rglob("*.py"))
FORBIDDEN = {
    "shell=True": re.compile(r"shell\s*=\s*True"),
    "eval/exec of text": re.compile(r"(?<![.\w])(eval|exec)\("),
    "unsafe torch.load": re.compile(r"weights_only\s*=\s*False"),
    "pickle loading": re.compile(r"pickle\.loads?\("),
    "os.system": re.compile(r"os\.system\("),
}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_no_forbidden_constructs(path: Path) -> None:
    text = path.read_text()
    found = [name for name, pattern in FORBIDDEN.items() if pattern.search(text)]
    assert not found, f"{path.relative_to(REPO)} uses {found}"


def test_every_torch_load_is_weights_only() -> None:
    calls = [(p, line) for p in SHIPPED for line in p.read_text().splitlines() if "torch.load(" in line]
    assert calls, "expected the checkpoint loader to call torch.load"
    assert all("weights_only=True" in line for _, line in calls), calls


def test_only_the_download_module_opens_urls() -> None:
    users = {
        p.relative_to(REPO).as_posix() for p in SHIPPED if re.search(r"urlopen|requests\.|http\.client", p.read_text())
    }
    assert users == {"src/landscape/study/fetch.py"}
