"""The README's statements about the committed study's outputs hold for the committed files."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def leaves(value) -> int:
    """The values `dvc metrics diff` and `dvc exp show` list: scalars, nested keys flattened, lists left out."""
    if isinstance(value, dict):
        return sum(leaves(v) for v in value.values())
    return 0 if isinstance(value, list) else 1


def test_the_readme_counts_the_committed_headline_values():
    readme = (REPO / "README.md").read_text()
    counts = {int(n) for n in re.findall(r"(\d+) values: ", readme)}
    assert counts == {leaves(json.loads((REPO / "metrics" / "headline.json").read_text()))}
