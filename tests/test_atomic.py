"""Atomic writes: a failed write is a clean StudyError that leaves the old file alone; modes follow the umask."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from landscape.errors import StudyError
from landscape.study.atomic import replace_dir, write_bytes, write_text, write_via


def leftovers(directory: Path) -> list[str]:
    """Hidden temp files or directories an atomic write left behind."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def full_disk(p: Path) -> None:
    """A writer that runs out of space halfway, as ``write`` does on a full file system."""
    p.write_bytes(b"half a fi")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def torch_writer_full(p: Path) -> None:
    """What torch.save's C++ writer raises on a full disk instead of an OSError."""
    p.write_bytes(b"PK\x03\x04")
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1216 vs 1110")


@pytest.mark.parametrize("writer", [full_disk, torch_writer_full], ids=["ENOSPC", "torch-writer"])
def test_a_full_disk_is_a_study_error_naming_the_file(tmp_path: Path, writer) -> None:
    target = tmp_path / "models" / "mlp.pt"
    write_bytes(target, b"the old model")
    with pytest.raises(StudyError, match=f"^no space left on device while writing {target}$"):
        write_via(target, writer)
    assert target.read_bytes() == b"the old model"
    assert leftovers(target.parent) == []


def test_other_os_errors_name_the_file_and_the_reason(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"

    def read_only(p: Path) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    with pytest.raises(StudyError, match=f"^cannot write {target}: Permission denied$"):
        write_via(target, read_only)
    assert not target.exists()
    assert leftovers(tmp_path) == []


def test_other_errors_pass_through_unchanged(tmp_path: Path) -> None:
    def bug(p: Path) -> None:
        raise RuntimeError("a bug, not a full disk")

    with pytest.raises(RuntimeError, match="a bug"):
        write_via(tmp_path / "x.json", bug)
    assert leftovers(tmp_path) == []


@pytest.fixture(params=[0o022, 0o002], ids=["umask-022", "umask-002"])
def umask(request) -> int:
    """Run the test under this umask; the process's own umask is restored afterwards."""
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def test_a_written_file_has_the_mode_of_a_plain_open(tmp_path: Path, umask: int) -> None:
    target = write_text(tmp_path / "metrics.json", "{}\n")
    plain = tmp_path / "plain.json"
    plain.write_text("{}\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask == stat.S_IMODE(plain.stat().st_mode)


def test_a_replaced_directory_has_the_mode_of_a_plain_mkdir(tmp_path: Path, umask: int) -> None:
    target = replace_dir(tmp_path / "raw", lambda d: (d / "file").write_text("x"))
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((target / "file").stat().st_mode) == 0o666 & ~umask


def test_replace_dir_keeps_the_old_directory_when_filling_fails(tmp_path: Path) -> None:
    target = tmp_path / "raw"
    replace_dir(target, lambda d: (d / "old").write_text("old"))

    def fill(d: Path) -> None:
        (d / "new").write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(StudyError, match=f"^no space left on device while writing {target}$"):
        replace_dir(target, fill)
    assert [p.name for p in target.iterdir()] == ["old"]
    assert (target / "old").read_text() == "old"
    assert leftovers(tmp_path) == []


def test_replace_dir_puts_the_old_directory_back_when_the_final_rename_fails(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "raw"
    replace_dir(target, lambda d: (d / "old").write_text("old"))
    real_replace = os.replace

    def replace(src, dst) -> None:
        if Path(src).name.endswith(".tmp"):  # the new directory's rename into place
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(StudyError, match=f"^cannot write {target}: "):
        replace_dir(target, lambda d: (d / "new").write_text("new"))
    assert [p.name for p in target.iterdir()] == ["old"]
    assert leftovers(tmp_path) == []
