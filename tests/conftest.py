"""Shared fixtures: tiny synthetic Fashion-MNIST idx files that tests write themselves."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from landscape.study import shape
from landscape.study.data import Split
from landscape.study.params import ModelConfig

REPO = Path(__file__).resolve().parents[1]

# Small model configs for fast unit tests of the models and the training loop.
SMALL_MODELS = {
    "mlp": ModelConfig("mlp", [16, 8], 0, False, [0.0, 0.0]),
    "cnn": ModelConfig("cnn", [4, 8], 16, True, [0.25, 0.5]),
}


@pytest.fixture(scope="module")
def single_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine spinning threads cost 100x.
    A test module opts in with ``pytestmark = pytest.mark.usefixtures("single_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def probe_data_from(make_split, train: int, val: int, bn: int, batch_size: int):
    """A ProbeData of seeded splits from ``make_split(n, seed=...)``: train (seed 1), val (2), BN images (3)."""
    from landscape.study.data import ProbeData

    return ProbeData(
        splits={"train": make_split(train, seed=1), "val": make_split(val, seed=2)},
        bn_data=make_split(bn, seed=3),
        batch_size=batch_size,
    )


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the idx format (magic 0x08 = ubyte, then dims, big-endian)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def synthetic_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable images: class c brightens a class-specific horizontal band, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.int32)
    for i, c in enumerate(labels):
        images[i, 2 * c + 4 : 2 * c + 7, 4:24] += 180
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_synthetic_mirror(directory: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> dict[str, str]:
    """Write the four gzip idx files; return the SHA-256 of each decompressed file."""
    directory.mkdir(parents=True, exist_ok=True)
    train_x, train_y = synthetic_arrays(n_train, seed)
    test_x, test_y = synthetic_arrays(n_test, seed + 1)
    content = {
        "train-images-idx3-ubyte": idx_bytes(train_x),
        "train-labels-idx1-ubyte": idx_bytes(train_y),
        "t10k-images-idx3-ubyte": idx_bytes(test_x),
        "t10k-labels-idx1-ubyte": idx_bytes(test_y),
    }
    for name, raw in content.items():
        (directory / f"{name}.gz").write_bytes(gzip.compress(raw, mtime=0))
    return {name: hashlib.sha256(raw).hexdigest() for name, raw in content.items()}


def learnable_split(n: int, seed: int, side: int = 28) -> Split:
    """Normalized-looking images where class c brightens a band of rows, plus noise: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = 0.3 * torch.randn(n, 1, side, side, generator=g)
    rows = torch.arange(side)
    for c in range(10):
        band = (rows >= (c * side) // 10) & (rows < ((c + 1) * side) // 10)
        x[(y == c).nonzero().squeeze(1).unsqueeze(1), 0, band.nonzero().squeeze(1)] += 2.0
    return Split(x, y)


def fitted(model: nn.Module, split: Split, steps: int = 40, lr: float = 0.05, seed: int = 0) -> nn.Module:
    """``model`` after a few full-batch SGD steps on ``split`` (BN statistics updated as in training), in eval mode."""
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(split.x), split.y).backward()
        opt.step()
    return model.eval()


