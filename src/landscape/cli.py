"""What every stage script shares: the clean exit on user errors, and the standard paths.

Stage scripts stay thin: they call ``run_stage(main)`` and compose library calls.
"""

from __future__ import annotations

import inspect
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from landscape.data import Dataset, load_dataset
from landscape.device import keep_freed_memory, resolve_device
from landscape.errors import StudyError
from landscape.models import load_checkpoint
from landscape.params import Params, check_model_name, load_params
from landscape.train import prepare_for_device

RAW_DIR = Path("data/raw")
MODELS_DIR = Path("models")
METRICS_DIR = Path("metrics")
PLOTS_DIR = Path("plots")


def run_stage(main: Callable[..., None]) -> None:
    """Run ``main(*argv)``; a ``StudyError`` becomes 'error: ...' on stderr and exit status 2."""
    keep_freed_memory()
    args = sys.argv[1:]
    try:
        inspect.signature(main).bind(*args)
    except TypeError as e:
        print(f"error: wrong arguments {args} for {sys.argv[0]}: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        main(*args)
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; outputs written so far are complete files, the rest were not written.", file=sys.stderr)
        sys.exit(130)


def study_inputs(model_name: str | None = None) -> tuple[Params, torch.device, Dataset]:
    """Validated params, the device they ask for, and the dataset loaded onto it."""
    params = load_params()
    if model_name is not None:
        check_model_name(model_name)
    device = resolve_device(params.train.device)
    data = load_dataset(RAW_DIR, params.data.val_size, params.data.split_seed, device)
    return params, device, data


def trained_model(name: str, params: Params, device: torch.device) -> torch.nn.Module:
    """The checkpoint ``models/<name>.pt``, checked against params.yaml, in eval mode on ``device``."""
    model, _ = load_checkpoint(MODELS_DIR / f"{name}.pt", expected=params.model(name))
    return prepare_for_device(model, device).eval()


def probe_inputs(name: str, section: str):
    """For a probe stage: its params section, the trained model, and its fixed evaluation subsets."""
    from landscape.probes import ProbeData

    params, device, data = study_inputs(name)
    p = getattr(params, section)
    probe = ProbeData(
        splits={"train": data.train.subset(p.train_samples, p.seed), "val": data.val.subset(p.val_samples, p.seed)},
        bn_data=data.train.subset(p.bn_samples, p.seed + 1),
        batch_size=params.train.eval_batch_size,
    )
    return p, trained_model(name, params, device), probe


def timing(start: float) -> dict[str, float]:
    """Wall seconds since ``start`` and this process's peak resident memory, kept under one key."""
    return {
        "wall_s": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def write_probe_outputs(kind: str, name: str, rows: list[dict], columns: list[str], summary: dict, p, start: float):
    """``plots/<kind>/<name>.csv`` (long-format rows) and ``metrics/<kind>/<name>.json`` (summary), atomically."""
    from landscape.atomic import write_csv, write_json

    extra = {
        "samples": {"train": p.train_samples, "val": p.val_samples, "bn": p.bn_samples, "subset_seed": p.seed},
        "timing": timing(start),
    }
    write_csv(PLOTS_DIR / kind / f"{name}.csv", rows, columns)
    write_json(METRICS_DIR / kind / f"{name}.json", {"model": name, **summary, **extra})
    print(f"{kind} {name}: {len(rows)} rows in {extra['timing']['wall_s']} s")
