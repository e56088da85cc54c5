"""Integration: the whole DVC pipeline on a tiny synthetic dataset in a throwaway git repo.

The study matrix is Model A and Model B (``mlp``, ``cnn``) x training seed 0: conftest's session-wide
``reproduced`` project, which the first tests only read. The tests that change it run in file order on one copy
of it (``copied``), each committing what it changed:

- the first `dvc repro` runs every stage of the matrix (training per variant x seed, each probe kind once per
  variant over the seeds), writes every output where RunPaths says, and the aggregate sees every run;
- the README's headline `dvc exp show` command fits a terminal, and a plain one shows the headline metric only;
- a change under `mlp:` reruns only MLP-family work;
- adding a seed trains only the new seed, and reruns each variant's probe stages (one stage over all its seeds),
  which give the existing seed's results unchanged;
- a change under `robustness:` reruns no training;
- `dvc metrics diff` shows the study's headline results, and `dvc plots diff` compares against HEAD.

Each test checks the per-run stages first, then the summary (aggregate and plots, ``Reproduction.summary()``), so
that a failure of landscape.report's code shows as such.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import (
    DVC,
    REPRODUCED_SEEDS,
    SUMMARY,
    TINY_PARAMS,
    Reproduction,
    commit_all,
    copy_project,
    repro,
    run_command,
    update_params,
)

pytestmark = pytest.mark.slow

PROBE_KINDS = ("robustness", "slice", "curvature")  # one stage per variant each, looping over the seeds
# Every file of a probe stage kind, per seed: metrics/runs/<v>/<kind>/<seed>/<name>.json and
# plots/runs/<v>/<kind>/<seed>/<name>.csv (the path from the initial weights is the slice stage's).
KIND_METRICS = {"robustness": ("robustness",), "slice": ("slice", "path"), "curvature": ("curvature",)}
KIND_PLOTS = {"robustness": ("robustness",), "slice": ("slice", "surface", "path"), "curvature": ()}
VARIANTS = TINY_PARAMS["study"]["variants"]
SEEDS = REPRODUCED_SEEDS  # [0]; the seed-adding test brings the copy to 2 variants x 2 seeds
ADDED = 1
HEADLINE = [
    *DVC,
    "exp",
    "show",
    "--no-pager",
    "--md",
    "--drop",
    ".*",
    "--keep",
    r"Experiment|by_variant\.(mlp|cnn)\.(val_acc|gap)\.mean|claims\.(val_acc|a_steeper)\.verdict",
]


def train_stages(variants: list[str], seeds: list[int]) -> set[str]:
    """The names DVC gives the training stages of ``variants`` x ``seeds``: train_<family>@<v>-<s>."""
    return {f"train_{'cnn' if v.startswith('cnn') else 'mlp'}@{v}-{s}" for v in variants for s in seeds}


def probe_stages(variants: list[str], kinds: tuple[str, ...] = PROBE_KINDS) -> set[str]:
    """The names DVC gives the probe stages of ``variants`` (all factorial cells here): <kind>@<v>."""
    return {f"{kind}@{v}" for v in variants for kind in kinds}


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return run_command(args, cwd, src=cwd / "src")


def study(repo: Path) -> dict:
    return json.loads((repo / "metrics" / "study.json").read_text())


def leaf_names(tree: dict, prefix: str = "") -> list[str]:
    """The leaves of a JSON object that DVC shows, as it names them (keys joined with dots; a list is one leaf;
    a null is no column)."""
    out = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += leaf_names(value, f"{name}.")
        elif value is not None:
            out.append(name)
    return out


@pytest.fixture
def repo(reproduced: tuple[Path, set[str]]) -> Path:
    """The shared reproduced project, only read."""
    return reproduced[0]


@pytest.fixture(scope="module")
def copied(reproduced: tuple[Path, set[str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of it for the tests that change the study, in file order."""
    return copy_project(reproduced[0], tmp_path_factory.mktemp("pipeline"))


def test_first_repro_runs_every_stage(reproduced: tuple[Path, Reproduction]) -> None:
    done = reproduced[1]
    assert done.runs == {"download", *train_stages(VARIANTS, SEEDS), *probe_stages(VARIANTS)}
    # DVC's matrix names, as the README uses them: training per variant and seed, a probe per variant
    assert "train_mlp@mlp-0" in done.runs and "robustness@cnn" in done.runs and "slice@mlp" in done.runs
    assert done.summary() == set(SUMMARY)