@pytest.fixture
def synthetic_mirror(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    mirror = tmp_path / "mirror"
    return mirror, write_synthetic_mirror(mirror)


# Params small enough that every stage runs in seconds on the synthetic mirror (600 train, 200 test images):
# Model A and B only, two seeds.
TINY_SAMPLES = {"train": 100, "val": 100, "bn": 50}
TINY_PARAMS = {
    "data": {"val_size": 100, "train_eval_size": 100},
    "study": {
        "seeds": [0, 1],
        "variants": ["mlp", "cnn"],
        "factorial": ["mlp", "cnn"],
        "train_mlp": ["mlp"],
        "train_cnn": ["cnn"],
    },
    "train": {"epochs": 2, "batch_size": 64, "target_acc": 0.3, "stop_loss": 0.0, "stop_window": 3},
    "runtime": {"device": "cpu", "eval_batch_size": 100},
    "mlp": {"hidden": [32, 16]},
    "cnn": {"channels": [4, 8], "fc": 16},
    "robustness": {
        "sigmas": [0.0, 0.01, 0.1],
        "trials": 2,
        "samples": {"train": 0, "val": 100, "bn": 50},
    },
    "slice": {
        "directions": 2,
        "points": 9,
        "samples": TINY_SAMPLES,
        "surface_points": 5,
        "surface_samples": {"train": 50, "val": 0, "bn": 50},
    },
    "path": {"points": 5, "samples": TINY_SAMPLES},
    "curvature": {
        "top_k": 2,
        "lanczos_iterations": 4,
        "hutchinson_samples": 2,
        "flatness_samples": 2,
        "layer_directions": 1,
        "samples": {"train": 50, "val": 0, "bn": 50},
    },
    "during_training": {
        "hessian_samples": 50,
        "lanczos_iterations": 4,
        "cold_iterations": 4,
        "warm_start": True,
        "noise_val": 50,
        "noise_trials": 2,
    },
}


def update_params(path: Path, changes: dict) -> None:
    """Merge ``{section: {key: value}}`` into the params file at ``path``."""
    params = yaml.safe_load(path.read_text())
    for section, values in changes.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def tiny_params(path: Path, mirror: Path, checksums: dict[str, str], **changes: dict) -> None:
    """Write the repo's params.yaml to ``path`` with TINY_PARAMS, the synthetic mirror, and ``changes``."""
    shutil.copy2(REPO / "params.yaml", path)
    data = {**TINY_PARAMS["data"], "mirror": str(mirror), "urls": [], "sha256": checksums}
    update_params(path, {**TINY_PARAMS, "data": data})
    update_params(path, changes)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: runs DVC, a stage script in a subprocess or a long computation (over ~2 s); "
        "the quick loop is `pytest -m 'not slow'`",
    )


DVC = [sys.executable, "-m", "dvc"]


def subprocess_env(src: Path = REPO / "src") -> dict[str, str]:
    """Environment for stage/DVC/git subprocesses: this venv's python first on PATH, the library importable,
    no DVC analytics, and a fixed git identity with the user's own git config ignored."""
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(src),
        "DVC_NO_ANALYTICS": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }


