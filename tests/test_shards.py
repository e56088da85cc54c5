"""Integration: the study split over several machines through DVC's shared run-cache (README "Several machines").

One tiny project (conftest.tiny_project: Model A and B x seed REPRODUCED_SEEDS), one local-directory DVC remote, and
three clones of it, each standing for a machine: `make shard VARIANT=mlp` and `make shard VARIANT=cnn` run in two
of them (a shard is one variant: its training stages, one per seed, and its probe stages, one per kind over the
seeds), then `make collect` in the third restores every stage the shards ran and runs only aggregate and plots.
The single-machine result the collected one must equal is conftest's session-wide ``reproduced`` project: the same
tiny study, reproduced by one `dvc repro`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import DVC, REPO, REPRODUCED_SEEDS, SUMMARY, TINY_PARAMS, Reproduction, run_command, tiny_project

pytestmark = pytest.mark.slow

SEEDS = REPRODUCED_SEEDS
VARIANTS = TINY_PARAMS["study"]["variants"]
SHARDS = [{"VARIANT": "mlp"}, {"VARIANT": "cnn"}]  # make's variables
PROBE_KINDS = ("robustness", "slice", "curvature")


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


def variant_of(stage: str) -> str | None:
    """The variant of a per-run stage as DVC names it: pipeline/train/dvc.yaml:train_mlp@<v>-<seed> or
    pipeline/<kind>/dvc.yaml:<kind>@<v>; None for a stage of the whole study."""
    name = stage.split(":")[-1]
    if "@" not in name:
        return None
    item = name.split("@")[1]
    return item.rsplit("-", 1)[0] if name.startswith("train_") else item


@dataclass
class Study:
    root: Path
    stages: set[str]  # every stage of the tiny study, as DVC names it (pipeline/<kind>/dvc.yaml:<name>@...)
    shards: list[Repro]  # what `make shard` did in clone shard<i> with the variables SHARDS[i]
    collected: Repro  # what `make collect` did in the collecting clone
    collect_output: str | None  # `make collect`'s output where it failed (in aggregate or plots), else None
    single: Path  # the same study reproduced on one machine (conftest's ``reproduced``)
    single_done: Reproduction

    def clone(self, name: str) -> Path:
        return self.root / name

    def per_run(self, variant: str | None = None) -> set[str]:
        """The per-run stages (of ``variant``): train_<family>@<v>-<s> and <kind>@<v>."""
        return {name for name in self.stages if variant_of(name) is not None and variant in (None, variant_of(name))}

    def collect_summary(self) -> None:
        """Fails the test with make's output where `make collect` failed (it fails only in aggregate or plots)."""
        if self.collect_output is not None:
            pytest.fail(
                f"make collect failed in the aggregate or plots stage (src/landscape/report):\n{self.collect_output}"
            )


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, reproduced: tuple[Path, Reproduction]) -> Study:
    root = tmp_path_factory.mktemp("shards")
    origin = tiny_project(root, study={"seeds": SEEDS})
    run([*DVC, "remote", "add", "-d", "store", root / "store"], origin)
    run(["git", "add", "-A"], origin)
    run(["git", "commit", "-qm", "tiny study"], origin)
    for name in (*(f"shard{i}" for i in range(len(SHARDS))), "collector"):
        run(["git", "clone", "-q", origin, root / name], root)
    shards = [Repro.of(make(root / f"shard{i}", "shard", **variables).stdout) for i, variables in enumerate(SHARDS)]
    result = make(root / "collector", "collect", check=False)
    output = f"{result.stdout}\n{result.stderr}"
    failed = set(re.findall(r"failed to reproduce '([^']+)'", output))
    assert result.returncode == 0 or (failed and failed <= set(SUMMARY)), output
    collected = Repro.of(result.stdout)
    collected.ran -= failed
    stages = set(run([*DVC, "stage", "list", "--all", "--name-only"], origin).stdout.split())  # every dvc.yaml
    failure = None if result.returncode == 0 else output[-8000:]
    return Study(root, stages, shards, collected, failure, reproduced[0], reproduced[1])


def test_a_shard_runs_its_share_and_reuses_what_another_shard_pushed(study: Study) -> None:
    kinds = len(PROBE_KINDS)
    assert len(study.per_run()) == (len(SEEDS) + kinds) * len(VARIANTS)  # training per seed, a probe per kind
    assert study.per_run("mlp") == {
        *(f"pipeline/train/dvc.yaml:train_mlp@mlp-{s}" for s in SEEDS),
        *(f"pipeline/{kind}/dvc.yaml:{kind}@mlp" for kind in PROBE_KINDS),
    }
    first, *others = zip(study.shards, SHARDS, strict=True)
    assert first[0].ran == {"download", *study.per_run(first[1]["VARIANT"])}
    assert first[0].restored == set()
    for shard, variables in others:
        assert shard.ran == study.per_run(variables["VARIANT"])
        # each pulled the first shard's run-cache: the same dataset, so the same download stage
        assert shard.restored == {"download"}


def test_collect_restores_every_run(study: Study) -> None:
    assert study.collected.restored == study.stages - set(SUMMARY)
    collector = study.clone("collector")
    for i, variables in enumerate(SHARDS):  # the shards' own files (timings too: what the study cost)
        v = variables["VARIANT"]
        for timing in (
            Path("timings", v, "0", "train.json"),
            *(Path("timings", v, k, "0", f"{k}.json") for k in PROBE_KINDS),
        ):
            assert (collector / timing).read_bytes() == (study.clone(f"shard{i}") / timing).read_bytes(), timing


def test_collect_runs_only_the_summary(study: Study) -> None:
    study.collect_summary()
    assert study.collected.ran == set(SUMMARY)
    assert run([*DVC, "status"], study.clone("collector")).stdout.strip().endswith("up to date.")


def test_collected_runs_equal_a_single_machine_run(study: Study) -> None:
    collector, single = study.clone("collector"), study.single
    for tree in ("metrics/runs", "plots/runs"):
        # DVC's .gitignore files list the outputs in the order they were saved
        files = sorted(
            p.relative_to(collector) for p in (collector / tree).rglob("*") if p.is_file() and p.name != ".gitignore"
        )
        assert files, tree
        assert files == sorted(
            p.relative_to(single) for p in (single / tree).rglob("*") if p.is_file() and p.name != ".gitignore"
        )
        for path in files:
            assert (collector / path).read_bytes() == (single / path).read_bytes(), path


def test_collected_study_equals_a_single_machine_run(study: Study) -> None:
    study.collect_summary()
    study.single_done.summary()
    collector, single = study.clone("collector"), study.single
    collected = json.loads((collector / "metrics" / "study.json").read_text())
    assert collected["seeds"] == SEEDS
    assert collected == json.loads((single / "metrics" / "study.json").read_text())
    files = sorted(p.relative_to(collector) for p in (collector / "plots/study").rglob("*") if p.is_file())
    assert files
    for path in files:
        assert (collector / path).read_bytes() == (single / path).read_bytes(), path


def test_a_shard_that_names_no_stage_is_refused(study: Study) -> None:
    """A glob that matches no stage makes `dvc repro --glob` run the whole pipeline; make shard stops first."""
    result = make(study.clone("collector"), "shard", check=False, VARIANT="resnet")
    assert result.returncode != 0
    assert "no stage of the study matches VARIANT='resnet'" in result.stderr
    assert "Running stage" not in result.stdout
