"""Stage robustness@<model>: accuracy under random parameter noise."""

import time

from landscape.cli import probe_inputs, run_stage, write_probe_outputs
from landscape.probes import ROBUSTNESS_COLUMNS, robustness_probe


def main(name: str) -> None:
    p, model, probe = probe_inputs(name, "robustness")
    start = time.perf_counter()
    rows, summary = robustness_probe(model, probe, p.sigmas, p.trials, p.seed, p.modes, p.bn, p.drops, p.bisect_steps)
    write_probe_outputs("robustness", name, rows, ROBUSTNESS_COLUMNS, summary, p, start)


if __name__ == "__main__":
    run_stage(main)
