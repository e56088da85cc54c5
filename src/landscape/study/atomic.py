"""Atomic file writes: a temp file in the same directory, then a rename.

A reader (DVC, a later stage, a user) sees either the old file, no file, or the
complete new one; never a truncated one, even if the process is killed. The new
file gets the mode a plain ``open()`` would give it (0o666 less the umask), and a
failed write (a full disk, a read-only directory) is a ``StudyError`` naming the
file, with the temp file removed and the old file untouched.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from landscape.errors import StudyError

# What torch.save's C++ writer raises when a write comes up short, which on a full disk it does
# instead of an OSError ("unexpected pos 1216 vs 1110", "PytorchStreamWriter failed writing file ...").
TORCH_WRITER_FAILURES = ("unexpected pos", "file write failed")


def _write_failure(path: Path, error: BaseException) -> StudyError | None:
    """The user-facing error for a failed write of ``path``, or None when ``error`` is not a write failure."""
    if isinstance(error, OSError):
        if error.errno == errno.ENOSPC:
            return StudyError(f"no space left on device while writing {path}")
        return StudyError(f"cannot write {path}: {error.strerror or error}")
    if isinstance(error, RuntimeError) and any(s in str(error) for s in TORCH_WRITER_FAILURES):
        return StudyError(f"no space left on device while writing {path}")
    return None


def _sibling(path: Path, create: Callable[[Path], None]) -> Path:
    """``create(p)`` for a fresh hidden temp name ``p`` beside ``path``; ``create`` must refuse an existing name.

    Unlike ``tempfile.mkstemp`` (always 0600), ``create`` chooses the mode, so the umask applies as for ``open()``.
    """
    for _ in range(100):
        candidate = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            create(candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(errno.EEXIST, f"no free temp name beside {path}")


def _new_file(p: Path) -> None:
    os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


def _new_dir(p: Path) -> None:
    p.mkdir(mode=0o777)


def write_via(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temp path beside ``path``, then rename it over ``path``.

    Raises ``StudyError`` when the write fails for lack of space or permission.
    """
    path = Path(path)
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = _sibling(path, _new_file)
        write(tmp_path)
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException as e:
        _failed(path, tmp_path, lambda p: p.unlink(missing_ok=True), e)
    return path


def _failed(path: Path, tmp: Path | None, remove: Callable[[Path], None], e: BaseException) -> NoReturn:
    """Remove the temp ``tmp`` (if made) of a failed write to ``path``, and raise: a ``StudyError`` for lack of
    space or permission, ``e`` itself otherwise."""
    if tmp is not None:
        remove(tmp)
    failure = _write_failure(path, e)
    if failure is not None:
        raise failure from e
    raise e


def write_bytes(path: str | Path, data: bytes) -> Path:
    return write_via(path, lambda p: p.write_bytes(data))


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]], columns: list[str]) -> Path:
    """Write dict rows as CSV with a fixed column order; floats keep full repr precision."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row[k] for k in columns})
    return write_text(path, buf.getvalue())


def replace_dir(path: str | Path, fill: Callable[[Path], None]) -> Path:
    """Build a directory with ``fill(tmp_dir)`` and move it to ``path`` in one rename.

    The old directory, if any, is removed only after the new one is complete. The new one gets
    the mode of a plain ``mkdir`` (0o777 less the umask). Write failures are ``StudyError``s, as in
    ``write_via``.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _sibling(path, _new_dir)
        fill(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)  # put the old directory back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as e:
        _failed(path, tmp, lambda p: shutil.rmtree(p, ignore_errors=True), e)
    return path