def test_first_repro_writes_every_per_run_output(repo: Path) -> None:
    """Training's files in <root>/<variant>/<seed>/, each probe kind's in <root>/<variant>/<kind>/<seed>/, and
    nothing else under metrics/runs, plots/runs or timings (no file of the old per-seed probe layout)."""
    expected = set()
    for v in VARIANTS:
        for s in SEEDS:
            run_dir = Path(v) / str(s)
            assert (repo / "models" / run_dir / "model.pt").is_file() and (
                repo / "models" / run_dir / "init.pt"
            ).is_file()
            train = json.loads((repo / "metrics/runs" / run_dir / "train.json").read_text())
            assert (train["variant"], train["seed"]) == (v, s)
            assert 0.0 <= train["val"]["acc"] <= 1.0
            assert train["gap"] == pytest.approx(train["train"]["acc"] - train["val"]["acc"])
            assert (train["epochs"], train["stop_loss"], train["reached_loss"]) == (
                TINY_PARAMS["train"]["epochs"],
                0.0,
                None,
            )
            assert train["steps"] == train["epochs"] * -(-500 // TINY_PARAMS["train"]["batch_size"])  # 600 - 100 val
            expected |= {f"metrics/runs/{v}/{s}/train.json", f"timings/{v}/{s}/train.json"}
            expected |= {f"plots/runs/{v}/{s}/{name}.csv" for name in ("history", "sharpness")}
            timing = json.loads((repo / "timings" / run_dir / "train.json").read_text())
            assert set(timing) == {"wall_s", "peak_rss_mb", "train_s", "during_training_s"}
            history = (repo / "plots/runs" / run_dir / "history.csv").read_text()
            assert history.startswith("epoch,train_loss,train_acc,")
            assert len(history.splitlines()) == 1 + TINY_PARAMS["train"]["epochs"]
            for kind in PROBE_KINDS:
                probe_dir = Path(v) / kind / str(s)
                for name in KIND_METRICS[kind]:
                    summary = json.loads((repo / "metrics/runs" / probe_dir / f"{name}.json").read_text())
                    assert (summary["variant"], summary["seed"]) == (v, s), (kind, name)
                    expected.add(f"metrics/runs/{probe_dir}/{name}.json")
                expected |= {f"plots/runs/{probe_dir}/{name}.csv" for name in KIND_PLOTS[kind]}
                timing = json.loads((repo / "timings" / probe_dir / f"{kind}.json").read_text())
                assert set(timing) == {"wall_s", "peak_rss_mb"}, kind
                expected.add(f"timings/{probe_dir}/{kind}.json")
    written = {
        p.relative_to(repo).as_posix()
        for top in ("metrics/runs", "plots/runs", "timings")
        for p in (repo / top).rglob("*")
        if p.is_file() and p.name != ".gitignore"
    }
    assert written - expected == set(), "files outside the layout"
    assert expected - written == set(), "missing files"


def test_first_repro_writes_the_study_outputs(reproduced: tuple[Path, Reproduction]) -> None:
    repo, done = reproduced
    done.summary()
    for name, x, y in (
        ("val_acc", "epoch", "val_acc"),
        ("gap", "epoch", "gap"),
        ("drop_filter_frozen", "sigma", "drop"),
        ("slice_val_frozen", "alpha", "rise"),
        ("path_train", "t", "loss"),
    ):
        lines = (repo / "plots" / "study" / f"{name}.csv").read_text().splitlines()
        assert lines[0] == f"{x},variant,{y}", (name, lines[0])  # long format: the by_variant template colours by it
        assert {line.split(",")[1] for line in lines[1:]} == set(VARIANTS), name
    assert list((repo / "plots" / "figures").glob("*.png"))
    assert (repo / "report.md").stat().st_size > 0
    assert run([*DVC, "status"], repo).stdout.strip().endswith("up to date.")


def test_aggregate_sees_every_run(reproduced: tuple[Path, Reproduction]) -> None:
    repo, done = reproduced
    done.summary()
    s = study(repo)
    assert s["seeds"] == SEEDS
    assert sorted(s["variants"]) == sorted(VARIANTS)
    measures = ("val_acc", "test_acc", "gap", "gap_running", "curvature_exact", "lambda_max", "trace")
    for v in VARIANTS:
        for measure in (*measures, "adaptive_sharpness", "theta_norm"):
            assert s["variants"][v][measure]["interval"]["n"] == len(SEEDS), (v, measure)
    assert s["b_minus_a"]["val_acc"]["interval"]["n"] == len(SEEDS)
    assert {c["verdict"] for c in s["claims"]} <= {"agrees", "differs", "inconclusive"}
    assert s["effects"] == {}  # two variants are no factorial


def test_headline_exp_show_fits_a_terminal(reproduced: tuple[Path, Reproduction]) -> None:
    repo, done = reproduced
    done.summary()
    out = run(HEADLINE, repo).stdout
    assert "by_variant.mlp.val_acc" in out and "by_variant.cnn.gap" in out
    assert "claims.val_acc.verdict" in out and "claims.a_steeper.verdict" in out
    assert "timings" not in out and "wall_s" not in out
    widths = [len(line) for line in out.splitlines()]
    assert max(widths) < 200, f"{max(widths)} characters wide:\n{out}"
    assert "workspace" in out, f"the rows do not say which experiment they are:\n{out}"


def test_plain_exp_show_has_the_headline_and_not_the_full_table(reproduced: tuple[Path, Reproduction]) -> None:
    """`dvc exp show` with no filter: every declared metric is a column (6,800 of them with the full table)."""
    repo, done = reproduced
    done.summary()
    header = run([*DVC, "exp", "show", "--no-pager", "--csv"], repo).stdout.splitlines()[0].split(",")
    headline = leaf_names(json.loads((repo / "metrics" / "headline.json").read_text()))
    assert set(headline) <= set(header)
    assert not [c for c in header if "headline.json:" in c]  # DVC prefixes a metric that shares a param's name
    assert not [c for c in header if c.startswith(("b_minus_a", "seeds", "variants.mlp.val_acc"))]  # study.json
    # Here 329 columns: 38 of the headline (one seed: the CIs are null), 5 experiment fields, 225 params (DVC shows
    # every key of params.yaml: the 25 variants' overrides and the question rules included), 61 dependencies (folder
    # deps: 70 before). The full table made it 6,800. A plain `dvc exp show` within 200 columns needs fewer params
    # keys (not done); the README's everyday command is `dvc exp show --only-changed`.
    assert len(header) <= 340, f"{len(header)} columns: {header}"


def test_mlp_change_reruns_only_mlp_work(copied: Path) -> None:
    repo = copied
    update_params(repo / "params.yaml", {"mlp": {"hidden": [24, 16]}})
    done = repro(repo)
    commit_all(repo, "narrower mlp")
    assert done.runs == train_stages(["mlp"], SEEDS) | probe_stages(["mlp"])
    train = json.loads((repo / "metrics/runs/mlp/0/train.json").read_text())
    assert train["n_parameters"] == 784 * 24 + 24 + 24 * 16 + 16 + 16 * 10 + 10
    assert done.summary() == set(SUMMARY)
    n_parameters = study(repo)["variants"]["mlp"]["n_parameters"]["interval"]["mean"]
    assert n_parameters == 784 * 24 + 24 + 24 * 16 + 16 + 16 * 10 + 10
    changed = json.loads(run([*DVC, "metrics", "diff", "HEAD~1", "--json"], repo).stdout)["metrics/headline.json"]
    assert [key for key in changed if key.startswith("by_variant.mlp.")]
    assert not [key for key in changed if key.startswith("by_variant.cnn.")]


def probe_results(repo: Path, seed: int) -> dict[str, bytes]:
    """Every probe summary of ``seed`` (metrics/runs/<v>/<kind>/<seed>/*.json and plots/runs/.../*.csv)."""
    return {
        p.relative_to(repo).as_posix(): p.read_bytes()
        for top in ("metrics/runs", "plots/runs")
        for kind in PROBE_KINDS
        for p in sorted((repo / top).glob(f"*/{kind}/{seed}/*"))
    }


def test_adding_a_seed_retrains_no_existing_run(copied: Path) -> None:
    """A new seed: only its training stages run; each variant's probe stages rerun (one stage over every seed of
    study.seeds) and give the existing seed's probe results byte for byte as before."""
    repo = copied
    before = probe_results(repo, SEEDS[0])
    assert before
    update_params(repo / "params.yaml", {"study": {"seeds": [*SEEDS, ADDED]}})
    done = repro(repo)
    commit_all(repo, "second seed")
    assert done.runs == train_stages(VARIANTS, [ADDED]) | probe_stages(VARIANTS)
    assert probe_results(repo, SEEDS[0]) == before
    assert {Path(p).parts[3] for p in probe_results(repo, ADDED)} == set(PROBE_KINDS)
    assert done.summary() == set(SUMMARY)
    s = study(repo)
    assert s["seeds"] == [*SEEDS, ADDED]
    assert all(s["variants"][v]["val_acc"]["interval"]["n"] == len(SEEDS) + 1 for v in VARIANTS)
    changed = json.loads(run([*DVC, "metrics", "diff", "HEAD~1", "--json"], repo).stdout)
    assert set(changed) == {"metrics/headline.json"}  # per-run files, timings and the full table are no metrics
    assert changed["metrics/headline.json"]["n_seeds"] == {"old": 1, "new": 2, "diff": 1}


def test_plots_diff_against_the_previous_commit(copied: Path) -> None:
    repo = copied
    out_dir = repo.parent / "plots_diff"
    result = run([*DVC, "plots", "diff", "HEAD~1", "-o", str(out_dir)], repo)
    html = (out_dir / "index.html").read_text()
    assert "HEAD~1" in html and "workspace" in html
    assert "static/workspace_plots_figures_" in html  # the figures of both revisions
    # DVC drops a data plot whose y columns are missing from the CSV, with only a warning
    assert "could not find provided field" not in result.stdout + result.stderr, result.stdout + result.stderr
    assert "Validation accuracy per epoch" in html and "L(theta + alpha d)" in html
    assert re.search(r'"field":\s*"variant"', html), "the data plots are not coloured by variant"


def test_robustness_change_reruns_no_training(copied: Path) -> None:
    repo = copied
    update_params(repo / "params.yaml", {"robustness": {"trials": 3}})
    done = repro(repo)
    commit_all(repo, "more trials")
    assert done.runs == probe_stages(VARIANTS, ("robustness",))
    for v in VARIANTS:
        for s in [*SEEDS, ADDED]:
            summary = json.loads((repo / f"metrics/runs/{v}/robustness/{s}/robustness.json").read_text())
            assert summary["seed"] == s
    assert done.summary() == set(SUMMARY)
