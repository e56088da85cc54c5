"""`dvc plots show` / `dvc plots diff` with the generated offline template (`make setup`,
tools/offline_plots_template.py): the page loads no script from the network, carries the Vega
libraries inline and embeds the plot."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from conftest import DVC, REPO, run_command

TEMPLATE = REPO / ".dvc" / "plots_template.html"
MARKER = "offline-vega"  # written by tools/offline_plots_template.py; absent from the CDN fallback

SCRIPT_WITH_SRC = re.compile(r"<script\b[^>]*\bsrc\s*=", re.IGNORECASE)
EMBED_CALL = re.compile(r"var spec = (\{.*?\});\s*vegaEmbed\('#[^']+', spec\);", re.DOTALL)


def run(cmd: list[str], cwd: Path) -> str:
    return run_command(cmd, cwd).stdout


@pytest.fixture(scope="module")
def template_setting() -> str:
    """The committed plots.html_template value, checked to name the generated template."""
    if not TEMPLATE.is_file():
        pytest.skip(f"{TEMPLATE.relative_to(REPO)} not generated: run `make setup` (needs npm)")
    if MARKER not in TEMPLATE.read_text(encoding="utf8"):
        pytest.skip(f"{TEMPLATE.relative_to(REPO)} is DVC's CDN fallback: npm was unavailable at `make setup`")
    setting = run([*DVC, "config", "plots.html_template"], REPO).strip()
    # DVC resolves a relative html_template against .dvc/.
    assert (REPO / ".dvc" / setting).resolve() == TEMPLATE.resolve(), setting
    return setting


@pytest.fixture
def plots_repo(tmp_path: Path, template_setting: str) -> Path:
    """A throwaway git+DVC repo with one committed learning curve and the offline template."""
    repo = tmp_path / "repo"
    repo.mkdir()
    run(["git", "init", "-q"], repo)
    run([*DVC, "init", "-q"], repo)
    run([*DVC, "config", "plots.html_template", template_setting], repo)
    shutil.copyfile(TEMPLATE, repo / ".dvc" / template_setting)
    (repo / "learning_curve.csv").write_text("epoch,acc\n1,0.52\n2,0.71\n3,0.80\n4,0.84\n")
    (repo / "dvc.yaml").write_text("plots:\n  - learning_curve.csv:\n      x: epoch\n      y: acc\n")
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "learning curve"], repo)
    return repo


def check_offline_page(html: str) -> None:
    assert '<script src="http' not in html, "a <script> loads from the network"
    assert not SCRIPT_WITH_SRC.search(html), "a <script> loads its code from elsewhere"
    assert "cdn.jsdelivr.net" not in html
    assert MARKER in html and '<meta charset="utf-8">' in html
    for library in ("vega", "vega-lite", "vega-embed"):
        assert f"<script>/* {library} " in html, f"{library} not inlined"


@pytest.mark.slow
def test_plots_show_offline(plots_repo: Path) -> None:
    out = run([*DVC, "plots", "show", "-o", "plots_out"], plots_repo)
    html = (plots_repo / "plots_out" / "index.html").read_text(encoding="utf8")
    assert "index.html" in out
    check_offline_page(html)
    specs = EMBED_CALL.findall(html)
    assert len(specs) == 1, "expected one vegaEmbed call for learning_curve.csv"
    assert '"epoch"' in specs[0] and '"acc"' in specs[0] and "0.84" in specs[0]


@pytest.mark.slow
def test_plots_diff_offline(plots_repo: Path) -> None:
    (plots_repo / "learning_curve.csv").write_text("epoch,acc\n1,0.60\n2,0.77\n3,0.86\n4,0.90\n")
    run([*DVC, "plots", "diff", "HEAD", "-o", "plots_out"], plots_repo)
    html = (plots_repo / "plots_out" / "index.html").read_text(encoding="utf8")
    check_offline_page(html)
    specs = EMBED_CALL.findall(html)
    assert len(specs) == 1, "expected one vegaEmbed call for learning_curve.csv"
    assert "0.84" in specs[0] and "0.9" in specs[0], "both revisions should be plotted"
