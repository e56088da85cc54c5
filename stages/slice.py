"""Stage slice@<variant>, for every seed of study.seeds: 1-D loss slices along seeded filter-normalized directions
(with the local d^T H d of each), the 2-D loss surface, and the loss along the straight line from the initial to the
trained weights (the path). Runs over study.factorial only."""

import dataclasses

from landscape.study.atomic import write_csv, write_json
from landscape.study.inputs import initial_state, probe_data
from landscape.study.probe_stage import SeedRun, run_probe_stage
from landscape.study.serialize import to_json
from landscape.study.stage import run_stage
from landscape.study.summaries.path import PATH_COLUMNS, path_probe
from landscape.study.summaries.slices import SLICE_COLUMNS, SURFACE_COLUMNS, slice_probe, surface_probe


def probe(s: SeedRun) -> str:
    run, params, model = s.run, s.params, s.model
    p = params.slice
    draws = params.draw_family(run.variant)
    rows, summary = slice_probe(model, probe_data(p.samples, params, s.data), p, params.probes, run.variant,
                                run.seed, draws=draws)  # fmt: skip
    surface_data = probe_data(p.surface_samples, params, s.data)
    surface, area = surface_probe(model, surface_data, p, params.probes, run.variant, run.seed, draws=draws)
    summary = dataclasses.replace(summary, surface_area=area)
    path_data = probe_data(params.path.samples, params, s.data)
    path_rows, path_summary = path_probe(
        model, initial_state(run, params), path_data, params.path, run.variant, run.seed
    )
    write_csv(run.plot("slice"), rows, SLICE_COLUMNS)
    write_csv(run.plot("surface"), surface, SURFACE_COLUMNS)
    write_json(run.metrics("slice"), to_json(summary))
    write_csv(run.plot("path"), path_rows, PATH_COLUMNS)
    write_json(run.metrics("path"), to_json(path_summary))
    return f"{len(rows)} slice + {len(surface)} surface + {len(path_rows)} path rows"


def main(variant: str) -> None:
    run_probe_stage("slice", variant, probe, needs=("model", "initial"))


if __name__ == "__main__":
    run_stage(main)
