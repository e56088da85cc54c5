"""Carry the per-run outputs of a full study in git, so that a fresh clone can rerun aggregate and plots.

The per-run stages' outputs under metrics/runs and plots/runs live only in the DVC cache, which a clone does not get
(there is no remote). This tool packs them into one git-tracked JSON file after a full run, and writes them back,
byte for byte, in a clone; DVC then finds the two directories with the hashes the root dvc.lock records, and aggregate
and plots can run without rerunning the study. models/ and timings/ are not carried.

    python tools/runs_bundle.py pack [--out metrics/runs_bundle.json]      # after a full `dvc repro`; commit the file
    python tools/runs_bundle.py restore [--bundle metrics/runs_bundle.json]  # in a clone, then:
    dvc repro --single-item aggregate plots                                  # only these two, not their upstream
    python tools/runs_bundle.py check [--bundle metrics/runs_bundle.json]    # does the bundle match the locks?

The bundle is ``{"format": 1, "files": {relpath: text}, "outs": {relpath: {"md5", "size", "lock"}}}`` with sorted
keys: each file's text, and its md5 and size as DVC records them, and the per-run lock that names it
(``pipeline/<kind>/dvc.lock:<stage>``; null for a file no lock names). Every command checks each file against the
committed locks: every per-run output of ``pipeline/*/dvc.lock`` under metrics/runs or plots/runs must be there with
the lock's md5, and the directories must hash to what the root dvc.lock records for them (so a stray file is caught).
A mismatch is a clean refusal naming the first bad file, exit status 2, and nothing half written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import yaml
from dvc_data.hashfile.hash_info import HashInfo
from dvc_data.hashfile.meta import Meta
from dvc_data.hashfile.tree import Tree

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # landscape, without an install too
from landscape.errors import StudyError  # noqa: E402
from landscape.study import atomic, shape  # noqa: E402

FORMAT = 1
RUN_DIRS = ("metrics/runs", "plots/runs")
DEFAULT_BUNDLE = "metrics/runs_bundle.json"
NEXT_COMMAND = "dvc repro --single-item aggregate plots"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def under_run_dirs(rel: str) -> bool:
    return any(rel.startswith(f"{top}/") for top in RUN_DIRS)


def lock_of(dvc_yaml: Path) -> Path:
    return dvc_yaml.with_suffix(".lock")


def locked_outs(root: Path) -> dict[str, tuple[str, str]]:
    """relpath -> (md5, ``pipeline/<kind>/dvc.lock:<stage>``) for every output under RUN_DIRS that a per-run lock
    records."""
    outs = {}
    for lock in map(lock_of, shape.dvc_files(root)[1:]):
        if not lock.exists():
            continue
        where = lock.relative_to(root).as_posix()
        for stage, body in (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).items():
            for out in body.get("outs", []):
                if under_run_dirs(out["path"]):
                    outs[out["path"]] = (out["md5"], f"{where}:{stage}")
    if not outs:
        raise StudyError("no per-run outputs under metrics/runs or plots/runs in pipeline/*/dvc.lock; run the study")
    return outs


def locked_dirs(root: Path) -> dict[str, tuple[str, str]]:
    """RUN_DIRS entry -> (md5 of the directory, ``dvc.lock:<stage>``) as the root dvc.lock's stages record them as
    deps (aggregate, plots); empty without a root lock."""
    lock = lock_of(shape.dvc_files(root)[0])
    if not lock.exists():
        return {}
    dirs = {}
    for stage, body in (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).items():
        for dep in body.get("deps", []):
            if dep["path"] in RUN_DIRS:
                dirs.setdefault(dep["path"], (dep["md5"], f"{lock.name}:{stage}"))
    return dirs


def dir_md5(hashes: dict[str, str], top: str) -> str:
    """DVC's hash of the directory ``top`` holding these files (relpath from the root -> md5), by DVC's own tree
    (dvc_data): the md5 of the sorted list of ``{"md5", "relpath"}``, relpath from ``top``, with ``.dir`` appended."""
    tree = Tree()
    for rel, h in hashes.items():
        if rel.startswith(f"{top}/"):
            tree.add(tuple(rel[len(top) + 1 :].split("/")), Meta(), HashInfo("md5", h))
    tree.digest()
    return tree.hash_info.value


def verify(hashes: dict[str, str], root: Path) -> dict[str, tuple[str, str]]:
    """Raise StudyError naming the first per-run output that the locks at ``root`` record but ``hashes`` (relpath
    -> md5) lacks or holds with another md5, or the first directory that hashes otherwise than the root lock says;
    else return the locks' outputs (``locked_outs``)."""
    outs = locked_outs(root)
    for rel, (want, where) in sorted(outs.items()):
        if want.endswith(".dir"):  # a probe stage's folder (metrics/runs/<variant>/<kind>): one file per seed
            got = dir_md5(hashes, rel)
            if got != want:
                raise StudyError(f"{rel} hashes to {got}, but {where} records {want}")
            continue
        if rel not in hashes:
            raise StudyError(f"{rel} is missing; {where} records it (md5 {want})")
        if hashes[rel] != want:
            raise StudyError(f"{rel} has md5 {hashes[rel]}, but {where} records {want}")
    for top, (want, where) in sorted(locked_dirs(root).items()):
        got = dir_md5(hashes, top)
        if got != want:
            extra = sorted(set(hashes) - set(outs))
            hint = f" (files no per-run lock names: {', '.join(extra)})" if extra else ""
            raise StudyError(f"{top} hashes to {got}, but {where} records {want}{hint}")
    return outs


