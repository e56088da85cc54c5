"""Stage slice@<model>: 1-D loss slices along seeded normalized directions."""

import time

from landscape.cli import probe_inputs, run_stage, write_probe_outputs
from landscape.probes import SLICE_COLUMNS, slice_probe


def main(name: str) -> None:
    p, model, probe = probe_inputs(name, "slice")
    start = time.perf_counter()
    rows, summary = slice_probe(
        model, probe, p.directions, p.points, p.span, p.normalization, p.ignore, p.seed, p.bn, p.fit_fraction, p.taus
    )
    write_probe_outputs("slice", name, rows, SLICE_COLUMNS, summary, p, start)


if __name__ == "__main__":
    run_stage(main)
