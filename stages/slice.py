"""Stage slice@<variant>-<seed>: 1-D loss slices along seeded filter-normalized directions (with the local
d^T H d of each), and the 2-D loss surface."""

import dataclasses

from landscape.study.atomic import write_csv, write_json
from landscape.study.inputs import probe_data, study_inputs, trained_model
from landscape.study.serialize import to_json
from landscape.study.stage import RunPaths, Timer, parse_seed, run_stage
from landscape.study.summaries.slices import SLICE_COLUMNS, SURFACE_COLUMNS, slice_probe, surface_probe


def main(variant: str, seed: str) -> None:
    run = RunPaths(variant, parse_seed(seed))
    params, device, data = study_inputs(variant)
    p = params.slice
    model = trained_model(run, params, device)
    draws = params.draw_family(variant)
    timer = Timer()
    probe = probe_data(p.samples, params, data)
    rows, summary = slice_probe(model, probe, p, params.probes, variant, run.seed, draws=draws)
    surface_data = probe_data(p.surface_samples, params, data)
    surface, area = surface_probe(model, surface_data, p, params.probes, variant, run.seed, draws=draws)
    summary = dataclasses.replace(summary, surface_area=area)
    write_csv(run.plot("slice"), rows, SLICE_COLUMNS)
    write_csv(run.plot("surface"), surface, SURFACE_COLUMNS)
    write_json(run.metrics("slice"), to_json(summary))
    seconds = timer.write(run.timing("slice"))["wall_s"]
    print(f"slice {variant} seed {run.seed}: {len(rows)} + {len(surface)} rows in {seconds} s")


if __name__ == "__main__":
    run_stage(main)
