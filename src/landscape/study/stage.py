"""What every stage script shares, without torch: the clean exit on user errors, the standard
paths of one run's files, and timing. ``download`` and ``plots`` import only this."""

from __future__ import annotations

import inspect
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from landscape.errors import StudyError
from landscape.study.atomic import write_json

RAW_DIR = Path("data/raw")
MODELS_DIR = Path("models")
METRICS_DIR = Path("metrics")
PLOTS_DIR = Path("plots")
TIMINGS_DIR = Path("timings")


def run_stage(main: Callable[..., None]) -> None:
    """Run ``main(*argv)``; a ``StudyError`` becomes 'error: ...' on stderr and exit status 2."""
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


def parse_seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise StudyError(f"the seed argument must be an integer, got {text!r}.") from None


@dataclass(frozen=True)
class RunPaths:
    """Where the files of one (variant, training seed) run live."""

    variant: str
    seed: int

    @property
    def key(self) -> Path:
        return Path(self.variant) / str(self.seed)

    @property
    def model(self) -> Path:
        return MODELS_DIR / self.key / "model.pt"

    @property
    def initial(self) -> Path:
        return MODELS_DIR / self.key / "init.pt"

    @property
    def epoch1(self) -> Path:
        return MODELS_DIR / self.key / "epoch1.pt"

    def metrics(self, probe: str) -> Path:
        return METRICS_DIR / "runs" / self.key / f"{probe}.json"

    def plot(self, probe: str) -> Path:
        return PLOTS_DIR / "runs" / self.key / f"{probe}.csv"

    def timing(self, probe: str) -> Path:
        return TIMINGS_DIR / self.key / f"{probe}.json"


class Timer:
    """Wall seconds and peak resident memory of this stage, written to ``timings/`` (not a declared metric)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def as_dict(self) -> dict[str, float]:
        return {
            "wall_s": round(time.perf_counter() - self.start, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }

    def write(self, path: Path, **extra: float) -> dict[str, float]:
        timing = self.as_dict() | {k: round(v, 1) for k, v in extra.items()}
        write_json(path, timing)
        return timing
