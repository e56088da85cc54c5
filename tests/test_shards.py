"""Integration: the study split over several machines through DVC's shared run-cache (README "Several machines").

One tiny project (conftest.tiny_project: Model A and B x seed REPRODUCED_SEEDS), one local-directory DVC remote, and
three clones of it, each standing for a machine: `make shard SEED=0 VARIANT=mlp` and `make shard SEED=0 VARIANT=cnn`
run in two of them, then `make collect` in the third restores every stage the shards ran and runs only aggregate
and plots. The single-machine result the collected one must equal is conftest's session-wide ``reproduced``
project: the same tiny study, reproduced by one `dvc repro`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import DVC, REPO, REPRODUCED_SEEDS, TINY_PARAMS, run_command, tiny_project

pytestmark = pytest.mark.slow

SEEDS = REPRODUCED_SEEDS
VARIANTS = TINY_PARAMS["study"]["variants"]
SUMMARY = ("aggregate", "plots")
SHARDS = [{"SEED": 0, "VARIANT": "mlp"}, {"SEED": 0, "VARIANT": "cnn"}]  # make's variables


def run(args: list, cwd: Path, check: bool = True):
    return run_command(args, cwd, src=cwd / "src", check=check)


@dataclass
class Repro:
    """What one `dvc repro` did, from its lines `Running stage 'x':` and `Stage 'x' is cached - skipping run, ...`."""

    ran: set[str]
    restored: set[str]

    @classmethod
    def of(cls, output: str) -> Repro:
        return cls(
            ran=set(re.findall(r"^Running stage '([^']+)':$", output, re.M)),
            restored=set(re.findall(r"^Stage '([^']+)' is cached - skipping run", output, re.M)),
        )


def make(repo: Path, target: str, check: bool = True, **variables: object):
    """`make <target> NAME=value ...` of this checkout's Makefile in ``repo``, its set-up (the venv) taken as done."""
    args = ["make", "--no-print-directory", "-f", REPO / "Makefile", "-o", "setup", target]
    return run([*args, *(f"{name}={value}" for name, value in variables.items())], repo, check=check)


@dataclass
class Study:
    root: Path
    stages: set[str]  # every stage of the tiny study, as DVC names it (pipeline/<kind>/dvc.yaml:<name>@<v>-<s>)
    shards: list[Repro]  # what `make shard` did in clone shard<i> with the variables SHARDS[i]
    collected: Repro  # what `make collect` did in the collecting clone
    single: Path  # the same study reproduced on one machine (conftest's ``reproduced``)

    def clone(self, name: str) -> Path:
        return self.root / name

    def per_run(self, seed: int, variant: str | None = None) -> set[str]:
        """The matrix stages of ``seed`` (and ``variant``): train_<family>@<v>-<s> and <probe>@<v>-<s>."""
        runs = {name: name.split("@")[1].rsplit("-", 1) for name in self.stages if "@" in name}
        return {name for name, (v, s) in runs.items() if s == str(seed) and variant in (None, v)}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, reproduced: tuple[Path, set[str]]) -> Study:
    root = tmp_path_factory.mktemp("shards")
    origin = tiny_project(root, study={"seeds": SEEDS})
    run([*DVC, "remote", "add", "-d", "store", root / "store"], origin)
    run(["git", "add", "-A"], origin)
    run(["git", "commit", "-qm", "tiny study"], origin)
    for name in (*(f"shard{i}" for i in range(len(SHARDS))), "collector"):
        run(["git", "clone", "-q", origin, root / name], root)
    shards = [Repro.of(make(root / f"shard{i}", "shard", **variables).stdout) for i, variables in enumerate(SHARDS)]
    collected = Repro.of(make(root / "collector", "collect").stdout)
    stages = set(run([*DVC, "stage", "list", "--all", "--name-only"], origin).stdout.split())  # every dvc.yaml
    return Study(root, stages, shards, collected, reproduced[0])


def test_a_shard_runs_its_share_and_reuses_what_another_shard_pushed(study: Study) -> None:
    assert len(study.per_run(0)) == 5 * len(VARIANTS)  # training and 4 probes per variant
    assert len(study.per_run(0, "mlp")) == 5
    first, *others = zip(study.shards, SHARDS, strict=True)
    assert first[0].ran == {"download", *study.per_run(0, first[1]["VARIANT"])}
    assert first[0].restored == set()
    for shard, variables in others:
        assert shard.ran == study.per_run(variables["SEED"], variables["VARIANT"])
        # each pulled the first shard's run-cache: the same dataset, so the same download stage
        assert shard.restored == {"download"}


def test_collect_restores_every_run_and_runs_only_the_summary(study: Study) -> None:
    assert study.collected.ran == set(SUMMARY)
    assert study.collected.restored == study.stages - set(SUMMARY)
    collector = study.clone("collector")
    for i, variables in enumerate(SHARDS):  # the shards' own files (timings too: what the study cost)
        timing = Path("timings", variables["VARIANT"], str(variables["SEED"]), "train.json")
        assert (collector / timing).read_bytes() == (study.clone(f"shard{i}") / timing).read_bytes(), timing
    assert run([*DVC, "status"], collector).stdout.strip().endswith("up to date.")


def test_collected_study_equals_a_single_machine_run(study: Study) -> None:
    collector, single = study.clone("collector"), study.single
    collected = json.loads((collector / "metrics" / "study.json").read_text())
    assert collected["seeds"] == SEEDS
    assert collected == json.loads((single / "metrics" / "study.json").read_text())
    for tree in ("metrics/runs", "plots/runs", "plots/study"):
        # DVC's .gitignore files list the outputs in the order they were saved
        files = sorted(
            p.relative_to(collector) for p in (collector / tree).rglob("*") if p.is_file() and p.name != ".gitignore"
        )
        assert files, tree
        for path in files:
            assert (collector / path).read_bytes() == (single / path).read_bytes(), path


def test_a_shard_that_names_no_stage_is_refused(study: Study) -> None:
    """A glob that matches no stage makes `dvc repro --glob` run the whole pipeline; make shard stops first."""
    result = make(study.clone("collector"), "shard", check=False, SEED=7)
    assert result.returncode != 0
    assert "no stage of the study matches '*@*-7'" in result.stderr
    assert "Running stage" not in result.stdout
