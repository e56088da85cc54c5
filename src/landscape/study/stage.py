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


# The one rule for where a probe's files live. Training is one stage per (variant, seed) and writes
# <root>/<variant>/<seed>/<probe>; each probe stage kind is one stage per variant, looping over the seeds, and owns
# the whole directory <root>/<variant>/<kind> (one per output root), holding <seed>/<probe> for every seed.
PROBE_KINDS: dict[str, tuple[str, ...]] = {
    "robustness": ("robustness",),
    "slice": ("slice", "surface", "path"),  # the path from the initial weights is one more line: the slice stage's
    "curvature": ("curvature",),
}
STAGE_KIND = {probe: kind for kind, probes in PROBE_KINDS.items() for probe in probes}
FACTORIAL_ONLY = frozenset(PROBE_KINDS["slice"])  # probes run over study.factorial only (no regime cells)
KIND_ROOTS = {  # the output roots in which a probe stage kind owns <root>/<variant>/<kind>
    "robustness": (METRICS_DIR / "runs", PLOTS_DIR / "runs", TIMINGS_DIR),
    "slice": (METRICS_DIR / "runs", PLOTS_DIR / "runs", TIMINGS_DIR),
    "curvature": (METRICS_DIR / "runs", TIMINGS_DIR),
}


def stage_dirs(variant: str, kind: str) -> list[Path]:
    """The directories the probe stage ``<kind>@<variant>`` owns (its DVC outs), one per output root."""
    return [root / variant / kind for root in KIND_ROOTS[kind]]


@dataclass(frozen=True)
class RunPaths:
    """Where the files of one (variant, training seed) run live: train's in ``<root>/<variant>/<seed>/``, a probe's
    in its stage kind's directory, ``<root>/<variant>/<kind>/<seed>/`` (``STAGE_KIND``)."""

    variant: str
    seed: int

    @property
    def key(self) -> Path:
        return Path(self.variant) / str(self.seed)

    def _key(self, name: str) -> Path:
        kind = STAGE_KIND.get(name)
        return self.key if kind is None else Path(self.variant) / kind / str(self.seed)

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
        return METRICS_DIR / "runs" / self._key(probe) / f"{probe}.json"

    def plot(self, probe: str) -> Path:
        return PLOTS_DIR / "runs" / self._key(probe) / f"{probe}.csv"

    def timing(self, kind: str) -> Path:
        """The timing file of stage kind ``kind`` (``train`` or a key of ``PROBE_KINDS``) for this run."""
        return TIMINGS_DIR / self._key(kind) / f"{kind}.json"


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
