"""Stage slice@<variant>-<seed>: 1-D loss slices along seeded filter-normalized directions (with the exact
d^T H d of each), and the 2-D loss surface."""

import dataclasses

from landscape.atomic import write_csv, write_json
from landscape.directions import stream_seed
from landscape.probes import SLICE_COLUMNS, slice_probe
from landscape.serialize import to_json
from landscape.stage import RunPaths, Timer, parse_seed, run_stage
from landscape.study import probe_data, study_inputs, trained_model
from landscape.surfaces import SURFACE_COLUMNS, surface_area, surface_probe


def main(variant: str, seed: str) -> None:
    run = RunPaths(variant, parse_seed(seed))
    params, device, data = study_inputs(variant)
    p = params.slice
    model = trained_model(run, params, device)
    timer = Timer()
    seeds = [stream_seed("slice", variant, run.seed, k) for k in range(p.directions)]
    probe = probe_data("slice", p.samples, params, data)
    rows, summary = slice_probe(model, probe, p, params.probes.parameters, params.probes.bn, seeds, variant, run.seed)
    surface_seeds = [stream_seed("surface", variant, run.seed, k) for k in range(2)]
    surface_data = probe_data("surface", p.surface_samples, params, data)
    surface = surface_probe(
        model, surface_data, p.surface_points, p.surface_span, p.normalization, params.probes.parameters, surface_seeds
    )
    summary = dataclasses.replace(summary, surface_area=surface_area(surface, "train", p.taus))
    write_csv(run.plot("slice"), rows, SLICE_COLUMNS)
    write_csv(run.plot("surface"), surface, SURFACE_COLUMNS)
    write_json(run.metrics("slice"), to_json(summary))
    seconds = timer.write(run.timing("slice"))["wall_s"]
    print(f"slice {variant} seed {run.seed}: {len(rows)} + {len(surface)} rows in {seconds} s")


if __name__ == "__main__":
    run_stage(main)
