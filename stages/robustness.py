"""Stage robustness@<model>: accuracy under random parameter noise."""

import time

from landscape.cli import probe_data, run_stage, study_inputs, trained_model, write_probe_outputs
from landscape.probes import ROBUSTNESS_COLUMNS, robustness_probe


def main(name: str) -> None:
    params, device, data = study_inputs(name)
    p = params.robustness
    model = trained_model(name, params, device)
    probe = probe_data(data, p.train_samples, p.val_samples, p.bn_samples, p.seed, params.train.eval_batch_size)
    start = time.perf_counter()
    rows, summary = robustness_probe(model, probe, p.sigmas, p.trials, p.seed, p.modes, p.bn, p.drops, p.bisect_steps)
    extra = {"samples": {"train": p.train_samples, "val": p.val_samples, "bn": p.bn_samples},
             "timing": {"wall_s": round(time.perf_counter() - start, 1)}}
    write_probe_outputs("robustness", name, rows, ROBUSTNESS_COLUMNS, summary, extra)


if __name__ == "__main__":
    run_stage(main)