def start_command(
    args: list[str | Path], cwd: Path, *, src: Path | None = None, stdout: int = subprocess.PIPE
) -> subprocess.Popen:
    """The one way tests start a subprocess: ``args`` in ``cwd`` with ``subprocess_env(src)``, text pipes."""
    return subprocess.Popen(
        [str(a) for a in args],
        cwd=cwd,
        env=subprocess_env(src or REPO / "src"),
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_command(
    args: list[str | Path], cwd: Path, *, check: bool = True, src: Path | None = None, timeout: float = 1800
) -> subprocess.CompletedProcess:
    """``start_command`` run to its end, output captured. With ``check`` a non-zero exit fails the test and
    shows the command's stdout and stderr."""
    with start_command(args, cwd, src=src) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            pytest.fail(f"{' '.join(map(str, args))} ran over {timeout} s:\n{stdout}\n{stderr}")
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    if check:
        assert result.returncode == 0, (
            f"{' '.join(map(str, args))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


# What a clone of this repository holds of the DVC project (the offline plots template exists only after set-up).
PROJECT_FILES = [
    "src",
    "stages",
    "dvc.yaml",
    "pipeline",
    "params.yaml",
    ".dvcignore",
    ".dvc/.gitignore",
    ".dvc/config",
    ".dvc/plots_template.html",
    ".dvc/plots",
    ".gitignore",
    "pyproject.toml",
]


def stages_ran(output: str) -> set[str]:
    """The stages a `dvc repro` ran, from its lines ``Running stage 'pipeline/train/dvc.yaml:train_mlp@mlp-0':``,
    named without the dvc.yaml path DVC puts before a per-kind file's stages (checked: a per-run stage lives in
    pipeline/<kind>/dvc.yaml, download, aggregate and plots in the root dvc.yaml)."""
    names = {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}
    for name in names:
        bare = name.split(":")[-1]
        assert (shape.kind(bare, REPO) is not None) == ("@" in bare), name
        assert name == shape.address(bare, REPO), name
    return {name.split(":")[-1] for name in names}


def tiny_project(root: Path, **changes: dict) -> Path:
    """A git repository at ``root/repo`` holding this checkout's DVC project (PROJECT_FILES) with TINY_PARAMS and
    ``changes`` over a synthetic mirror at ``root/mirror``; nothing run or committed yet."""
    repo = root / "repo"
    for rel in PROJECT_FILES:
        src, dst = REPO / rel, repo / rel
        if not src.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            # a lock is this study's last run, not the tiny project's (pipeline/<kind>/dvc.lock: 10k lines each)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "dvc.lock"))
        else:
            shutil.copy2(src, dst)
    checksums = write_synthetic_mirror(root / "mirror", n_train=600, n_test=200)
    tiny_params(repo / "params.yaml", root / "mirror", checksums, **changes)
    run_command(["git", "init", "-q"], repo)
    return repo


def run_stage_script(workspace: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    """``python stages/<script> <args>`` of this checkout, run in ``workspace``; the caller checks the exit."""
    return run_command([sys.executable, REPO / "stages" / script, *args], workspace, check=False)


def commit_all(repo: Path, message: str) -> None:
    run_command(["git", "add", "-A"], repo)
    run_command(["git", "commit", "-qm", message], repo)


SUMMARY = ("aggregate", "plots")  # the stages of the whole study after the per-run ones (landscape.report's code)


@dataclass(frozen=True)
class Reproduction:
    """What one `dvc repro` did: ``ran``, the stages it ran to the end (``stages_ran``); ``summary_failure``, DVC's
    output where the aggregate or plots stage failed (landscape.report's code: the per-run stages, all before them,
    have run by then), else None. A per-run or download stage that fails fails the test at once."""

    ran: frozenset[str]
    summary_failure: str | None = None

    @property
    def runs(self) -> set[str]:
        """The stages it ran other than aggregate and plots: the per-run ones (and download)."""
        return set(self.ran - set(SUMMARY))

    def summary(self) -> set[str]:
        """The summary stages it ran; fails the test with DVC's error where aggregate or plots failed."""
        if self.summary_failure is not None:
            pytest.fail(f"the aggregate or plots stage failed (src/landscape/report):\n{self.summary_failure}")
        return set(self.ran & set(SUMMARY))


def reproduction(result: subprocess.CompletedProcess) -> Reproduction:
    """The ``Reproduction`` of a finished `dvc repro`."""
    ran = stages_ran(result.stdout)
    if result.returncode == 0:
        return Reproduction(frozenset(ran))
    output = f"{result.stdout}\n{result.stderr}"
    failed = set(re.findall(r"failed to reproduce '([^']+)'", output))
    assert failed and failed <= set(SUMMARY), f"dvc repro failed ({result.returncode}):\n{output}"
    return Reproduction(frozenset(ran - failed), output[-8000:])


def repro(repo: Path) -> Reproduction:
    """`dvc repro` in ``repo`` with its own src/ importable: what it ran (``Reproduction``)."""
    return reproduction(run_command([*DVC, "repro"], repo, src=repo / "src", check=False))


# The shared reproduced tiny project: Model A and B, seed 0.
REPRODUCED_SEEDS = [0]


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Reproduction]:
    """(repo, what its first `dvc repro` did): ``tiny_project`` with seeds REPRODUCED_SEEDS, reproduced once and
    committed, for every test of the session. Tests only read it (DVC commands that change no output are fine); a
    test that changes it works on ``copy_project`` of it instead. Where aggregate or plots failed, the per-run
    outputs are there and committed, and a test that needs the summary fails at ``Reproduction.summary()``."""
    repo = tiny_project(tmp_path_factory.mktemp("reproduced"), study={"seeds": REPRODUCED_SEEDS})
    done = repro(repo)
    commit_all(repo, "tiny pipeline")
    return repo, done


def copy_project(repo: Path, root: Path) -> Path:
    """A copy at ``root/repo`` of the reproduced project ``repo``: its git history, DVC cache, lock and outputs (no
    .dvc/tmp: DVC's state database keys files by inode); the synthetic mirror stays shared. No stage reruns."""
    skip = repo / ".dvc"
    copy = root / "repo"
    shutil.copytree(repo, copy, symlinks=True, ignore=lambda d, names: ["tmp"] if Path(d) == skip else [])
    return copy
