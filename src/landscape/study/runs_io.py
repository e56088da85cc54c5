"""Reading what the probe stages wrote, without torch: one run's typed summaries and the per-run CSVs.

Every failure a user can cause (a missing, truncated or stale file) is a ``StudyError`` that names the file
and the fix (``dvc repro``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from landscape.errors import StudyError
from landscape.study.results import PROBES, RunResults
from landscape.study.serialize import from_json
from landscape.study.stage import FACTORIAL_ONLY, RunPaths

CSV_COLUMNS = {
    "history": ("epoch", "val_acc", "gap"),
    "slice": ("bn", "direction", "alpha", "split", "loss"),
    "path": ("t", "split", "loss"),
    "surface": ("a", "b", "split", "loss"),
    "robustness": ("mode", "bn", "sigma", "trial", "split", "acc"),
}


def _unreadable(path: Path, why: object) -> StudyError:
    return StudyError(f"cannot read {path} ({why}); rerun the stage that writes it: dvc repro")


def read_json(path: Path) -> dict:
    """The JSON object in ``path``; a missing or malformed file is a StudyError."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _unreadable(path, e) from None
    if not isinstance(data, dict):
        raise _unreadable(path, "not a JSON object")
    return data


def read_csv(path: Path, columns: Iterable[str] = ()) -> pd.DataFrame:
    """The CSV in ``path``; a missing or malformed file, or one lacking one of ``columns``, is a StudyError."""
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise _unreadable(path, e) from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise _unreadable(path, f"no column {', '.join(missing)}")
    return frame


def load_run(run: RunPaths, factorial: bool = True) -> RunResults:
    """Every probe summary of one run, typed; a file that does not fit the schema is a StudyError. ``factorial``:
    whether the run's variant is one of study.factorial; for one that is not (a regime cell), the probes that run
    over the factorial only (slice, path: ``FACTORIAL_ONLY``) are None, and their files are not read."""
    summaries = {}
    for probe, cls in PROBES.items():
        if probe in FACTORIAL_ONLY and not factorial:
            summaries[probe] = None
            continue
        path = run.metrics(probe)
        try:
            summaries[probe] = from_json(cls, read_json(path))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise StudyError(
                f"{path} does not match the metrics schema ({type(e).__name__}: {e}); "
                "rerun the stage that writes it: dvc repro"
            ) from None
    return RunResults(**summaries)


def long_rows(runs: list[RunPaths], probe: str, **where) -> pd.DataFrame:
    """All runs' rows of one CSV, filtered by column values, each with its seed."""
    frames = []
    for run in runs:
        f = read_csv(run.plot(probe), CSV_COLUMNS.get(probe, ()))
        for column, value in where.items():
            f = f[f[column] == value]
        frames.append(f.assign(seed=run.seed))
    return pd.concat(frames, ignore_index=True)
