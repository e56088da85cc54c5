"""Fetch the four Fashion-MNIST idx files from a mirror or URLs and verify their decompressed SHA-256.

Torch-free, so that the download stage starts quickly and runs where torch is missing.
"""

from __future__ import annotations

import gzip
import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from landscape.errors import StudyError
from landscape.study.atomic import replace_dir

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MIRROR_HINT = "On Debian/Ubuntu install the mirror as root: apt-get install -y dataset-fashion-mnist"
URL_TIMEOUT_S = 60


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _decompress(blob: bytes, origin: str) -> bytes:
    try:
        return gzip.decompress(blob)
    except (OSError, EOFError) as e:
        raise StudyError(
            f"{origin} is not a valid gzip file ({e}); the source is corrupt or not the dataset."
        ) from None


def _from_mirror(mirror: Path, name: str) -> tuple[bytes | None, str]:
    for candidate in (mirror / f"{name}.gz", mirror / name):
        if candidate.is_file():
            blob = candidate.read_bytes()
            raw = _decompress(blob, str(candidate)) if candidate.suffix == ".gz" else blob
            return raw, str(candidate)
    return None, f"{mirror / (name + '.gz')} (not found)"


def _from_url(base: str, name: str) -> tuple[bytes | None, str]:
    url = f"{base.rstrip('/')}/{name}.gz"
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as response:
            blob = response.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        return None, f"{url} ({getattr(e, 'reason', e)})"
    return _decompress(blob, url), url


def fetch_file(name: str, mirror: str | Path, urls: list[str], expected_sha256: str) -> bytes:
    """Return the decompressed bytes of one idx file, verified against ``expected_sha256``.

    Sources are tried in order: the mirror directory, then each URL. The first
    source that has the file decides; a checksum mismatch is an error, not a
    reason to try the next source, because a wrong file should be fixed.
    """
    tried = []
    for fetch, where in [(_from_mirror, Path(mirror))] + [(_from_url, u) for u in urls]:
        raw, origin = fetch(where, name)
        if raw is None:
            tried.append(origin)
            continue
        actual = sha256(raw)
        if actual != expected_sha256:
            raise StudyError(
                f"checksum mismatch for {name} from {origin}:\n"
                f"  expected SHA-256 {expected_sha256}\n"
                f"  actual   SHA-256 {actual}\n"
                "The file is truncated, corrupt or a different dataset. Reinstall the mirror "
                f"({MIRROR_HINT}) or delete the bad file so the next source is used."
            )
        return raw
    raise StudyError(
        f"no source has {name}. Tried:\n  "
        + "\n  ".join(tried)
        + f"\n{MIRROR_HINT}, or make an upstream URL reachable."
    )


def download(out_dir: str | Path, mirror: str | Path, urls: list[str], checksums: dict[str, str]) -> Path:
    """Fetch and verify all four files, then write ``out_dir/FashionMNIST/raw/`` in one rename.

    Nothing is written unless every file verifies.
    """
    missing = [n for n in FILES if n not in checksums]
    if missing:
        raise StudyError(f"params.yaml: 'data.sha256' lacks a checksum for {', '.join(missing)}.")
    blobs = {name: fetch_file(name, mirror, urls, checksums[name]) for name in FILES}

    def fill(tmp: Path) -> None:
        raw = tmp / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        for name, blob in blobs.items():
            (raw / name).write_bytes(blob)

    return replace_dir(out_dir, fill)
