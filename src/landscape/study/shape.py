"""The pipeline's shape, in one place: its dvc.yaml files, its stage kinds, and its stages as DVC resolves them.

The root dvc.yaml holds the stages of the whole study (download, aggregate, plots); each per-run stage kind has a
dvc.yaml of its own, ``pipeline/<kind>/dvc.yaml``, whose stages DVC addresses as ``pipeline/<kind>/dvc.yaml:<name>``
(``pipeline/slice/dvc.yaml:slice@cnn``; the train kind's are ``train_mlp@cnn-0`` and ``train_cnn@...``: training is
one stage per variant and seed, each probe kind one stage per variant that loops over the seeds). The kinds
are the folders under ``pipeline/`` that hold a dvc.yaml. ``stages`` asks DVC itself (its stage loader and graph)
for the stages: matrix and foreach expanded, every ``${}`` resolved, each after the stages whose outputs it reads.

tools/, bench/ and the tests use it; no stage imports it, so it is no stage's dependency.

    python -m landscape.study.shape VARIANT   # `dvc repro --glob` targets of one variant's stages (its shard)
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

PIPELINE = "pipeline"  # the folder of the per-kind dvc.yaml files
DVC_YAML = "dvc.yaml"


def kind_file(kind: str) -> str:
    """The dvc.yaml of a stage kind, relative to the repository root: ``pipeline/<kind>/dvc.yaml``."""
    return f"{PIPELINE}/{kind}/{DVC_YAML}"


def kinds(root: Path) -> list[str]:
    """The per-run stage kinds, sorted: the folders under ``pipeline/`` that hold a dvc.yaml."""
    return sorted(path.parent.name for path in root.glob(kind_file("*")))


def dvc_files(root: Path) -> list[Path]:
    """The pipeline's dvc.yaml files: the root one, then each kind's."""
    return [root / DVC_YAML, *(root / kind_file(k) for k in kinds(root))]


def kind(stage: str, root: Path) -> str | None:
    """The kind of a stage, named as DVC addresses it (``pipeline/slice/dvc.yaml:slice@cnn-0``) or by its name alone
    (``slice@cnn-0``, ``train_mlp@mlp-0``, as a dvc.lock or a stage's own message names it): the ``<kind>`` of the
    ``pipeline/<kind>/dvc.yaml`` that defines it; None for a stage of the root dvc.yaml."""
    path, _, name = stage.rpartition(":")
    if path:
        parts = PurePosixPath(path).parts
        return parts[1] if len(parts) == 3 and parts[0] == PIPELINE and parts[2] == DVC_YAML else None
    return _groups(root, _stamp(root)).get(name.split("@")[0])


def address(name: str, root: Path) -> str:
    """How DVC addresses the stage called ``name``: ``pipeline/<kind>/dvc.yaml:<name>``, or ``name`` in the root
    dvc.yaml."""
    k = kind(name, root)
    return name if k is None else f"{kind_file(k)}:{name}"


def _stamp(root: Path) -> tuple:
    return tuple((str(path), path.stat().st_mtime_ns) for path in dvc_files(root)[1:])


@lru_cache(maxsize=8)
def _groups(root: Path, stamp: tuple) -> dict[str, str]:
    """Stage name as written in a kind's dvc.yaml (a matrix or foreach group's name) -> that kind; ``stamp`` (the
    files' modification times) keeps the cache from outliving an edit."""
    import yaml

    return {name: k for k in kinds(root) for name in yaml.safe_load((root / kind_file(k)).read_text())["stages"]}


class Resolved(NamedTuple):
    """One stage as DVC resolves it."""

    address: str  # pipeline/slice/dvc.yaml:slice@cnn-0; download
    body: dict  # the stage as DVC reads it, every ${} resolved: cmd, wdir, deps, params, outs, metrics, plots
    wdir: str  # where its cmd runs and its paths start, relative to the repository root ("." for the root)
    outs: tuple[str, ...]  # its outs, metrics and plots, relative to the repository root
    item: Any  # its matrix or foreach item; None for a plain stage
    after: tuple[str, ...]  # the stages whose outputs it reads (DVC's graph), by address


def stages(root: Path) -> list[Resolved]:
    """Every stage with a cmd in the ``dvc_files`` of the DVC project at ``root``, as DVC itself expands and
    resolves them (its stage loader, without the locks, and its graph), in an order where each comes after the
    stages whose outputs it reads: of the stages ready, the first in file order (the files of ``dvc_files``, the
    stages in each as written) goes first."""
    import heapq

    from dvc.dvcfile import load_file
    from dvc.parsing import split_group_name
    from dvc.parsing.context import Node
    from dvc.repo import Repo
    from dvc.repo.graph import build_graph
    from dvc.stage.loader import StageLoader

    def plain(item: Any) -> Any:  # an item as DVC's context holds it -> plain values
        if isinstance(item, Node):
            return item.value
        return {k: plain(v) for k, v in item.items()} if isinstance(item, dict) else item

    def addressed(stage: Any) -> str:  # as DVC addresses it from the root (its own `addressing` is from the cwd)
        path = Path(os.path.relpath(stage.path, root_dir)).as_posix()
        return stage.name if path == DVC_YAML else f"{path}:{stage.name}"

    with Repo(str(root)) as repo:
        root_dir = repo.root_dir
        listed, resolvers = [], {}
        for path in dvc_files(root):
            dvcfile = load_file(repo, str(path))
            resolvers[dvcfile.path] = dvcfile.resolver  # one per file: it loads the file's vars
            listed += [s for s in StageLoader(dvcfile, dvcfile.contents).values() if s.cmd]
        graph = build_graph(listed)  # an edge from each stage to each stage whose outputs it reads
        waits = {s: set(graph.successors(s)) for s in listed}
        readers = {s: list(graph.predecessors(s)) for s in listed}  # the stages that read its outputs
        rank = {s: n for n, s in enumerate(listed)}
        ready = [rank[s] for s in listed if not waits[s]]
        heapq.heapify(ready)
        out = []
        while ready:
            stage = listed[heapq.heappop(ready)]
            for reader in readers[stage]:
                waits[reader].discard(stage)
                if not waits[reader]:
                    heapq.heappush(ready, rank[reader])
            group, key = split_group_name(stage.name)
            resolver = resolvers[stage.path]
            out.append(
                Resolved(
                    address=addressed(stage),
                    body=resolver.resolve_one(stage.name)[stage.name],
                    wdir=os.path.relpath(stage.wdir, root_dir),
                    outs=tuple(os.path.relpath(o.fs_path, root_dir) for o in stage.outs),
                    item=None if key is None else plain(resolver.definitions[group].normalized_iterable[key]),
                    after=tuple(addressed(s) for s in graph.successors(stage)),
                )
            )
    return out


def variant_patterns(variant: str) -> tuple[str, ...]:
    """Glob patterns of the stage names of ``variant`` (a glob itself, ``*`` for every variant): its training, one
    stage per seed (``train_cnn@cnn-0``), and its probes, one stage per variant (``slice@cnn``)."""
    return (f"*@{variant}-*", f"*@{variant}")


def shard_targets(variant: str, root: Path) -> list[str]:
    """``dvc repro --glob`` targets, ``pipeline/<kind>/dvc.yaml:PATTERN``, of the stages of ``variant``: for each kind
    only the patterns that match one of its stages (a target that matches no stage is an error in DVC)."""
    from fnmatch import fnmatchcase

    names: dict[str, list[str]] = {}
    for resolved in stages(root):
        path, _, name = resolved.address.rpartition(":")
        if path:
            names.setdefault(path, []).append(name)
    return [
        f"{path}:{pattern}"
        for path, listed in names.items()
        for pattern in variant_patterns(variant)
        if any(fnmatchcase(n, pattern) for n in listed)
    ]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m landscape.study.shape VARIANT")
    print("\n".join(shard_targets(sys.argv[1], Path.cwd())))