def read_runs(root: Path) -> dict[str, bytes]:
    """relpath -> content of every file under RUN_DIRS (DVC's .gitignore files left out)."""
    files = {}
    for top in RUN_DIRS:
        for path in sorted((root / top).rglob("*")):
            if path.is_file() and path.name != ".gitignore":
                files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def text_of(rel: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise StudyError(f"{rel} is not UTF-8 text, which the bundle carries: {e}") from e


def owner(rel: str, outs: dict[str, tuple[str, str]]) -> str | None:
    """The ``pipeline/<kind>/dvc.lock:<stage>`` whose output is ``rel`` or a folder holding it; None if none."""
    found = [where for path, (_, where) in outs.items() if rel == path or rel.startswith(f"{path}/")]
    return found[0] if found else None


def pack(root: Path, out: Path) -> int:
    """Write the bundle of ``root``'s per-run outputs to ``out`` (atomically); the number of files. StudyError,
    and no bundle written, when they do not match the locks."""
    files = read_runs(root)
    named = verify({rel: md5(data) for rel, data in files.items()}, root)
    bundle = {
        "format": FORMAT,
        "files": {rel: text_of(rel, data) for rel, data in files.items()},
        "outs": {rel: {"md5": md5(data), "size": len(data), "lock": owner(rel, named)} for rel, data in files.items()},
    }
    atomic.write_text(out, json.dumps(bundle, indent=1, sort_keys=True) + "\n")
    return len(files)


def load(path: Path) -> dict[str, bytes]:
    """relpath -> content of the bundle at ``path``, each checked against the md5 and size the bundle records."""
    if not path.exists():
        raise StudyError(f"no bundle at {path}; make one with `python tools/runs_bundle.py pack` after a full run")
    try:
        bundle = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise StudyError(f"{path} is not a bundle: {e}") from e
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT or not {"files", "outs"} <= bundle.keys():
        raise StudyError(f"{path} is not a format-{FORMAT} bundle")
    files = {}
    for rel, text in sorted(bundle["files"].items()):
        data, record = text.encode("utf-8"), bundle["outs"].get(rel, {})
        if not under_run_dirs(rel) or ".." in rel.split("/"):
            raise StudyError(f"{path} holds {rel}, which is not under {' or '.join(RUN_DIRS)}")
        if (md5(data), len(data)) != (record.get("md5"), record.get("size")):
            raise StudyError(f"{rel} in {path} does not match its own md5 and size; the bundle is damaged")
        files[rel] = data
    return files


def check(root: Path, bundle: Path) -> int:
    """The number of files in ``bundle``; StudyError when they do not match the committed locks."""
    files = load(bundle)
    verify({rel: md5(data) for rel, data in files.items()}, root)
    return len(files)


def restore(root: Path, bundle: Path) -> int:
    """Write ``bundle``'s files under ``root``; the number written (a file already there with the same bytes is
    left alone). StudyError, before anything is written, when the bundle does not match the locks or a different
    file is in the way."""
    files = load(bundle)
    verify({rel: md5(data) for rel, data in files.items()}, root)
    missing = {}
    for rel, data in files.items():
        path = root / rel
        if not path.exists():
            missing[rel] = data
        elif not path.is_file() or path.read_bytes() != data:
            raise StudyError(f"{rel} exists and differs from the bundle's; move it away to restore")
    for rel, data in missing.items():
        atomic.write_bytes(root / rel, data)
    return len(missing)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("pack", help="bundle metrics/runs and plots/runs").add_argument("--out", default=DEFAULT_BUNDLE)
    for name, purpose in (("restore", "write the bundle's files back"), ("check", "check the bundle against locks")):
        commands.add_parser(name, help=purpose).add_argument("--bundle", default=DEFAULT_BUNDLE)
    args = parser.parse_args(argv)
    root = Path.cwd()
    try:
        if args.command == "pack":
            n = pack(root, Path(args.out))
            print(f"packed {n} files into {args.out}; commit it")
        elif args.command == "restore":
            n = restore(root, Path(args.bundle))
            print(f"restored {n} files from {args.bundle}; next: {NEXT_COMMAND}")
        else:
            n = check(root, Path(args.bundle))
            print(f"{args.bundle}: {n} files, matching the committed locks")
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
