"""Stage path@<variant>-<seed>: loss and accuracy on the straight line from the initial to the trained weights."""

from landscape.study.atomic import write_csv, write_json
from landscape.study.inputs import initial_state, probe_data, study_inputs, trained_model
from landscape.study.serialize import to_json
from landscape.study.stage import RunPaths, Timer, parse_seed, run_stage
from landscape.study.summaries.path import PATH_COLUMNS, path_probe


def main(variant: str, seed: str) -> None:
    run = RunPaths(variant, parse_seed(seed))
    params, device, data = study_inputs(variant)
    p = params.path
    model = trained_model(run, params, device)
    probe = probe_data(p.samples, params, data)
    timer = Timer()
    rows, summary = path_probe(model, initial_state(run, params), probe, p, variant, run.seed)
    write_csv(run.plot("path"), rows, PATH_COLUMNS)
    write_json(run.metrics("path"), to_json(summary))
    print(f"path {variant} seed {run.seed}: {len(rows)} rows in {timer.write(run.timing('path'))['wall_s']} s")


if __name__ == "__main__":
    run_stage(main)
