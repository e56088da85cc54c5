"""Stage slice@<model>: 1-D loss slices along seeded normalized directions."""

import time

from landscape.cli import probe_data, run_stage, study_inputs, trained_model, write_probe_outputs
from landscape.probes import SLICE_COLUMNS, slice_probe


def main(name: str) -> None:
    params, device, data = study_inputs(name)
    p = params.slice
    model = trained_model(name, params, device)
    probe = probe_data(data, p.train_samples, p.val_samples, p.bn_samples, p.seed, params.train.eval_batch_size)
    start = time.perf_counter()
    rows, summary = slice_probe(
        model, probe, p.directions, p.points, p.span, p.normalization, p.ignore, p.seed, p.bn, p.fit_fraction, p.taus
    )
    extra = {"samples": {"train": p.train_samples, "val": p.val_samples, "bn": p.bn_samples},
             "timing": {"wall_s": round(time.perf_counter() - start, 1)}}
    write_probe_outputs("slice", name, rows, SLICE_COLUMNS, summary, extra)


if __name__ == "__main__":
    run_stage(main)
